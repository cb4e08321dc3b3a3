"""trace.dat writer: version 6 (flyrecord) and 7 (sections and options; uncompressed or zstd).

Layouts from trace-cmd's `trace-cmd.dat.v6(5)` and `trace-cmd.dat.v7(5)` man pages, in the order
trace-cmd 3.1.6 itself writes them (compare `trace-cmd dump --sections` of a real file):

v6: header_page/header_event, ftrace formats, event formats, kallsyms, printk, cmdlines, CPU count,
    "options  " (TRACECLOCK, UNAME, VERSION, TRACEID, CPUSTAT per CPU, CPUCOUNT), "flyrecord"
    (offset and size per CPU, then the clock as "[local]"), page-aligned CPU data.
v7: sections headers(16), ftrace events(17), events format(18), kallsyms(19), printk(20),
    command lines(21), an options section pointing at them, the buffer's flyrecord section (3)
    with page-aligned CPU data (zstd: per CPU a chunk count and chunks of 10 pages, each
    compressed size, uncompressed size, data), a second options section with the BUFFER option,
    and the strings section (15) naming every section. trace-cmd finds the strings section by
    walking the sections in file order, so the sections follow one another without gaps.

The file is written in one pass with seeks back to patch offsets, so CPU data streams to disk.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import struct
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import UsageError
from ..formats.tracedat_file import (
    MAGIC,
    OPT_BUFFER,
    OPT_CMDLINES,
    OPT_CPUCOUNT,
    OPT_CPUSTAT,
    OPT_EVENT_FORMATS,
    OPT_FTRACE_EVENTS,
    OPT_HEADER_INFO,
    OPT_KALLSYMS,
    OPT_PRINTK,
    OPT_STRINGS,
    OPT_TRACECLOCK,
    OPT_TRACEID,
    OPT_UNAME,
    OPT_VERSION,
)
from ..trace import Trace
from .pages import encode_pages
from .payloads import encode_payloads, payload_size
from .templates import DEFAULT_TEMPLATE, Template, load_template

WRITER_VERSION = "exitreplay synth"
# The clocks a 6.x kernel offers in trace_clock; the one in use is bracketed.
CLOCKS = "local global counter uptime perf mono mono_raw boot tai x86-tsc"
PAGES_IN_CHUNK = 10  # trace-cmd lib/trace-cmd/trace-output.c: CPU data is compressed 10 pages at a time
ZSTD_LEVEL = 3


def _clock_option(clock: str) -> bytes:
    words = CLOCKS.split()
    if clock not in words:
        words.append(clock)
    return " ".join(f"[{c}]" if c == clock else c for c in words).encode() + b"\n\0"


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


def _opt(oid: int, data: bytes) -> bytes:
    return struct.pack("<HI", oid, len(data)) + data


def _cpustat(cpu: int, ts: np.ndarray) -> bytes:
    """The per_cpu/cpuN/stats text trace-cmd saves (nothing lost: overrun and dropped are 0)."""
    first = int(ts[0]) if ts.size else 0
    last = int(ts[-1]) if ts.size else 0
    return (f"CPU: {cpu}\nentries: 0\noverrun: 0\ncommit overrun: 0\nbytes: 0\n"
            f"oldest event ts: {first // 10**9:5d}.{first % 10**9 // 1000:06d}\n"
            f"now ts: {last // 10**9:5d}.{last % 10**9 // 1000:06d}\n"
            f"dropped events: 0\nread events: {ts.size}\n").encode() + b"\0"


class _Out:
    """A file written forward, with patches at earlier offsets."""

    def __init__(self, path: str):
        self.fh = open(path, "wb")  # noqa: SIM115 (closed by write_tracedat, also on errors)

    def tell(self) -> int:
        return self.fh.tell()

    def write(self, b: bytes | memoryview) -> None:
        self.fh.write(b)

    def pad_to(self, align: int) -> None:
        pos = self.tell()
        gap = -pos % align
        if gap:
            self.write(b"\0" * gap)

    def patch(self, at: int, b: bytes) -> None:
        here = self.tell()
        self.fh.seek(at)
        self.fh.write(b)
        self.fh.seek(here)

    def close(self) -> None:
        self.fh.close()


def write_tracedat(path: str | os.PathLike, cpu_pages: Sequence[np.ndarray], template: Template, *,
                   version: int = 7, compression: str = "none", cmdlines: bytes = b"", clock: str = "local",
                   uname: str | None = None, page_size: int = 4096,
                   cpu_ts: Sequence[np.ndarray] | None = None, cpu_stats: Sequence[bytes] | None = None,
                   writer: str = WRITER_VERSION) -> None:
    """Write encoded per-CPU pages (index = CPU) with the template's sections as a trace.dat.

    cpu_stats: each CPU's CPUSTAT text as recorded (default: made from cpu_ts, nothing lost);
    writer: the VERSION option (who wrote the file).
    """
    if version not in (6, 7):
        raise UsageError(f"trace.dat version {version} cannot be written (6 or 7)")
    if compression not in ("none", "zstd"):
        raise UsageError(f"compression {compression!r}: none or zstd")
    if version == 6 and compression != "none":
        raise UsageError("version 6 files are not compressed (use --version 7 for zstd)")
    n_cpus = len(cpu_pages)
    cpu_ts = cpu_ts if cpu_ts is not None else [np.empty(0, np.int64)] * n_cpus
    stats = cpu_stats if cpu_stats is not None else [_cpustat(c, cpu_ts[c]) for c in range(n_cpus)]
    uname = uname or template.info.get("uname") or "Linux exitreplay-synth x86_64"
    digest = hashlib.sha256()
    for d in cpu_pages:
        digest.update(memoryview(np.ascontiguousarray(d)))
    trace_id = digest.digest()[:8]  # stable for the same content, like a session id would not be
    tmp = f"{os.fspath(path)}.part"
    out = _Out(tmp)
    try:
        out.write(MAGIC + f"{version}\0".encode() + bytes([0, 8]) + struct.pack("<I", page_size))
        if version == 6:
            _write_v6(out, cpu_pages, template, cmdlines, clock, uname, page_size, stats, trace_id, writer)
        else:
            _write_v7(out, cpu_pages, template, cmdlines, clock, uname, page_size, stats, trace_id,
                      compression, writer)
        out.close()
        os.replace(tmp, path)
    except BaseException:
        out.close()
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _facts(clock: str, uname: str, trace_id: bytes, stats: Sequence[bytes], writer: str) -> bytes:
    opts = _opt(OPT_TRACECLOCK, _clock_option(clock)) + _opt(OPT_UNAME, uname.encode() + b"\0")
    opts += _opt(OPT_VERSION, writer.encode() + b"\0") + _opt(OPT_TRACEID, trace_id)
    opts += b"".join(_opt(OPT_CPUSTAT, s) for s in stats)
    return opts


def _write_v6(out: _Out, cpu_pages, template, cmdlines, clock, uname, page_size, stats, trace_id, writer) -> None:
    n_cpus = len(cpu_pages)
    out.write(_header_info(template))
    out.write(_ftrace(template))
    out.write(_events(template))
    out.write(struct.pack("<I", 0))  # kallsyms: none (nothing we write has function addresses)
    out.write(struct.pack("<I", 0))  # printk formats: none
    out.write(struct.pack("<Q", len(cmdlines)) + cmdlines)
    out.write(struct.pack("<I", n_cpus))
    out.write(b"options  \0")
    out.write(_facts(clock, uname, trace_id, stats, writer) + _opt(OPT_CPUCOUNT, struct.pack("<I", n_cpus)))
    out.write(struct.pack("<H", 0))
    out.write(b"flyrecord\0")
    table = out.tell()
    out.write(b"\0" * 16 * n_cpus)
    clock_text = f"[{clock}]".encode()
    out.write(struct.pack("<Q", len(clock_text)) + clock_text)
    for cpu, d in enumerate(cpu_pages):
        out.pad_to(page_size)
        at = out.tell()
        out.write(memoryview(np.ascontiguousarray(d)))
        out.patch(table + 16 * cpu, struct.pack("<QQ", at, d.size))


def _write_v7(out: _Out, cpu_pages, template, cmdlines, clock, uname, page_size, stats, trace_id,
              compression, writer) -> None:
    n_cpus = len(cpu_pages)
    comp = None
    if compression == "zstd":
        import zstandard

        comp = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
        out.write(b"zstd\0" + ".".join(map(str, zstandard.ZSTD_VERSION)).encode() + b"\0")
    else:
        out.write(b"none\0\0")
    first_options = out.tell()
    out.write(b"\0" * 8)

    names: list[bytes] = []

    def string_id(name: str) -> int:
        sid = sum(len(n) + 1 for n in names)
        names.append(name.encode())
        return sid

    def section(sid: int, name: str, payload: bytes, compress: bool = True) -> int:
        at = out.tell()
        flags = 0
        if comp is not None and compress:
            c = comp.compress(payload)
            payload = struct.pack("<II", len(c), len(payload)) + c
            flags = 1
        out.write(struct.pack("<HHIQ", sid, flags, string_id(name), len(payload)) + payload)
        return at

    at = {
        OPT_HEADER_INFO: section(OPT_HEADER_INFO, "headers", _header_info(template)),
        OPT_FTRACE_EVENTS: section(OPT_FTRACE_EVENTS, "ftrace events", _ftrace(template)),
        OPT_EVENT_FORMATS: section(OPT_EVENT_FORMATS, "events format", _events(template)),
        OPT_KALLSYMS: section(OPT_KALLSYMS, "kallsyms", struct.pack("<I", 0)),
        OPT_PRINTK: section(OPT_PRINTK, "printk", struct.pack("<I", 0)),
        OPT_CMDLINES: section(OPT_CMDLINES, "command lines", struct.pack("<Q", len(cmdlines)) + cmdlines),
    }
    opts = b"".join(_opt(k, struct.pack("<Q", at[k])) for k in
                    (OPT_HEADER_INFO, OPT_FTRACE_EVENTS, OPT_EVENT_FORMATS, OPT_KALLSYMS, OPT_PRINTK))
    opts += _facts(clock, uname, trace_id, stats, writer)
    opts += _opt(OPT_CMDLINES, struct.pack("<Q", at[OPT_CMDLINES]))
    opts += _opt(OPT_CPUCOUNT, struct.pack("<I", n_cpus))
    options1 = out.tell()
    done1 = options1 + 16 + len(opts) + 6  # where the DONE option's "next section" offset lands
    opts += _opt(0, b"\0" * 8)
    out.write(struct.pack("<HHIQ", 0, 0, string_id("options"), len(opts)) + opts)

    # The buffer's data: a section header, padding to a page, then each CPU's data page-aligned.
    data_sec = out.tell()
    out.write(struct.pack("<HHIQ", OPT_BUFFER, 1 if comp else 0, string_id("buffer flyrecord "), 0))
    cpus = []
    for cpu, d in enumerate(cpu_pages):
        out.pad_to(page_size)
        start = out.tell()
        if comp is None:
            out.write(memoryview(np.ascontiguousarray(d)))
        else:
            raw = memoryview(np.ascontiguousarray(d))
            chunk = PAGES_IN_CHUNK * page_size
            n_chunks = (len(raw) + chunk - 1) // chunk
            out.write(struct.pack("<I", n_chunks))
            for i in range(n_chunks):
                piece = raw[i * chunk: (i + 1) * chunk]
                c = comp.compress(piece)
                out.write(struct.pack("<II", len(c), len(piece)) + c)
        cpus.append((cpu, start, out.tell() - start))
    end = out.tell()
    out.patch(data_sec + 8, struct.pack("<Q", end - data_sec - 16))

    buf = struct.pack("<Q", data_sec) + b"\0" + clock.encode() + b"\0" + struct.pack("<II", page_size, n_cpus)
    buf += b"".join(struct.pack("<IQQ", c, o, s) for c, o, s in cpus)
    body = _opt(OPT_BUFFER, buf) + _opt(0, b"\0" * 8)
    options2 = out.tell()
    out.write(struct.pack("<HHIQ", 0, 0, string_id("options"), len(body)) + body)
    out.patch(done1, struct.pack("<Q", options2))
    out.patch(first_options, struct.pack("<Q", options1))
    # The strings section names itself too, so its own name is in its payload.
    sid = string_id("strings")
    payload = b"".join(n + b"\0" for n in names)
    flags = 0
    if comp is not None:
        c = comp.compress(payload)
        payload = struct.pack("<II", len(c), len(payload)) + c
        flags = 1
    out.write(struct.pack("<HHIQ", OPT_STRINGS, flags, sid, len(payload)) + payload)


# -- Trace (the reader's model) -> payloads per CPU ---------------------------------------------

def _cmdlines(pid: np.ndarray, comm: pa.Array) -> bytes:
    """saved_cmdlines text: "pid comm" per task seen (the idle task 0 is never listed)."""
    comm = pc.fill_null(comm.cast(pa.string()), "").to_numpy(zero_copy_only=False)
    upid, first = np.unique(pid, return_index=True)
    lines = [f"{p} {comm[i]}\n" for p, i in zip(upid.tolist(), first.tolist()) if p > 0 and comm[i]]
    return "".join(lines).encode()


def payload_blocks(trace: Trace, template: Template) -> tuple[list[tuple[np.ndarray, np.ndarray]], np.ndarray]:
    """Each event type's rows and (rows, payload size) block of kernel trace records, and every
    event's payload size: what a ring buffer or a perf sample's RAW part carries."""
    missing = sorted(set(trace.event_names) - set(template.formats))
    if missing:
        raise UsageError(f"template {template.name} has no format for: {', '.join(missing)}")
    ev = trace.events
    pid_all = ev.column("pid").to_numpy()
    flags_all = ev.column("flags").fill_null(0).to_numpy(zero_copy_only=False)
    pc_all = ev.column("preempt_count").fill_null(0).to_numpy(zero_copy_only=False)
    sizes = np.zeros(ev.num_rows, dtype=np.int64)
    blocks = []
    for name in trace.event_names:
        t = trace.table(name)
        rows = t.column("row").to_numpy()
        fmt = template.formats[name]
        # A field named like a key column (sched_waking's pid) is that column: the field wins, as in the reader.
        cols = {f.name: t.column(f.name) for f in fmt.own_fields if f.name in t.column_names}
        blocks.append((rows, encode_payloads(fmt, rows.size, cols, pid_all[rows], flags_all[rows], pc_all[rows])))
        sizes[rows] = payload_size(fmt)
    return blocks, sizes


def encode_trace(trace: Trace, template: Template, page_size: int = 4096) -> tuple[list[np.ndarray],
                                                                                   list[np.ndarray]]:
    """Per-CPU pages and timestamps of a Trace, payloads laid out by the template's formats."""
    ev = trace.events
    n = ev.num_rows
    blocks, sizes = payload_blocks(trace, template)
    cpu = ev.column("cpu").to_numpy()
    ts = ev.column("ts").to_numpy()
    n_cpus = int(max(trace.meta.cpus or 0, (int(cpu.max()) + 1) if n else 1))
    # Lay the payloads out CPU by CPU in time order, so each CPU's stream is one contiguous slice.
    # Payloads are whole 32-bit words: scatter words, not bytes.
    order = np.argsort(cpu, kind="stable")
    bounds = np.searchsorted(cpu[order], np.arange(n_cpus + 1))
    words = sizes // 4
    pos = np.empty(n, dtype=np.int64)
    pos[order] = np.concatenate([[0], np.cumsum(words[order])])[:-1]
    flat = np.zeros(int(words.sum()), dtype=np.uint32)
    for rows, block in blocks:
        w = block.shape[1] // 4
        flat[(pos[rows][:, None] + np.arange(w)[None, :]).reshape(-1)] = \
            np.ascontiguousarray(block).view(np.uint32).reshape(-1)
    stream = flat.view(np.uint8)
    pages, stamps = [], []
    for c in range(n_cpus):
        rows = order[bounds[c]: bounds[c + 1]]
        lo = int(pos[rows[0]]) * 4 if rows.size else 0
        hi = lo + int(sizes[rows].sum())
        pages.append(encode_pages(ts[rows], stream[lo:hi], sizes[rows], page_size))
        stamps.append(ts[rows])
    return pages, stamps


def write_trace(trace: Trace, path: str | os.PathLike, *, template: str | Template | None = None,
                version: int = 7, compression: str = "none", clock: str | None = None,
                page_size: int = 4096) -> None:
    """Write a Trace (the reader's model) as a trace.dat that trace-cmd and exitreplay read back.

    The event layouts are the template's (default: the one the trace was generated for, else
    linux-6.18); every event type of the trace must have a format there.
    """
    tpl = template if isinstance(template, Template) else load_template(
        template or trace.meta.extra.get("template") or DEFAULT_TEMPLATE)
    pages, stamps = encode_trace(trace, tpl, page_size)
    cmd = _cmdlines(trace.events.column("pid").to_numpy(), trace.events.column("comm").combine_chunks())
    write_tracedat(path, pages, tpl, version=version, compression=compression, cmdlines=cmd,
                   clock=clock or trace.meta.clock or "local", page_size=page_size, cpu_ts=stamps,
                   uname=trace.meta.uname)


__all__ = ["encode_trace", "payload_blocks", "write_trace", "write_tracedat"]
