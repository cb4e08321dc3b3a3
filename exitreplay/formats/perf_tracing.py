"""perf's tracing data (the TRACING_DATA feature, or a pipe's PERF_RECORD_HEADER_TRACING_DATA) -> the
event formats of the recorded tracepoints.

perf writes it with tools/perf/util/trace-event-info.c (`tracing_data_get`) and reads it with
trace-event-read.c (`trace_report`): the trace.dat magic, a version string ("0.6"), the byte order
and long size, the page size, then exactly the sections a trace.dat version 6 starts with:
header_page, header_event, ftrace formats, event formats per system, kallsyms, printk formats and
(version 0.6 on) the saved cmdlines. So it is read by the trace.dat container's own section readers.
"""
from __future__ import annotations

import struct
import zlib

from ..errors import TraceError
from .tracedat_file import MAGIC, Buffer, TraceDatFile, _Cursor, _Truncated

PERF_CLOCK = "perf"  # perf's default clock (the kernel's perf_clock(), i.e. local_clock())


class TracingData(TraceDatFile):
    """The tracing-data blob, with the attributes and parsed `formats` of a TraceDatFile.

    It does not open a file: the blob's bytes are the whole input. `path` names the perf.data
    file in error messages.
    """

    def __init__(self, blob: bytes | None, path: str):
        # Not super().__init__(): that maps a file; here the bytes are already in hand.
        self.path = path
        self.file_size = len(blob or b"")
        self.options: list[tuple[int, bytes]] = []
        self.sections: dict[str, int] = {}
        self.warnings: list[str] = []
        self.version, self.cpus, self.compression, self.compression_version = 6, 0, "none", ""
        self.endian, self.long_size, self.page_size = "little", 8, 4096
        self.header_page_text = self.header_event_text = b""
        self.ftrace_formats: list[bytes] = []
        self.event_format_texts: dict[str, list[bytes]] = {}
        self.kallsyms = self.printk = self.cmdlines = b""
        self.perf_version = None
        self.consumed = 0
        if blob:
            try:
                self._parse_blob(blob)
            except _Truncated as exc:
                raise TraceError(path, f"corrupt tracing data: it ends inside the {exc.args[0]}") from None
            except (struct.error, UnicodeDecodeError, ValueError, zlib.error) as exc:
                raise TraceError(path, f"corrupt tracing data: {exc}") from None
        self.buffers = [Buffer("", PERF_CLOCK, self.page_size, [])]

    def _parse_blob(self, blob: bytes) -> None:
        if not blob.startswith(MAGIC):
            raise TraceError(self.path, "corrupt tracing data: no tracing magic")
        c = _Cursor(blob, len(MAGIC), "little", self.path, "tracing data header")
        self.perf_version = c.cstr()
        if c.pos + 6 > len(blob):
            raise _Truncated("tracing data header")
        self.endian = "big" if blob[c.pos] else "little"
        self.long_size = blob[c.pos + 1]
        if self.long_size not in (4, 8):
            raise TraceError(self.path, f"corrupt tracing data: long size {self.long_size}")
        c = _Cursor(blob, c.pos + 2, self.endian, self.path, "tracing data header")
        self.page_size = c.u(4)
        c.what = "header_page section"
        self._read_header_info(c)
        c.what = "ftrace formats"
        self._read_ftrace_formats(c)
        c.what = "event formats"
        self._read_event_formats(c)
        c.what = "kallsyms"
        self.kallsyms = c.take(c.u(4))
        c.what = "printk formats"
        self.printk = c.take(c.u(4))
        if _version(self.perf_version) >= (0, 6):  # trace-event-read.c: saved cmdlines from 0.6 on
            c.what = "saved cmdlines"
            self.cmdlines = c.take(c.u(8))
        self.consumed = c.pos


def _version(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in text.split("."))
    except ValueError:
        return (0,)
