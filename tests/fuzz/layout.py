"""Where the fields of a trace.dat are, found by a walker of its own (not the project's parser).

`walk(data)` returns the integer fields (offset, width, label) and the regions (offset, length,
label) of a v6 or v7 file written by the project's writer: header values, section headers and
sizes, options (ids, sizes, section offsets, BUFFER contents, the DONE link), CPU tables, chunk
tables, page headers and the first record headers of each page. It never raises: a file it cannot
follow just yields fewer fields. Offsets that point elsewhere in the file are labelled "ptr", so
an insertion can move them along.
"""
from __future__ import annotations

import dataclasses
import struct

MAGIC = b"\x17\x08\x44tracing"
SECTION_OPTIONS, SECTION_BUFFER = 0, 3
OFFSET_OPTIONS = {16, 17, 18, 19, 20, 21}  # options whose payload is a section's file offset
DONE = 0


@dataclasses.dataclass(frozen=True)
class Field:
    offset: int
    width: int  # bytes
    label: str  # "size", "count", "ptr", "id", "page_size", "commit", "record", ...


@dataclasses.dataclass(frozen=True)
class Region:
    offset: int
    length: int
    label: str  # "format", "header_page", "header_event", "cmdlines", "page", "options", "section"


@dataclasses.dataclass
class Layout:
    version: int | None = None
    page_size: int = 4096
    fields: list[Field] = dataclasses.field(default_factory=list)
    regions: list[Region] = dataclasses.field(default_factory=list)
    option_lists: list[tuple[int, int | None]] = dataclasses.field(default_factory=list)  # (insert at, size field)


class _Stop(Exception):
    pass


class _Walk:
    def __init__(self, data: bytes):
        self.d = data
        self.out = Layout()

    def u(self, at: int, n: int, label: str | None = None) -> int:
        if at < 0 or at + n > len(self.d):
            raise _Stop
        if label:
            self.out.fields.append(Field(at, n, label))
        return int.from_bytes(self.d[at: at + n], "little")

    def region(self, at: int, n: int, label: str) -> None:
        if n > 0 and at + n <= len(self.d):
            self.out.regions.append(Region(at, n, label))

    def cstr(self, at: int) -> int:
        end = self.d.find(b"\0", at)
        if end < 0:
            raise _Stop
        return end + 1

    # -- shared pieces ------------------------------------------------------------------------
    def header_info(self, at: int) -> int:
        at += 12
        n = self.u(at, 8, "size")
        self.region(at + 8, n, "header_page")
        at += 8 + n + 13
        n = self.u(at, 8, "size")
        self.region(at + 8, n, "header_event")
        return at + 8 + n

    def format_list(self, at: int) -> int:
        """A count, then per format text its u64 size and the text."""
        count = self.u(at, 4, "count")
        at += 4
        for _ in range(min(count, 10000)):
            n = self.u(at, 8, "size")
            self.region(at + 8, n, "format")
            at += 8 + n
        return at

    def formats(self, at: int, with_systems: bool) -> int:
        if not with_systems:
            return self.format_list(at)
        nsys = self.u(at, 4, "count")
        at += 4
        for _ in range(min(nsys, 1000)):
            at = self.format_list(self.cstr(at))
        return at

    def pages(self, at: int, length: int, long_size: int = 8) -> None:
        ps = self.out.page_size
        end = min(at + length, len(self.d))
        p = at
        while p + 16 <= end and ps >= 64:
            self.region(p, min(ps, end - p), "page")
            self.u(p, 8, "timestamp")
            commit = self.u(p + 8, long_size, "commit") & ((1 << 27) - 1)
            r = p + 8 + long_size
            stop = min(r + commit, p + ps, end)
            for _ in range(6):  # the first records: header words, then length/extend words
                if r + 4 > stop:
                    break
                w = self.u(r, 4, "record")
                tl = w & 31
                if tl == 0:
                    ln = self.u(r + 4, 4, "length")
                    r += 4 + ((ln + 3) & ~3)
                elif tl <= 28:
                    r += 4 + 4 * tl
                elif tl == 29:
                    ln = self.u(r + 4, 4, "length")
                    r += 4 + ((ln + 3) & ~3) if w >> 5 else stop - r
                else:
                    self.u(r + 4, 4, "extend")
                    r += 8
            p += ps

    def chunks(self, at: int, end: int) -> int:
        count = self.u(at, 4, "count")
        at += 4
        for _ in range(min(count, 100000)):
            if at >= end:
                break
            csize = self.u(at, 4, "csize")
            self.u(at + 4, 4, "usize")
            self.region(at + 8, csize, "chunk")
            at += 8 + csize
        return at

    # -- v6 -----------------------------------------------------------------------------------
    def v6(self, at: int) -> None:
        at = self.header_info(at)
        at = self.formats(at, False)
        at = self.formats(at, True)
        for width in (4, 4, 8):  # kallsyms, printk, cmdlines
            n = self.u(at, width, "size")
            if width == 8:
                self.region(at + 8, n, "cmdlines")
            at += width + n
        ncpu = self.u(at, 4, "count")
        at += 4
        if self.d[at: at + 7] == b"options":
            at += 10
            self.out.option_lists.append((at, None))
            at = self.options(at, len(self.d))
            at += 2
        if self.d[at: at + 9] != b"flyrecord":
            return
        at += 10
        cpus = []
        for _ in range(min(ncpu, 4096)):
            off = self.u(at, 8, "ptr")
            size = self.u(at + 8, 8, "size")
            cpus.append((off, size))
            at += 16
        for off, size in cpus:
            self.pages(off, size)

    def options(self, at: int, end: int) -> int:
        """An options list; returns the offset of its DONE option (v6) or its end (v7)."""
        while at + 6 <= end:
            oid = self.u(at, 2, "id")
            if oid == DONE and self.out.version == 6:
                return at
            size = self.u(at + 2, 4, "size")
            body = at + 6
            if oid == DONE:
                self.u(body, 8, "ptr")
                return body + size
            if oid in OFFSET_OPTIONS and size == 8:
                self.u(body, 8, "ptr")
            elif oid == 3:  # BUFFER
                self.buffer_option(body, size)
            elif oid == 8 and size == 4:  # CPUCOUNT
                self.u(body, 4, "count")
            else:
                self.region(body, size, "option")
            at = body + size
        return at

    def buffer_option(self, at: int, size: int) -> None:
        end = at + size
        self.u(at, 8, "ptr")
        if self.out.version == 6:
            return
        p = self.cstr(self.cstr(at + 8))
        self.u(p, 4, "page_size")
        n = self.u(p + 4, 4, "count")
        p += 8
        for _ in range(min(n, 4096)):
            if p + 20 > end:
                break
            self.u(p, 4, "cpu")
            self.u(p + 4, 8, "ptr")
            self.u(p + 12, 8, "size")
            p += 20

    # -- v7 -----------------------------------------------------------------------------------
    def v7(self, at: int) -> None:
        comp_end = self.cstr(self.cstr(at))
        compressed = self.d[at: at + 4] != b"none"
        self.u(comp_end, 8, "ptr")
        at = comp_end + 8
        while at + 16 <= len(self.d):
            sid = self.u(at, 2, "id")
            flags = self.u(at + 2, 2, "flags")
            self.u(at + 4, 4, "string")
            size = self.u(at + 8, 8, "size")
            body = at + 16
            self.region(at, 16 + size, "section")
            if sid == SECTION_OPTIONS:
                self.out.option_lists.append((body, at + 8))
                self.options(body, body + size)
            elif sid == SECTION_BUFFER:
                self.buffer_data(body, body + size, compressed)
            elif flags & 1:
                self.u(body, 4, "section_csize")
                self.u(body + 4, 4, "section_usize")
            elif sid == 16:
                self.header_info(body)
            elif sid == 17:
                self.formats(body, False)
            elif sid == 18:
                self.formats(body, True)
            elif sid == 21:
                n = self.u(body, 8, "size")
                self.region(body + 8, n, "cmdlines")
            at = body + size

    def buffer_data(self, at: int, end: int, compressed: bool) -> None:
        ps = self.out.page_size
        at += -at % ps
        if not compressed:
            self.pages(at, end - at)
            return
        while at < end:
            at = self.chunks(at, end)
            at += -at % ps

    def run(self) -> Layout:
        d = self.d
        try:
            if not d.startswith(MAGIC):
                return self.out
            at = self.cstr(10)
            self.out.version = int(d[10: at - 1] or b"0") if d[10: at - 1].isdigit() else None
            self.u(at, 1, "endian")
            self.u(at + 1, 1, "long_size")
            self.out.page_size = self.u(at + 2, 4, "page_size") or 4096
            if self.out.version == 6:
                self.v6(at + 6)
            elif self.out.version == 7:
                self.v7(at + 6)
        except (_Stop, ValueError, struct.error):
            pass
        return self.out


def walk(data: bytes) -> Layout:
    return _Walk(data).run()
