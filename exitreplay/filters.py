"""What part of a trace to analyze: a time window, a VM (QEMU process), a vCPU in it, host CPUs,
exit reasons. One `Filters` value is applied in one place of `analyze()` and described the same
way by every renderer, so `analyze`, `chart`, `report` and `compare` select alike.

Times: `+5ms` is an offset from the trace's first event; `1.01s` (or `1.01`) is a timestamp as
`trace-cmd report` prints it (seconds of the trace clock). A window that misses the trace is an
error naming the trace's span, never an empty report.
"""
from __future__ import annotations

import dataclasses
import math
import re
from typing import Any

import polars as pl

from .errors import UsageError
from .kvm import reasons

UNITS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 1_000_000_000}
TIME_RE = re.compile(r"^\s*(\+?)\s*([0-9]*\.?[0-9]+(?:e[-+]?\d+)?)\s*(ns|us|µs|ms|s)?\s*$", re.I)


@dataclasses.dataclass(frozen=True)
class TimePoint:
    """A time option: ns from the first event (relative) or a trace timestamp in ns (absolute)."""

    ns: int
    relative: bool
    text: str = ""

    def resolve(self, first_ts: int, ns_per_unit: float = 1.0) -> int:
        """The timestamp in the trace's own units (raw TSC traces count cycles, not ns)."""
        if self.relative:
            return first_ts + round(self.ns / ns_per_unit)
        return self.ns  # trace-cmd prints raw TSC counts as if they were ns: take them the same way

    def __str__(self) -> str:
        return self.text or (f"+{self.ns / 1e6:g}ms" if self.relative else f"{self.ns / 1e9:.6f}s")


def parse_time(text: str | None, option: str = "--from") -> TimePoint | None:
    """'+5ms', '+1.5s' (from the first event) or '1.01s', '1234.5678' (trace timestamps, seconds)."""
    if text is None:
        return None
    m = TIME_RE.match(text.replace("µ", "u"))
    if not m:
        raise UsageError(f"{option} {text!r}: not a time (examples: +5ms from the start, 1.01s as "
                         "trace-cmd report prints timestamps)")
    plus, num, unit = m.groups()
    value = float(num) * UNITS[(unit or "s").lower()]
    if not math.isfinite(value):
        raise UsageError(f"{option} {text!r}: not a finite time")
    return TimePoint(int(round(value)), bool(plus), text.strip())


def parse_duration(text: str | None, option: str = "--duration") -> int | None:
    """'10s', '200ms', '1.5' (seconds) -> ns; a length of time, not a point in the trace."""
    if text is None:
        return None
    m = TIME_RE.match(text.replace("µ", "u"))
    value = float(m.group(2)) * UNITS[(m.group(3) or "s").lower()] if m else float("nan")
    if not (math.isfinite(value) and value > 0):
        raise UsageError(f"{option} {text!r}: not a length of time (examples: 10s, 200ms, 1.5)")
    return int(round(value))


def parse_ints(values: list[str] | None, option: str) -> tuple[int, ...]:
    """Repeatable, comma-separated integer options (`--cpu 0,2 --cpu 5`)."""
    out: list[int] = []
    for v in values or []:
        for part in str(v).split(","):
            part = part.strip()
            if not part:
                continue
            try:
                out.append(int(part, 0))
            except ValueError:
                raise UsageError(f"{option} needs an integer, not {part!r}") from None
    return tuple(dict.fromkeys(out))


def parse_names(values: list[str] | None) -> tuple[str, ...]:
    return tuple(dict.fromkeys(p.strip() for v in values or [] for p in str(v).split(",") if p.strip()))


def _secs(ts: int | None) -> str:
    return "-" if ts is None else f"{ts / 1e9:.6f} s"


@dataclasses.dataclass(frozen=True)
class Filters:
    """vcpu: a vCPU id (within `vm` if given, else in every VM); vm: a VM by its id, its QEMU
    process or any of its vCPU thread pids; cpus: host CPUs an exit happened on; reasons: exit
    reason names (the kernel's or trace-cmd's, any case); start/end: the window [start, end)."""

    vcpu: int | None = None
    vm: int | None = None
    cpus: tuple[int, ...] = ()
    reasons: tuple[str, ...] = ()
    start: TimePoint | None = None
    end: TimePoint | None = None

    @classmethod
    def from_offsets(cls, vcpu: int | None = None, vm: int | None = None, start_ns: int | None = None,
                     end_ns: int | None = None, **kw: Any) -> Filters:
        """The older keywords of analyze(): start_ns/end_ns are ns from the first event."""
        for name, v in (("--from", start_ns), ("--to", end_ns)):
            if v is not None and v < 0:
                raise UsageError(f"{name} must not be negative")
        pt = {k: None if v is None else TimePoint(int(v), True) for k, v in (("start", start_ns), ("end", end_ns))}
        return cls(vcpu=vcpu, vm=vm, **pt, **kw)

    def merged(self, **kw: Any) -> Filters:
        """These filters with the given fields set where they are given (not None or empty)."""
        return dataclasses.replace(self, **{k: v for k, v in kw.items() if v not in (None, ())})

    @property
    def active(self) -> bool:
        return any(v not in (None, ()) for v in dataclasses.astuple(self))

    @property
    def per_exit(self) -> bool:
        """Filters that pick exits out of a vCPU's sequence (not whole threads or a window)."""
        return bool(self.cpus or self.reasons)

    # -- the window ---------------------------------------------------------------------------------
    def window(self, trace, ns_per_unit: float = 1.0):
        """(the trace cut to [start, end), (lo, hi) in trace units or None). Raises if it misses."""
        if self.start is None and self.end is None:
            return trace, None
        first, last = trace.meta.first_ts, trace.meta.last_ts
        if first is None:
            raise UsageError("--from/--to: the trace has no events")
        lo = None if self.start is None else self.start.resolve(first, ns_per_unit)
        hi = None if self.end is None else self.end.resolve(first, ns_per_unit)
        span = (f"the trace spans {_secs(first)} .. {_secs(last)} "
                f"(+0 .. +{(last - first) * ns_per_unit / 1e6:.3f}ms)")
        if lo is not None and hi is not None and hi <= lo:
            raise UsageError(f"--to {self.end} must come after --from {self.start}")
        # An absolute time must lie in the trace (5ms before a trace that starts at 1234 s is a
        # relative time missing its +); a relative end may run past the last event.
        for opt, pt, v in (("--from", self.start, lo), ("--to", self.end, hi)):
            if v is None:
                continue
            outside = v > last if pt.relative else not first <= v <= last + 1
            if outside or (opt == "--to" and v <= first):
                hint = "" if pt.relative else "; a + sign makes a time relative to the first event (e.g. +5ms)"
                raise UsageError(f"{opt} {pt} is outside the trace: {span}{hint}")
        return trace.slice_time(lo, hi), (lo if lo is not None else first, hi if hi is not None else last + 1)

    # -- threads and exits --------------------------------------------------------------------------
    def _vm_ids(self, threads: pl.DataFrame) -> set[int]:
        """The VM ids `vm` names: a VM id, a QEMU process (tgid) or a thread pid of the VM."""
        if self.vm is None:
            return set()
        cols = [c for c in ("vm", "pid", "tgid") if c in threads.columns]
        hit = threads.filter(pl.any_horizontal([pl.col(c) == self.vm for c in cols]))
        return set(hit["vm"].to_list())

    def threads(self, threads: pl.DataFrame) -> pl.DataFrame:
        th = threads
        if self.vm is not None:
            th = th.filter(pl.col("vm").is_in(list(self._vm_ids(threads))))
        if self.vcpu is not None:
            th = th.filter(pl.col("vcpu") == self.vcpu)
        return th

    def _reason_mask(self, ep: pl.DataFrame, strict: bool = True) -> pl.Expr:
        isas = [int(i) for i in ep["isa"].unique().to_list()] if ep.height else []
        parts, unknown = [], []
        for name in self.reasons:
            codes = [c for c in (reasons.lookup_reason(name, i) for i in isas) if c is not None]
            cond = pl.col("reason").str.to_lowercase() == name.lower()
            for isa, code in codes:
                cond = cond | ((pl.col("isa") == isa) & (pl.col("exit_reason") == code))
            if not codes and name.lower() not in {r.lower() for r in ep["reason"].unique().to_list()}:
                unknown.append(name)
            parts.append(cond)
        if unknown and strict:
            seen = ", ".join(ep.group_by("reason").len().sort("len", descending=True)["reason"].to_list())
            raise UsageError(f"--reason {', '.join(unknown)}: not an exit reason of this trace (it has: {seen})")
        return pl.any_horizontal(parts)

    def episodes(self, ep: pl.DataFrame, threads: pl.DataFrame, strict: bool = True) -> pl.DataFrame:
        """The exits these filters keep; an empty selection is an error that says what there is
        (strict=False: one window of a stream, where it may be empty)."""
        if not self.active or (self.vm is None and self.vcpu is None and not self.per_exit):
            return ep
        if not strict:
            return self._select(ep, threads)
        if ep.height == 0:
            raise UsageError("--vcpu/--pid/--cpu/--reason need exits, and this trace has no kvm_exit events")
        out = ep
        if self.vm is not None:
            ids = self._vm_ids(threads)
            if not ids:
                raise UsageError(f"--pid {self.vm}: no VM with that id or thread pid (VMs: {_vm_list(threads)})")
            out = out.filter(pl.col("vm").is_in(list(ids)))
        if self.vcpu is not None:
            out = out.filter(pl.col("vcpu") == self.vcpu)
            if out.height == 0:
                raise UsageError(f"--vcpu {self.vcpu}: no exits of that vCPU (VMs: {_vm_list(threads)})")
        if self.cpus:
            out = out.filter(pl.col("cpu").is_in(list(self.cpus)))
        if self.reasons:
            out = out.filter(self._reason_mask(ep))
        if out.height == 0:
            raise UsageError(f"no exits match {'; '.join(self.describe())}")
        return out

    def explain_empty(self, threads: pl.DataFrame) -> None:
        """Raise the error that says why a streamed selection came out empty, where one does."""
        if self.vm is not None and not self._vm_ids(threads):
            raise UsageError(f"--pid {self.vm}: no VM with that id or thread pid (VMs: {_vm_list(threads)})")
        if self.vcpu is not None and threads.height and not threads.filter(pl.col("vcpu") == self.vcpu).height:
            raise UsageError(f"--vcpu {self.vcpu}: no exits of that vCPU (VMs: {_vm_list(threads)})")

    def _select(self, ep: pl.DataFrame, threads: pl.DataFrame) -> pl.DataFrame:
        if ep.height == 0:
            return ep
        out = ep
        if self.vm is not None:
            out = out.filter(pl.col("vm").is_in(list(self._vm_ids(threads))))
        if self.vcpu is not None:
            out = out.filter(pl.col("vcpu") == self.vcpu)
        if self.cpus:
            out = out.filter(pl.col("cpu").is_in(list(self.cpus)))
        if self.reasons:
            out = out.filter(self._reason_mask(ep, strict=False))
        return out

    def warnings(self, threads: pl.DataFrame) -> list[str]:
        """What a reader of the numbers must know about the selection."""
        if self.vcpu is None or self.vm is not None:
            return []
        vms = threads.filter(pl.col("vcpu") == self.vcpu)["vm"].unique().sort().to_list()
        if len(vms) > 1:
            return [f"--vcpu {self.vcpu} without --pid merges vCPU {self.vcpu} of {len(vms)} VMs "
                    f"({', '.join(map(str, vms))}): add --pid to pick one"]
        return []

    # -- text ---------------------------------------------------------------------------------------
    def describe(self) -> list[str]:
        """One phrase per active filter, for every renderer."""
        out = []
        if self.vm is not None:
            out.append(f"VM {self.vm}")
        if self.vcpu is not None:
            out.append(f"vCPU {self.vcpu}" + ("" if self.vm is not None else " of every VM"))
        if self.cpus:
            out.append("host CPU " + ",".join(map(str, self.cpus)))
        if self.reasons:
            out.append("reason " + ",".join(self.reasons))
        if self.start is not None or self.end is not None:
            out.append(f"window {self.start or 'start'} .. {self.end or 'end'}")
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"vcpu": self.vcpu, "vm": self.vm, "cpus": list(self.cpus), "reasons": list(self.reasons),
                "from": None if self.start is None else str(self.start),
                "to": None if self.end is None else str(self.end)}


def _vm_list(threads: pl.DataFrame) -> str:
    if threads.height == 0:
        return "none"
    g = threads.group_by("vm").agg(pl.col("vcpu").sort()).sort("vm")
    return "; ".join(f"{vm} (vCPUs {', '.join(map(str, v))})" for vm, v in g.iter_rows())


def describe(filters: dict[str, Any] | None) -> list[str]:
    """describe() of a Report.summary['filters'] dict."""
    if not filters:
        return []
    f = filters
    pt = {k: None if f.get(k) is None else TimePoint(0, True, str(f[k])) for k in ("from", "to")}
    return Filters(vcpu=f.get("vcpu"), vm=f.get("vm"), cpus=tuple(f.get("cpus") or ()),
                   reasons=tuple(f.get("reasons") or ()), start=pt["from"], end=pt["to"]).describe()
