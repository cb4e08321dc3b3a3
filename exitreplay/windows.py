"""A trace read a window at a time, in time order, with memory bounded by the window.

`iter_windows(path)` yields `Trace`s of `window_events` events each (the last may be shorter).
Each has the tables and schema `read_trace` gives, except that `row` keeps its place in the whole
file (a window's `row_base` is the row of its first event), so the windows' tables, concatenated,
are `read_trace`'s. `meta.dropped` holds the losses inside the window, `first_ts`/`last_ts` and
`event_counts` are the window's own; the rest of `meta` is the file's. What a stream learns only
at its end (the warnings about losses and truncation, `extra["events_per_cpu"]`, losses after a
CPU's last event) is complete in the last window.

trace.dat is streamed (`convert.TraceDatStream`: every CPU's pages a chunk at a time, merged in
windows no later event can sort before); the stream's windows are then cut or joined to exactly
`window_events`: memory is bounded by the window.

perf.data is streamed (`formats/perf_stream.py`): the data section's records a chunk at a time
into perf's ordered-events queue, delivered a FINISHED_ROUND flush at a time: memory is the
window and the records not yet flushed (about two rounds; the whole file for one without
FINISHED_ROUND records, and a compressed file is read whole).

The text formats (trace-cmd report, ftrace text, perf script) are read twice, a chunk of lines at a
time (formats.textstream): a survey learns what the whole file decides (each column's type, the
ISA, the header, counts and losses), then the parse pass cuts windows typed as the file: memory is
bounded by the window and a chunk (64 bytes per window event, 1-64 MiB). A text not in time order
(read_trace sorts it) is read whole by `read_trace` and cut with `slice_windows`.
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .errors import UsageError
from .trace import Dropped, Trace, TraceMeta

Progress = Callable[[int, int], None]
# Page bytes the stream decodes at a time per window event: records are 12-40 bytes, so a chunk
# holds a window or two; within these bounds, whatever the window size.
BYTES_PER_EVENT = 32
MIN_CHUNK, MAX_CHUNK = 1 << 20, 256 << 20
_COLS = ("ts", "cpu", "pid", "type_id", "flags", "pc", "comm", "off", "size")


def iter_windows(source: str | os.PathLike, *, window_events: int = 1_000_000,
                 events: Iterable[str] | None = None, progress: Progress | None = None) -> Iterator[Trace]:
    """The trace file `source` (any format `read_trace` reads) as windows of `window_events`
    events in time order. `events`: build per-event tables for these names only (the `events`
    table still has every event). A file without events gives one empty window (its meta)."""
    from .formats import textstream
    from .formats.detect import sniff
    from .formats.textcommon import check_path

    if window_events < 1:
        raise UsageError(f"window_events must be at least 1 (got {window_events})")
    path = check_path(source)
    only = None if events is None else set(events)
    fmt = sniff(path)
    if fmt == "trace.dat":
        return _tracedat_windows(path, window_events, only, progress)
    if fmt == "perf.data":
        from .formats import perfdata

        return perfdata.windows(path, window_events, only, progress)
    if fmt in textstream.MODULES:
        return textstream.windows(path, fmt, window_events, only, progress,
                                  lambda: _read_and_slice(path, window_events, only, progress))
    return _read_and_slice(path, window_events, only, progress)


def _read_and_slice(path: str, window_events: int, only: set[str] | None, progress) -> Iterator[Trace]:
    from .reader import read_trace

    with read_trace(path, progress=progress) as trace:
        yield from slice_windows(trace, window_events, events=only)


def slice_windows(trace: Trace, window_events: int, *, events: Iterable[str] | None = None) -> Iterator[Trace]:
    """An in-memory Trace (or window) cut into windows of `window_events` rows, rows kept."""
    if window_events < 1:
        raise UsageError(f"window_events must be at least 1 (got {window_events})")
    n, base = len(trace), trace.row_base  # a window can be cut again
    names = [nm for nm in trace.event_names if events is None or nm in set(events)]
    tables = {nm: trace.table(nm) for nm in names}
    bounds = list(range(0, n, window_events)) + [n] if n else [0, 0]
    cuts = {nm: np.searchsorted(t.column("row").to_numpy(), np.add(bounds, base)) for nm, t in tables.items()}
    drows = np.array([n if d.row is None else d.row - base for d in trace.meta.dropped], np.int64)
    last = len(bounds) - 2
    for j in range(last + 1):
        lo, hi = bounds[j], bounds[j + 1]
        sel = {nm: tables[nm].slice(int(c[j]), int(c[j + 1] - c[j])) for nm, c in cuts.items()}
        keep = (drows >= lo) & ((drows < hi) | (j == last))
        drops = [d for d, k in zip(trace.meta.dropped, keep.tolist()) if k]
        meta = dataclasses.replace(trace.meta, event_counts={}, first_ts=None, last_ts=None, dropped=drops,
                                   warnings=list(trace.meta.warnings), extra=dict(trace.meta.extra))
        yield Trace(trace.events.slice(lo, hi - lo), {nm: t for nm, t in sel.items() if t.num_rows}, meta,
                    row_base=base + lo)


# -- trace.dat ------------------------------------------------------------------------------------

@dataclasses.dataclass
class _Raw:
    """Merged events not decoded into tables yet: columns over `data` (the pages they lie in)."""

    row_base: int
    data: np.ndarray
    cols: dict[str, np.ndarray]
    flags_ok: np.ndarray

    @property
    def n(self) -> int:
        return self.cols["ts"].size

    def split(self, k: int) -> tuple[_Raw, _Raw]:
        head = {c: v[:k] for c, v in self.cols.items()}
        tail = {c: v[k:] for c, v in self.cols.items()}
        return (_Raw(self.row_base, self.data, head, self.flags_ok[:k]),
                _Raw(self.row_base + k, self.data, tail, self.flags_ok[k:]))


def _join(parts: list[_Raw]) -> _Raw:
    if len(parts) == 1:
        return parts[0]
    shift = np.cumsum([0] + [p.data.size for p in parts[:-1]])
    cols = {c: np.concatenate([p.cols[c] for p in parts]) for c in _COLS if c != "off"}
    cols["off"] = np.concatenate([p.cols["off"].astype(np.int64) + s for p, s in zip(parts, shift.tolist())])
    return _Raw(parts[0].row_base, np.concatenate([p.data for p in parts]), cols,
                np.concatenate([p.flags_ok for p in parts]))


class _Cutter:
    """Stream windows in, windows of exactly `target` events out (the last one shorter)."""

    def __init__(self, target: int):
        self.target = target
        self.parts: list[_Raw] = []
        self.n = 0

    def push(self, raw: _Raw) -> Iterator[_Raw]:
        self.parts.append(raw)
        self.n += raw.n
        while self.n >= self.target:
            yield self._take(self.target)

    def rest(self) -> Iterator[_Raw]:
        if self.n:
            yield self._take(self.n)

    def _take(self, k: int) -> _Raw:
        out, got = [], 0
        while got < k:
            p = self.parts.pop(0)
            if got + p.n > k:
                p, rest = p.split(k - got)
                self.parts.insert(0, rest)
            out.append(p)
            got += p.n
        self.n -= k
        return _join(out)


class _Drops:
    """The stream's losses (global rows), handed to the windows they fall in."""

    def __init__(self, source: list[Dropped]):
        self.source, self.seen = source, 0
        self.pending: list[Dropped] = []

    def pull(self) -> None:
        self.pending.extend(self.source[self.seen:])
        self.seen = len(self.source)

    def take(self, end: int, last: bool) -> list[Dropped]:
        """Losses before row `end` (and, for the last window, those after every event)."""
        mine = [d for d in self.pending if last or (d.row is not None and d.row < end)]
        if mine:
            self.pending = [d for d in self.pending if not (last or (d.row is not None and d.row < end))]
        return sorted(mine, key=lambda d: (d.ts, d.cpu))


def _tracedat_windows(path: str, target: int, only: set[str] | None, progress) -> Iterator[Trace]:
    from .convert import TraceDatStream
    from .formats.tracedat import require_formats, unknown_warning

    chunk = min(MAX_CHUNK, max(MIN_CHUNK, target * BYTES_PER_EVENT))
    with TraceDatStream(path, chunk) as stream:
        dec = stream.dec
        unknown: set[int] = set()
        cutter = _Cutter(target)
        held: _Raw | None = None  # the last window is decoded after the stream ends (its meta)
        drops = _Drops(stream.dropped)
        for w in stream.windows(progress):
            require_formats(path, dec, w.ts.size)
            drops.pull()
            raw = _Raw(w.row_base, w.data, {c: getattr(w, c) for c in _COLS},
                       w.flags_ok if w.flags_ok is not None else np.ones(w.ts.size, bool))
            for cut in cutter.push(raw):
                if held is not None:
                    yield _decode(stream, held, drops, only, unknown, None)
                held = cut
        for cut in cutter.rest():
            if held is not None:
                yield _decode(stream, held, drops, only, unknown, None)
            held = cut
        drops.pull()  # the losses after each CPU's last event, before meta() sorts the list
        if unknown:
            dec.warnings.append(unknown_warning(list(unknown)))
        final = stream.meta({})  # every warning (and emits them, as read_trace does)
        if held is None:
            held = _Raw(0, np.empty(0, np.uint8), {c: np.empty(0, np.int64) for c in _COLS}, np.ones(0, bool))
            held.cols["type_id"] = np.empty(0, np.uint16)
        yield _decode(stream, held, drops, only, unknown, final)


def _decode(stream, raw: _Raw, drops: _Drops, only: set[str] | None, unknown: set[int],
            final: TraceMeta | None) -> Trace:
    """One window as a Trace: events, lazy tables with the file's rows, the losses inside it."""
    from .formats.tracedat import _assemble, thread_pool

    dec = stream.dec
    mine = drops.take(raw.row_base + raw.n, final is not None)
    cols = dict(raw.cols)
    cols["type_counts"] = np.bincount(cols["type_id"], minlength=1)
    cols["flags_valid"] = raw.flags_ok
    with thread_pool(size=raw.n) as pool:
        events, tables, counts = _assemble(dec, cols, raw.data, pool, row_base=raw.row_base, only=only,
                                           unknown_out=unknown)
    if final is not None:
        meta = dataclasses.replace(final, dropped=mine, event_counts=counts, warnings=list(final.warnings),
                                   extra=dict(final.extra))
    else:
        meta = dec.meta(mine, list(stream.tdf.warnings + dec.warnings), {}, counts)
    return Trace(events, tables, meta, row_base=raw.row_base)


def concat_windows(windows: Iterable[Trace]) -> tuple[pa.Table, dict[str, pa.Table], list[Dropped]]:
    """The windows' events, tables (dictionaries decoded to strings) and losses, concatenated:
    what `read_trace` gives for the whole file (used by tests and benchmarks)."""
    evs, tabs, drops = [], {}, []
    for w in windows:
        evs.append(_plain(w.events))
        for nm in w.event_names:
            tabs.setdefault(nm, []).append(_plain(w.table(nm)))
        drops.extend(w.meta.dropped)
    events = pa.concat_tables(evs) if evs else None
    return events, {nm: pa.concat_tables(ts) for nm, ts in tabs.items()}, drops


def _plain(t: pa.Table) -> pa.Table:
    cols = [pc.cast(c, c.type.value_type) if pa.types.is_dictionary(c.type) else c for c in t.columns]
    return pa.Table.from_arrays(cols, names=t.column_names)
