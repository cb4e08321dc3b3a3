"""The host's own layouts and facts, as the trace.dat writer takes them.

A recording must carry the running kernel's header_page, header_event and event formats (the
pages are the kernel's bytes, laid out by them), so they are read from tracefs, not taken from a
built-in template. The same files trace-cmd record saves (trace-cmd lib/trace-cmd/trace-output.c):
events/header_page, events/header_event, events/ftrace/*/format, events/SYSTEM/EVENT/format,
saved_cmdlines, the instance's trace_clock, uname and the CPU count.
"""
from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Iterable
from pathlib import Path

from ..synth.templates import Template
from .events import EventSel, enabled_formats
from .tracefs import Instance

_DATA_FIELD = re.compile(rb"field: char data;\s*offset:(\d+);\s*size:(\d+);")
_FORMAT_ID = re.compile(rb"^ID:\s*(\d+)", re.M)


def page_size_of(header_page: bytes) -> int:
    """The ring buffer's page (sub-buffer) size: where header_page's `data` field ends."""
    m = _DATA_FIELD.search(header_page)
    if not m:
        raise ValueError("header_page has no `char data` field")
    return int(m[1]) + int(m[2])


def _by_id(texts: Iterable[bytes]) -> list[bytes]:
    def key(t: bytes) -> int:
        m = _FORMAT_ID.search(t)
        return int(m[1]) if m else 0

    return sorted(texts, key=key)


def host_template(instance: Instance, sels: Iterable[EventSel]) -> Template:
    """header_page/header_event/ftrace formats and the selected events' formats of this kernel."""
    ev = instance.path / "events"
    ftrace = _by_id(f.read_bytes() for f in (ev / "ftrace").glob("*/format"))
    formats = {s: _by_id(texts) for s, texts in enabled_formats(ev, sels).items()}
    header_page = (ev / "header_page").read_bytes()
    info = {"description": "formats of the recording host", "source": "tracefs",
            "uname": uname_text(), "page_size": page_size_of(header_page)}
    return Template("host", header_page, (ev / "header_event").read_bytes(), ftrace, formats, info)


def uname_text() -> str:
    """As trace-cmd stores it: sysname, nodename, release, machine."""
    u = os.uname()
    return f"{u.sysname} {u.nodename} {u.release} {u.machine}"


@dataclasses.dataclass
class HostFacts:
    clock: str
    uname: str
    page_size: int
    cmdlines: bytes


def host_facts(tracefs_root: Path, instance: Instance, template: Template) -> HostFacts:
    """Read at the end of a recording, so the tasks that ran are in saved_cmdlines."""
    try:
        cmdlines = (tracefs_root / "saved_cmdlines").read_bytes()
    except OSError:
        cmdlines = b""
    return HostFacts(instance.clock(), template.info["uname"], template.info["page_size"], cmdlines)
