"""Windows of a trace: consecutive slices of its rows, each a Trace whose rows stay the whole trace's.

`StreamAnalysis.feed` takes windows in row order with global rows (a window's tables carry the
row numbers of the trace they were cut from, `row_base` is its first). Where `Trace` takes a
`row_base` itself that is used; else `WindowTrace`, a Trace that checks its tables' rows against
its own row range instead of [0, len).

`time_frames` cuts a stream of such windows (or one whole Trace) at fixed steps of trace time:
each frame is the pieces of the windows that fall in one interval.
"""
from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Iterable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import UsageError
from ..trace import Trace, TraceMeta

MAX_FRAMES = 1_000_000  # intervals a replay may cut a trace into (each is a report)
_TRACE_HAS_ROW_BASE = "row_base" in inspect.signature(Trace.__init__).parameters


class WindowTrace(Trace):
    """Rows row_base .. row_base + len(events) - 1 of a longer trace."""

    def __init__(self, events: pa.Table, tables, meta: TraceMeta, row_base: int):
        super().__init__(events, tables, meta)
        self.row_base = row_base

    def _keys(self, name: str, tbl: pa.Table) -> pa.Table:
        if _TRACE_HAS_ROW_BASE or not self.row_base or "row" not in tbl.column_names:
            return super()._keys(name, tbl)
        i = tbl.column_names.index("row")
        local = tbl.set_column(i, "row", pc.subtract(tbl.column("row").cast(pa.int64()), self.row_base))
        local = super()._keys(name, local)
        return local.set_column(i, "row", pc.add(local.column("row"), self.row_base))


def window_trace(events: pa.Table, tables, meta: TraceMeta, row_base: int) -> Trace:
    if _TRACE_HAS_ROW_BASE:
        return Trace(events, tables, meta, row_base=row_base)
    return WindowTrace(events, tables, meta, row_base)


def row_base(trace: Trace) -> int:
    return int(getattr(trace, "row_base", 0) or 0)


@dataclasses.dataclass
class Window:
    """Events of one interval of a source (None when it had none) and the trace time it covers.
    An interval may come as several Windows (pieces of the source's windows), all with its times."""

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


def slice_rows(trace: Trace, a: int, b: int) -> Trace:
    """Events a .. b-1 of `trace` (positions in it), their rows kept; losses after the last event
    (row None) go with the slice that reaches the end. Every table is decoded here: the slice
    must not need the file, which its reader may close before the slice is analysed."""
    base = row_base(trace)
    lo, hi = base + a, base + b
    tables = {}
    for name in trace.event_names:
        t = trace.table(name)
        i, j = np.searchsorted(t.column("row").to_numpy(), [lo, hi])
        if j > i:
            tables[name] = t.slice(int(i), int(j - i))
    end = b == len(trace)
    dropped = [d for d in trace.meta.dropped if (d.row is None and end) or (d.row is not None and lo <= d.row < hi)]
    return window_trace(trace.events.slice(a, b - a), tables, window_meta(trace.meta, dropped), lo)


class _Frames:
    """Pieces in, frames (the pieces of one interval) out, quiet intervals as empty frames."""

    def __init__(self, span: int, path: str | None):
        self.span, self.path = span, path
        self.first: int | None = None
        self.k = 0  # the interval being filled
        self.held: list[Trace] = []
        self.keymax: int | None = None  # running maximum of ts over everything so far

    def edges(self, k: int) -> tuple[int, int]:
        return self.first + k * self.span, self.first + (k + 1) * self.span

    def push(self, trace: Trace) -> Iterator[list[Window]]:
        if not len(trace):
            return
        ts = trace.events.column("ts").to_numpy()
        key = np.maximum.accumulate(ts if self.keymax is None else np.maximum(ts, self.keymax))
        self.keymax = int(key[-1])
        if self.first is None:
            self.first = int(key[0])
        idx = (key - self.first) // self.span
        if int(idx[-1]) >= MAX_FRAMES:
            raise UsageError(f"{self.path}: more than {MAX_FRAMES:,} frames of {self.span / 1e9:g} s: give a longer "
                             "--interval (or a higher --speed)")
        ks, starts = np.unique(idx, return_index=True)
        bounds = [*starts.tolist(), len(trace)]
        for j, a, b in zip(ks.tolist(), bounds, bounds[1:]):
            yield from self._advance(j)
            self.held.append(slice_rows(trace, a, b))

    def _advance(self, j: int) -> Iterator[list[Window]]:
        while self.k < j:
            lo, hi = self.edges(self.k)
            yield [Window(t, lo, hi) for t in self.held] or [Window(None, lo, hi)]
            self.held, self.k = [], self.k + 1

    def end(self) -> Iterator[list[Window]]:
        if self.first is None:
            return
        lo = self.edges(self.k)[0]
        # The last interval ends with the trace: its rates are over its own time.
        yield [Window(t, lo, self.keymax + 1, last=True) for t in self.held]


def time_frames(traces: Iterable[Trace], span: int, path: str | None = None) -> Iterator[list[Window]]:
    """Windows in row order cut every `span` clock units from the first event: frame k holds
    the events with first + k*span <= key < first + (k+1)*span, the last frame ending just after
    the last event. The key is the running maximum of ts (a reader's merge order lets a CPU's
    clock step back a little behind another's), so every piece is a run of consecutive rows."""
    frames = _Frames(span, path)
    for trace in traces:
        yield from frames.push(trace)
    yield from frames.end()


def time_windows(trace: Trace, span: int) -> Iterator[Window]:
    """One whole Trace cut every `span` clock units: a Window per interval."""
    for frame in time_frames([trace], span, trace.meta.path):
        yield from frame
