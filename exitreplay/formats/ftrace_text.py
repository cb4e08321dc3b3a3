"""The kernel's own text: /sys/kernel/tracing/trace (with its header) and trace_pipe (without),
with or without the latency columns, the tgid column, lost-event and buffer-started lines."""
from __future__ import annotations

import os
import re

import polars as pl

from ..trace import Trace
from .textcommon import (
    STARTED,
    Head,
    Progress,
    Scan,
    find_markers,
    not_events,
    prefixed_events,
    read_text,
    small_int,
)

SOURCE_FORMAT = "ftrace-text"
HEADER = r"^\s*#|LOST \d+ EVENTS\]|EVENTS DROPPED\]"


def read(path: str | os.PathLike, progress: Progress | None = None) -> Trace:
    return read_text(path, progress, head, scan)


def head(lines: list[str]) -> Head:
    cpus = None
    warnings: list[str] = []
    extra: dict = {}
    tracer = None
    for ln in lines:
        if not ln.startswith("#"):
            continue
        m = re.search(r"entries-in-buffer/entries-written:\s*([0-9]+)/([0-9]+)\s+#P:([0-9]+)", ln)
        if m:
            in_buf, written, cpus = small_int(m[1]), small_int(m[2]), small_int(m[3])
            extra["entries_in_buffer"], extra["entries_written"] = in_buf, written
            if in_buf is not None and written is not None and written > in_buf:
                extra["entries_lost"] = written - in_buf
                warnings.append(f"the kernel wrote {written} events but the buffer held {in_buf}: "
                                f"{written - in_buf} overwritten before the trace was read")
        m = re.match(r"#\s*tracer:\s*(\S+)", ln)
        if m:
            tracer = m[1]
    extra["trace_pipe"] = tracer is None
    return Head(SOURCE_FORMAT, cpus, warnings, extra, {"tracer": tracer})


def scan(lines: pl.Series) -> Scan:
    # "##### CPU n buffer started ####": that CPU's older events were overwritten (count unknown).
    markers = find_markers(lines) + find_markers(lines, STARTED)
    markers.sort(key=lambda m: m.line)
    ev, is_event, bad = prefixed_events(lines)
    return Scan(ev, markers, not_events(lines, is_event, HEADER), bad)
