"""Windows of one trace as Traces that keep the file's row numbers (Trace.row_base).

The fold analyses a *view*: the events it kept from the previous view (from the earliest exit
still open there) followed by the next window, so an episode is always seen whole."""
from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pyarrow as pa

from ..trace import Trace


def concat(a: Trace | None, b: Trace) -> Trace:
    """Two adjacent windows (a's rows end where b's begin) as one."""
    if a is None or len(a) == 0:
        return b
    if len(b) == 0:
        return a
    if a.row_base + len(a) != b.row_base:
        raise ValueError(f"windows not adjacent: rows {a.row_base}+{len(a)} then {b.row_base}")
    tables = {}
    for name in sorted(set(a.event_names) | set(b.event_names)):
        parts = [t.table(name) for t in (a, b) if t.has(name)]
        tables[name] = parts[0] if len(parts) == 1 else pa.concat_tables(parts, promote_options="permissive")
    meta = dataclasses.replace(b.meta, event_counts={}, first_ts=None, last_ts=None,
                               dropped=[*a.meta.dropped, *b.meta.dropped])
    return Trace(pa.concat_tables([a.events, b.events]), tables, meta, row_base=a.row_base)


def slices(trace: Trace, window_events: int) -> Iterator[Trace]:
    """An in-memory trace cut into windows of `window_events` rows."""
    step = max(1, int(window_events))
    for lo in range(trace.row_base, trace.row_base + max(len(trace), 1), step):
        yield trace.slice_rows(lo, lo + step)


def concat_windows(windows: list[Trace]) -> Trace:
    """Adjacent windows back into one Trace (the file's rows kept)."""
    out = None
    for w in windows:
        out = concat(out, w)
    return out
