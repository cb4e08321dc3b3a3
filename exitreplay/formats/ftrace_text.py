"""The kernel's own text: /sys/kernel/tracing/trace (with header) and trace_pipe (without)."""
from __future__ import annotations

import os
import re
from collections.abc import Callable

from ..trace import Trace
from .report_text import parse_prefixed
from .textcommon import check_exists, read_lines


def read(path: str | os.PathLike, progress: Callable[[int, int], None] | None = None) -> Trace:
    path = check_exists(path)
    lines = read_lines(path)
    cpus = None
    warnings: list[str] = []
    extra: dict = {}
    for ln in lines.head(30).to_list():
        if not ln.startswith("#"):
            continue
        m = re.search(r"entries-in-buffer/entries-written:\s*(\d+)/(\d+)\s+#P:(\d+)", ln)
        if m:
            in_buf, written, cpus = int(m[1]), int(m[2]), int(m[3])
            extra["entries_in_buffer"], extra["entries_written"] = in_buf, written
            if written > in_buf:
                warnings.append(f"the kernel wrote {written} events but the buffer held {in_buf}: "
                                f"{written - in_buf} overwritten or lost before reading")
        m = re.match(r"#\s*tracer:\s*(\S+)", ln)
        if m:
            extra["tracer"] = m[1]
    tr = parse_prefixed(path, lines, "ftrace-text", cpus, warnings, extra)
    tr.meta.tracer = extra.get("tracer")
    if progress:
        progress(1, 1)
    return tr
