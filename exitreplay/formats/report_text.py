"""`trace-cmd report` text: default output (plugin formatting), `-R` raw fields, `-t` ns timestamps,
`-N` (the kernel's print formats), with or without the `cpus=N` header and dropped-event lines."""
from __future__ import annotations

import os
import re

from ..trace import Trace
from .textcommon import (
    Progress,
    build_trace,
    find_markers,
    not_events,
    open_lines,
    prefixed_events,
    small_int,
)

# Lines trace-cmd prints besides events.
HEADER = r"^cpus=\d+|^version = \d+|^CPU \d+ is empty|EVENTS DROPPED\]|LOST \d+ EVENTS\]|^\s*#"


def read(path: str | os.PathLike, progress: Progress | None = None) -> Trace:
    path, lines = open_lines(path, progress)
    cpus = version = None
    for ln in lines.head(20).to_list():
        m = re.match(r"^cpus=([0-9]+)\s*$", ln)
        if m:
            cpus = small_int(m[1])
        m = re.match(r"^version = ([0-9]+)\s*$", ln)
        if m:
            version = small_int(m[1])
    ev, is_event, bad = prefixed_events(lines)
    trace = build_trace(path, ev, "trace-cmd-report", cpus=cpus, markers=find_markers(lines), warnings=[],
                        extra={"cpus_header": cpus is not None},
                        unparsed_lines=not_events(lines, is_event, HEADER), out_of_range=bad)
    trace.meta.version = version
    return trace
