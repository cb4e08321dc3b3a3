"""Which events a recording enables: the analysis's own, plus the user's `-e` extras.

kvm/* gives the exits, entries and the handlers' events; sched_switch tells preemption and
blocking (the sync points a vCPU thread leaving its CPU causes); sched_wakeup when it comes back.
"""
from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable
from pathlib import Path

from .tracefs import RecordError

DEFAULT_EVENTS = ("kvm", "sched/sched_switch", "sched/sched_wakeup")
_SPEC = re.compile(r"(?P<system>[\w.-]+)(?:[/:](?P<event>[\w.-]+|\*))?")


@dataclasses.dataclass(frozen=True)
class EventSel:
    """A whole system (event None) or one event of it."""

    system: str
    event: str | None = None

    @property
    def rel(self) -> str:
        """Its directory under events/."""
        return self.system if self.event is None else f"{self.system}/{self.event}"

    def format_files(self, events_dir: Path) -> list[Path]:
        d = events_dir / self.rel
        return [d / "format"] if self.event else sorted(d.glob("*/format"))


def parse_spec(spec: str) -> EventSel:
    """'kvm', 'kvm/*', 'kvm:*', 'sched/sched_switch' or 'sched:sched_switch'."""
    m = _SPEC.fullmatch(spec.strip())
    if not m:
        raise RecordError(f"cannot read event {spec!r} (examples: kvm, sched/sched_switch, irq:*)")
    event = m["event"]
    return EventSel(m["system"], None if event in (None, "*") else event)


def resolve(events_dir: Path, extras: Iterable[str] = ()) -> list[EventSel]:
    """The default events and the extras, checked against the host's tracefs, without repeats."""
    if not (events_dir / "kvm").is_dir():
        raise RecordError(f"no kvm events in {events_dir} (load the kvm module: modprobe kvm_amd or "
                          "kvm_intel)")
    out: list[EventSel] = []
    for spec in (*DEFAULT_EVENTS, *extras):
        sel = parse_spec(spec)
        if not (events_dir / sel.rel / "enable").is_file():
            raise RecordError(f"no event {spec!r} on this host (no {events_dir / sel.rel})")
        covered = any(s.system == sel.system and (s.event is None or s.event == sel.event) for s in out)
        if not covered:
            out = [s for s in out if not (sel.event is None and s.system == sel.system)] + [sel]
    return out


def enabled_formats(events_dir: Path, sels: Iterable[EventSel]) -> dict[str, list[bytes]]:
    """system -> the format texts of the selected events, as the kernel prints them."""
    out: dict[str, list[bytes]] = {}
    for sel in sels:
        out.setdefault(sel.system, []).extend(f.read_bytes() for f in sel.format_files(events_dir))
    return out
