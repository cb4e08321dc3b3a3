"""trace.dat writer: version 6 (flyrecord) and 7 (sections, options; uncompressed or zstd).

Layout after trace-cmd's `trace-cmd.dat.v6(5)`/`trace-cmd.dat.v7(5)` and what trace-cmd 3.1.6
itself writes (section order, option set, page-aligned CPU data, zstd chunks per CPU).
"""
from __future__ import annotations

import io
import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from ..errors import UsageError
from ..formats.tracedat_file import (
    MAGIC, OPT_BUFFER, OPT_CMDLINES, OPT_CPUCOUNT, OPT_EVENT_FORMATS, OPT_FTRACE_EVENTS, OPT_HEADER_INFO,
    OPT_KALLSYMS, OPT_PRINTK, OPT_TRACECLOCK, OPT_UNAME, OPT_VERSION,
)
from ..trace import Trace
from .encode import encode_pages, encode_payloads, payload_size
from .templates import Template, load_template

WRITER_VERSION = b"exitreplay synth\0"
CLOCKS = "local global counter uptime perf mono mono_raw boot tai x86-tsc"
ZSTD_CHUNK = 10 * 4096  # trace-cmd compresses CPU data in chunks of pages


@dataclass
class CpuStream:
    cpu: int
    ts: np.ndarray  # int64, non-decreasing
    payload: np.ndarray  # uint8, concatenated payloads
    sizes: np.ndarray  # int64


def _clock_option(clock: str) -> bytes:
    return " ".join(f"[{c}]" if c == clock else c for c in CLOCKS.split()).encode() + b"\n\0"


def _header_info(t: Template) -> bytes:
    return (b"header_page\0" + struct.pack("<Q", len(t.header_page)) + t.header_page
            + b"header_event\0" + struct.pack("<Q", len(t.header_event)) + t.header_event)


def _ftrace(t: Template) -> bytes:
    return struct.pack("<I", len(t.ftrace_formats)) + b"".join(
        struct.pack("<Q", len(x)) + x for x in t.ftrace_formats)


def _events(t: Template) -> bytes:
    out = [struct.pack("<I", len(t.event_formats))]
    for system, texts in t.event_formats.items():
        out.append(system.encode() + b"\0" + struct.pack("<I", len(texts)))
        out += [struct.pack("<Q", len(x)) + x for x in texts]
    return b"".join(out)


def _cmdlines(cmdlines: dict[int, str]) -> bytes:
    return "".join(f"{pid} {comm}\n" for pid, comm in sorted(cmdlines.items())).encode()


def _opt(oid: int, data: bytes) -> bytes:
    return struct.pack("<HI", oid, len(data)) + data


def write_tracedat(path: str | os.PathLike, cpus: Sequence[CpuStream], n_cpus: int, template: Template,
                   *, version: int = 7, compression: str = "none", cmdlines: dict[int, str] | None = None,
                   clock: str = "local", uname: str | None = None, page_size: int = 4096) -> None:
    if version not in (6, 7):
        raise UsageError(f"trace.dat version {version} cannot be written (6 or 7)")
    if compression not in ("none", "zstd") or (version == 6 and compression != "none"):
        raise UsageError("compression: none, or zstd with version 7")
    pages = {c.cpu: encode_pages(c.ts, c.payload, c.sizes, page_size) for c in cpus}
    data = [pages.get(cpu, np.empty(0, np.uint8)) for cpu in range(n_cpus)]
    uname = uname or template.info.get("uname") or "Linux exitreplay-synth x86_64"
    cmd = _cmdlines(cmdlines or {})
    buf = io.BytesIO()
    w = buf.write
    w(MAGIC + f"{version}\0".encode() + bytes([0, 8]) + struct.pack("<I", page_size))
    if version == 6:
        w(_header_info(template))
        w(_ftrace(template))
        w(_events(template))
        w(struct.pack("<I", 0))  # kallsyms
        w(struct.pack("<I", 0))  # printk
        w(struct.pack("<Q", len(cmd)) + cmd)
        w(struct.pack("<I", n_cpus))
        w(b"options  \0")
        w(_opt(OPT_TRACECLOCK, _clock_option(clock)))
        w(_opt(OPT_UNAME, uname.encode() + b"\0"))
        w(_opt(OPT_VERSION, WRITER_VERSION))
        w(struct.pack("<H", 0))
        w(b"flyrecord\0")
        table_at = buf.tell()
        w(b"\0" * 16 * n_cpus)
        offs = []
        for d in data:
            pos = (buf.tell() + page_size - 1) // page_size * page_size
            w(b"\0" * (pos - buf.tell()))
            offs.append((pos, d.size))
            w(d.tobytes())
        buf.seek(table_at)
        for pos, size in offs:
            w(struct.pack("<QQ", pos, size))
        _atomic_write(path, buf.getvalue())
        return

    comp = None
    if compression == "zstd":
        import zstandard

        comp = zstandard.ZstdCompressor(level=3)
        w(b"zstd\0" + zstandard.__version__.encode() + b"\0")
    else:
        w(b"none\0\0")
    first_opt_at = buf.tell()
    w(b"\0" * 8)

    def section(sid: int, payload: bytes) -> int:
        at = buf.tell()
        flags = 0
        if comp is not None:
            c = comp.compress(payload)
            payload = struct.pack("<II", len(c), len(payload)) + c
            flags = 1
        w(struct.pack("<HHIQ", sid, flags, 0, len(payload)) + payload)
        return at

    offs = {
        OPT_HEADER_INFO: section(OPT_HEADER_INFO, _header_info(template)),
        OPT_FTRACE_EVENTS: section(OPT_FTRACE_EVENTS, _ftrace(template)),
        OPT_EVENT_FORMATS: section(OPT_EVENT_FORMATS, _events(template)),
        OPT_KALLSYMS: section(OPT_KALLSYMS, struct.pack("<I", 0)),
        OPT_PRINTK: section(OPT_PRINTK, struct.pack("<I", 0)),
        OPT_CMDLINES: section(OPT_CMDLINES, struct.pack("<Q", len(cmd)) + cmd),
    }
    # First options section: where the sections are, and the trace's facts.
    opts = b"".join(_opt(k, struct.pack("<Q", v)) for k, v in offs.items())
    opts += _opt(OPT_TRACECLOCK, _clock_option(clock)) + _opt(OPT_UNAME, uname.encode() + b"\0")
    opts += _opt(OPT_VERSION, WRITER_VERSION) + _opt(OPT_CPUCOUNT, struct.pack("<I", n_cpus))
    opt1_at = buf.tell()
    done_at = opt1_at + 16 + len(opts) + 6
    opts += _opt(0, b"\0" * 8)  # DONE: next options section, patched below
    w(struct.pack("<HHIQ", 0, 0, 0, len(opts)) + opts)

    # The buffer's data section: page-aligned CPU data (zstd: chunks per CPU).
    data_at = buf.tell()
    w(struct.pack("<HHIQ", OPT_BUFFER, 1 if comp else 0, 0, 0))
    cpu_offs = []
    for cpu, d in enumerate(data):
        pos = (buf.tell() + page_size - 1) // page_size * page_size
        w(b"\0" * (pos - buf.tell()))
        if comp is None:
            w(d.tobytes())
            cpu_offs.append((cpu, pos, d.size))
        else:
            raw = d.tobytes()
            chunks = [raw[i: i + ZSTD_CHUNK] for i in range(0, len(raw), ZSTD_CHUNK)]
            blob = [struct.pack("<I", len(chunks))]
            for ch in chunks:
                c = comp.compress(ch)
                blob.append(struct.pack("<II", len(c), len(ch)) + c)
            b = b"".join(blob)
            w(b)
            cpu_offs.append((cpu, pos, len(b)))
    end = buf.tell()
    buf.seek(data_at + 8)
    w(struct.pack("<Q", end - data_at - 16))
    buf.seek(end)
    opt2 = struct.pack("<Q", data_at) + b"\0" + clock.encode() + b"\0" + struct.pack("<II", page_size, n_cpus)
    opt2 += b"".join(struct.pack("<IQQ", c, o, s) for c, o, s in cpu_offs)
    body = _opt(OPT_BUFFER, opt2) + _opt(0, b"\0" * 8)
    opt2_at = buf.tell()
    w(struct.pack("<HHIQ", 0, 0, 0, len(body)) + body)
    buf.seek(done_at)
    w(struct.pack("<Q", opt2_at))
    buf.seek(first_opt_at)
    w(struct.pack("<Q", opt1_at))
    _atomic_write(path, buf.getvalue())


def _atomic_write(path: str | os.PathLike, data: bytes) -> None:
    tmp = f"{os.fspath(path)}.part"
    with open(tmp, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


def write_trace(trace: Trace, path: str | os.PathLike, *, template: str | Template = "linux-6.18",
                version: int = 7, compression: str = "none", clock: str | None = None) -> None:
    """Write a Trace (the reader's model) as trace.dat, with the template's event layouts."""
    tpl = template if isinstance(template, Template) else load_template(template)
    fmts = tpl.formats
    ev = trace.events
    n = ev.num_rows
    missing = sorted(set(trace.event_names) - set(fmts))
    if missing:
        raise UsageError(f"template {tpl.name} has no format for: {', '.join(missing)}")
    pid_all = ev.column("pid").to_numpy()
    flags_all = ev.column("flags").fill_null(0).to_numpy(zero_copy_only=False)
    pc_all = ev.column("preempt_count").fill_null(0).to_numpy(zero_copy_only=False)
    sizes = np.zeros(n, dtype=np.int64)
    blocks = []
    for name in trace.event_names:
        t = trace.table(name)
        rows = t.column("row").to_numpy()
        fmt = fmts[name]
        cols = {c: t.column(c) for c in t.column_names if c not in ("row", "ts", "cpu", "pid")}
        block = encode_payloads(fmt, rows.size, cols, pid_all[rows], flags_all[rows], pc_all[rows])
        sizes[rows] = block.shape[1]
        blocks.append((rows, block))
    starts = np.concatenate([[0], np.cumsum(sizes)])
    flat = np.zeros(int(starts[-1]), dtype=np.uint8)
    for rows, block in blocks:
        w = block.shape[1]
        idx = starts[rows][:, None] + np.arange(w)[None, :]
        flat[idx] = block
    cpu = ev.column("cpu").to_numpy()
    ts = ev.column("ts").to_numpy()
    n_cpus = int(trace.meta.cpus or (cpu.max() + 1 if n else 1))
    streams = []
    for c in range(n_cpus):
        rows = np.flatnonzero(cpu == c)
        if rows.size == 0:
            continue
        sz = sizes[rows]
        idx = np.repeat(starts[rows], sz) + (np.arange(int(sz.sum())) - np.repeat(np.cumsum(sz) - sz, sz))
        streams.append(CpuStream(c, ts[rows], flat[idx], sz))
    comm = pa.compute.fill_null(ev.column("comm").cast(pa.string()), "").to_numpy(zero_copy_only=False)
    cmd = {}
    upid, first = np.unique(pid_all, return_index=True)
    for p, i in zip(upid.tolist(), first.tolist()):
        if p != 0 and comm[i]:
            cmd[p] = comm[i]
    write_tracedat(path, streams, n_cpus, tpl, version=version, compression=compression, cmdlines=cmd,
                   clock=clock or trace.meta.clock or "local")


__all__ = ["CpuStream", "payload_size", "write_trace", "write_tracedat"]
