"""The kernel's own text: /sys/kernel/tracing/trace (with its header) and trace_pipe (without),
with or without the latency columns, the tgid column, lost-event and buffer-started lines."""
from __future__ import annotations

import os
import re

from ..trace import Trace
from .textcommon import (
    STARTED,
    Progress,
    build_trace,
    find_markers,
    not_events,
    open_lines,
    prefixed_events,
)

HEADER = r"^\s*#|LOST \d+ EVENTS\]|EVENTS DROPPED\]"


def read(path: str | os.PathLike, progress: Progress | None = None) -> Trace:
    path, lines = open_lines(path, progress)
    cpus = None
    warnings: list[str] = []
    extra: dict = {}
    tracer = None
    for ln in lines.head(40).to_list():
        if not ln.startswith("#"):
            continue
        m = re.search(r"entries-in-buffer/entries-written:\s*(\d+)/(\d+)\s+#P:(\d+)", ln)
        if m:
            in_buf, written, cpus = int(m[1]), int(m[2]), int(m[3])
            extra["entries_in_buffer"], extra["entries_written"] = in_buf, written
            if written > in_buf:
                extra["entries_lost"] = written - in_buf
                warnings.append(f"the kernel wrote {written} events but the buffer held {in_buf}: "
                                f"{written - in_buf} overwritten before the trace was read")
        m = re.match(r"#\s*tracer:\s*(\S+)", ln)
        if m:
            tracer = m[1]
    # "##### CPU n buffer started ####": that CPU's older events were overwritten (count unknown).
    markers = find_markers(lines) + find_markers(lines, STARTED)
    markers.sort(key=lambda m: m.line)
    ev, is_event = prefixed_events(lines)
    extra["trace_pipe"] = tracer is None
    trace = build_trace(path, ev, "ftrace-text", cpus=cpus, markers=markers, warnings=warnings, extra=extra,
                        unparsed_lines=not_events(lines, is_event, HEADER))
    trace.meta.tracer = tracer
    return trace
