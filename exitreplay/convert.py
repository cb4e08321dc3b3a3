"""Export a trace to Parquet or Arrow IPC: `events`, one file per event type, and `meta.json`.

A trace.dat is streamed: each CPU's pages are read and decoded a chunk at a time, CPUs are
merged window by window (a window takes, from every CPU, the events whose merge key is below the
smallest last key any CPU still reading holds, so nothing later can sort before them; the rest
carries over), and every window is appended to the output files as it is decoded. Memory stays
bounded by the chunk size times the CPU count, whatever the trace's size. Rows, values and the
`row` numbering equal `read_trace`'s, since both run the same window code (`formats.tracedat`).

Text formats are read whole (`read_trace`) and written in row-group slices.
"""
from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pyarrow import ipc

from .callmodule import make_callable
from .errors import TraceError, UsageError
from .formats.ringbuffer import Missed, decode_pages
from .formats.tracedat import (
    WORKERS,
    Decoder,
    Part,
    cut_warning,
    emit_warnings,
    lost_warning,
    merge_key,
    open_buffer,
    require_formats,
    thread_pool,
)
from .schema import EVENTS_SCHEMA
from .trace import Dropped, Trace

ROW_GROUP = 1 << 20
FORMATS = ("parquet", "arrow")
CHUNK_BYTES = 16 << 20  # bytes of pages decoded at a time, shared by all CPUs
# Small per-type batches are held back until a row group is worth writing, within this budget.
HOLD_BYTES = 16 << 20

Progress = Callable[[int, int], None]


EVENTS = object()  # key of the events table's sink: no event type's name can equal it
MAX_NAME = 200  # bytes of a file name stem (NAME_MAX is 255 with room for the extension)


def _safe(name: str) -> str:
    return re.sub(r"[^\w.-]", "_", name, flags=re.ASCII)


def file_stem(name: str, taken: dict[str, str], trace_path: str | None) -> str:
    """The file name (without extension) an event type is written under. Names come from the trace,
    so a name that would make a hidden file, an over-long name, or one that sanitises to another
    type's file (or to `events`) is refused: nothing is written where the user would not look."""
    stem = _safe(name)
    problem = None
    if not stem or stem.startswith("."):
        problem = f"its file name {stem!r} would be hidden"
    elif len(stem.encode()) > MAX_NAME:
        problem = f"its file name would be {len(stem.encode())} bytes long (at most {MAX_NAME})"
    elif stem.casefold() in taken:
        problem = f"its file name {stem!r} is also that of {taken[stem.casefold()]!r}"
    if problem:
        raise TraceError(trace_path, f"cannot convert event type {name[:80]!r}: {problem}")
    taken[stem.casefold()] = name
    return stem


class _Writer:
    """Writes row groups on background threads (pyarrow encodes and compresses without the GIL,
    so decoding goes on meanwhile), in order within each file, with at most `depth` waiting."""

    def __init__(self, workers: int, depth: int = 2):
        self.pool = ThreadPoolExecutor(max_workers=max(1, workers))
        self.slots = threading.Semaphore(depth)
        self.futures: list = []

    def submit(self, sink: _Sink, table: pa.Table) -> None:
        self.slots.acquire()
        seq = sink.submitted
        sink.submitted += 1
        self.futures.append(self.pool.submit(self._run, sink, seq, table))
        self.futures = [f for f in self.futures if not f.done() or f.exception()]
        for f in self.futures:
            if f.done():
                f.result()  # a failed write stops the conversion

    def _run(self, sink: _Sink, seq: int, table: pa.Table) -> None:
        try:
            with sink.turn:
                sink.turn.wait_for(lambda: sink.written == seq)
            try:
                sink.write(table)
            finally:
                with sink.turn:
                    sink.written += 1
                    sink.turn.notify_all()
        finally:
            self.slots.release()

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        for f in self.futures:
            f.result()


class _Sink:
    """One output file, written a row group at a time (small batches are held back first)."""

    def __init__(self, path: Path, fmt: str, schema: pa.Schema, writer: _Writer | None):
        self.path, self.schema, self.fmt, self.writer = path, schema, fmt, writer
        if fmt == "parquet":
            self._w = pq.ParquetWriter(path, schema, compression="zstd")
        else:
            self._file = pa.OSFile(str(path), "wb")
            self._w = ipc.new_file(self._file, schema)
        self.held: list[pa.RecordBatch] = []
        self.held_rows = self.held_bytes = 0
        self.submitted = self.written = 0
        self.turn = threading.Condition()

    def add(self, batch: pa.RecordBatch | pa.Table) -> None:
        for b in (batch.to_batches(max_chunksize=ROW_GROUP) if isinstance(batch, pa.Table) else [batch]):
            if b.num_rows:
                self.held.append(b)
                self.held_rows += b.num_rows
                self.held_bytes += b.nbytes
        if self.held_rows >= ROW_GROUP:
            self.flush()

    def flush(self) -> None:
        if not self.held:
            return
        tbl = pa.Table.from_batches(self.held, self.schema)
        self.held, self.held_rows, self.held_bytes = [], 0, 0
        if self.writer is None:
            self.write(tbl)
            self.submitted += 1
        else:
            self.writer.submit(self, tbl)

    def write(self, tbl: pa.Table) -> None:
        if self.fmt == "parquet":
            self._w.write_table(tbl, row_group_size=ROW_GROUP)
        else:
            for b in tbl.combine_chunks().to_batches(max_chunksize=ROW_GROUP):
                self._w.write_batch(b)

    def close(self) -> None:
        self._w.close()
        if self.fmt == "arrow":
            self._file.close()


class _Outputs:
    """The files of one conversion, opened as their first rows arrive."""

    def __init__(self, out: Path, fmt: str, workers: int = 0, trace_path: str | None = None):
        """`open(EVENTS, ...)` is the events file; every other name is an event type's."""
        self.out, self.fmt, self.trace_path = out, fmt, trace_path
        self.ext = ".parquet" if fmt == "parquet" else ".arrow"
        self.sinks: dict[object, _Sink] = {}
        self.paths: list[Path] = []
        self.stems: dict[str, str] = {"events": "the events table"}
        self.writer = _Writer(workers) if workers else None

    def open(self, name: str | object, schema: pa.Schema) -> _Sink:
        sink = self.sinks.get(name)
        if sink is None:
            stem = "events" if name is EVENTS else file_stem(name, self.stems, self.trace_path)
            path = self.out / f"{stem}{self.ext}"
            sink = self.sinks[name] = _Sink(path, self.fmt, schema, self.writer)
            self.paths.append(path)
        return sink

    def add(self, name: str | object, batch: pa.RecordBatch | pa.Table) -> None:
        self.open(name, batch.schema).add(batch)
        if sum(s.held_bytes for s in self.sinks.values()) > HOLD_BYTES:
            for s in self.sinks.values():
                s.flush()

    def close(self) -> None:
        try:
            for s in self.sinks.values():
                s.flush()
        finally:
            if self.writer is not None:
                self.writer.close()
            for s in self.sinks.values():
                s.close()


def _prepare(out_dir: str | os.PathLike, fmt: str) -> Path:
    if fmt not in FORMATS:
        raise UsageError(f"unknown output format {fmt!r} (choose from {', '.join(FORMATS)})")
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise UsageError(f"{out}: output path exists and is not a directory") from None
    except OSError as exc:
        raise UsageError(f"{out}: cannot create output directory ({exc.strerror})") from None
    if not os.access(out, os.W_OK):
        raise UsageError(f"{out}: output directory is not writable")
    return out


def convert(trace: Trace, out_dir: str | os.PathLike, fmt: str = "parquet") -> list[Path]:
    """Write a decoded Trace: `events`, one file per event type, and `meta.json`; return the paths.

    Each event type is decoded, written and dropped in turn.
    """
    out = _prepare(out_dir, fmt)
    files = _Outputs(out, fmt, trace_path=trace.meta.path)
    isa: set[int] = set()
    try:
        files.add(EVENTS, with_row(trace.events, 0, trace.meta))
        for name in trace.event_names:
            table = trace.raw_table(name)
            files.add(name, table)
            isa |= _isas(name, table)
            trace._cache.pop(name, None)  # decoded, written: let it go
    finally:
        files.close()
    p = out / "meta.json"
    p.write_text(meta_json(trace.meta, isa))
    return [*files.paths, p]


# events.parquet's own version: 2 added `row` and the ts unit (field metadata and meta.json).
EVENTS_FILE_VERSION = 2


def _ts_unit(meta) -> str:
    raw = any("raw counter values" in w for w in getattr(meta, "warnings", []) or [])
    return "tsc cycles (raw counter values)" if raw else "ns"


def with_row(batch: pa.RecordBatch | pa.Table, row_base: int, meta) -> pa.RecordBatch | pa.Table:
    """The events with their `row` (the index every per-event table's `row` refers to) in front,
    and `ts` carrying its unit in the field metadata."""
    rows = pa.array(np.arange(row_base, row_base + batch.num_rows, dtype=np.int64))
    fields = [pa.field("row", pa.int64(), nullable=False)] + [
        f.with_metadata({"unit": _ts_unit(meta), "clock": str(getattr(meta, "clock", None) or "")})
        if f.name == "ts" else f for f in batch.schema]
    cols = [rows, *batch.columns]
    if isinstance(batch, pa.Table):
        return pa.Table.from_arrays(cols, schema=pa.schema(fields))
    return pa.RecordBatch.from_arrays(cols, schema=pa.schema(fields))


def _isas(name: str, table: pa.Table | pa.RecordBatch) -> set[int]:
    if name != "kvm_exit" or "isa" not in table.schema.names:
        return set()
    if not pa.types.is_integer(table.schema.field("isa").type):
        return set()  # a format that declares isa as text or an array: no ISA to name
    import pyarrow.compute as pc

    return {int(v) for v in pc.unique(table.column("isa")).to_pylist() if v is not None}


def meta_json(meta, isa: set[int]) -> str:
    """meta.json: the trace's metadata, plus what a reader of the files needs to know."""
    from . import __version__
    from .kvm.reasons import ISA_NAMES

    d = meta.to_dict()
    d.update(exitreplay_version=__version__, schema_version=EVENTS_FILE_VERSION,
             isa=", ".join(ISA_NAMES.get(i, str(i)) for i in sorted(isa)) or None,
             units={"ts": _ts_unit(meta), "duration_ns": "ns", "row": "index into events"})
    return json.dumps(d, indent=2, default=str)


def convert_file(path: str | os.PathLike, out_dir: str | os.PathLike, fmt: str = "parquet",
                 progress: Progress | None = None, chunk_bytes: int = CHUNK_BYTES) -> tuple[list[Path], int]:
    """Convert any supported trace file; trace.dat is streamed, `chunk_bytes` of pages (over all
    CPUs) decoded at a time. Returns (paths written, event count)."""
    from .formats.detect import sniff
    from .reader import read_trace

    path = os.fspath(path)
    if os.path.exists(path) and not os.path.isdir(path) and sniff(path) == "trace.dat":
        out = _prepare(out_dir, fmt)
        try:
            return _convert_stream(path, out, fmt, progress, chunk_bytes, every_id=False)
        except _DictionaryGrew:  # Arrow IPC files cannot change a dictionary once written
            return _convert_stream(path, out, fmt, progress, chunk_bytes, every_id=True)
    with read_trace(path, progress=progress) as trace:
        return convert(trace, out_dir, fmt), len(trace)


class _DictionaryGrew(Exception):
    pass


class _Names:
    """Dictionary of the streamed `event`/`system` columns: every format in the file by id, then
    ids without a format as they turn up (or all 2^16 ids up front, for Arrow IPC's sake)."""

    def __init__(self, dec: Decoder, every_id: bool):
        self.dec = dec
        ids = list(range(1 << 16)) if every_id else sorted(dec.formats)
        self.lut = np.full(1 << 16, -1, dtype=np.int32)
        self.lut[ids] = np.arange(len(ids), dtype=np.int32)
        pairs = [dec.name_of(t) for t in ids]
        self.events = [n for n, _ in pairs]
        self.systems = [s for _, s in pairs]
        self._dicts: tuple[pa.Array, pa.Array, np.ndarray] | None = None

    def codes(self, type_id: np.ndarray) -> tuple[np.ndarray, bool]:
        code = self.lut[type_id]
        grew = False
        if (code < 0).any():
            for t in np.unique(type_id[code < 0]).tolist():
                self.lut[t] = len(self.events)
                name, system = self.dec.name_of(t)
                self.events.append(name)
                self.systems.append(system)
            self._dicts = None
            grew = True
            code = self.lut[type_id]
        return code, grew

    def dicts(self) -> tuple[pa.Array, pa.Array, np.ndarray]:
        """Event and system dictionaries, and the codes whose system is unknown (null)."""
        if self._dicts is None:
            nulls = np.array([i for i, s in enumerate(self.systems) if s is None], np.int32)
            self._dicts = (pa.array(self.events, pa.string()), pa.array([s or "" for s in self.systems], pa.string()),
                           nulls)
        return self._dicts


def _convert_stream(path: str, out: Path, fmt: str, progress: Progress | None, chunk_bytes: int,
                    every_id: bool) -> tuple[list[Path], int]:
    with TraceDatStream(path, chunk_bytes) as stream:
        return _write_stream(stream, path, out, fmt, progress, every_id)


def _write_stream(stream: TraceDatStream, path: str, out: Path, fmt: str, progress: Progress | None,
                  every_id: bool) -> tuple[list[Path], int]:
    dec = stream.dec
    names = _Names(dec, every_id)
    comm_dict = pa.array(dec.comm_names, pa.string())
    files = _Outputs(out, fmt, WORKERS, trace_path=path)
    counts = np.zeros(1 << 16, dtype=np.int64)
    first_ts = last_ts = None
    try:
        meta0 = stream.meta({})
        isa: set[int] = set()
        files.open(EVENTS, with_row(EVENTS_SCHEMA.empty_table(), 0, meta0).schema)
        with thread_pool() as pool:
            for w in stream.windows(progress):
                require_formats(path, dec, w.ts.size)
                code, grew = names.codes(w.type_id)
                ev_sink = files.sinks[EVENTS]
                if grew and fmt == "arrow" and (ev_sink.held or ev_sink.submitted):
                    raise _DictionaryGrew
                counts += np.bincount(w.type_id, minlength=1 << 16)
                first_ts = int(w.ts[0]) if first_ts is None else first_ts
                last_ts = int(w.ts[-1])
                files.add(EVENTS, with_row(_events_batch(w, code, names, comm_dict), w.row_base, meta0))
                for t in np.flatnonzero(np.bincount(w.type_id, minlength=1)).tolist():
                    rows = np.flatnonzero(w.type_id == t)
                    table = dec.table(t, rows, w.row_base, w.ts, w.cpu, w.pid, w.data, w.off, w.size, pool)
                    files.add(dec.name_of(t)[0], table)
                    isa |= _isas(dec.name_of(t)[0], table)
                del w, code  # before the next window is built
    finally:
        files.close()
    unknown = [t for t in np.flatnonzero(counts).tolist() if t not in dec.formats]
    if unknown:
        dec.warnings.append(f"events with unknown format ids {unknown[:10]} kept as unknown_<id>")
    meta = stream.meta({dec.name_of(t)[0]: int(counts[t]) for t in np.flatnonzero(counts).tolist()})
    meta.first_ts, meta.last_ts = first_ts, last_ts
    p = out / "meta.json"
    p.write_text(meta_json(meta, isa))
    return [*files.paths, p], stream.rows


def _events_batch(w: Window, code: np.ndarray, names: _Names, comm_dict: pa.Array) -> pa.RecordBatch:
    ev_dict, sys_dict, no_system = names.dicts()
    code_arr = pa.array(code, pa.int32())
    # Parquet cannot write a null inside a dictionary: rows of types without a system are null.
    sys_codes = pa.array(code, pa.int32(), mask=np.isin(code, no_system)) if no_system.size else code_arr
    comm = pa.array(w.comm, pa.int32(), mask=w.comm < 0) if (w.comm < 0).any() else pa.array(w.comm, pa.int32())
    fmask = None if w.flags_ok is None else ~w.flags_ok
    return pa.RecordBatch.from_arrays([
        pa.array(w.ts, pa.int64()),
        pa.array(w.cpu, pa.int32()),
        pa.array(w.pid, pa.int32()),
        pa.DictionaryArray.from_arrays(comm, comm_dict, safe=False),
        pa.DictionaryArray.from_arrays(sys_codes, sys_dict, safe=False),
        pa.DictionaryArray.from_arrays(code_arr, ev_dict, safe=False),
        pa.array(w.flags, pa.uint8(), mask=fmask),
        pa.array(w.pc, pa.uint8(), mask=fmask),
    ], schema=EVENTS_SCHEMA)


class Window:
    """One merged window of a streamed trace.dat: the events columns plus what tables need."""

    def __init__(self, row_base: int, data: np.ndarray, cols: dict[str, np.ndarray], flags_ok: np.ndarray | None):
        self.row_base, self.data = row_base, data
        self.ts, self.cpu, self.pid = cols["ts"], cols["cpu"], cols["pid"]
        self.type_id, self.flags, self.pc, self.comm = cols["type_id"], cols["flags"], cols["pc"], cols["comm"]
        self.off, self.size = cols["off"], cols["size"]
        self.flags_ok = flags_ok


class _Cpu:
    """One CPU's read position and its decoded events not yet emitted (with the pages they lie in)."""

    def __init__(self, cpu: int, reader):
        self.cpu, self.reader = cpu, reader
        self.it = iter(reader)
        self.done = False
        self.buf = np.empty(0, np.uint8)
        self.key = self.ts = self.off = np.empty(0, np.int64)
        self.size = np.empty(0, np.int32)
        self.keymax: int | None = None
        self.pages = self.count = self.emitted = 0
        self.missed: list[Missed] = []  # indices: this CPU's event numbers
        self.warnings: list[str] = []

    def pull(self, tdf, page_size: int) -> None:
        chunk = next(self.it, None)
        if chunk is None:
            self.done = True
            return
        ev = decode_pages(chunk, page_size, tdf.header_page, tdf.endian, tdf.long_size, self.cpu, tdf.header_event,
                          base_offset=self.buf.size, first_page=self.pages)
        self.pages += ev.pages
        for m in ev.missed:
            m.index += self.count
        self.missed.extend(ev.missed)
        self.count += ev.count
        self.warnings.extend(ev.warnings)
        key = merge_key(ev.ts, self.keymax)
        if ev.count:
            self.keymax = int(key[-1])
        self.buf = np.concatenate([self.buf, chunk]) if self.buf.size else chunk
        self.key = np.concatenate([self.key, key])
        self.ts = np.concatenate([self.ts, ev.ts])
        self.off = np.concatenate([self.off, ev.offset])
        self.size = np.concatenate([self.size, ev.size])

    def fill(self, tdf, page_size: int) -> None:
        while not self.done and not self.key.size:
            self.pull(tdf, page_size)

    def drop(self, n: int, page_size: int) -> None:
        """Forget the first n pending events and the pages only they used."""
        self.emitted += n
        self.key, self.ts, self.off, self.size = self.key[n:], self.ts[n:], self.off[n:], self.size[n:]
        if self.off.size:
            start = int(self.off[0]) // page_size * page_size
            if start:
                self.buf = self.buf[start:]
                self.off = self.off - start
        else:
            self.buf = np.empty(0, np.uint8)


def merge_queues(dec: Decoder, queues, cuts: list[int]):
    """The first cuts[i] records of each CPU's queue (cpu, key, ts, off, size, buf) merged in time
    order: (the records' bytes, the common columns, the merge, which records' flags decoded)."""
    parts, pieces, base = [], [], 0
    for q, n in zip(queues, cuts):
        if n:
            hi = int(q.off[n - 1]) + int(q.size[n - 1])
            pieces.append(q.buf[:hi])
            parts.append(Part(q.cpu, q.key[:n], q.ts[:n], q.off[:n] + base, q.size[:n]))
            base += hi
        else:
            parts.append(Part(q.cpu, None, q.ts[:0], q.off[:0], q.size[:0]))
    data = pieces[0] if len(pieces) == 1 else np.concatenate(pieces)
    m = sum(cuts)
    cols = {"ts": np.empty(m, np.int64), "cpu": np.empty(m, np.int32), "pid": np.empty(m, np.int32),
            "type_id": np.empty(m, np.uint16), "flags": np.empty(m, np.uint8), "pc": np.empty(m, np.uint8),
            "comm": np.empty(m, np.int32), "off": np.empty(m, np.int64), "size": np.empty(m, np.int32)}
    merged = dec.merge(parts, cols)
    return data, cols, merged, dec.common_fields(data, merged.off, merged.size, cols)


class TraceDatStream:
    """A trace.dat decoded window by window with bounded memory (see the module docstring)."""

    def __init__(self, path: str, chunk_bytes: int = CHUNK_BYTES, buffer: str | None = None):
        self.path = path
        self.tdf, bidx, self.buf = open_buffer(path, buffer)
        try:
            self.dec = Decoder(self.tdf, self.buf)
        except BaseException:
            self.tdf.close()
            raise
        per_cpu = chunk_bytes // max(1, len(self.buf.cpus))
        self.cpus = [_Cpu(cd.cpu, self.tdf.iter_cpu_data(i, bidx, per_cpu)) for i, cd in enumerate(self.buf.cpus)]
        self.rows = 0
        self.dropped: list[Dropped] = []
        self._last_ts = 0

    def __enter__(self) -> TraceDatStream:
        return self

    def __exit__(self, *exc) -> None:
        self.tdf.close()

    def windows(self, progress: Progress | None = None) -> Iterator[Window]:
        tdf, ps, cpus = self.tdf, self.buf.page_size, self.cpus
        total = sum(cd.size for cd in self.buf.cpus) or 1
        for c in cpus:
            c.fill(tdf, ps)
        while True:
            live = [c for c in cpus if not c.done]
            cuts = [c.key.size for c in cpus]
            bound = None
            if live and not (len(live) == 1 and all(not c.key.size for c in cpus if c is not live[0])):
                # A CPU still reading may yet give events down to its last key: hold back the rest.
                bound = min(int(c.key[-1]) for c in live)
                cuts = [int(np.searchsorted(c.key, bound, side="left")) for c in cpus]
            if not sum(cuts):
                if not live:
                    break
                for c in live:
                    if int(c.key[-1]) == bound:
                        c.pull(tdf, ps)
                continue
            yield self._window(cuts)
            for c, n in zip(cpus, cuts):
                c.drop(n, ps)
                if not c.done and (not c.key.size or bound is None or int(c.key[-1]) <= bound):
                    c.pull(tdf, ps)
                c.fill(tdf, ps)
            if progress:
                progress(sum(c.reader.present for c in cpus), total)
        for c in cpus:  # losses after a CPU's last event
            self.dropped.extend(Dropped(c.cpu, self._last_ts, m.count, None) for m in c.missed)

    def _window(self, cuts: list[int]) -> Window:
        m = sum(cuts)
        data, cols, merged, flags_ok = merge_queues(self.dec, self.cpus, cuts)
        self.dec.comm_codes(cols["pid"], out=cols["comm"])
        for pi, (c, n) in enumerate(zip(self.cpus, cuts)):
            k = 0
            while k < len(c.missed) and c.missed[k].index < c.emitted + n:
                k += 1
            if k:
                local = merged.rows_of(pi, np.array([mi.index - c.emitted for mi in c.missed[:k]], np.int64))
                self.dropped.extend(Dropped(c.cpu, int(cols["ts"][r]), mi.count, self.rows + int(r))
                                    for mi, r in zip(c.missed[:k], local.tolist()))
                del c.missed[:k]
        w = Window(self.rows, data, cols, flags_ok)
        self.rows += m
        self._last_ts = int(cols["ts"][-1])
        return w

    def meta(self, event_counts: dict[str, int]):
        warn: list[str] = []
        for c, cd in zip(self.cpus, self.buf.cpus):
            cut = c.reader.cut
            if cut or cd.cpu in self.tdf.truncated_cpus:
                warn.append(cut_warning(cd.cpu, c.reader.present, cd.size, c.count))
            warn.extend(w for w in c.warnings if "truncated file" not in w or not cut)
        self.dropped.sort(key=lambda d: (d.ts, d.cpu))
        lw = lost_warning(self.dropped)
        if lw:
            warn.append(lw)
        warn = self.tdf.warnings + self.dec.warnings + warn
        emit_warnings(self.path, warn)
        return self.dec.meta(self.dropped, warn, {c.cpu: c.count for c in self.cpus}, event_counts)


make_callable(__name__, "convert_file")  # exitreplay.convert(...) is convert_file(...)
