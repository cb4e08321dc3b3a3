"""trace.dat (v6, v7; none/zstd/zlib) -> `Trace`.

Every CPU is decoded with the page-lockstep walker, CPUs are merged by timestamp (ties: lower CPU
first, as trace-cmd does), and per-event tables are decoded lazily from the payload offsets.
"""
from __future__ import annotations

import os
import warnings
from collections.abc import Callable

import numpy as np
import pyarrow as pa

from ..errors import TraceError, TraceWarning
from ..trace import Dropped, Trace, TraceMeta
from .eventformat import EventFormat, decode_field, decode_fields
from .ringbuffer import CpuEvents, decode_pages
from .tracedat_file import OPT_CPUSTAT, OPT_UNAME, OPT_VERSION, TraceDatFile

# Counter clocks whose raw values are not nanoseconds unless the file carries TSC2NSEC.
COUNTER_CLOCKS = {"x86-tsc", "counter"}


def _dict_array(codes: np.ndarray, names: list[str | None]) -> pa.DictionaryArray:
    return pa.DictionaryArray.from_arrays(pa.array(codes.astype(np.int32)), pa.array(names, pa.string()))


class _Assembled:
    """Merged per-event arrays of one buffer, kept so typed tables decode on demand."""

    def __init__(self, data: np.ndarray, offset: np.ndarray, size: np.ndarray, type_id: np.ndarray,
                 endian: str, long_size: int):
        self.data = data
        self.offset = offset
        self.size = size
        self.type_id = type_id
        self.endian = endian
        self.long_size = long_size

    def table_factory(self, fmt: EventFormat, rows: np.ndarray, key: dict[str, pa.Array]
                      ) -> Callable[[], pa.Table]:
        def build() -> pa.Table:
            cols = {"row": pa.array(rows.astype(np.int64))}
            cols.update(key)
            cols.update(decode_fields(fmt, self.data, self.offset[rows], self.size[rows], self.endian,
                                      self.long_size))
            return pa.table(cols)

        return build


def _to_ns(ts: np.ndarray, tdf: TraceDatFile, meta_warnings: list[str]) -> np.ndarray:
    conv = tdf.tsc2nsec
    if conv is not None:
        mult, shift, offset = conv
        # mul_u64_u32_shr without overflow: split the product in high and low 32-bit halves.
        t = ts.astype(np.uint64)
        hi = (t >> np.uint64(32)) * np.uint64(mult)
        lo = (t & np.uint64(0xFFFFFFFF)) * np.uint64(mult)
        if shift >= 32:
            res = (hi >> np.uint64(shift - 32)) + (lo >> np.uint64(shift))
        else:
            res = (hi << np.uint64(32 - shift)) + (lo >> np.uint64(shift))
        ts = res.astype(np.int64) + offset
    elif (tdf.trace_clock or "") in COUNTER_CLOCKS:
        meta_warnings.append(
            f"clock {tdf.trace_clock}: timestamps are raw counter values, not nanoseconds "
            "(the file carries no TSC2NSEC conversion)"
        )
    if tdf.time_offset:
        ts = ts + np.int64(tdf.time_offset)
    return ts


def _common_fast(common: dict, data: np.ndarray, offset: np.ndarray, endian: str):
    """The standard common header (u16 type, u8 flags, u8 preempt_count, s32 pid) from two words
    per event, when the file is little-endian and every record is 4-byte aligned."""
    layout = {k: (f.offset, f.size) for k, f in common.items()}
    if endian != "little" or layout != {"common_type": (0, 2), "common_flags": (2, 1),
                                        "common_preempt_count": (3, 1), "common_pid": (4, 4)}:
        return None
    if offset.size == 0 or np.bitwise_or.reduce(offset) & 3:
        return None
    words = data[: (data.size >> 2) << 2].view("<u4")
    wi = offset >> 2
    if int(wi.max()) + 1 >= words.size:
        return None
    w0 = words[wi]
    pid = words[wi + 1].view(np.int32)
    return ((w0 & 0xFFFF).astype(np.int64), pid, pa.array((w0 >> 16).astype(np.uint8)),
            pa.array((w0 >> 24).astype(np.uint8)))


def read(path: str | os.PathLike, progress: Callable[[int, int], None] | None = None,
         buffer: str | None = None) -> Trace:
    """Read a trace.dat; `buffer` picks an instance by name (default: the top buffer)."""
    path = os.fspath(path)
    tdf = TraceDatFile(path)
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
    meta_warnings: list[str] = []
    header = tdf.header_page
    event_header = tdf.header_event
    formats = tdf.formats

    per_cpu: list[tuple[int, CpuEvents]] = []
    datas: list[np.ndarray] = []
    base = 0
    total_bytes = sum(cd.size for cd in buf.cpus) or 1
    done = 0
    whole_file = tdf.compression == "none" or tdf.version < 7
    file_arr = np.frombuffer(tdf._mm, dtype=np.uint8) if whole_file else None
    for i, cd in enumerate(buf.cpus):
        arr, file_off, cut = tdf.cpu_data(i, bidx)
        if whole_file:
            ev = decode_pages(arr, buf.page_size, header, tdf.endian, tdf.long_size, cd.cpu, event_header,
                              base_offset=file_off)
        else:
            ev = decode_pages(arr, buf.page_size, header, tdf.endian, tdf.long_size, cd.cpu, event_header,
                              base_offset=base)
            datas.append(arr)
            base += arr.size
        if cut and not ev.truncated:
            ev.truncated = True
        if cut or cd.cpu in tdf.truncated_cpus:
            meta_warnings.append(
                f"CPU {cd.cpu}: data section truncated ({arr.size} of {cd.size} bytes present); "
                f"{ev.count} complete events before the cut kept"
            )
        meta_warnings.extend(w for w in ev.warnings if "truncated file" not in w or not cut)
        per_cpu.append((cd.cpu, ev))
        done += cd.size
        if progress:
            progress(done, total_bytes)
    data = file_arr if whole_file else (np.concatenate(datas) if datas else np.empty(0, np.uint8))

    counts = [ev.count for _, ev in per_cpu]
    n = int(sum(counts))
    ts = np.concatenate([ev.ts for _, ev in per_cpu]) if per_cpu else np.empty(0, np.int64)
    offset = np.concatenate([ev.offset for _, ev in per_cpu]) if per_cpu else np.empty(0, np.int64)
    size = np.concatenate([ev.size for _, ev in per_cpu]) if per_cpu else np.empty(0, np.int64)
    cpu = np.repeat(np.array([c for c, _ in per_cpu], dtype=np.int32), counts)
    cpu_start = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    order = np.argsort(ts, kind="stable")
    ts, offset, size, cpu = ts[order], offset[order], size[order], cpu[order]
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n, dtype=np.int64)

    # Common fields: the same layout in every format of the file (take it from any one).
    any_fmt = next(iter(formats.values()), None)
    if any_fmt is None and n:
        raise TraceError(path, "trace.dat has events but no event formats")
    ok_common = size >= 8
    if any_fmt is not None and n:
        common = {f.name: f for f in any_fmt.common_fields}
        fast = _common_fast(common, data, offset, tdf.endian)
        if fast is not None:
            type_id, pid, flags, pc_ = fast
        else:
            type_id = decode_field(common["common_type"], data, offset, size, tdf.endian, tdf.long_size)
            type_id = type_id.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
            pid = decode_field(common["common_pid"], data, offset, size, tdf.endian, tdf.long_size)
            pid = pid.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int32)
            flags = decode_field(common["common_flags"], data, offset, size, tdf.endian, tdf.long_size) \
                if "common_flags" in common else pa.nulls(n, pa.uint8())
            pc_ = decode_field(common["common_preempt_count"], data, offset, size, tdf.endian, tdf.long_size) \
                if "common_preempt_count" in common else pa.nulls(n, pa.uint8())
    else:
        type_id = np.zeros(n, np.int64)
        pid = np.zeros(n, np.int32)
        flags = pa.nulls(n, pa.uint8())
        pc_ = pa.nulls(n, pa.uint8())
    del ok_common

    # Event names: ids are 16-bit, so a dense lookup replaces sorting 10^7 ids; unknown ids keep
    # a name, never dropped.
    tid16 = type_id.astype(np.int64) & 0xFFFF
    present = np.flatnonzero(np.bincount(tid16, minlength=1)) if n else np.empty(0, np.int64)
    lut = np.full(65536, -1, dtype=np.int32)
    lut[present] = np.arange(present.size, dtype=np.int32)
    inv = lut[tid16]
    uniq_ids = present
    ev_names: list[str] = []
    sys_names: list[str | None] = []
    unknown = []
    for tid in uniq_ids.tolist():
        fmt = formats.get(tid)
        if fmt is None:
            ev_names.append(f"unknown_{tid}")
            sys_names.append(None)
            unknown.append(tid)
        else:
            ev_names.append(fmt.name)
            sys_names.append(fmt.system)
    if unknown:
        meta_warnings.append(f"events with unknown format ids {unknown[:10]} kept as unknown_<id>")

    # comm from the saved cmdlines, as trace-cmd prints it (pids hash-encoded, not sorted).
    pid_dict = pa.array(pid).dictionary_encode()
    upid = pid_dict.dictionary.to_numpy()
    pinv = pid_dict.indices.to_numpy()
    cmap = tdf.cmdline_map
    comm_names: list[str | None] = ["<idle>" if p == 0 else cmap.get(p) for p in upid.tolist()]

    ts_ns = _to_ns(ts, tdf, meta_warnings)
    events = pa.table({
        "ts": pa.array(ts_ns, pa.int64()),
        "cpu": pa.array(cpu, pa.int32()),
        "pid": pa.array(pid, pa.int32()),
        "comm": _dict_array(pinv.reshape(-1), comm_names),
        "system": _dict_array(inv.reshape(-1), sys_names),
        "event": _dict_array(inv.reshape(-1), ev_names),
        "flags": flags.cast(pa.uint8()),
        "preempt_count": pc_.cast(pa.uint8()),
    })

    asm = _Assembled(data, offset, size, type_id, tdf.endian, tdf.long_size)
    tables: dict[str, Callable[[], pa.Table]] = {}
    # Rows of each type, in order: a stable sort of small codes (NumPy radix-sorts 16-bit keys).
    codes16 = inv.astype(np.uint16)
    by_type = np.argsort(codes16, kind="stable")
    bounds = np.searchsorted(codes16[by_type], np.arange(len(uniq_ids) + 1))
    for k, tid in enumerate(uniq_ids.tolist()):
        rows = by_type[bounds[k]: bounds[k + 1]]
        fmt = formats.get(tid)
        key = {
            "ts": pa.array(ts_ns[rows], pa.int64()),
            "cpu": pa.array(cpu[rows], pa.int32()),
            "pid": pa.array(pid[rows], pa.int32()),
        }
        if fmt is None:
            tables[ev_names[k]] = pa.table({"row": pa.array(rows.astype(np.int64)), **key})
        else:
            name = fmt.name if fmt.name not in tables else f"{fmt.system}:{fmt.name}"
            tables[name] = asm.table_factory(fmt, rows, key)

    dropped: list[Dropped] = []
    for ci, (c, ev) in enumerate(per_cpu):
        for m in ev.missed:
            idx = cpu_start[ci] + m.index
            if m.index < ev.count:
                row = int(rank[idx])
                dropped.append(Dropped(c, int(ts_ns[row]), m.count, row))
            else:
                dropped.append(Dropped(c, int(ts_ns[-1]) if n else 0, m.count, None))
    dropped.sort(key=lambda d: (d.ts, d.cpu))
    if dropped:
        tot = {}
        for d in dropped:
            tot[d.cpu] = tot.get(d.cpu, 0) + (d.count or 0)
        meta_warnings.append(
            "events lost by the recorder: " + ", ".join(
                f"CPU {c}: {v if v else 'unknown number'}" for c, v in sorted(tot.items()))
        )
    meta_warnings = tdf.warnings + meta_warnings
    for w in meta_warnings:
        if "truncated" in w or "corrupt" in w:
            warnings.warn(f"{path}: {w}", TraceWarning, stacklevel=2)

    uname = tdf.option_text(OPT_UNAME)
    version_opt = tdf.option_text(OPT_VERSION)
    meta = TraceMeta(
        path=path,
        source_format="trace.dat",
        version=tdf.version,
        compression=tdf.compression,
        cpus=tdf.cpus,
        clock=tdf.trace_clock,
        page_size=buf.page_size,
        endian=tdf.endian,
        long_size=tdf.long_size,
        uname=uname,
        dropped=dropped,
        warnings=meta_warnings,
        extra={
            "trace_cmd_version": version_opt,
            "compression_version": tdf.compression_version or None,
            "buffer": buf.name,
            "instances": [b.name for b in tdf.buffers if b.name],
            "tsc2nsec": list(tdf.tsc2nsec) if tdf.tsc2nsec else None,
            "time_offset": tdf.time_offset or None,
            "cpustat": [v.rstrip(b"\0").decode("utf-8", "replace") for v in tdf.option_values(OPT_CPUSTAT)],
            "events_per_cpu": {int(c): int(ev.count) for c, ev in per_cpu},
            "file_size": tdf.file_size,
        },
    )
    return Trace(events, tables, meta)
