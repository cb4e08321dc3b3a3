"""The trace.dat container: headers, v6 sections, v7 section table and options, compression.

`TraceDatFile` reads every section lazily from a memory map. It gives the raw texts (formats,
cmdlines, kallsyms...) so the synth writer can reuse a real file's sections as a template, and
per-CPU ring-buffer data (decompressed if needed) for the page decoder.

Layouts: trace-cmd's `trace-cmd.dat.v6(5)` and `trace-cmd.dat.v7(5)` documents.
"""
from __future__ import annotations

import dataclasses
import io
import mmap
import os
import re
import struct
import weakref
import zlib
from functools import cached_property

import numpy as np

from ..errors import TraceError
from . import limits
from .eventformat import (
    HeaderEvent,
    HeaderPage,
    parse_header_event,
    parse_header_page,
)
from .formatindex import FormatIndex

MAGIC = b"\x17\x08\x44tracing"
SUPPORTED_VERSIONS = (6, 7)

# v7 option ids (trace-cmd lib/trace-cmd/include/private/trace-cmd-private.h).
OPT_DONE = 0
OPT_DATE = 1
OPT_CPUSTAT = 2
OPT_BUFFER = 3
OPT_TRACECLOCK = 4
OPT_UNAME = 5
OPT_HOOK = 6
OPT_OFFSET = 7
OPT_CPUCOUNT = 8
OPT_VERSION = 9
OPT_PROCMAPS = 10
OPT_TRACEID = 11
OPT_TIME_SHIFT = 12
OPT_GUEST = 13
OPT_TSC2NSEC = 14
OPT_STRINGS = 15
OPT_HEADER_INFO = 16
OPT_FTRACE_EVENTS = 17
OPT_EVENT_FORMATS = 18
OPT_KALLSYMS = 19
OPT_PRINTK = 20
OPT_CMDLINES = 21
OPT_BUFFER_TEXT = 22

OPTION_NAMES = {
    OPT_DONE: "done", OPT_DATE: "date", OPT_CPUSTAT: "cpustat", OPT_BUFFER: "buffer",
    OPT_TRACECLOCK: "traceclock", OPT_UNAME: "uname", OPT_HOOK: "hook", OPT_OFFSET: "offset",
    OPT_CPUCOUNT: "cpucount", OPT_VERSION: "version", OPT_PROCMAPS: "procmaps", OPT_TRACEID: "traceid",
    OPT_TIME_SHIFT: "time_shift", OPT_GUEST: "guest", OPT_TSC2NSEC: "tsc2nsec", OPT_STRINGS: "strings",
    OPT_HEADER_INFO: "header_info", OPT_FTRACE_EVENTS: "ftrace_events", OPT_EVENT_FORMATS: "event_formats",
    OPT_KALLSYMS: "kallsyms", OPT_PRINTK: "printk", OPT_CMDLINES: "cmdlines", OPT_BUFFER_TEXT: "buffer_text",
}
SECTION_FLAG_COMPRESSED = 1


# Options that give a section's file offset: (key in `sections`, what the section holds).
_SECTION_OPTIONS = {
    OPT_HEADER_INFO: ("header_page", "header_page section"), OPT_FTRACE_EVENTS: ("ftrace_events", "ftrace formats"),
    OPT_EVENT_FORMATS: ("event_formats", "event formats"), OPT_KALLSYMS: ("kallsyms", "kallsyms"),
    OPT_PRINTK: ("printk", "printk formats"), OPT_CMDLINES: ("cmdlines", "cmdlines"),
}


class _Truncated(Exception):
    pass


def _page_size_ok(size: int) -> bool:
    return limits.MIN_PAGE_SIZE <= size <= limits.MAX_PAGE_SIZE and size % 4 == 0


def _inflate(kind: str, blob, limit: int, partial: bool) -> bytes:
    """Decompress at most `limit` bytes (never what a forged header claims); a cut blob (partial)
    gives the bytes its complete blocks hold."""
    if kind == "zlib":
        d = zlib.decompressobj()
        try:
            return d.decompress(bytes(blob), limit + 1)
        except zlib.error:
            if partial:
                return b""
            raise
    import zstandard

    dctx = zstandard.ZstdDecompressor()
    if not partial:  # one call, no copies; anything unusual is left to the stream below
        try:
            out = dctx.decompress(blob, max_output_size=limit + 1)
        except zstandard.ZstdError:
            out = None
        if out is not None and len(out) == limit:
            return out
    reader = dctx.stream_reader(io.BytesIO(blob))
    parts, got = [], 0
    while got <= limit:
        try:
            piece = reader.read(min(1 << 20, limit + 1 - got))
        except zstandard.ZstdError:
            if partial:
                break
            raise
        if not piece:
            break
        parts.append(piece)
        got += len(piece)
    return b"".join(parts)


@dataclasses.dataclass
class Chunk:
    """One compressed chunk of a CPU's data: where it is, its sizes, and (for a chunk cut by the
    file's end) the bytes it still gives."""

    pos: int
    csize: int
    usize: int
    head: bytes | None = None


@dataclasses.dataclass
class CpuData:
    cpu: int
    offset: int  # file offset of this CPU's data (compressed chunks for compressed files)
    size: int  # bytes in the file


@dataclasses.dataclass
class Buffer:
    """One ring buffer (the top one has name ""; instances have their names)."""

    name: str
    clock: str | None
    page_size: int
    cpus: list[CpuData]
    latency: bool = False
    section_offset: int | None = None


# "pid comm" lines of the saved cmdlines (a pid is at most 11 digits; see _cmdlines_by_line)
_CMDLINE = re.compile(r"^\t*([0-9]{1,11})\t*(?: ([^\n]*))?$", re.M)
_CONTENT_LINE = re.compile(r"^[ \t]*[^ \t\n]", re.M)


def _cmdlines_by_line(text: str) -> tuple[dict[int, str], int]:
    """pid -> comm of every "pid comm" line (comm: after the first space), and the other
    non-blank lines."""
    out: dict[int, str] = {}
    bad = 0
    for line in text.splitlines():
        pid, _, comm = line.partition(" ")
        pid = pid.strip()
        if pid.isascii() and pid.isdigit() and len(pid) < 12 and int(pid) <= limits.MAX_PID:
            out[int(pid)] = comm
        elif line.strip():
            bad += 1
    return out, bad


def _cmdlines_plain(text: str) -> tuple[dict[int, str], int] | None:
    """_cmdlines_by_line's answer by two regex passes, for a text whose only line break and only
    whitespace besides the space are \\n and \\t (else None)."""
    if not text.isascii() or any(ch in text for ch in "\r\x0b\x0c\x1c\x1d\x1e\x1f"):
        return None
    pairs = _CMDLINE.findall(text)
    out = {int(p): c for p, c in pairs}  # a pid given twice: the later line wins, as line by line
    big = [p for p, _ in pairs if int(p) > limits.MAX_PID] if max(out, default=0) > limits.MAX_PID else []
    for p in big:
        out.pop(int(p), None)
    lines = text.count("\n") + (not text.endswith("\n"))
    if len(pairs) == lines:  # every line a "pid comm" line
        return out, len(big)
    # A line is bad when it holds something but is not a valid "pid comm" line.
    return out, len(_CONTENT_LINE.findall(text)) - len(pairs) + len(big)


class _Cursor:
    def __init__(self, buf, pos: int, endian: str, path: str, what: str = "header"):
        self.buf = buf
        self.pos = pos
        self.e = "<" if endian == "little" else ">"
        self.path = path
        self.what = what

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.buf):
            raise _Truncated(self.what)
        out = bytes(self.buf[self.pos: self.pos + n])
        self.pos += n
        return out

    def u(self, n: int) -> int:
        return int.from_bytes(self.take(n), "little" if self.e == "<" else "big")

    def skip(self, n: int) -> int:
        """Step over n bytes (checked like take); where they began."""
        if n < 0 or self.pos + n > len(self.buf):
            raise _Truncated(self.what)
        self.pos += n
        return self.pos - n

    def cstr(self) -> str:
        end = self.buf.find(b"\0", self.pos)
        if end < 0:
            raise _Truncated(self.what)
        s = bytes(self.buf[self.pos: end]).decode("utf-8", "replace")
        self.pos = end + 1
        return s


class TraceDatFile:
    """A trace.dat file (version 6 or 7), sections read on demand.

    Attributes: `version`, `endian`, `long_size`, `page_size`, `compression` ("none", "zstd",
    "zlib"), `header_page_text`, `header_event_text`, `ftrace_formats` (list of texts),
    `event_format_texts` ({system: [text, ...]}), `formats` ({id: EventFormat}), `kallsyms`,
    `printk`, `cmdlines` (raw bytes), `options` (list of (id, raw bytes)), `cpus`, `buffers`
    (top buffer first, then instances), `sections` ({name: file offset}); `cpu_data(cpu)` gives one
    CPU's ring-buffer pages as a uint8 array.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        self._fh = self._mm = None
        try:
            self._fh = open(self.path, "rb")  # noqa: SIM115 (closed by close(), on errors and when freed)
        except OSError as exc:
            raise TraceError(self.path, f"cannot open: {exc.strerror}") from None
        try:
            self._open()
        except BaseException:
            self.close()
            raise

    def _open(self) -> None:
        size = os.fstat(self._fh.fileno()).st_size
        if size == 0:
            raise TraceError(self.path, "empty file")
        self._mm = mmap.mmap(self._fh.fileno(), 0, access=mmap.ACCESS_READ)
        self.file_size = size
        self.options: list[tuple[int, bytes]] = []
        self.sections: dict[str, int] = {}
        self.buffers: list[Buffer] = []
        self.warnings: list[str] = []
        self.cpus = 0
        self.compression = "none"
        self.compression_version = ""
        self.header_page_text = b""
        self.header_event_text = b""
        self.ftrace_formats: list[bytes] = []
        self.event_format_texts: dict[str, list[bytes]] = {}
        self.kallsyms = self.printk = b""
        self.cmdlines = b""
        self.recovered = False  # v7 data located without its BUFFER option (a cut file)
        try:
            self._parse()
            self._check_buffers()
        except _Truncated as exc:
            raise TraceError(self.path, f"truncated file: it ends inside the {exc.args[0]}") from None
        except (struct.error, UnicodeDecodeError, ValueError, zlib.error) as exc:
            raise TraceError(self.path, f"corrupt trace.dat header: {exc}") from None

    def __enter__(self) -> TraceDatFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()

    # -- header -------------------------------------------------------------------------------
    def _parse(self) -> None:
        mm = self._mm
        if mm[:10] != MAGIC:
            raise TraceError(self.path, "not a trace.dat file (bad magic)")
        end = mm.find(b"\0", 10, 64)
        if end < 0:
            raise _Truncated("file header")
        vtext = mm[10:end].decode("ascii", "replace")
        if not vtext.isdigit():
            raise TraceError(self.path, f"unknown trace.dat version {vtext!r}")
        self.version = int(vtext)
        if self.version not in SUPPORTED_VERSIONS:
            raise TraceError(self.path, f"unsupported trace.dat version {self.version} (supported: 6, 7)")
        pos = end + 1
        if pos + 6 > len(mm):
            raise _Truncated("file header")
        self.endian = "big" if mm[pos] else "little"
        self.long_size = mm[pos + 1]
        if self.long_size not in (4, 8):
            raise TraceError(self.path, f"corrupt header: long size {self.long_size}")
        c = _Cursor(mm, pos + 2, self.endian, self.path, "file header")
        self.page_size = c.u(4)
        if not _page_size_ok(self.page_size):
            raise TraceError(self.path, f"corrupt header: page size {self.page_size}")
        if self.version >= 7:
            self.compression = c.cstr()
            self.compression_version = c.cstr()
            if self.compression not in ("none", "zstd", "zlib"):
                raise TraceError(self.path, f"unsupported compression {self.compression!r}")
            first_opt = c.u(8)
            self._parse_v7(first_opt)
        else:
            self._parse_v6(c)

    def _parse_v6(self, c: _Cursor) -> None:
        c.what = "header_page section"
        self.sections["header_page"] = c.pos
        self._read_header_info(c)
        c.what = "ftrace formats"
        self.sections["ftrace_events"] = c.pos
        self._read_ftrace_formats(c)
        c.what = "event formats"
        self.sections["event_formats"] = c.pos
        self._read_event_formats(c)
        c.what = "kallsyms"
        self.sections["kallsyms"] = c.pos
        self.kallsyms = self._later(c, c.u(4))
        c.what = "printk formats"
        self.sections["printk"] = c.pos
        self.printk = self._later(c, c.u(4))
        c.what = "cmdlines"
        self.sections["cmdlines"] = c.pos
        self.cmdlines = c.take(c.u(8))
        c.what = "CPU count"
        self.cpus = c.u(4)
        if self.cpus > limits.MAX_CPUS:
            raise TraceError(self.path, f"corrupt header: {self.cpus} CPUs (at most {limits.MAX_CPUS})")
        c.what = "options"
        label = c.take(10)
        if label.startswith(b"options"):
            self.sections["options"] = c.pos
            while True:
                oid = c.u(2)
                if oid == OPT_DONE:
                    break
                osz = c.u(4)
                self.options.append((oid, c.take(osz)))
            label = c.take(10)
        c.what = "CPU data table"
        top = Buffer("", None, self.page_size, [])
        if label.startswith(b"latency"):
            top.latency = True
            self.buffers.append(top)
            return
        if not label.startswith(b"flyrecord"):
            raise TraceError(self.path, f"corrupt header: expected 'flyrecord' or 'latency', got {label!r}")
        self.sections["flyrecord"] = c.pos
        for cpu in range(self.cpus):
            off, sz = c.u(8), c.u(8)
            top.cpus.append(CpuData(cpu, off, sz))
        self.buffers.append(top)
        for oid, raw in self.options:
            if oid == OPT_BUFFER:  # v6 instance: 8-byte offset of its flyrecord table + name
                bc = _Cursor(raw, 0, self.endian, self.path, "buffer option")
                off = bc.u(8)
                name = bc.cstr()
                if off + 16 * self.cpus > self.file_size:
                    raise TraceError(self.path, f"corrupt BUFFER option: the CPU table of buffer {name!r} lies "
                                                "beyond the end of the file")
                inst = Buffer(name, None, self.page_size, [])
                tc = _Cursor(self._mm, off, self.endian, self.path, f"buffer {name} CPU table")
                for cpu in range(self.cpus):
                    inst.cpus.append(CpuData(cpu, tc.u(8), tc.u(8)))
                self.buffers.append(inst)

    def _read_header_info(self, c: _Cursor) -> None:
        label = c.take(12)
        if label != b"header_page\0":
            raise TraceError(self.path, f"corrupt header: expected 'header_page', got {label!r}")
        self.header_page_text = c.take(c.u(8))
        label = c.take(13)
        if label != b"header_event\0":
            raise TraceError(self.path, f"corrupt header: expected 'header_event', got {label!r}")
        self.header_event_text = c.take(c.u(8))

    def _read_ftrace_formats(self, c: _Cursor) -> None:
        n = c.u(4)
        self.ftrace_formats = [c.take(c.u(8)) for _ in range(n)]

    def _read_event_formats(self, c: _Cursor) -> None:
        nsys = c.u(4)
        buf, end = c.buf, len(c.buf)
        size_at = struct.Struct(c.e + "Q").unpack_from
        for _ in range(nsys):
            system = c.cstr()
            n = c.u(4)
            texts = self.event_format_texts.setdefault(system, [])
            pos = c.pos
            for _ in range(n):  # thousands of texts: the cursor's checks inlined
                if pos + 8 > end:
                    raise _Truncated(c.what)
                start = pos + 8
                pos = start + size_at(buf, pos)[0]
                if pos > end:
                    raise _Truncated(c.what)
                texts.append(bytes(buf[start: pos]))
            c.pos = pos

    # -- v7 -----------------------------------------------------------------------------------
    def _section(self, offset: int, expect_id: int | None, what: str) -> tuple[int, int, bytes]:
        """Read a v7 section at `offset`: (id, flags, payload decompressed)."""
        c = _Cursor(self._mm, offset, self.endian, self.path, what)
        sid, flags, _desc, size = c.u(2), c.u(2), c.u(4), c.u(8)
        if expect_id is not None and sid != expect_id:
            raise TraceError(self.path, f"corrupt {what}: section id {sid} where {expect_id} was expected")
        raw = c.take(size)
        if flags & SECTION_FLAG_COMPRESSED:
            raw = self._decompress_block(raw, what)
        return sid, flags, raw

    def _check_section(self, offset: int, expect_id: int, what: str) -> None:
        """What `_section` checks before it reads the payload: the id, the size, the expansion."""
        c = _Cursor(self._mm, offset, self.endian, self.path, what)
        sid, flags, _desc, size = c.u(2), c.u(2), c.u(4), c.u(8)
        if sid != expect_id:
            raise TraceError(self.path, f"corrupt {what}: section id {sid} where {expect_id} was expected")
        start = c.skip(size)
        if flags & SECTION_FLAG_COMPRESSED:
            b = _Cursor(self._mm[start: start + min(size, 8)], 0, self.endian, self.path, what)
            self._check_expansion(b.u(4), b.u(4), what)

    def _sized(self, payload: bytes, what: str) -> bytes:
        """A section's text after its 4-byte length."""
        try:
            c = _Cursor(payload, 0, self.endian, self.path, what)
            return c.take(c.u(4))
        except _Truncated:
            raise TraceError(self.path, f"truncated file: it ends inside the {what}") from None

    def _later(self, c: _Cursor, n: int):
        """Step over n bytes of the map; a function that gives them when asked for."""
        start = c.skip(n)
        mm = self._mm  # not self: a bound reference would make a cycle that keeps the file open
        return lambda: bytes(mm[start: start + n])

    def _blob(self, name: str) -> bytes:
        v = self._blobs.get(name, b"")
        if callable(v):
            if self._mm is None or self._mm.closed:
                raise TraceError(self.path, f"the file is closed: its {name} section was not read before")
            v = self._blobs[name] = v()
        return v

    def _set_blob(self, name: str, value) -> None:
        self.__dict__.setdefault("_blobs", {})[name] = value

    kallsyms = property(lambda self: self._blob("kallsyms"), lambda self, v: self._set_blob("kallsyms", v),
                        doc="The kallsyms section (read when first asked for).")
    printk = property(lambda self: self._blob("printk"), lambda self, v: self._set_blob("printk", v),
                      doc="The printk formats section (read when first asked for).")

    def _decompress_block(self, raw: bytes, what: str) -> bytes:
        c = _Cursor(raw, 0, self.endian, self.path, what)
        csize, usize = c.u(4), c.u(4)
        self._check_expansion(csize, usize, what)
        return self._decompress(c.take(csize), usize, what)

    def _check_expansion(self, csize: int, usize: int, what: str) -> None:
        if usize > limits.MAX_EXPANSION * csize + self.page_size:
            raise TraceError(self.path, f"corrupt compressed {what}: {usize} bytes said to come from {csize} "
                                        f"compressed (more than {limits.MAX_EXPANSION}:1, a corrupt size)")

    def _decompress(self, blob, usize: int, what: str, partial: bool = False) -> bytes:
        """`blob` decompressed, at most `usize` bytes; `partial`: what a cut blob still gives."""
        if self.compression not in ("zstd", "zlib"):
            raise TraceError(self.path, f"{what} is compressed but the file names no compression")
        try:
            out = _inflate(self.compression, blob, usize, partial)
        except Exception as exc:  # zstd.ZstdError, zlib.error
            raise TraceError(self.path, f"corrupt compressed {what}: {exc}") from None
        if len(out) != usize and not (partial and len(out) < usize):
            raise TraceError(self.path, f"corrupt compressed {what}: {len(out)} bytes, expected {usize}")
        return out

    def _parse_v7(self, first_opt: int) -> None:
        buffers_raw: list[bytes] = []
        lost = self._read_options(first_opt, buffers_raw)
        for oid, raw in self.options:
            if oid in _SECTION_OPTIONS:
                self._read_section_option(oid, raw)
            elif oid == OPT_CPUCOUNT:
                self.cpus = self._count(raw, "CPUCOUNT option")
        if not self.header_page_text:
            raise TraceError(self.path, "corrupt trace.dat: no header_page section")
        self.buffers.extend(self._buffer_option(raw) for raw in buffers_raw)
        if not self.buffers:
            if lost is None:
                raise TraceError(self.path, "trace.dat has no data buffer (no BUFFER option)")
            from .tracedat_recover import locate_buffer

            self.buffers.append(locate_buffer(self, lost))
            self.recovered = True
        self.buffers.sort(key=lambda b: b.name != "")
        if not self.cpus:
            self.cpus = len(self.buffers[0].cpus)

    def _read_options(self, first: int, buffers_raw: list[bytes]) -> str | None:
        """Every options section, following the DONE links; what stopped the walk early if a later
        section is cut off (the first one must be whole)."""
        seen = set()
        nxt = first
        while nxt and nxt not in seen:
            seen.add(nxt)
            try:
                _sid, _flags, payload = self._section(nxt, 0, "options section")
            except (_Truncated, TraceError) as exc:
                if nxt == first:
                    raise
                return f"the options section at offset {nxt} is {'cut off' if isinstance(exc, _Truncated) else 'corrupt'}"
            self.sections.setdefault("options", nxt)
            c = _Cursor(payload, 0, self.endian, self.path, "options section")
            nxt = 0
            while c.pos < len(payload):
                oid, osz = c.u(2), c.u(4)
                raw = c.take(osz)
                if oid == OPT_DONE:
                    nxt = self._u64(raw) if len(raw) >= 8 else 0
                    break
                self.options.append((oid, raw))
                if oid == OPT_BUFFER:
                    buffers_raw.append(raw)
        return None

    def _read_section_option(self, oid: int, raw: bytes) -> None:
        name, what = _SECTION_OPTIONS[oid]
        if len(raw) != 8:
            raise TraceError(self.path, f"corrupt {OPTION_NAMES[oid]} option: {len(raw)} bytes where a file "
                                        "offset (8) was expected")
        off = self._u64(raw)
        if off >= self.file_size:
            raise TraceError(self.path, f"corrupt {OPTION_NAMES[oid]} option: the {what} would be at offset "
                                        f"{off}, beyond the end of the file ({self.file_size} bytes)")
        self.sections[name] = off
        if oid in (OPT_KALLSYMS, OPT_PRINTK):  # megabytes no reader of events needs: checked, kept for later
            self._check_section(off, oid, what)
            me = weakref.ref(self)  # not self: the file would stay open until a garbage collection
            setattr(self, name, lambda: me()._sized(me()._section(off, oid, what)[2], what))
            return
        _, _, payload = self._section(off, oid, what)
        c = _Cursor(payload, 0, self.endian, self.path, what)
        if oid == OPT_HEADER_INFO:
            self._read_header_info(c)
        elif oid == OPT_FTRACE_EVENTS:
            self._read_ftrace_formats(c)
        elif oid == OPT_EVENT_FORMATS:
            self._read_event_formats(c)
        else:
            self.cmdlines = c.take(c.u(8))

    def _buffer_option(self, raw: bytes) -> Buffer:
        c = _Cursor(raw, 0, self.endian, self.path, "BUFFER option")
        sec_off = c.u(8)
        name = c.cstr()
        clock = c.cstr()
        page_size = c.u(4)
        ncpu = c.u(4)
        if not _page_size_ok(page_size):
            raise TraceError(self.path, f"corrupt BUFFER option of buffer {name!r}: page size {page_size}")
        if ncpu * 20 > len(raw) - c.pos:
            raise TraceError(self.path, f"corrupt BUFFER option of buffer {name!r}: {ncpu} CPUs do not fit "
                                        f"its {len(raw)} bytes")
        cpus = [CpuData(c.u(4), c.u(8), c.u(8)) for _ in range(ncpu)]
        return Buffer(name, clock or None, page_size, cpus, section_offset=sec_off)

    def _count(self, raw: bytes, what: str) -> int:
        n = self._uint(raw)
        if len(raw) > 8 or n > limits.MAX_CPUS:
            raise TraceError(self.path, f"corrupt {what}: {n} CPUs (at most {limits.MAX_CPUS})")
        return n

    def _check_buffers(self) -> None:
        """CPU ids and page sizes every buffer must have before its pages are decoded."""
        hp = None
        for buf in self.buffers:
            ids = [cd.cpu for cd in buf.cpus]
            bad = [i for i in ids if i >= limits.MAX_CPUS]
            if bad or len(set(ids)) != len(ids):
                what = f"CPU id {bad[0]}" if bad else "a CPU listed twice"
                raise TraceError(self.path, f"corrupt CPU table of buffer {buf.name!r}: {what}")
            if buf.latency:
                continue
            hp = hp or self.header_page
            _ = self.header_event  # both headers are checked however little data follows
            if hp.data_offset + 4 > buf.page_size:
                raise TraceError(self.path, f"corrupt header_page: page data at offset {hp.data_offset} of a "
                                            f"{buf.page_size}-byte page")

    def _u64(self, raw: bytes) -> int:
        return int.from_bytes(raw[:8], "little" if self.endian == "little" else "big")

    def _uint(self, raw: bytes) -> int:
        return int.from_bytes(raw, "little" if self.endian == "little" else "big")

    # -- accessors ----------------------------------------------------------------------------
    @cached_property
    def header_page(self) -> HeaderPage:
        try:
            return parse_header_page(self.header_page_text)
        except ValueError as exc:
            raise TraceError(self.path, f"corrupt header_page: {exc}") from None

    @cached_property
    def header_event(self) -> HeaderEvent:
        try:
            return parse_header_event(self.header_event_text)
        except ValueError as exc:
            raise TraceError(self.path, str(exc)) from None

    @cached_property
    def formats(self) -> FormatIndex:
        """{id: EventFormat}, each parsed on first use (unreadable ones warn then and are absent)."""
        texts = [("ftrace", t) for t in self.ftrace_formats]
        texts += [(s, t) for s, ts in self.event_format_texts.items() for t in ts]
        page = max([self.page_size, *(b.page_size for b in self.buffers)])
        return FormatIndex(texts, page, self.warnings)

    def option_values(self, oid: int) -> list[bytes]:
        return [raw for i, raw in self.options if i == oid]

    def option_text(self, oid: int) -> str | None:
        vals = self.option_values(oid)
        return vals[0].rstrip(b"\0").decode("utf-8", "replace") if vals else None

    @cached_property
    def trace_clock(self) -> str | None:
        top = self.buffers[0]
        return top.clock or self.trace_clock_option()

    def trace_clock_option(self) -> str | None:
        text = self.option_text(OPT_TRACECLOCK)
        if text:  # "[local] global counter ...": the bracketed one is in use
            for word in text.split():
                if word.startswith("[") and word.endswith("]"):
                    return word[1:-1]
        return None

    def section_header(self, pos: int) -> tuple[int, int]:
        """(id, size) of the v7 section header at `pos`."""
        c = _Cursor(self._mm, pos, self.endian, self.path, "section header")
        sid, _flags, _desc, size = c.u(2), c.u(2), c.u(4), c.u(8)
        return sid, size

    def u32(self, at: int) -> int:
        return _Cursor(self._mm, at, self.endian, self.path, "CPU data").u(4)

    def page_stamps(self, at: int, end: int) -> np.ndarray:
        """The header time stamp of every page from `at` to `end` whose time stamp is there."""
        ps = self.page_size
        whole = (end - at - 8) // ps + 1 if end - at >= 8 else 0
        if whole <= 0:
            return np.zeros(0, np.uint64)
        dt = np.dtype("<u8" if self.endian == "little" else ">u8")
        return np.ndarray((whole,), dt, buffer=self._mm, offset=at, strides=(ps,)).astype(np.uint64)

    @cached_property
    def tsc2nsec(self) -> tuple[int, int, int] | None:
        """(multiplier, shift, offset) when the file asks for TSC -> ns conversion."""
        vals = self.option_values(OPT_TSC2NSEC)
        if not vals or len(vals[0]) < 16:
            return None
        e = "<" if self.endian == "little" else ">"
        mult, shift, offset = struct.unpack(e + "IIq", vals[0][:16])
        if mult == 0 or shift > 63:
            self.warnings.append(f"TSC2NSEC option ignored: multiplier {mult}, shift {shift} cannot convert "
                                 "a clock (timestamps stay raw counter values)")
            return None
        return mult, shift, offset

    @cached_property
    def time_offset(self) -> int:
        vals = self.option_values(OPT_OFFSET)
        if not vals:
            return 0
        raw = vals[0]
        text = raw.rstrip(b"\0")
        try:
            value = int(text.decode("ascii").strip(), 0)
        except (UnicodeDecodeError, ValueError):
            value = int.from_bytes(raw[:8], "little" if self.endian == "little" else "big", signed=True)
        if abs(value) > limits.MAX_TIME_OFFSET:
            self.warnings.append(f"OFFSET option ignored: {str(value)[:30]} ns is beyond any clock")
            return 0
        return value

    @cached_property
    def cmdline_map(self) -> dict[int, str]:
        text = self.cmdlines.decode("utf-8", "replace")
        fast = _cmdlines_plain(text)
        if fast is not None:
            out, bad = fast
        else:
            out, bad = _cmdlines_by_line(text)
        if bad:
            self.warnings.append(f"{bad} saved command lines without a valid pid skipped")
        return out

    def cpu_data(self, cpu_index: int, buffer: int = 0) -> tuple[np.ndarray, int, bool]:
        """One CPU's pages: (uint8 array, file offset of byte 0 or -1 if decompressed, truncated)."""
        cd = self.buffers[buffer].cpus[cpu_index]
        if cd.size == 0:
            return np.empty(0, dtype=np.uint8), cd.offset, False
        if self.compression == "none" or self.version < 7:
            avail = max(0, min(cd.size, self.file_size - cd.offset))
            arr = np.frombuffer(self._mm, dtype=np.uint8, count=avail, offset=min(cd.offset, self.file_size))
            return arr, cd.offset, avail < cd.size
        return self._decompress_cpu(cd), -1, False

    def _chunk_table(self, cd: CpuData) -> list[Chunk]:
        """Each compressed chunk of a CPU. Layout: chunk count, then per chunk compressed size,
        uncompressed size, data. A chunk the file's end cuts is decompressed as far as it goes."""
        what = f"CPU {cd.cpu} data"
        c = _Cursor(self._mm, cd.offset, self.endian, self.path, what)
        chunks: list[Chunk] = []
        try:
            count = c.u(4)
            for _ in range(count):
                csize, usize = c.u(4), c.u(4)
                if csize < 8:  # smaller than any zstd frame or zlib stream: each chunk costs a table entry
                    raise TraceError(self.path, f"corrupt compressed {what}: a chunk of {csize} bytes")
                self._check_expansion(csize, usize, what)
                if c.pos + csize > len(self._mm):
                    head = self._decompress(self._mm[c.pos:], usize, what, partial=True)
                    if head:
                        chunks.append(Chunk(c.pos, len(self._mm) - c.pos, len(head), head))
                    raise _Truncated(what)
                chunks.append(Chunk(c.pos, csize, usize))
                c.pos += csize
        except _Truncated:
            msg = f"{what}: compressed data truncated after {len(chunks)} chunks"
            if msg not in self.warnings:
                self.warnings.append(msg)
            self.truncated_cpus.add(cd.cpu)
        return chunks

    def _chunk_bytes(self, cd: CpuData, ch: Chunk) -> bytes:
        if ch.head is not None:
            return ch.head
        return self._decompress(self._mm[ch.pos: ch.pos + ch.csize], ch.usize, f"CPU {cd.cpu} data")

    def _decompress_cpu(self, cd: CpuData) -> np.ndarray:
        chunks = self._chunk_table(cd)
        out = np.empty(sum(ch.usize for ch in chunks), dtype=np.uint8)
        self._decompress_into(cd, chunks, out)
        return out

    def _decompress_into(self, cd: CpuData, chunks: list[Chunk], out: np.ndarray) -> None:
        at = 0
        for ch in chunks:
            out[at: at + ch.usize] = np.frombuffer(self._chunk_bytes(cd, ch), dtype=np.uint8)
            at += ch.usize

    def buffer_data(self, buffer: int = 0, pool=None) -> tuple[np.ndarray, list[tuple[int, int, bool]]]:
        """Every CPU's pages of one buffer in one array: (data, [(start, length, cut)] per CPU).

        Uncompressed files give the memory map itself (starts are file offsets, nothing copied);
        compressed ones are decompressed, CPUs in parallel on `pool`, into one allocation.
        """
        cpus = self.buffers[buffer].cpus
        if self.compression == "none" or self.version < 7:
            data = np.frombuffer(self._mm, dtype=np.uint8)
            spans = []
            for cd in cpus:
                avail = max(0, min(cd.size, self.file_size - cd.offset)) if cd.size else 0
                spans.append((min(cd.offset, self.file_size), avail, avail < cd.size))
            return data, spans
        tables = [self._chunk_table(cd) if cd.size else [] for cd in cpus]
        lengths = [sum(ch.usize for ch in t) for t in tables]
        starts = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        data = np.empty(int(starts[-1]), dtype=np.uint8)
        jobs = [(cd, t, data[int(starts[i]): int(starts[i + 1])]) for i, (cd, t) in enumerate(zip(cpus, tables))]
        if pool is None:
            for job in jobs:
                self._decompress_into(*job)
        else:
            list(pool.map(lambda job: self._decompress_into(*job), jobs))
        return data, [(int(starts[i]), lengths[i], False) for i in range(len(cpus))]

    def iter_cpu_data(self, cpu_index: int, buffer: int = 0, chunk_bytes: int = 4 << 20) -> CpuReader:
        """One CPU's pages in pieces of about `chunk_bytes`, read (not mapped) so memory stays bounded."""
        return CpuReader(self, self.buffers[buffer].cpus[cpu_index], self.buffers[buffer].page_size, chunk_bytes)

    @cached_property
    def truncated_cpus(self) -> set[int]:
        return set()

    def close(self) -> None:
        """Unmap and close the file (idempotent). Arrays still viewing the map keep it alive."""
        mm, self._mm = getattr(self, "_mm", None), None
        if mm is not None:
            try:
                mm.close()
            except BufferError:
                pass  # arrays still view the map; it is freed with them
        fh, self._fh = getattr(self, "_fh", None), None
        if fh is not None:
            fh.close()


class CpuReader:
    """Iterator over one CPU's ring-buffer data in whole-page pieces (a cut file may end mid-page).

    Uncompressed data is read with pread into fresh arrays rather than through the memory map, so
    pages already converted are not kept mapped; compressed chunks are decompressed one at a time.
    After iteration, `present` is the byte count read and `cut` says whether the data was truncated.
    """

    def __init__(self, tdf: TraceDatFile, cd: CpuData, page_size: int, chunk_bytes: int):
        self.tdf, self.cd = tdf, cd
        self.chunk = max(page_size, chunk_bytes // page_size * page_size)
        self.page_size = page_size
        self.present = 0
        self.cut = False

    def __iter__(self):
        tdf, cd = self.tdf, self.cd
        if cd.size == 0:
            return
        if tdf.compression == "none" or tdf.version < 7:
            end = min(cd.offset + cd.size, tdf.file_size)
            self.cut = end < cd.offset + cd.size
            pos = cd.offset
            while pos < end:
                n = min(self.chunk, end - pos)
                arr = np.empty(n, dtype=np.uint8)
                got = os.preadv(tdf._fh.fileno(), [memoryview(arr)], pos)
                if got < n:
                    arr = arr[:got]
                    self.cut = True
                self.present += arr.size
                yield arr
                if got < n:
                    return
                pos += n
            return
        pending: list[np.ndarray] = []
        held = 0
        for ch in tdf._chunk_table(cd):
            part = np.frombuffer(tdf._chunk_bytes(cd, ch), np.uint8)
            pending.append(part)
            held += part.size
            if held >= self.chunk:
                joined = np.concatenate(pending)
                at = 0
                while held - at >= self.chunk:
                    self.present += self.chunk
                    yield joined[at: at + self.chunk]
                    at += self.chunk
                pending, held = [joined[at:]], held - at
        if held:
            self.present += held
            yield np.concatenate(pending)
        self.cut = cd.cpu in tdf.truncated_cpus
