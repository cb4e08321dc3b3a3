"""Windows of a trace: consecutive slices of its rows, each a Trace whose rows stay the whole trace's.

`StreamAnalysis.feed` takes windows in row order with global rows (a window's tables carry the
row numbers of the trace they were cut from). `WindowTrace` is a Trace that checks its tables'
rows against its own row range instead of [0, len), so such a window can be read like any Trace.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import UsageError
from ..trace import Trace, TraceMeta

MAX_WINDOWS = 1_000_000  # frames a replay may cut a trace into (each is a report)


class WindowTrace(Trace):
    """Rows row_base .. row_base + len(events) - 1 of a longer trace."""

    def __init__(self, events: pa.Table, tables, meta: TraceMeta, row_base: int):
        self.row_base = row_base
        super().__init__(events, tables, meta)

    def _keys(self, name: str, tbl: pa.Table) -> pa.Table:
        if not self.row_base:
            return super()._keys(name, tbl)
        i = tbl.column_names.index("row") if "row" in tbl.column_names else None
        if i is None:
            return super()._keys(name, tbl)
        local = tbl.set_column(i, "row", pc.subtract(tbl.column("row").cast(pa.int64()), self.row_base))
        local = super()._keys(name, local)
        return local.set_column(i, "row", pc.add(local.column("row"), self.row_base))


@dataclasses.dataclass
class Window:
    """One interval of a source: its events (None when it had none) and the trace time it covers."""

    trace: Trace | None
    lo_ts: int  # trace clock, inclusive
    hi_ts: int  # exclusive
    last: bool = False  # the source has ended: nothing follows

    @property
    def events(self) -> int:
        return 0 if self.trace is None else len(self.trace)

    @property
    def event_counts(self) -> dict[str, int]:
        return {} if self.trace is None else dict(self.trace.meta.event_counts)


def window_meta(meta: TraceMeta, dropped) -> TraceMeta:
    """A window's metadata: the trace's facts and warnings (a list of its own), its own losses."""
    return dataclasses.replace(meta, event_counts={}, first_ts=None, last_ts=None, dropped=list(dropped),
                               warnings=list(meta.warnings))


def time_windows(trace: Trace, span: int) -> Iterator[Window]:
    """The trace cut every `span` clock units from its first event: [first + k*span, first + (k+1)*span),
    the last one ending just after the last event.

    Cut on the running maximum of ts (the readers' merge order lets a CPU's clock step back a
    little behind another's), so every window is a run of consecutive rows. Empty intervals
    are Windows without a trace, so a paced replay keeps time through a quiet stretch.
    """
    n = len(trace)
    if not n:
        return
    ts = np.maximum.accumulate(trace.events.column("ts").to_numpy())
    first, last = int(ts[0]), int(ts[-1])
    count = (last - first) // span + 1
    if count > MAX_WINDOWS:
        raise UsageError(f"{trace.meta.path}: {count:,} frames of {span / 1e9:g} s for its "
                         f"{(last - first) / 1e9:g} s: give a longer --interval (or a higher --speed)")
    edges = first + span * np.arange(count + 1, dtype=np.int64)
    edges[-1] = last + 1  # the last interval ends with the trace: its rates are over its own time
    cuts = np.searchsorted(ts, edges, side="left")
    cuts[-1] = n
    tables = {name: trace.table(name) for name in trace.event_names}
    trows = {name: t.column("row").to_numpy() for name, t in tables.items()}
    drows = np.array([-1 if d.row is None else d.row for d in trace.meta.dropped], np.int64)
    for k in range(count):
        lo, hi = int(cuts[k]), int(cuts[k + 1])
        end = k == count - 1
        if hi == lo:
            yield Window(None, int(edges[k]), int(edges[k + 1]), end)
            continue
        part = {}
        for name, t in tables.items():
            a, b = np.searchsorted(trows[name], [lo, hi])
            if b > a:
                part[name] = t.slice(int(a), int(b - a))
        dropped = [d for d, r in zip(trace.meta.dropped, drows) if lo <= r < hi or (end and r < 0)]
        win = WindowTrace(trace.events.slice(lo, hi - lo), part, window_meta(trace.meta, dropped), lo)
        yield Window(win, int(edges[k]), int(edges[k + 1]), end)
