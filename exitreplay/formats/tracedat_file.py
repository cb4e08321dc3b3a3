"""The trace.dat container: headers, v6 sections, v7 section table and options, compression.

`TraceDatFile` reads every section lazily from a memory map. It gives the raw texts (formats,
cmdlines, kallsyms...) so the synth writer can reuse a real file's sections as a template, and
per-CPU ring-buffer data (decompressed if needed) for the page decoder.

Layouts: trace-cmd's `trace-cmd.dat.v6(5)` and `trace-cmd.dat.v7(5)` documents.
"""
from __future__ import annotations

import dataclasses
import mmap
import os
import struct
import zlib
from functools import cached_property

import numpy as np

from ..errors import TraceError
from .eventformat import (
    EventFormat,
    HeaderEvent,
    HeaderPage,
    parse_format,
    parse_header_event,
    parse_header_page,
)

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


class _Truncated(Exception):
    pass


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
        try:
            self._fh = open(self.path, "rb")
        except OSError as exc:
            raise TraceError(self.path, f"cannot open: {exc.strerror}") from None
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
        self.kallsyms = b""
        self.printk = b""
        self.cmdlines = b""
        try:
            self._parse()
        except _Truncated as exc:
            raise TraceError(self.path, f"truncated file: it ends inside the {exc.args[0]}") from None
        except (struct.error, UnicodeDecodeError, ValueError, zlib.error) as exc:
            raise TraceError(self.path, f"corrupt trace.dat header: {exc}") from None

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
        if self.page_size < 64 or self.page_size > (1 << 24) or self.page_size % 4:
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
        self.kallsyms = c.take(c.u(4))
        c.what = "printk formats"
        self.sections["printk"] = c.pos
        self.printk = c.take(c.u(4))
        c.what = "cmdlines"
        self.sections["cmdlines"] = c.pos
        self.cmdlines = c.take(c.u(8))
        c.what = "CPU count"
        self.cpus = c.u(4)
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
        for _ in range(nsys):
            system = c.cstr()
            n = c.u(4)
            self.event_format_texts.setdefault(system, []).extend(c.take(c.u(8)) for _ in range(n))

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

    def _decompress_block(self, raw: bytes, what: str) -> bytes:
        c = _Cursor(raw, 0, self.endian, self.path, what)
        csize, usize = c.u(4), c.u(4)
        return self._decompress(c.take(csize), usize, what)

    def _decompress(self, blob: bytes, usize: int, what: str) -> bytes:
        try:
            if self.compression == "zstd":
                import zstandard

                out = zstandard.ZstdDecompressor().decompress(blob, max_output_size=usize)
            elif self.compression == "zlib":
                out = zlib.decompress(blob)
            else:
                raise TraceError(self.path, f"{what} is compressed but the file names no compression")
        except TraceError:
            raise
        except Exception as exc:  # zstd.ZstdError, zlib.error
            raise TraceError(self.path, f"corrupt compressed {what}: {exc}") from None
        if len(out) != usize:
            raise TraceError(self.path, f"corrupt compressed {what}: {len(out)} bytes, expected {usize}")
        return out

    def _parse_v7(self, first_opt: int) -> None:
        seen = set()
        nxt = first_opt
        buffers_raw: list[bytes] = []
        while nxt and nxt not in seen:
            seen.add(nxt)
            self.sections.setdefault("options", nxt)
            _sid, _flags, payload = self._section(nxt, 0, "options section")
            c = _Cursor(payload, 0, self.endian, self.path, "options section")
            nxt = 0
            while c.pos < len(payload):
                oid, osz = c.u(2), c.u(4)
                raw = c.take(osz)
                if oid == OPT_DONE:
                    nxt = int.from_bytes(raw[:8], "little" if self.endian == "little" else "big") if raw else 0
                    break
                self.options.append((oid, raw))
                if oid == OPT_BUFFER:
                    buffers_raw.append(raw)
        for oid, raw in self.options:
            off = self._u64(raw) if len(raw) >= 8 else None
            if oid == OPT_HEADER_INFO:
                self.sections["header_page"] = off
                _, _, payload = self._section(off, OPT_HEADER_INFO, "header_page section")
                self._read_header_info(_Cursor(payload, 0, self.endian, self.path, "header_page section"))
            elif oid == OPT_FTRACE_EVENTS:
                self.sections["ftrace_events"] = off
                _, _, payload = self._section(off, OPT_FTRACE_EVENTS, "ftrace formats")
                self._read_ftrace_formats(_Cursor(payload, 0, self.endian, self.path, "ftrace formats"))
            elif oid == OPT_EVENT_FORMATS:
                self.sections["event_formats"] = off
                _, _, payload = self._section(off, OPT_EVENT_FORMATS, "event formats")
                self._read_event_formats(_Cursor(payload, 0, self.endian, self.path, "event formats"))
            elif oid == OPT_KALLSYMS:
                self.sections["kallsyms"] = off
                _, _, payload = self._section(off, OPT_KALLSYMS, "kallsyms")
                c = _Cursor(payload, 0, self.endian, self.path, "kallsyms")
                self.kallsyms = c.take(c.u(4))
            elif oid == OPT_PRINTK:
                self.sections["printk"] = off
                _, _, payload = self._section(off, OPT_PRINTK, "printk formats")
                c = _Cursor(payload, 0, self.endian, self.path, "printk formats")
                self.printk = c.take(c.u(4))
            elif oid == OPT_CMDLINES:
                self.sections["cmdlines"] = off
                _, _, payload = self._section(off, OPT_CMDLINES, "cmdlines")
                c = _Cursor(payload, 0, self.endian, self.path, "cmdlines")
                self.cmdlines = c.take(c.u(8))
            elif oid == OPT_CPUCOUNT:
                self.cpus = self._uint(raw)
        if not self.header_page_text:
            raise TraceError(self.path, "corrupt trace.dat: no header_page section")
        for raw in buffers_raw:
            c = _Cursor(raw, 0, self.endian, self.path, "buffer option")
            sec_off = c.u(8)
            name = c.cstr()
            clock = c.cstr()
            page_size = c.u(4)
            ncpu = c.u(4)
            cpus = [CpuData(c.u(4), c.u(8), c.u(8)) for _ in range(ncpu)]
            buf = Buffer(name, clock or None, page_size, cpus, section_offset=sec_off)
            self.buffers.append(buf)
        self.buffers.sort(key=lambda b: b.name != "")
        if not self.buffers:
            raise TraceError(self.path, "trace.dat has no data buffer (no BUFFER option)")
        if not self.cpus:
            self.cpus = len(self.buffers[0].cpus)

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
    def formats(self) -> dict[int, EventFormat]:
        out: dict[int, EventFormat] = {}
        texts = [("ftrace", t) for t in self.ftrace_formats]
        texts += [(s, t) for s, ts in self.event_format_texts.items() for t in ts]
        for system, text in texts:
            try:
                fmt = parse_format(text, system)
            except ValueError as exc:
                self.warnings.append(f"unreadable event format in system {system}: {exc}")
                continue
            out[fmt.id] = fmt
        return out

    def option_values(self, oid: int) -> list[bytes]:
        return [raw for i, raw in self.options if i == oid]

    def option_text(self, oid: int) -> str | None:
        vals = self.option_values(oid)
        return vals[0].rstrip(b"\0").decode("utf-8", "replace") if vals else None

    @cached_property
    def trace_clock(self) -> str | None:
        top = self.buffers[0]
        if top.clock:
            return top.clock
        text = self.option_text(OPT_TRACECLOCK)
        if text:  # "[local] global counter ...": the bracketed one is in use
            for word in text.split():
                if word.startswith("[") and word.endswith("]"):
                    return word[1:-1]
        return None

    @cached_property
    def tsc2nsec(self) -> tuple[int, int, int] | None:
        """(multiplier, shift, offset) when the file asks for TSC -> ns conversion."""
        vals = self.option_values(OPT_TSC2NSEC)
        if not vals or len(vals[0]) < 16:
            return None
        e = "<" if self.endian == "little" else ">"
        mult, shift, offset = struct.unpack(e + "IIq", vals[0][:16])
        return mult, shift, offset

    @cached_property
    def time_offset(self) -> int:
        vals = self.option_values(OPT_OFFSET)
        if not vals:
            return 0
        raw = vals[0]
        text = raw.rstrip(b"\0")
        try:
            return int(text.decode("ascii").strip(), 0)
        except (UnicodeDecodeError, ValueError):
            return int.from_bytes(raw[:8], "little" if self.endian == "little" else "big", signed=True)

    @cached_property
    def cmdline_map(self) -> dict[int, str]:
        out: dict[int, str] = {}
        for line in self.cmdlines.decode("utf-8", "replace").splitlines():
            pid, _, comm = line.partition(" ")
            if pid.strip().lstrip("-").isdigit():
                out[int(pid)] = comm
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

    def _chunk_table(self, cd: CpuData) -> list[tuple[int, int, int]]:
        """(file offset, compressed size, uncompressed size) of each compressed chunk of a CPU.

        Layout: chunk count, then per chunk compressed size, uncompressed size, data.
        """
        what = f"CPU {cd.cpu} data"
        c = _Cursor(self._mm, cd.offset, self.endian, self.path, what)
        chunks: list[tuple[int, int, int]] = []
        try:
            count = c.u(4)
            for _ in range(count):
                csize, usize = c.u(4), c.u(4)
                if c.pos + csize > len(self._mm):
                    raise _Truncated(what)
                chunks.append((c.pos, csize, usize))
                c.pos += csize
        except _Truncated:
            msg = f"{what}: compressed data truncated after {len(chunks)} chunks"
            if msg not in self.warnings:
                self.warnings.append(msg)
            self.truncated_cpus.add(cd.cpu)
        return chunks

    def _decompress_cpu(self, cd: CpuData) -> np.ndarray:
        chunks = self._chunk_table(cd)
        out = np.empty(sum(u for _, _, u in chunks), dtype=np.uint8)
        self._decompress_into(cd, chunks, out)
        return out

    def _decompress_into(self, cd: CpuData, chunks: list[tuple[int, int, int]], out: np.ndarray) -> None:
        at = 0
        for pos, csize, usize in chunks:
            out[at: at + usize] = np.frombuffer(self._decompress(self._mm[pos: pos + csize], usize,
                                                                 f"CPU {cd.cpu} data"), dtype=np.uint8)
            at += usize

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
        lengths = [sum(u for _, _, u in t) for t in tables]
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
        try:
            self._mm.close()
        except BufferError:
            pass  # arrays still view the map; the OS frees it with them
        self._fh.close()


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
        for pos, csize, usize in tdf._chunk_table(cd):
            part = np.frombuffer(tdf._decompress(tdf._mm[pos: pos + csize], usize, f"CPU {cd.cpu} data"), np.uint8)
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
