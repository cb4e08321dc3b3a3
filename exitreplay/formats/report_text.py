"""`trace-cmd report` text: default output (plugin formatting), `-R` raw fields, `-t` ns timestamps,
`-N` (the kernel's print formats), with or without the `cpus=N` header and dropped-event lines."""
from __future__ import annotations

import os
import re

import polars as pl

from ..trace import Trace
from .textcommon import (
    Head,
    Progress,
    Scan,
    find_markers,
    not_events,
    prefixed_events,
    read_text,
    small_int,
)

SOURCE_FORMAT = "trace-cmd-report"
# Lines trace-cmd prints besides events.
HEADER = r"^cpus=\d+|^version = \d+|^CPU \d+ is empty|EVENTS DROPPED\]|LOST \d+ EVENTS\]|^\s*#"


def read(path: str | os.PathLike, progress: Progress | None = None) -> Trace:
    return read_text(path, progress, head, scan)


def head(lines: list[str]) -> Head:
    cpus = version = None
    for ln in lines[:20]:
        m = re.match(r"^cpus=([0-9]+)\s*$", ln)
        if m:
            cpus = small_int(m[1])
        m = re.match(r"^version = ([0-9]+)\s*$", ln)
        if m:
            version = small_int(m[1])
    return Head(SOURCE_FORMAT, cpus, extra={"cpus_header": cpus is not None}, attrs={"version": version})


def scan(lines: pl.Series) -> Scan:
    ev, is_event, bad = prefixed_events(lines)
    return Scan(ev, find_markers(lines), not_events(lines, is_event, HEADER), bad)
