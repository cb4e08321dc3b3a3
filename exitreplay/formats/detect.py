"""Recognise a trace file's format from its content, never from its name."""
from __future__ import annotations

import os
import re

from ..errors import TraceError

TRACEDAT_MAGIC = b"\x17\x08\x44tracing"

# comm-pid [cpu] (flags) ts: event:
_FTRACE_LINE = re.compile(rb"^\s*.+-\d+\s+(\(\s*[\d-]+\)\s+)?\[\d+\]\s+[\w.]{4,5}\s+\d+\.\d+:\s+\S+:")
_REPORT_LINE = re.compile(rb"^\s*.+-\d+\s+\[\d+\]\s+\d+\.\d+:\s+\S+:")
_PERF_LINE = re.compile(rb"^\s*.+?\s+\d+\s+\[\d+\]\s+\d+\.\d+:\s+(\d+\s+)?[\w-]+:[\w-]+:")


def sniff(path: str | os.PathLike) -> str:
    """One of "trace.dat", "trace-cmd-report", "ftrace-text", "perf-script"; TraceError otherwise."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(65536)
    except OSError as exc:
        raise TraceError(path, f"cannot open: {exc.strerror}") from None
    if not head:
        raise TraceError(path, "empty file")
    if head.startswith(TRACEDAT_MAGIC[:3]) and head[3:10] == TRACEDAT_MAGIC[3:]:
        return "trace.dat"
    if b"\0" in head[:4096]:
        raise TraceError(path, "not a trace: binary data that is not a trace.dat (bad magic)")
    lines = head.splitlines()[:400]
    if any(ln.startswith(b"# tracer:") for ln in lines[:5]):
        return "ftrace-text"
    votes = {"ftrace-text": 0, "trace-cmd-report": 0, "perf-script": 0}
    for ln in lines:
        if _PERF_LINE.match(ln):
            votes["perf-script"] += 1
        elif _FTRACE_LINE.match(ln):
            votes["ftrace-text"] += 1
        elif _REPORT_LINE.match(ln):
            votes["trace-cmd-report"] += 1
    best = max(votes, key=votes.get)
    if votes[best] == 0:
        if lines and re.match(rb"^cpus=\d+", lines[0]):
            return "trace-cmd-report"
        raise TraceError(path, "not a trace: no line looks like a trace event "
                               "(expected trace.dat, trace-cmd report, ftrace or perf script text)")
    return best
