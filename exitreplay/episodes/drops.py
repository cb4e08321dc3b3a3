"""Episodes that overlap a window in which the ring buffer of a CPU they ran on lost events."""
from __future__ import annotations

import numpy as np

from ..trace import Trace
from .locate import BIG


def crossing_drops(trace: Trace, start: np.ndarray, cpu: np.ndarray, entry_ts: np.ndarray, entry_cpu: np.ndarray,
                    paired: np.ndarray) -> np.ndarray:
    """Episodes whose time span overlaps a loss window on a CPU they ran on.

    A loss on CPU c lies between the last event recorded on c before the marker and the marker
    event itself; an episode is affected if it ran on c (exit or entry CPU) during that window.
    Unpaired exits are affected by any loss after them on their CPU.
    """
    out = np.zeros(start.size, bool)
    drops = [d for d in trace.meta.dropped if d.row is not None]
    if not drops or start.size == 0:
        return out
    ev_cpu = np.asarray(trace.events.column("cpu").to_numpy())
    ev_ts = np.asarray(trace.events.column("ts").to_numpy())
    end = np.where(paired, entry_ts, BIG)
    for c in sorted({d.cpu for d in drops}):
        rows_c = np.flatnonzero(ev_cpu == c)
        marks = np.array(sorted(d.row - trace.row_base for d in drops if d.cpu == c), np.int64)
        prev = np.searchsorted(rows_c, marks, "left") - 1
        w_lo = np.where(prev >= 0, ev_ts[rows_c[np.maximum(prev, 0)]], np.iinfo(np.int64).min)
        w_hi = ev_ts[marks]
        on_c = (cpu == c) | (paired & (entry_cpu == c))
        # Windows on one CPU are disjoint and ordered: those overlapping (start, end] are the ones
        # opening before `end` minus those closing at or before `start`.
        hits = np.searchsorted(w_lo, end, "left") - np.searchsorted(w_hi, start, "right")
        out |= on_c & (hits > 0)
    return out
