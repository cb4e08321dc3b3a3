"""per_cpu/cpuN/stats (kernel/trace/trace.c tracing_stats_read): what was recorded and lost.

entries: events still in the buffer; read events: events a reader consumed; overrun: events the
writer overwrote before they were read (overwrite mode, the default); commit overrun: events lost
while a nested writer filled the page; dropped events: events refused because the buffer was full
(overwrite off). Lost = overrun + commit overrun + dropped events.
"""
from __future__ import annotations

import dataclasses
import re

_LINE = re.compile(r"^([a-z ]+):\s*([\d.]+)\s*$", re.M)
LOST_KEYS = ("overrun", "commit overrun", "dropped events")


@dataclasses.dataclass(frozen=True)
class CpuStats:
    cpu: int
    text: str

    @property
    def values(self) -> dict[str, int]:
        return {k: int(v) for k, v in _LINE.findall(self.text) if v.isdigit()}

    @property
    def lost(self) -> int:
        v = self.values
        return sum(v.get(k, 0) for k in LOST_KEYS)

    @property
    def read(self) -> int:
        """Events read out of the buffer (after the last drain: every event that was not lost)."""
        return self.values.get("read events", 0)

    @property
    def recorded(self) -> int:
        """Events written so far (read, waiting, or overwritten unread)."""
        v = self.values
        return v.get("read events", 0) + v.get("entries", 0) + v.get("overrun", 0)

    def option_text(self) -> bytes:
        """The CPUSTAT option as trace-cmd saves it: "CPU: N" and the file's text."""
        return f"CPU: {self.cpu}\n{self.text}".encode() + b"\0"
