"""A live recording's raw pages -> window Traces with global rows, in the readers' merge order.

The layouts come from a header-only trace.dat written at the start with the host's own formats
(`record.hostformats`): the trace.dat parser and `formats.tracedat.Decoder` then read them as
they read any file, so a live window's rows and values are those `read_trace` gives for the
recording of the same pages. Each CPU's pages are decoded as they arrive
(`ringbuffer.decode_pages`); the CPUs are merged on their running-maximum keys, as the file
reader merges them.

A CPU's events reach us up to a reader's poll period late (record.pipes: POLL_MS), so the
events of a busy CPU may already be in while an idle one's earlier ones are not. A window
therefore takes only the events whose key is HOLD_NS behind the latest key seen; the rest wait
for the next window (or the end, which takes everything).
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from ..convert import Window as RawWindow
from ..convert import _events_batch, _Names, merge_queues
from ..formats.ringbuffer import Missed, decode_pages
from ..formats.tracedat import Decoder, merge_key
from ..formats.tracedat_file import TraceDatFile
from ..record.pipes import POLL_MS
from ..trace import Dropped, Trace, TraceMeta
from .comms import Comms
from .window import window_trace

HOLD_NS = 3 * POLL_MS * 1_000_000


class CpuQueue:
    """One CPU's decoded events not yet emitted, with the page bytes they lie in."""

    def __init__(self, cpu: int):
        self.cpu = cpu
        self.buf = np.empty(0, np.uint8)
        self.key = self.ts = self.off = np.empty(0, np.int64)
        self.size = np.empty(0, np.int32)
        self.keymax: int | None = None
        self.pages = self.count = self.emitted = 0
        self.missed: list[Missed] = []  # index: this CPU's event number

    def add(self, tdf: TraceDatFile, pages: np.ndarray, page_size: int) -> None:
        ev = decode_pages(pages, page_size, tdf.header_page, tdf.endian, tdf.long_size, self.cpu, tdf.header_event,
                          base_offset=self.buf.size, first_page=self.pages)
        self.pages += ev.pages
        for m in ev.missed:
            m.index += self.count
        self.missed.extend(ev.missed)
        self.count += ev.count
        key = merge_key(ev.ts, self.keymax)
        if ev.count:
            self.keymax = int(key[-1])
        self.buf = np.concatenate([self.buf, pages]) if self.buf.size else np.asarray(pages, np.uint8)
        self.key, self.ts = np.concatenate([self.key, key]), np.concatenate([self.ts, ev.ts])
        self.off = np.concatenate([self.off, ev.offset.astype(np.int64)])
        self.size = np.concatenate([self.size, ev.size.astype(np.int32)])

    def cut(self, bound: int | None) -> int:
        return self.key.size if bound is None else int(np.searchsorted(self.key, bound, side="left"))

    def drop(self, n: int, page_size: int) -> None:
        """Forget the first n pending events and the pages only they used."""
        self.emitted += n
        self.key, self.ts, self.off, self.size = self.key[n:], self.ts[n:], self.off[n:], self.size[n:]
        if self.off.size:
            start = int(self.off[0]) // page_size * page_size
            if start:
                self.buf, self.off = self.buf[start:], self.off - start
        else:
            self.buf = np.empty(0, np.uint8)


class PageDecoder:
    def __init__(self, formats_file: str, cpus: list[int], cmdlines_path: str, label: str):
        self.tdf = TraceDatFile(formats_file)
        self.buf = self.tdf.buffers[0]
        self.dec = Decoder(self.tdf, self.buf)
        self.page_size = self.buf.page_size
        self.names = _Names(self.dec, every_id=False)
        self.comms = Comms(cmdlines_path)
        self.cpus = {c: CpuQueue(c) for c in cpus}
        self.rows = 0
        self.label = label
        self.max_key: int | None = None
        self.warnings: list[str] = list(self.dec.warnings)

    def close(self) -> None:
        self.tdf.close()

    def add(self, cpu: int, pages: np.ndarray) -> None:
        q = self.cpus.setdefault(cpu, CpuQueue(cpu))
        q.add(self.tdf, pages, self.page_size)
        if q.keymax is not None:
            self.max_key = q.keymax if self.max_key is None else max(self.max_key, q.keymax)

    def ready_bound(self) -> int | None:
        """Events below this key can be emitted now (None: nothing seen yet)."""
        return None if self.max_key is None else self.max_key - HOLD_NS

    def take(self, bound: int | None) -> Trace | None:
        """The pending events with key < bound (every one when bound is None), merged."""
        qs = [self.cpus[c] for c in sorted(self.cpus)]
        cuts = [q.cut(bound) for q in qs]
        if not sum(cuts):
            return None
        data, cols, merged, flags_ok = merge_queues(self.dec, qs, cuts)
        cols["comm"][:] = self.comms.codes(cols["pid"])
        dropped = self._dropped(qs, cuts, merged, cols["ts"])
        for q, n in zip(qs, cuts):
            q.drop(n, self.page_size)
        if bound is None:  # the end: losses after a CPU's last event (no row follows them)
            last = int(cols["ts"][-1])
            dropped += [Dropped(q.cpu, last, mi.count, None) for q in qs for mi in q.missed]
            for q in qs:
                q.missed.clear()
        trace = self._trace(RawWindow(self.rows, data, cols, flags_ok), dropped)
        self.rows += sum(cuts)
        return trace

    def _dropped(self, qs, cuts, merged, ts) -> list[Dropped]:
        out = []
        for pi, (q, n) in enumerate(zip(qs, cuts)):
            k = 0
            while k < len(q.missed) and q.missed[k].index < q.emitted + n:
                k += 1
            if k:
                local = merged.rows_of(pi, np.array([mi.index - q.emitted for mi in q.missed[:k]], np.int64))
                out += [Dropped(q.cpu, int(ts[r]), mi.count, self.rows + int(r))
                        for mi, r in zip(q.missed[:k], local.tolist())]
                del q.missed[:k]
        return out

    def _trace(self, w: RawWindow, dropped: list[Dropped]) -> Trace:
        code, _ = self.names.codes(w.type_id)
        events = pa.Table.from_batches([_events_batch(w, code, self.names, self.comms.dictionary())])
        tables = {}
        counts = np.bincount(w.type_id, minlength=1)
        for t in np.flatnonzero(counts).tolist():
            rows = np.flatnonzero(w.type_id == t)
            tables[self.dec.name_of(t)[0]] = self.dec.table(t, rows, w.row_base, w.ts, w.cpu, w.pid, w.data,
                                                            w.off, w.size)
        tdf = self.tdf
        meta = TraceMeta(path=self.label, source_format="trace.dat", version=tdf.version, compression="none",
                         cpus=tdf.cpus, clock=tdf.trace_clock, page_size=self.page_size, endian=tdf.endian,
                         long_size=tdf.long_size, dropped=dropped, warnings=list(self.warnings))
        return window_trace(events, tables, meta, w.row_base)
