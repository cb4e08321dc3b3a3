"""Recognise a trace file's format from its content, never from its name."""
from __future__ import annotations

import os
import re

from ..errors import TraceError

TRACEDAT_MAGIC = b"\x17\x08\x44tracing"
# perf.data (file and pipe mode): the u64 "PERFILE2", as written by a little- or big-endian machine.
PERF_MAGICS = (b"PERFILE2", b"2ELIFREP")
HEAD_BYTES = 65536

# "task-pid [cpu] ts: event:" as trace-cmd and the kernel print it; the kernel may add "(tgid)"
# and the latency column.
_TASK = rb"^\s*\S.*?-\d+\s+(?:\(\s*[-\d]+\)\s+)?\[\d+\]\s+"
_LAT = rb"[.dDbX][.nNpPlLbB][.hHsSzZ][.0-9a-f][.0-9a-f]?\s+"
_TS_EVENT = rb"\d+(?:\.\d+)?:\s+[\w:-]+:"
_KERNEL_LINE = re.compile(_TASK + _LAT + _TS_EVENT)
_TASK_LINE = re.compile(_TASK + _TS_EVENT)
# trace-cmd pads the event name to a column: "kvm_exit:             reason ..."
_PADDED = re.compile(_TASK + _TS_EVENT + rb"\s{2,}\S")
# perf script: "comm  pid [cpu] ts: [period] system:event:"
_PERF_LINE = re.compile(rb"^\s*\S.*?\s+-?\d+(?:/-?\d+)?\s+\[\d+\]\s+\d+\.\d+:\s+(?:\d+\s+)?[\w-]+:[\w-]+:")
_REPORT_HEADER = re.compile(rb"^(?:cpus=\d+|version = \d+)\s*$")
_FTRACE_HEADER = re.compile(rb"^#\s*(?:tracer:|entries-in-buffer/entries-written:)")


def sniff(path: str | os.PathLike) -> str:
    """"trace.dat", "perf.data", "trace-cmd-report", "ftrace-text" or "perf-script"; TraceError otherwise.

    A trace.dat or perf.data is known by its magic (whatever its version: the reader judges that). Text is
    classified from its first 64 KiB: headers (`cpus=N`, `# tracer:`) first, then by which line
    shape most lines have.
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(HEAD_BYTES)
    except IsADirectoryError:
        raise TraceError(path, "is a directory, not a trace file") from None
    except OSError as exc:
        raise TraceError(path, f"cannot open: {exc.strerror}") from None
    if not head:
        raise TraceError(path, "empty file")
    if head.startswith(TRACEDAT_MAGIC):
        return "trace.dat"
    if head[:8] in PERF_MAGICS:
        return "perf.data"
    if head.startswith(TRACEDAT_MAGIC[:3]):
        raise TraceError(path, "not a trace: starts like a trace.dat but the magic is damaged")
    if b"\0" in head or _binary_share(head) > 0.1:
        raise TraceError(path, "not a trace: binary data without the trace.dat magic")
    if not head.strip():
        raise TraceError(path, "not a trace: only blank lines")
    lines = head.splitlines()
    if len(head) == HEAD_BYTES and len(lines) > 1:
        lines = lines[:-1]  # the last line may be cut
    first = [ln for ln in lines[:50] if ln.strip()]
    if any(_FTRACE_HEADER.match(ln) for ln in first):
        return "ftrace-text"
    if first and _REPORT_HEADER.match(first[0]):
        return "trace-cmd-report"
    votes = {"ftrace-text": 0, "trace-cmd-report": 0, "perf-script": 0}
    task_lines = 0
    for ln in lines:
        if _KERNEL_LINE.match(ln):
            votes["ftrace-text"] += 1
        elif _TASK_LINE.match(ln):
            task_lines += 1
            if _PADDED.match(ln):
                votes["trace-cmd-report"] += 1
        elif _PERF_LINE.match(ln):
            votes["perf-script"] += 1
    if task_lines:
        # "task-pid [cpu] ts: event:" without latency columns: trace-cmd pads event names to a
        # column, the kernel (trace_pipe with irq-info off) does not.
        if votes["trace-cmd-report"] == 0 and votes["ftrace-text"] == 0:
            votes["ftrace-text"] += task_lines
        else:
            votes["trace-cmd-report"] += task_lines
    best = max(votes, key=votes.__getitem__)
    if votes[best] == 0:
        raise TraceError(path, "not a trace: no line looks like a trace event (expected a trace.dat, "
                               "trace-cmd report, ftrace or perf script text)")
    return best


def _binary_share(head: bytes) -> float:
    """Share of bytes that are control characters other than tab, newline and carriage return."""
    sample = head[:4096]
    bad = sum(1 for b in sample if b < 32 and b not in (9, 10, 13))
    return bad / max(len(sample), 1)
