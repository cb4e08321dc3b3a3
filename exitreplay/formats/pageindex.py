"""trace.dat by time: find each CPU's pages by their time stamps, read one window [t0, t1).

Every ring-buffer page starts with a header time stamp: the time of its first event (kernel
`kernel/trace/ring_buffer.c`, `rb_move_tail` -> `rb_reset_tail`: the new page's `time_stamp` is
the event's). A CPU's events are written in time order, so the events of page p lie between its
stamp and the next page's. `build_index` reads the stamps only (one 8-byte word per page of an
uncompressed file; compressed chunks are inflated once, one at a time, and dropped);
`read_window` then decodes, per CPU, only the pages from the last one stamped before t0 (it
may hold events up to the next stamp) to the last one stamped before t1, and keeps the events
with t0 <= ts < t1. Pages are copied out of the file, so a window's Trace holds only its pages.

The result is a `Trace` with the schema of `read_trace`: its rows are numbered from the caller's
`row_base` (0 by default: the window's own rows) in the order `read_trace` gives them, so it equals `read_trace(path)` filtered
to the window (`tests/test_pageindex.py`, at many cut points). A lost-events record is kept when
the event right after the loss is in the window (as `Trace.slice_time` keeps it).

Assumption: within a CPU, time does not go back across a page boundary by more than the page
before covers (a clock stepped back, as `trace-cmd report` shows such an event out of order):
`read_trace` orders such an event by its CPU's running maximum, which the window only sees from
its first page on.
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator

import numpy as np

from ..errors import TraceError
from ..trace import Trace
from .ringbuffer import CpuEvents, Missed, decode_pages
from .tracedat import Decoder, _assemble, _merge_all, lost_warning, open_buffer, require_formats, thread_pool
from .tracedat_file import TraceDatFile

TS_MIN, TS_MAX = -(2**63), 2**63 - 1


@dataclasses.dataclass
class CpuPages:
    """One CPU's pages: where they are and when each begins."""

    cpu: int
    raw: np.ndarray  # int64 header stamps in clock units, as a running maximum
    ns: np.ndarray  # the same in ns (what `Trace` timestamps are)
    nbytes: int  # bytes of page data present (a cut file may end inside a page)
    chunk_starts: np.ndarray | None = None  # compressed: each chunk's offset in the inflated data


@dataclasses.dataclass
class PageIndex:
    """The page stamps of one buffer of a trace.dat: plain arrays, cheap to send to workers."""

    path: str
    buffer: str | None
    page_size: int
    cpus: list[CpuPages]

    @property
    def pages(self) -> int:
        return sum(c.ns.size for c in self.cpus)

    @property
    def first_ns(self) -> int | None:
        firsts = [int(c.ns[0]) for c in self.cpus if c.ns.size]
        return min(firsts) if firsts else None

    @property
    def last_page_ns(self) -> int | None:
        """The latest page stamp: every event after it is on some CPU's last page."""
        lasts = [int(c.ns[-1]) for c in self.cpus if c.ns.size]
        return max(lasts) if lasts else None

    def page_range(self, i: int, t0: int, t1: int) -> tuple[int, int]:
        """Pages [lo, hi) of CPU `i` that may hold events with t0 <= ts < t1."""
        ns = self.cpus[i].ns
        lo = max(0, int(np.searchsorted(ns, t0, side="left")) - 1)  # the last page begun before t0
        hi = int(np.searchsorted(ns, t1, side="left"))
        return lo, max(lo, hi)

    def cuts(self, parts: int) -> list[int]:
        """parts + 1 increasing times splitting the trace into ranges of about as many pages
        (so about as many events); the first is TS_MIN, the last TS_MAX."""
        stamps = np.sort(np.concatenate([c.ns for c in self.cpus])) if self.cpus else np.zeros(0, np.int64)
        inner = [int(stamps[(k * stamps.size) // parts]) for k in range(1, parts)] if stamps.size else []
        return [TS_MIN, *sorted(set(inner)), TS_MAX]


def _stamps(data: np.ndarray, page_size: int, ts_offset: int, endian: str) -> np.ndarray:
    """The header stamp of every page of `data` whose stamp is present."""
    n = (data.size - ts_offset - 8) // page_size + 1 if data.size >= ts_offset + 8 else 0
    if n <= 0:
        return np.zeros(0, np.int64)
    dt = np.dtype("<u8" if endian == "little" else ">u8")
    return np.ndarray((n,), dt, buffer=data, offset=ts_offset, strides=(page_size,)).astype(np.int64)


def _compressed(tdf: TraceDatFile, buf, i: int) -> bool:
    return tdf.compression != "none" and tdf.version >= 7 and buf.cpus[i].size > 0


def _cpu_stamps(tdf: TraceDatFile, buf, i: int) -> tuple[np.ndarray, int, np.ndarray | None]:
    cd, ps, ts_off = buf.cpus[i], buf.page_size, tdf.header_page.ts_offset
    if cd.size == 0:
        return np.zeros(0, np.int64), 0, None
    if not _compressed(tdf, buf, i):
        data, _, _ = tdf.cpu_data(i, tdf.buffers.index(buf))
        return _stamps(data, ps, ts_off, tdf.endian), data.size, None
    chunks = tdf._chunk_table(cd)
    starts = np.concatenate([[0], np.cumsum([ch.usize for ch in chunks])]).astype(np.int64)
    parts, carry = [], np.zeros(0, np.uint8)
    for ch in chunks:  # pages may straddle chunks: carry the bytes of a page begun in the last one
        piece = np.concatenate([carry, np.frombuffer(tdf._chunk_bytes(cd, ch), np.uint8)])
        whole = piece.size // ps * ps
        parts.append(_stamps(piece[:whole], ps, ts_off, tdf.endian))
        carry = piece[whole:]
    parts.append(_stamps(carry, ps, ts_off, tdf.endian))
    return np.concatenate(parts), int(starts[-1]), starts


def build_index(path: str | os.PathLike, buffer: str | None = None) -> PageIndex:
    """The page stamps of every CPU of one buffer (default: the top one)."""
    path = os.fspath(path)
    tdf, bidx, buf = open_buffer(path, buffer)
    try:
        dec = Decoder(tdf, buf)
        cpus = []
        for i, cd in enumerate(buf.cpus):
            raw, nbytes, starts = _cpu_stamps(tdf, buf, i)
            raw = np.maximum.accumulate(raw) if raw.size else raw
            cpus.append(CpuPages(cd.cpu, raw, dec.to_ns(raw.copy()), nbytes, starts))
        return PageIndex(path, buffer, buf.page_size, cpus)
    finally:
        tdf.close()


def _page_bytes(tdf: TraceDatFile, buf, i: int, cp: CpuPages, lo: int, hi: int) -> np.ndarray:
    """The bytes of pages [lo, hi) of CPU `i` (a copy), reading (and for compressed data
    inflating) nothing else."""
    ps = buf.page_size
    a, b = lo * ps, min(hi * ps, cp.nbytes)
    if b <= a:
        return np.zeros(0, np.uint8)
    if not _compressed(tdf, buf, i):
        data, _, _ = tdf.cpu_data(i, tdf.buffers.index(buf))
        return data[a:b].copy()
    cd, starts = buf.cpus[i], cp.chunk_starts
    chunks = tdf._chunk_table(cd)
    first = int(np.searchsorted(starts, a, side="right")) - 1
    last = int(np.searchsorted(starts, b, side="left"))
    blob = np.concatenate([np.frombuffer(tdf._chunk_bytes(cd, chunks[k]), np.uint8) for k in range(first, last)])
    at = int(starts[first])
    return blob[a - at: b - at]


def _window_events(ev: CpuEvents, ns: np.ndarray, t0: int, t1: int) -> CpuEvents:
    """The events of one CPU with t0 <= ts < t1, and the losses right before one of them."""
    keep = (ns >= t0) & (ns < t1)
    before = np.cumsum(keep) - keep  # kept events ahead of each one
    missed = [Missed(int(before[m.index]), m.count, m.page) for m in ev.missed
              if m.index < keep.size and keep[m.index]]
    return CpuEvents(ev.ts[keep], ev.offset[keep], ev.size[keep], missed, ev.truncated, ev.warnings, ev.pages)


class WindowReader:
    """One trace.dat opened once for many windows (its formats parsed once). Each window's pages
    are copied out of the file, so a window's Trace does not need the file once read."""

    def __init__(self, path: str | os.PathLike, index: PageIndex | None = None, buffer: str | None = None):
        self.path = os.fspath(path)
        self.index = index or build_index(self.path, buffer)
        self.tdf, _, self.buf = open_buffer(self.path, self.index.buffer)
        try:
            if len(self.buf.cpus) != len(self.index.cpus) or self.buf.page_size != self.index.page_size:
                raise TraceError(self.path, "the page index was built from another file")
            self.dec = Decoder(self.tdf, self.buf)
        except BaseException:
            self.tdf.close()
            raise

    def __enter__(self) -> WindowReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.tdf.close()

    def read(self, t0: int | None, t1: int | None, row_base: int = 0) -> Trace:
        """The events with t0 <= ts < t1 (ns; None: unbounded) as a Trace, decoding only their pages.
        `row_base`: the row number of its first event (rows are the window's own from there)."""
        t0 = TS_MIN if t0 is None else t0
        t1 = TS_MAX if t1 is None else t1
        tdf, buf, dec, index = self.tdf, self.buf, self.dec, self.index
        pieces, evs = [], []
        at = 0
        for i, cp in enumerate(index.cpus):
            lo, hi = index.page_range(i, t0, t1) if t1 > t0 else (0, 0)
            data = _page_bytes(tdf, buf, i, cp, lo, hi)
            ev = decode_pages(data, buf.page_size, tdf.header_page, tdf.endian, tdf.long_size, cp.cpu,
                              tdf.header_event, base_offset=at, offset_dtype=np.int64, first_page=lo)
            evs.append(_window_events(ev, dec.to_ns(ev.ts.copy()), t0, t1))
            pieces.append(data)
            at += data.size
        data = np.concatenate(pieces) if pieces else np.zeros(0, np.uint8)
        warn = [w for ev in evs for w in ev.warnings]
        with thread_pool() as pool:
            cols = _merge_all(dec, buf, evs, data, pool)
            require_formats(self.path, dec, cols["ts"].size)
            events, tables, counts = _assemble(dec, cols, data, pool, row_base=row_base)
        dropped = sorted((dataclasses.replace(d, row=d.row + row_base) for d in cols["dropped"] if d.row is not None),
                         key=lambda d: (d.ts, d.cpu))
        lw = lost_warning(dropped)
        if lw:
            warn.append(lw)
        per_cpu = {int(cd.cpu): int(ev.count) for cd, ev in zip(buf.cpus, evs)}
        return Trace(events, tables, dec.meta(dropped, tdf.warnings + dec.warnings + warn, per_cpu, counts),
                     row_base=row_base)

    def spans(self, t0: int | None, t1: int | None, step_ns: int) -> Iterator[tuple[int, int]]:
        """[t0, t1) as consecutive [a, b) of `step_ns` (the first from the first page on when t0 is
        None; past the last page stamp, one span to t1)."""
        if step_ns < 1:
            raise ValueError("step_ns must be at least 1")
        start, end = self.index.first_ns, TS_MAX if t1 is None else t1
        t = TS_MIN if t0 is None else t0
        last = self.index.last_page_ns
        while t < end:
            if last is None or t > last:
                nxt = end
            else:
                nxt = min(end, max(t, start if start is not None else t) + step_ns)
            yield t, nxt
            t = nxt

    def windows(self, t0: int | None, t1: int | None, step_ns: int, row_base: int = 0) -> Iterator[Trace]:
        """The `spans` as Traces, numbered on from `row_base` (each one's rows follow the one before's)."""
        for a, b in self.spans(t0, t1, step_ns):
            window = self.read(a, b, row_base)
            yield window
            row_base += len(window)


def read_window(path: str | os.PathLike, t0: int | None, t1: int | None, index: PageIndex | None = None,
                buffer: str | None = None) -> Trace:
    """The events of a trace.dat with t0 <= ts < t1 (ns; None: unbounded), decoding only their pages."""
    with WindowReader(path, index, buffer) as reader:
        return reader.read(t0, t1)
