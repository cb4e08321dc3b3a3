"""trace.dat (v6, v7; none/zstd/zlib) -> `Trace`.

1. Every CPU's pages are walked in lockstep (`ringbuffer.decode_pages`), CPUs on a thread pool
   (NumPy releases the GIL inside its loops).
2. CPUs are merged window by window: a window holds, for every CPU, its events with a merge key
   below the window's bound, so windows are independent; each is a stable argsort of a few
   already sorted runs (ties: lower CPU first, as trace-cmd prints), run in parallel, writing to
   its own slice of the events columns. The common fields come from one gather per window.
3. Per-event tables are decoded on first use from the payload offset kept per row.

The merge key is each CPU's running maximum timestamp: trace-cmd prints, at every step, the CPU
whose next event has the smallest timestamp, so an event whose clock went back stays right behind
its predecessor on that CPU. For clocks that never go back the key is the timestamp itself.

`Decoder` holds everything a window needs, so `convert` streams a file through the same code.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed

import numpy as np
import pyarrow as pa

from ..errors import TraceError, TraceWarning
from ..trace import Dropped, Trace, TraceMeta
from .eventformat import EventFormat, decode_fields_of, gather_fixed
from .ringbuffer import CpuEvents, Missed, decode_pages
from .tracedat_file import OPT_CPUSTAT, OPT_UNAME, OPT_VERSION, Buffer, TraceDatFile

# Counter clocks whose raw values are not nanoseconds unless the file carries TSC2NSEC.
COUNTER_CLOCKS = {"x86-tsc", "counter"}
# Events per merge window: big enough that per-window overhead is noise, small enough that a
# window's scratch arrays stay a small fraction of the result.
WINDOW_EVENTS = 1 << 20
WORKERS = max(1, min(4, os.cpu_count() or 1))
# pid -> comm uses a direct lookup table up to this pid (the kernel's PID_MAX_LIMIT is 2^22).
PID_LUT_MAX = 1 << 22
COMMON = ("common_type", "common_flags", "common_preempt_count", "common_pid")


# Below this many events (or bytes of pages) work runs on the calling thread: starting and
# joining a pool costs more than it saves.
PARALLEL_MIN = 1 << 16
PAGE_BYTES_PER_EVENT = 16  # to size work from page bytes before the events are counted


@contextlib.contextmanager
def thread_pool(workers: int | None = None, size: int | None = None) -> Iterator[ThreadPoolExecutor | None]:
    """A pool of `workers` threads (default WORKERS), or None for work of `size` < PARALLEL_MIN."""
    workers = WORKERS if workers is None else workers
    if size is not None and size < PARALLEL_MIN:
        workers = 1
    if workers <= 1:
        yield None
        return
    with ThreadPoolExecutor(max_workers=workers) as pool:
        yield pool


def table_names(formats: dict[int, EventFormat]) -> dict[int, str]:
    """Table name per format id: the event name, or system:name where a lower id took it."""
    out: dict[int, str] = {}
    taken: set[str] = set()
    for tid in sorted(formats):
        fmt = formats[tid]
        name = fmt.name if fmt.name not in taken else f"{fmt.system}:{fmt.name}"
        taken.add(name)
        out[tid] = name
    return out


def merge_key(ts: np.ndarray, floor: int | None = None) -> np.ndarray:
    """Running maximum of a CPU's timestamps (from `floor`, the previous chunk's), or ts itself."""
    if ts.size == 0:
        return ts
    if (floor is None or int(ts[0]) >= floor) and (ts.size < 2 or (ts[1:] >= ts[:-1]).all()):
        return ts
    key = np.maximum.accumulate(ts)
    if floor is not None:
        np.maximum(key, floor, out=key)
    return key


@dataclasses.dataclass
class Part:
    """A run of one CPU's events, in that CPU's order, with their merge keys."""

    cpu: int
    key: np.ndarray | None  # None: the timestamps themselves
    ts: np.ndarray
    off: np.ndarray
    size: np.ndarray


@dataclasses.dataclass
class Merged:
    """The events of one window in output order (`order` maps them to the parts' concatenation)."""

    ts: np.ndarray  # ns
    cpu: np.ndarray
    off: np.ndarray
    size: np.ndarray
    order: np.ndarray | None
    starts: list[int]  # where each part begins in the concatenation

    def rows_of(self, part: int, local: np.ndarray) -> np.ndarray:
        """Window positions of events `local` (indices into part `part`)."""
        pos = self.starts[part] + local
        if self.order is None:
            return pos
        inv = np.empty(self.order.size, dtype=np.int64)
        inv[self.order] = np.arange(self.order.size, dtype=np.int64)
        return inv[pos]


class Decoder:
    """Per-file decoding context: layouts, clock conversion, pid -> comm and the name tables."""

    def __init__(self, tdf: TraceDatFile, buf: Buffer):
        self.tdf, self.buf = tdf, buf
        self.path = tdf.path
        self.endian, self.long_size = tdf.endian, tdf.long_size
        self.formats = tdf.formats  # a FormatIndex: each format parsed when its events are decoded
        self._names: dict[int, tuple[str, str | None]] = {}
        any_fmt = self.formats.first()
        common = {f.name: f for f in any_fmt.common_fields} if any_fmt else {}
        self.common = [common[n] for n in COMMON if n in common]
        self.warnings: list[str] = []
        self.tsc2nsec = tdf.tsc2nsec
        self.time_offset = tdf.time_offset
        if self.tsc2nsec is None and (tdf.trace_clock or "") in COUNTER_CLOCKS:
            self.warnings.append(
                f"clock {tdf.trace_clock}: timestamps are raw counter values, not nanoseconds "
                "(the file carries no TSC2NSEC conversion)"
            )
        self._comm_setup(tdf.cmdline_map)

    # -- per-event values ----------------------------------------------------------------------
    def _comm_setup(self, cmap: dict[int, str]) -> None:
        names = sorted({v for k, v in cmap.items() if k != 0} - {"<idle>"})
        self.comm_names: list[str | None] = ["<idle>", *names]
        index = {"<idle>": 0, **{n: i + 1 for i, n in enumerate(names)}}
        pids = np.array([p for p in cmap if p > 0], dtype=np.int64)
        codes = np.array([index[cmap[p]] for p in pids.tolist()], dtype=np.int32)
        top = int(pids.max()) + 1 if pids.size else 1
        self._comm_lut = self._comm_keys = None
        if top <= PID_LUT_MAX:
            # One slot past the last pid holds "unknown": a clipped lookup sends every other pid,
            # negative ones included (seen as unsigned), there.
            self._comm_lut = np.full(top + 1, -1, dtype=np.int32)
            self._comm_lut[pids] = codes
            self._comm_lut[0] = 0
        else:  # pids beyond the kernel's limit: a sorted search instead of a table
            order = np.argsort(pids)
            self._comm_keys, self._comm_vals = pids[order], codes[order]

    def comm_codes(self, pid: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Index into `comm_names` per pid; -1 where the file does not name the task."""
        pid = pid.astype(np.int32, copy=False)
        if self._comm_lut is not None:
            return np.take(self._comm_lut, pid.view(np.uint32), mode="clip", out=out)
        keys = self._comm_keys
        pos = np.minimum(np.searchsorted(keys, pid), keys.size - 1)
        res = np.where(keys[pos] == pid, self._comm_vals[pos], -1).astype(np.int32)
        res[pid == 0] = 0
        if out is not None:
            out[:] = res
            return out
        return res

    def to_ns(self, ts: np.ndarray) -> np.ndarray:
        """Raw clock units -> ns, in place (ts is int64)."""
        conv = self.tsc2nsec
        if conv is not None:
            mult, shift, offset = conv
            # mul_u64_u32_shr without overflow: split the product in high and low 32-bit halves.
            t = ts.view(np.uint64)
            hi = (t >> np.uint64(32)) * np.uint64(mult)
            lo = (t & np.uint64(0xFFFFFFFF)) * np.uint64(mult)
            if shift >= 32:
                res = (hi >> np.uint64(shift - 32)) + (lo >> np.uint64(shift))
            else:
                res = (hi << np.uint64(32 - shift)) + (lo >> np.uint64(shift))
            ts[:] = res.view(np.int64) + np.int64(offset)
        if self.time_offset:
            ts += np.int64(self.time_offset)
        return ts

    def common_fields(self, data: np.ndarray, off: np.ndarray, size: np.ndarray, out: dict[str, np.ndarray]
                      ) -> np.ndarray | None:
        """Fill out["type_id"], ["pid"], ["flags"], ["pc"] from one gather per event; return where
        the flags are known (None: everywhere)."""
        n = off.size
        dest = {"common_type": out["type_id"], "common_pid": out["pid"], "common_flags": out["flags"],
                "common_preempt_count": out["pc"]}
        fx = gather_fixed(self.common, data, off, size, self.endian, out=dest)
        fills = {"common_type": 0, "common_pid": -1, "common_flags": 0, "common_preempt_count": 0}
        for name, dst in dest.items():
            if name not in fx.values:
                dst[:] = fills[name]
                continue
            got, ok = fx.values[name], fx.valid[name]
            if got is not dst:
                dst[:] = got
            if ok is not None:
                dst[~ok] = fills[name]
        # Flags are null where the record is too short to hold them (or the format has none).
        return fx.valid["common_flags"] if "common_flags" in fx.valid else np.zeros(n, bool)

    # -- merging -------------------------------------------------------------------------------
    def merge(self, parts: list[Part], out: dict[str, np.ndarray] | None = None) -> Merged:
        """Merge runs of CPUs' events into output order (into `out`'s ts/cpu/off/size when given);
        timestamps come out in ns."""
        lens = [p.ts.size for p in parts]
        starts = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64).tolist()
        m = starts[-1]
        out = out or {"ts": np.empty(m, np.int64), "cpu": np.empty(m, np.int32),
                      "off": np.empty(m, parts[0].off.dtype if parts else np.int64),
                      "size": np.empty(m, parts[0].size.dtype if parts else np.int32)}
        live = [i for i, k in enumerate(lens) if k]
        order = None
        if len(live) <= 1:
            for i in live:
                p = parts[i]
                out["ts"][:] = p.ts
                out["cpu"][:] = p.cpu
                out["off"][:] = p.off
                out["size"][:] = p.size
        else:
            keys = np.concatenate([p.ts if p.key is None else p.key for p in parts])
            order = np.argsort(keys, kind="stable")
            if any(p.key is not None for p in parts):
                keys = np.concatenate([p.ts for p in parts])
            np.take(keys, order, out=out["ts"], mode="clip")
            del keys
            np.take(np.concatenate([p.off for p in parts]), order, out=out["off"], mode="clip")
            np.take(np.concatenate([p.size for p in parts]), order, out=out["size"], mode="clip")
            np.take(np.repeat(np.array([p.cpu for p in parts], np.int32), lens), order, out=out["cpu"], mode="clip")
        self.to_ns(out["ts"])
        return Merged(out["ts"], out["cpu"], out["off"], out["size"], order, starts)

    # -- tables --------------------------------------------------------------------------------
    def table(self, tid: int, rows: np.ndarray, row_base: int, ts: np.ndarray, cpu: np.ndarray, pid: np.ndarray,
              data: np.ndarray, off: np.ndarray, size: np.ndarray, pool=None) -> pa.Table:
        """The typed table of event id `tid` at `rows` (int64 positions in the given columns)."""
        n = rows.size
        keys = {"ts": np.empty(n, np.int64), "cpu": np.empty(n, np.int32), "pid": np.empty(n, np.int32)}
        fmt = self.formats.get(tid)
        fields = decode_fields_of(fmt.own_fields if fmt is not None else (), data, off, size, self.endian,
                                  self.long_size, pool, rows=rows,
                                  extra=[(ts, keys["ts"]), (cpu, keys["cpu"]), (pid, keys["pid"])])
        cols = {
            "row": pa.array(rows + row_base if row_base else rows, pa.int64()),
            "ts": pa.array(keys["ts"], pa.int64()),
            "cpu": pa.array(keys["cpu"], pa.int32()),
            "pid": pa.array(keys["pid"], pa.int32()),
        }
        for name, arr in fields.items():
            # An int32 field named pid (sched_waking's) is the table's pid; any other field named
            # like a key column keeps its value under another name, so the keys stay keys.
            if name in cols and not (name == "pid" and arr.type == pa.int32()):
                name = f"{name}_field"
            cols[name] = arr
        return pa.table(cols)

    def name_of(self, tid: int) -> tuple[str, str | None]:
        """(table/event name, system) of an event id; unknown ids keep a name, never dropped."""
        if tid not in self._names:
            fmt = self.formats.get(tid)
            self._names[tid] = ((f"unknown_{tid}", None) if fmt is None
                                else (self.formats.table_name(tid), fmt.system))
        return self._names[tid]

    def meta(self, dropped: list[Dropped], warn: list[str], events_per_cpu: dict[int, int],
             event_counts: dict[str, int]) -> TraceMeta:
        tdf = self.tdf
        return TraceMeta(
            path=self.path,
            source_format="trace.dat",
            version=tdf.version,
            compression=tdf.compression,
            cpus=tdf.cpus,
            clock=tdf.trace_clock,
            page_size=self.buf.page_size,
            endian=tdf.endian,
            long_size=tdf.long_size,
            uname=tdf.option_text(OPT_UNAME),
            event_counts=event_counts,
            dropped=dropped,
            warnings=warn,
            extra={
                "trace_cmd_version": tdf.option_text(OPT_VERSION),
                "compression_version": tdf.compression_version or None,
                "buffer": self.buf.name,
                "instances": [b.name for b in tdf.buffers if b.name],
                "tsc2nsec": list(tdf.tsc2nsec) if tdf.tsc2nsec else None,
                "time_offset": tdf.time_offset or None,
                "cpustat": [v.rstrip(b"\0").decode("utf-8", "replace") for v in tdf.option_values(OPT_CPUSTAT)],
                "events_per_cpu": events_per_cpu,
                "file_size": tdf.file_size,
            },
        )


def open_buffer(path: str | os.PathLike, buffer: str | None) -> tuple[TraceDatFile, int, Buffer]:
    """The file and one of its buffers; the file is closed again if the buffer cannot be used."""
    path = os.fspath(path)
    tdf = TraceDatFile(path)
    try:
        names = [b.name for b in tdf.buffers]
        if buffer is None:
            bidx = 0
        elif buffer in names:
            bidx = names.index(buffer)
        else:
            raise TraceError(path, f"no buffer {buffer!r} (buffers: {', '.join(repr(n) for n in names)})")
        buf = tdf.buffers[bidx]
        if buf.latency:
            raise TraceError(path, "latency-format trace.dat (no per-CPU ring buffers) is not supported")
    except BaseException:
        tdf.close()
        raise
    return tdf, bidx, buf


def cut_warning(cpu: int, present: int, size: int, count: int) -> str:
    have = f" ({present} of {size} bytes present)" if present < size else ""
    return f"CPU {cpu}: data section truncated{have}; {count} complete events before the cut kept"


def require_formats(path: str, dec: Decoder, events: int) -> None:
    """Events whose layouts the file does not give cannot be read: one answer for every reader."""
    if events and not dec.formats:
        raise TraceError(path, "trace.dat has events but no event formats")


def lost_warning(dropped: list[Dropped]) -> str | None:
    if not dropped:
        return None
    tot: dict[int, int] = {}
    for d in dropped:
        tot[d.cpu] = tot.get(d.cpu, 0) + (d.count or 0)
    return "events lost by the recorder: " + ", ".join(
        f"CPU {c}: {v if v else 'unknown number'}" for c, v in sorted(tot.items()))


def unknown_warning(ids: list[int]) -> str:
    return f"events with unknown format ids {sorted(ids)[:10]} kept as unknown_<id>"


def emit_warnings(path: str, warn: list[str], stacklevel: int = 3) -> None:
    for w in warn:
        if "truncated" in w or "corrupt" in w:
            warnings.warn(f"{path}: {w}", TraceWarning, stacklevel=stacklevel)


def _windows(keys: list[np.ndarray], target: int) -> list[list[tuple[int, int]]]:
    """Split the CPUs' sorted keys at common bounds into windows of about `target` events."""
    n = sum(k.size for k in keys)
    if n <= target:
        return [[(0, k.size) for k in keys]]
    nwin = -(-n // target)
    samples = np.sort(np.concatenate([k[:: max(1, k.size // (nwin * 8))] for k in keys if k.size]))
    bounds = np.unique(samples[(np.arange(1, nwin) * samples.size) // nwin])
    cuts = [np.concatenate([[0], np.searchsorted(k, bounds, side="left"), [k.size]]) for k in keys]
    out = []
    for j in range(bounds.size + 1):
        w = [(int(c[j]), int(c[j + 1])) for c in cuts]
        if any(hi > lo for lo, hi in w):
            out.append(w)
    return out


def read(path: str | os.PathLike, progress: Callable[[int, int], None] | None = None,
         buffer: str | None = None) -> Trace:
    """Read a trace.dat; `buffer` picks an instance by name (default: the top buffer).

    A compressed file is closed before this returns (its pages are decompressed); an uncompressed
    one stays mapped for the tables not yet decoded until the Trace is closed or freed.
    """
    path = os.fspath(path)
    tdf, bidx, buf = open_buffer(path, buffer)
    try:
        trace = _read(path, tdf, bidx, buf, progress)
    except BaseException:
        tdf.close()
        raise
    if tdf.compression != "none" and tdf.version >= 7:
        tdf.close()
    return trace


def _read(path: str, tdf: TraceDatFile, bidx: int, buf: Buffer, progress) -> Trace:
    dec = Decoder(tdf, buf)
    warn: list[str] = []
    with thread_pool(size=sum(cd.size for cd in buf.cpus) // PAGE_BYTES_PER_EVENT) as pool:
        data, spans = tdf.buffer_data(bidx, pool)
        off_dtype = np.uint32 if data.size < (1 << 32) else np.int64

        def decode(i: int) -> CpuEvents:
            start, length, _ = spans[i]
            return decode_pages(data[start: start + length], buf.page_size, tdf.header_page, tdf.endian,
                                tdf.long_size, buf.cpus[i].cpu, tdf.header_event, base_offset=start,
                                offset_dtype=off_dtype)

        evs = _decode_all(decode, len(buf.cpus), pool, [cd.size for cd in buf.cpus], progress)
        for i, (cd, ev) in enumerate(zip(buf.cpus, evs)):
            cut = spans[i][2]
            if cut:
                ev.truncated = True
            if cut or cd.cpu in tdf.truncated_cpus:
                warn.append(cut_warning(cd.cpu, spans[i][1], cd.size, ev.count))
            warn.extend(w for w in ev.warnings if "truncated file" not in w or not cut)
        cols = _merge_all(dec, buf, evs, data, pool)
        per_cpu = {int(cd.cpu): int(ev.count) for cd, ev in zip(buf.cpus, evs)}
        del evs  # the per-CPU arrays: merged into the columns now
        require_formats(path, dec, cols["ts"].size)
        events, tables, counts = _assemble(dec, cols, data, pool)
    dropped = cols["dropped"]
    dropped.sort(key=lambda d: (d.ts, d.cpu))
    lw = lost_warning(dropped)
    if lw:
        warn.append(lw)
    warn = tdf.warnings + dec.warnings + warn
    emit_warnings(path, warn, stacklevel=5)  # at the caller of read_trace
    meta = dec.meta(dropped, warn, per_cpu, counts)
    return Trace(events, tables, meta, close=tdf.close)


def _decode_all(decode, ncpu: int, pool, sizes: list[int], progress) -> list[CpuEvents]:
    total = sum(sizes) or 1
    done = 0
    if pool is None:
        out = []
        for i in range(ncpu):
            out.append(decode(i))
            done += sizes[i]
            if progress:
                progress(done, total)
        return out
    futs = {pool.submit(decode, i): i for i in range(ncpu)}
    res: dict[int, CpuEvents] = {}
    for f in as_completed(futs):
        i = futs[f]
        res[i] = f.result()
        done += sizes[i]
        if progress:
            progress(done, total)
    return [res[i] for i in range(ncpu)]


def _merge_all(dec: Decoder, buf: Buffer, evs: list[CpuEvents], data: np.ndarray, pool) -> dict:
    """All CPUs merged into the events columns, window by window into preallocated arrays."""
    keys = [merge_key(ev.ts) for ev in evs]
    wins = _windows(keys, WINDOW_EVENTS)
    keys = [None if k is ev.ts else k for k, ev in zip(keys, evs)]
    sizes = [sum(hi - lo for lo, hi in w) for w in wins]
    bases = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64).tolist()
    n = bases[-1]
    off_dtype = evs[0].offset.dtype if evs else np.int64
    size_dtype = np.uint16 if buf.page_size <= 1 << 16 else np.int32
    cols = {
        "ts": np.empty(n, np.int64), "cpu": np.empty(n, np.int32), "pid": np.empty(n, np.int32),
        "type_id": np.empty(n, np.uint16), "flags": np.empty(n, np.uint8), "pc": np.empty(n, np.uint8),
        "comm": np.empty(n, np.int32), "off": np.empty(n, off_dtype), "size": np.empty(n, size_dtype),
    }
    flags_ok: list[tuple[int, np.ndarray]] = []
    type_counts: list[np.ndarray] = []
    missed = [(np.array([m.index for m in ev.missed], np.int64), ev.missed) for ev in evs]
    dropped_rows: list[tuple[int, Missed, int]] = []

    def run(j: int) -> None:
        b = bases[j]
        parts = [Part(cd.cpu, None if k is None else k[lo:hi], ev.ts[lo:hi], ev.offset[lo:hi], ev.size[lo:hi])
                 for (lo, hi), cd, k, ev in zip(wins[j], buf.cpus, keys, evs)]
        out = {k: v[b: b + sizes[j]] for k, v in cols.items()}
        m = dec.merge(parts, out)
        fok = dec.common_fields(data, m.off, m.size, out)
        dec.comm_codes(out["pid"], out=out["comm"])
        type_counts.append(np.bincount(out["type_id"], minlength=1 << 16))
        if fok is not None:
            flags_ok.append((b, fok))
        for pi, ((lo, hi), (idx, ms)) in enumerate(zip(wins[j], missed)):
            sel = np.flatnonzero((idx >= lo) & (idx < hi))
            if sel.size:
                rows = m.rows_of(pi, idx[sel] - lo)
                dropped_rows.extend((parts[pi].cpu, ms[s], b + int(r)) for s, r in zip(sel.tolist(), rows.tolist()))

    if pool is None or len(wins) == 1:
        for j in range(len(wins)):
            run(j)
    else:
        list(pool.map(run, range(len(wins))))
    dropped = [Dropped(c, int(cols["ts"][r]), ms.count, r) for c, ms, r in dropped_rows]
    last_ts = int(cols["ts"][-1]) if n else 0
    for cd, ev in zip(buf.cpus, evs):
        dropped.extend(Dropped(cd.cpu, last_ts, ms.count, None) for ms in ev.missed if ms.index >= ev.count)
    if flags_ok:
        valid = np.ones(n, bool)
        for b, ok in flags_ok:
            valid[b: b + ok.size] = ok
        cols["flags_valid"] = valid
    cols["dropped"] = dropped
    cols["type_counts"] = sum(type_counts) if type_counts else np.zeros(1 << 16, np.int64)
    return cols


def _dict_array(codes: pa.Array, names: list[str | None]) -> pa.DictionaryArray:
    return pa.DictionaryArray.from_arrays(codes, pa.array(names, pa.string()), safe=False)


def system_array(code: np.ndarray, code_arr: pa.Array, systems: list[str | None]) -> pa.DictionaryArray:
    """The `system` column over the event codes. Types without a format have no system: those rows
    are null in the indices (Parquet cannot write a null inside a dictionary)."""
    unknown = [i for i, s in enumerate(systems) if s is None]
    if unknown:
        code_arr = pa.array(code, pa.int32(), mask=np.isin(code, unknown))
    return _dict_array(code_arr, [s or "" for s in systems])


def _assemble(dec: Decoder, cols: dict, data: np.ndarray, pool, row_base: int = 0,
              only: set[str] | None = None, unknown_out: set[int] | None = None
              ) -> tuple[pa.Table, dict, dict[str, int]]:
    """Arrow events table (zero-copy over the columns) and lazy per-type table builders.

    `row_base`: the `row` of the columns' first event (a window of a longer trace); `only`: build
    tables for these names alone; `unknown_out`: collect ids without a format there instead of
    warning (a streamed file warns once, at its end)."""
    tid = cols.pop("type_id")
    counts = cols.pop("type_counts")
    present = np.flatnonzero(counts)
    # Dictionary codes: the event types present, by id (a 2^16 lookup, in parallel blocks).
    lut = np.zeros(1 << 16, dtype=np.int32)
    lut[present] = np.arange(present.size, dtype=np.int32)
    code = np.empty(tid.size, np.int32)
    step = WINDOW_EVENTS

    def remap(i: int) -> None:
        np.take(lut, tid[i: i + step], out=code[i: i + step], mode="clip")

    if pool is None:
        for i in range(0, tid.size, step):
            remap(i)
    else:
        list(pool.map(remap, range(0, tid.size, step)))
    named = [dec.name_of(int(t)) for t in present]
    unknown = [int(t) for t in present if int(t) not in dec.formats]
    if unknown_out is not None:
        unknown_out.update(unknown)
    elif unknown:
        dec.warnings.append(unknown_warning(unknown))
    code_arr = pa.array(code, pa.int32())
    comm = cols["comm"]
    comm_arr = pa.array(comm, pa.int32(), mask=comm < 0) if (comm < 0).any() else pa.array(comm, pa.int32())
    fv = cols.get("flags_valid")
    events = pa.table({
        "ts": pa.array(cols["ts"], pa.int64()),
        "cpu": pa.array(cols["cpu"], pa.int32()),
        "pid": pa.array(cols["pid"], pa.int32()),
        "comm": _dict_array(comm_arr, dec.comm_names),
        "system": system_array(code, code_arr, [s for _, s in named]),
        "event": _dict_array(code_arr, [nm for nm, _ in named]),
        "flags": pa.array(cols["flags"], pa.uint8(), mask=None if fv is None else ~fv),
        "preempt_count": pa.array(cols["pc"], pa.uint8(), mask=None if fv is None else ~fv),
    })
    ts, cpu, pid, off, size = cols["ts"], cols["cpu"], cols["pid"], cols["off"], cols["size"]
    groups = _Rows(code, present.size)

    def factory(k: int, t: int) -> Callable[[], pa.Table]:
        def build() -> pa.Table:
            with thread_pool(size=int(counts[t])) as tpool:
                return dec.table(t, groups.rows(k, tpool), row_base, ts, cpu, pid, data, off, size, tpool)
        return build

    tables = {nm: factory(k, int(t)) for k, (t, (nm, _)) in enumerate(zip(present, named))
              if only is None or nm in only}
    if only is not None:
        groups.left &= {k for k, (_, (nm, _)) in enumerate(zip(present, named)) if nm in only}
    event_counts = {nm: int(counts[t]) for t, (nm, _) in zip(present, named)}
    return events, tables, event_counts


class _Rows:
    """Row positions of each event type. The first table asked for scans the codes; from the
    second on, the rows of every type come from one stable radix sort of the codes (as uint8 or
    uint16, halves in parallel), dropped once every type has been handed out."""

    def __init__(self, code: np.ndarray, ntypes: int):
        self.code, self.ntypes = code, ntypes
        self.calls = 0
        self.left = set(range(ntypes))
        self.halves: list[tuple[int, np.ndarray, np.ndarray]] | None = None

    def rows(self, k: int, pool=None) -> np.ndarray:
        self.calls += 1
        self.left.discard(k)
        code = self.code
        if self.ntypes == 1:
            return np.arange(code.size, dtype=np.int64)
        if self.halves is None and (self.calls == 1 or not self.left):
            return np.flatnonzero(code == k)
        if self.halves is None:
            small = code.astype(np.uint8 if self.ntypes <= 256 else np.uint16)
            cut = [0, code.size // 2, code.size] if pool is not None else [0, code.size]

            def group(i: int) -> tuple[int, np.ndarray, np.ndarray]:
                part = small[cut[i]: cut[i + 1]]
                order = np.argsort(part, kind="stable").astype(np.int32 if part.size < 1 << 31 else np.int64)
                bounds = np.concatenate([[0], np.cumsum(np.bincount(part, minlength=self.ntypes))])
                return cut[i], order, bounds

            jobs = range(len(cut) - 1)
            self.halves = list(pool.map(group, jobs)) if pool is not None else [group(i) for i in jobs]
        out = np.concatenate([order[bounds[k]: bounds[k + 1]].astype(np.int64) + base
                              for base, order, bounds in self.halves])
        if not self.left:
            self.halves = None
        return out
