"""trace.dat writer: version 6 (flyrecord) and 7 (sections and options; uncompressed, zstd or zlib).

Layouts from trace-cmd's `trace-cmd.dat.v6(5)` and `trace-cmd.dat.v7(5)` man pages, in the order
trace-cmd 3.1.6 itself writes them (compare `trace-cmd dump --sections` of a real file):

v6: header_page/header_event, ftrace formats, event formats, kallsyms, printk, cmdlines, CPU count,
    "options  " (TRACECLOCK, UNAME, VERSION, TRACEID, CPUSTAT per CPU, CPUCOUNT), "flyrecord"
    (offset and size per CPU, then the clock as "[local]"), page-aligned CPU data.
v7: sections headers(16), ftrace events(17), events format(18), kallsyms(19), printk(20),
    command lines(21), an options section pointing at them, the buffer's flyrecord section (3)
    with page-aligned CPU data (compressed: per CPU a chunk count and chunks of 10 pages, each
    compressed size, uncompressed size, data), a second options section with the BUFFER option,
    and the strings section (15) naming every section. trace-cmd finds the strings section by
    walking the sections in file order, so the sections follow one another without gaps.

The file is written in one pass with seeks back to patch offsets. A trace given as time windows
(`write_windows`, `TraceDatWriter`) is encoded window by window into one spool per CPU first
(cpudata.py), so memory is bounded by a window; the bytes are those of the whole trace written
at once (`write_trace`).
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import itertools
import os
import struct
from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np

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
from .cpudata import COMPRESSIONS, ArrayCpu, Codec, CpuData, SpooledCpu, codec
from .records import cmdlines, encode_records, encode_trace, task_names
from .templates import DEFAULT_TEMPLATE, Template, load_template

WRITER_VERSION = "exitreplay synth"
# The clocks a 6.x kernel offers in trace_clock; the one in use is bracketed.
CLOCKS = "local global counter uptime perf mono mono_raw boot tai x86-tsc"


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


def _cpustat(cpu: int, d: CpuData) -> bytes:
    """The per_cpu/cpuN/stats text trace-cmd saves (nothing lost: overrun and dropped are 0)."""
    first, last = d.first_ts, d.last_ts
    return (f"CPU: {cpu}\nentries: 0\noverrun: 0\ncommit overrun: 0\nbytes: 0\n"
            f"oldest event ts: {first // 10**9:5d}.{first % 10**9 // 1000:06d}\n"
            f"now ts: {last // 10**9:5d}.{last % 10**9 // 1000:06d}\n"
            f"dropped events: 0\nread events: {d.count}\n").encode() + b"\0"


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


def _check(version: int, compression: str) -> None:
    if version not in (6, 7):
        raise UsageError(f"trace.dat version {version} cannot be written (6 or 7)")
    if compression not in COMPRESSIONS:
        raise UsageError(f"compression must be none, zstd or zlib, not {compression!r}")
    if version == 6 and compression != "none":
        raise UsageError(f"version 6 files are not compressed (use --version 7 for {compression})")


def write_tracedat(path: str | os.PathLike, cpu_pages: Sequence[np.ndarray], template: Template, *,
                   version: int = 7, compression: str = "none", cmdlines: bytes = b"", clock: str = "local",
                   uname: str | None = None, page_size: int = 4096,
                   cpu_ts: Sequence[np.ndarray] | None = None, cpu_stats: Sequence[bytes] | None = None,
                   writer: str = WRITER_VERSION) -> None:
    """Write encoded per-CPU pages (index = CPU) with the template's sections as a trace.dat.

    The pages may be memory-mapped files: they are read a bounded piece at a time.
    cpu_stats: each CPU's CPUSTAT text as recorded (default: made from cpu_ts, each CPU's event
    timestamps, nothing lost; without either they say no events); writer: the VERSION option
    (who wrote the file).
    """
    _check(version, compression)
    comp = codec(compression)
    cpus = [ArrayCpu(d, comp, page_size, cpu_ts[c] if cpu_ts is not None else None)
            for c, d in enumerate(cpu_pages)]
    _assemble(path, cpus, template, version, comp, cmdlines, clock, uname, page_size, cpu_stats, writer)


def _assemble(path, cpus: list[CpuData], template: Template, version: int, comp: Codec | None, cmdlines: bytes,
              clock: str, uname: str | None, page_size: int, cpu_stats: Sequence[bytes] | None = None,
              writer: str = WRITER_VERSION) -> None:
    """The file, written to PATH.part and renamed once complete."""
    uname = uname or template.info.get("uname") or "Linux exitreplay-synth x86_64"
    stats = list(cpu_stats) if cpu_stats is not None else [_cpustat(c, d) for c, d in enumerate(cpus)]
    facts = _Facts(clock, uname, _trace_id(cpus), stats, writer)
    tmp = f"{os.fspath(path)}.part"
    out = _Out(tmp)
    try:
        out.write(MAGIC + f"{version}\0".encode() + bytes([0, 8]) + struct.pack("<I", page_size))
        if version == 6:
            _write_v6(out, cpus, template, cmdlines, page_size, facts)
        else:
            _write_v7(out, cpus, template, cmdlines, page_size, facts, comp)
        out.close()
        os.replace(tmp, path)
    except BaseException:
        out.close()
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _trace_id(cpus: list[CpuData]) -> bytes:
    """Stable for the same content, as a session id would not be."""
    return hashlib.sha256(b"".join(c.digest for c in cpus)).digest()[:8]


@dataclasses.dataclass
class _Facts:
    """What the options say about the file."""

    clock: str
    uname: str
    trace_id: bytes
    stats: list[bytes]  # CPUSTAT text per CPU
    writer: str  # the VERSION option

    def options(self) -> bytes:
        opts = _opt(OPT_TRACECLOCK, _clock_option(self.clock)) + _opt(OPT_UNAME, self.uname.encode() + b"\0")
        opts += _opt(OPT_VERSION, self.writer.encode() + b"\0") + _opt(OPT_TRACEID, self.trace_id)
        return opts + b"".join(_opt(OPT_CPUSTAT, s) for s in self.stats)


def _write_v6(out: _Out, cpus: list[CpuData], template, cmdlines, page_size, facts: _Facts) -> None:
    clock = facts.clock
    n_cpus = len(cpus)
    out.write(_header_info(template))
    out.write(_ftrace(template))
    out.write(_events(template))
    out.write(struct.pack("<I", 0))  # kallsyms: none (nothing we write has function addresses)
    out.write(struct.pack("<I", 0))  # printk formats: none
    out.write(struct.pack("<Q", len(cmdlines)) + cmdlines)
    out.write(struct.pack("<I", n_cpus))
    out.write(b"options  \0")
    out.write(facts.options() + _opt(OPT_CPUCOUNT, struct.pack("<I", n_cpus)))
    out.write(struct.pack("<H", 0))
    out.write(b"flyrecord\0")
    table = out.tell()
    out.write(b"\0" * 16 * n_cpus)
    clock_text = f"[{clock}]".encode()
    out.write(struct.pack("<Q", len(clock_text)) + clock_text)
    for cpu, d in enumerate(cpus):
        out.pad_to(page_size)
        at = out.tell()
        d.copy_to(out.fh)
        out.patch(table + 16 * cpu, struct.pack("<QQ", at, out.tell() - at))


def _write_v7(out: _Out, cpus: list[CpuData], template, cmdlines, page_size, facts: _Facts,
              comp: Codec | None) -> None:
    clock = facts.clock
    n_cpus = len(cpus)
    if comp is not None:
        out.write(comp.name.encode() + b"\0" + comp.version.encode() + b"\0")
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
            payload = comp.block(payload)
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
    opts += facts.options()
    opts += _opt(OPT_CMDLINES, struct.pack("<Q", at[OPT_CMDLINES]))
    opts += _opt(OPT_CPUCOUNT, struct.pack("<I", n_cpus))
    options1 = out.tell()
    done1 = options1 + 16 + len(opts) + 6  # where the DONE option's "next section" offset lands
    opts += _opt(0, b"\0" * 8)
    out.write(struct.pack("<HHIQ", 0, 0, string_id("options"), len(opts)) + opts)

    # The buffer's data: a section header, padding to a page, then each CPU's data page-aligned.
    data_sec = out.tell()
    out.write(struct.pack("<HHIQ", OPT_BUFFER, 1 if comp else 0, string_id("buffer flyrecord "), 0))
    placed = []
    for cpu, d in enumerate(cpus):
        out.pad_to(page_size)
        start = out.tell()
        d.copy_to(out.fh)
        placed.append((cpu, start, out.tell() - start))
    end = out.tell()
    out.patch(data_sec + 8, struct.pack("<Q", end - data_sec - 16))

    buf = struct.pack("<Q", data_sec) + b"\0" + clock.encode() + b"\0" + struct.pack("<II", page_size, n_cpus)
    buf += b"".join(struct.pack("<IQQ", c, o, s) for c, o, s in placed)
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
        payload = comp.block(payload)
        flags = 1
    out.write(struct.pack("<HHIQ", OPT_STRINGS, flags, sid, len(payload)) + payload)


# -- Traces (the reader's model), whole or in windows ------------------------------------------

@dataclasses.dataclass
class Written:
    """What a trace.dat written from Traces holds."""

    events: int = 0
    event_counts: Counter = dataclasses.field(default_factory=Counter)
    cpus: int = 0


class TraceDatWriter:
    """A trace.dat written from consecutive time windows of one trace (`add`, then `close`), in
    memory bounded by a window; the same bytes as the whole trace written at once.

    Use as a context manager: leaving it on an error removes everything it wrote.
    """

    def __init__(self, path: str | os.PathLike, template: Template, *, version: int = 7, compression: str = "none",
                 clock: str = "local", uname: str | None = None, page_size: int = 4096):
        _check(version, compression)
        self.path, self.template, self.version = path, template, version
        self.comp = codec(compression)
        self.clock, self.uname, self.page_size = clock, uname, page_size
        self.dir = os.path.dirname(os.path.abspath(os.fspath(path)))
        self.cpus: list[SpooledCpu] = []
        self.names: dict[int, str] = {}
        self.written = Written()

    def add(self, trace: Trace) -> None:
        """The next window (its events later than the previous window's)."""
        recs = encode_records(trace, self.template)
        while len(self.cpus) < len(recs):
            self.cpus.append(SpooledCpu(self.dir, self.comp, self.page_size))
        for cpu, r in zip(self.cpus, recs):
            cpu.add(r)
        for pid, comm in task_names(trace).items():
            self.names.setdefault(pid, comm)
        self.written.events += len(trace)
        self.written.event_counts.update(trace.meta.event_counts)

    def close(self) -> Written:
        """Assemble the file from the spools."""
        for c in self.cpus:
            c.finish()
        _assemble(self.path, self.cpus, self.template, self.version, self.comp, cmdlines(self.names), self.clock,
                  self.uname, self.page_size)
        self.written.cpus = len(self.cpus)
        self._discard()
        return self.written

    def _discard(self) -> None:
        for c in self.cpus:
            c.close()
        self.cpus = []

    def __enter__(self) -> TraceDatWriter:
        return self

    def __exit__(self, *exc) -> None:
        self._discard()


def write_windows(windows: Iterable[Trace], path: str | os.PathLike, *, template: str | Template | None = None,
                  version: int = 7, compression: str = "none", clock: str | None = None,
                  page_size: int = 4096) -> Written:
    """Write consecutive time windows of one trace (`generate_windows`) as a trace.dat.

    template, clock, uname and the CPU count default to the first window's; see `write_trace`.
    """
    _check(version, compression)
    it = iter(windows)
    first = next(it, None)
    if first is None:
        raise UsageError("no events to write")
    tpl = template if isinstance(template, Template) else load_template(
        template or first.meta.extra.get("template") or DEFAULT_TEMPLATE)
    with TraceDatWriter(path, tpl, version=version, compression=compression,
                        clock=clock or first.meta.clock or "local", uname=first.meta.uname,
                        page_size=page_size) as w:
        for tr in itertools.chain([first], it):
            w.add(tr)
        return w.close()


def write_trace(trace: Trace, path: str | os.PathLike, *, template: str | Template | None = None,
                version: int = 7, compression: str = "none", clock: str | None = None,
                page_size: int = 4096) -> None:
    """Write a Trace (the reader's model) as a trace.dat that trace-cmd and exitreplay read back.

    The event layouts are the template's (default: the one the trace was generated for, else
    linux-6.18); every event type of the trace must have a format there.
    """
    write_windows([trace], path, template=template, version=version, compression=compression, clock=clock,
                  page_size=page_size)


__all__ = ["TraceDatWriter", "Written", "encode_trace", "write_trace", "write_tracedat", "write_windows"]
