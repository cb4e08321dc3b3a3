"""The perf.data container: header, attrs, features and every record, in file or pipe mode.

`PerfFile` maps the file, reads its header (perf_header.py), walks the data (perf_records.py),
unpacks PERF_RECORD_COMPRESSED into a second stream, and in pipe mode (`perf record -o -`) takes
the attrs, features and tracing data from the HEADER_ATTR, HEADER_FEATURE, HEADER_TRACING_DATA and
EVENT_UPDATE records that stand in for the header. The result is one table of records in the order
perf reads them: top-level records in file order, each COMPRESSED record followed by the records
its data completes (tools/perf/util/session.c, `__perf_session__process_decomp_events`).
"""
from __future__ import annotations

import mmap
import os
from collections.abc import Iterator

import numpy as np

from ..errors import TraceError
from . import perf_header as ph
from . import perf_records as pr
from .eventformat import gather_fixed
from .perf_samples import uint_field

# A compressed stream may expand this much before we call it corrupt (perf record's own ratio is
# printed in `perf report --header`: 5-20 is usual for tracepoints).
MAX_EXPANSION = 256
# A fault maps the cached pages around it too: fault-around (64 KiB) or a whole large folio (up to
# a 2 MiB huge page), aligned, so some below the range read. Released with this margin.
FAULT_AROUND = 2 << 20
EVENT_UPDATE_NAME = 2  # enum perf_event_update_type (tools/lib/perf/include/perf/event.h)


class PerfFile:
    """A perf.data file read up to its records (see the module docstring).

    Attributes: `endian`, `pipe`, `attrs`, `features`, `tracing_blob`, `data` (the bytes every
    record offset points into: the file map, or the file followed by the decompressed stream),
    `off`, `rtype`, `misc`, `size` (records in perf's reading order), `warnings`, `compressed`,
    `data_bytes` (data section bytes walked), `id_cpu` (event id -> CPU from ID_INDEX).
    """

    def __init__(self, path: str, index: bool = True):
        self.path = path
        self.index = index  # False: keep only the records that describe the file (see `chunks`)
        self.warnings: list[str] = []
        self._open()
        try:
            self.hdr = ph.read_file_header(self._mm)
        except ph.Corrupt as exc:
            raise TraceError(path, f"corrupt perf.data header: {exc}") from None
        self.endian, self.pipe = self.hdr.endian, self.hdr.pipe
        self.big = self.endian == "big"
        self.id_cpu: dict[int, int] = {}
        self.names_by_id: dict[int, str] = {}  # event id -> name (EVENT_DESC, EVENT_UPDATE)
        self.lost_samples: dict[str, int] | None = None  # perf record's closing per-event totals
        self.compressed = False
        try:
            self._read()
        except ph.Corrupt as exc:
            raise TraceError(path, f"corrupt perf.data: {exc}") from None

    def _open(self) -> None:
        try:
            with open(self.path, "rb") as fh:
                self.file_size = os.fstat(fh.fileno()).st_size
                if self.file_size < ph.PIPE_HEADER_SIZE:
                    raise TraceError(self.path, f"truncated perf.data: {self.file_size} bytes, no header")
                self._mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        except OSError as exc:
            raise TraceError(self.path, f"cannot open: {exc.strerror}") from None
        self.file = np.frombuffer(self._mm, dtype=np.uint8)

    # -- header, attrs, features ----------------------------------------------------------------
    def _read(self) -> None:
        if self.pipe:
            self.attrs, sections = [], {}
            start, end = ph.PIPE_HEADER_SIZE, self.file_size
        else:
            self.attrs = ph.read_attr_section(self._mm, self.hdr, self.file_size)
            sections, warn = ph.feature_sections(self._mm, self.hdr, self.file_size)
            self.warnings += warn
            start, end = self._data_range()
        self.tracing_blob: bytes | None = None
        self.data_range = (start, end)
        top = self._walk(start, end, "data section") if self.index else self._walk_headers(start, end)
        self.data_bytes = end - start
        if self.pipe:
            sections = self._pipe_headers(top)
        self.features = ph.parse_features(sections, self.endian)
        self.warnings += self.features.warnings
        if self.features.tracing_data is not None:
            self.tracing_blob = self.features.tracing_data
        self._name_attrs()
        self._id_index(top)
        if self.index:
            self._assemble_records(top)
        else:
            self.data = self.file
            self.compressed = bool(np.isin(top["rtype"], (pr.REC_COMPRESSED, pr.REC_COMPRESSED2)).any())
            self.lost_records = {k: v[top["rtype"] == pr.REC_LOST] for k, v in top.items()}

    def _data_range(self) -> tuple[int, int]:
        off, size = self.hdr.data
        if off < ph.FILE_HEADER_SIZE or off > self.file_size:
            raise ph.Corrupt(f"data section offset {off} outside the file ({self.file_size} bytes)")
        if size == 0 and not self.hdr.features and self.file_size > off:
            # perf record writes the final header only when it ends: a killed recording says 0.
            self.warnings.append("the header's data size is 0 (the recording did not finish): "
                                 "reading records to the end of the file")
            return off, self.file_size
        if off + size > self.file_size:
            self.warnings.append(f"data section truncated ({self.file_size - off} of {size} bytes present)")
        return off, min(off + size, self.file_size)

    def _walk(self, start: int, end: int, what: str, data: np.ndarray | None = None,
              base: int = 0) -> dict[str, np.ndarray]:
        data = self.file if data is None else data
        w = pr.walk(data, start, end, self.big)
        self._walk_warning(w, what, base, w.offsets.size)
        rtype, misc, size = self._headers(data, w.offsets)
        return {"off": w.offsets + base, "rtype": rtype, "misc": misc, "size": size}

    def _walk_warning(self, w: pr.Walk, what: str, base: int, n: int) -> None:
        if w.problem == "truncated":
            self.warnings.append(f"{what} truncated at byte {base + w.stop}: {n} complete records "
                                 "before the cut kept")
        elif w.problem == "corrupt":
            self.warnings.append(f"corrupt record at byte {base + w.stop} of the {what} (size < 8): "
                                 f"{n} records before it kept")

    def _walk_headers(self, start: int, end: int) -> dict[str, np.ndarray]:
        """The first pass of a streamed read: the records that describe the file (user records but
        FINISHED_ROUND: attrs, features, tracing data, ID_INDEX, COMPRESSED) and the LOST records
        (whether the file has any decides what perf record's closing totals mean), a chunk at a
        time, the pages walked released as it goes."""
        w = pr.Walk(np.empty(0, np.int64), start, None)
        keep, n = [], 0
        for chunk in self.chunks(w, start, end):
            n += chunk["off"].size
            t = chunk["rtype"]
            sel = ((t >= pr.USER_TYPE_START) & (t != pr.REC_FINISHED_ROUND)) | (t == pr.REC_LOST)
            keep.append({k: v[sel] for k, v in chunk.items()})
            self.release(int(chunk["off"][0]), int(chunk["off"][-1]))
        self._walk_warning(w, "data section", 0, n)
        return {k: np.concatenate([c[k] for c in keep]) if keep else np.empty(0, np.int64)
                for k in ("off", "rtype", "misc", "size")}

    def chunks(self, w: pr.Walk | None = None, start: int | None = None, end: int | None = None
               ) -> Iterator[dict[str, np.ndarray]]:
        """The data section's records (off, rtype, misc, size) a chunk of at most a few MiB at a
        time, in file order (an uncompressed file: `compressed` False)."""
        if start is None:
            start, end = self.data_range
        w = w or pr.Walk(np.empty(0, np.int64), start, None)
        for off in pr.walk_chunks(self.file, start, end, self.big, w):
            rtype, misc, size = self._headers(self.file, off)
            yield {"off": off, "rtype": rtype, "misc": misc, "size": size}

    def release(self, lo: int, hi: int) -> None:
        """Drop the map's pages in [lo, hi) from this process's memory: a map's pages otherwise
        stay resident once read. They are read again from the page cache if touched."""
        lo = max(0, lo - lo % FAULT_AROUND - FAULT_AROUND)
        hi -= hi % mmap.PAGESIZE
        if hi > lo:
            self._mm.madvise(mmap.MADV_DONTNEED, lo, hi - lo)

    def _headers(self, data: np.ndarray, off: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        fields = [uint_field("type", 0, 4), uint_field("misc", 4, 2), uint_field("size", 6, 2)]
        fx = gather_fixed(fields, data, off, np.full(off.size, 8, np.int64), self.endian)
        return tuple(fx.values[k].astype(np.int64) for k in ("type", "misc", "size"))

    def _records_of(self, top: dict, rtype: int) -> list[tuple[int, int]]:
        sel = np.flatnonzero(top["rtype"] == rtype)
        return list(zip(top["off"][sel].tolist(), top["size"][sel].tolist()))

    def _pipe_headers(self, top: dict) -> dict[int, bytes]:
        """Pipe mode: attrs, features and tracing data from the records that carry them."""
        mm, e = self._mm, self.endian
        for off, size in self._records_of(top, pr.REC_HEADER_ATTR):
            attr, used = ph.parse_attr(mm, off + 8, e, size - 8, f"HEADER_ATTR record at {off}")
            attr.ids = ph.read_ids(mm, off + 8 + used, (size - 8 - used) // 8, e, "HEADER_ATTR ids")
            self.attrs.append(attr)
        sections: dict[int, bytes] = {}
        b = ph.Bytes(mm, e, "HEADER_FEATURE record")
        for off, size in self._records_of(top, pr.REC_HEADER_FEATURE):
            sections[b.u(off + 8, 8)] = bytes(mm[off + 16: off + size])
        for off, size in self._records_of(top, pr.REC_HEADER_TRACING_DATA):
            # The blob follows the record (whose size is sizeof(struct perf_record_header_tracing_data)).
            n = ph.Bytes(mm, e, "HEADER_TRACING_DATA record").u(off + 8, 4)
            at = off + size
            self.tracing_blob = bytes(mm[at: min(at + n, self.file_size)])
        for off, size in self._records_of(top, pr.REC_EVENT_UPDATE):
            if size >= 24 and b.u(off + 8, 8) == EVENT_UPDATE_NAME:
                name = bytes(mm[off + 24: off + size]).split(b"\0", 1)[0].decode("utf-8", "replace")
                self.names_by_id.setdefault(b.u(off + 16, 8), name)
        return sections

    def _name_attrs(self) -> None:
        names = self.names_by_id
        for name, ids in self.features.event_desc:
            for i in ids:
                names.setdefault(i, name)
        for a in self.attrs:
            a.name = next((names[i] for i in a.ids if i in names), None)

    def _id_index(self, top: dict) -> None:
        b = ph.Bytes(self._mm, self.endian, "ID_INDEX record")
        for off, size in self._records_of(top, pr.REC_ID_INDEX):
            nr = min(b.u(off + 8, 8), max(0, (size - 16) // 32))
            for j in range(nr):
                at = off + 16 + 32 * j
                self.id_cpu[b.u(at, 8)] = b.u(at + 16, 8)

    # -- compressed stream and the final record table -------------------------------------------
    def _assemble_records(self, top: dict) -> None:
        comp = np.flatnonzero(np.isin(top["rtype"], (pr.REC_COMPRESSED, pr.REC_COMPRESSED2)))
        self.data = self.file
        parts = [top]
        if comp.size:
            self.compressed = True
            inner = self._decompressed(top, comp)
            if inner is not None:
                n = top["off"].size
                parts = [dict(top, parent=np.arange(n, dtype=np.int64), sub=np.zeros(n, np.int64)), inner]
        if len(parts) == 1:
            self.off, self.rtype, self.misc, self.size = (top[k] for k in ("off", "rtype", "misc", "size"))
            return
        cat = {k: np.concatenate([p[k] for p in parts]) for k in ("off", "rtype", "misc", "size", "parent", "sub")}
        order = np.lexsort((cat["sub"], cat["parent"]))
        self.off, self.rtype, self.misc, self.size = (cat[k][order] for k in ("off", "rtype", "misc", "size"))

    def _decompressed(self, top: dict, comp: np.ndarray) -> dict | None:
        budget = min(MAX_EXPANSION * max(int(top["size"][comp].sum()), 1), _memory_limit())
        try:
            raw, ends, problem = pr.decompress(self.file, top["off"][comp], top["rtype"][comp],
                                               top["size"][comp], self.big, budget)
        except pr.BudgetExceeded:
            raise TraceError(self.path, f"compressed records expand beyond {budget} bytes "
                                        f"({MAX_EXPANSION}x their size or half this machine's memory): "
                                        "corrupt or hostile") from None
        if problem:
            self.warnings.append(f"corrupt compressed data ({problem}): the records after it are lost")
        if not raw:
            return None
        inner = np.frombuffer(raw, dtype=np.uint8)
        self.data = np.concatenate([self.file, inner])
        rec = self._walk(0, inner.size, "compressed stream", data=inner, base=self.file.size)
        # Each inner record belongs after the COMPRESSED record whose data completes it.
        done = np.searchsorted(ends, rec["off"] - self.file.size + rec["size"], side="left")
        rec["parent"] = comp[np.minimum(done, comp.size - 1)]
        rec["sub"] = np.arange(1, rec["off"].size + 1, dtype=np.int64)
        return rec

    def close(self) -> None:
        try:
            self._mm.close()
        except BufferError:
            pass  # arrays still view the map; it is freed with them


def _memory_limit() -> int:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2
    except (ValueError, OSError):
        return 1 << 34
