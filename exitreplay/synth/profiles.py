"""Workload profiles: what a guest does between exits, as parameters in TOML files.

A profile says how long a vCPU runs in the guest, which exits end those runs (a weighted mix of
exit classes, each with its in-kernel handling time and what it leads to: a QEMU round trip, a
blocking HLT, an MSR or port or MMIO access), which host threads compete for the CPUs, and a few
scheduler facts. docs/profiles.md gives the source of every number (or marks it an assumption).

Durations are nanoseconds, drawn from `{ median = ..., sigma = ... }` (log-normal; sigma is the
standard deviation of the log, 0 for a constant) or `{ mean = ... }` (exponential).
"""
from __future__ import annotations

import dataclasses
import math
import tomllib
from importlib import resources
from pathlib import Path

import numpy as np

from ..errors import UsageError

# Exit classes the generator knows how to play out (generator._HANDLERS), with the kernel's
# exit-reason names per ISA (looked up in exitreplay.kvm.reasons). None: no such exit on that ISA.
CLASS_REASONS: dict[str, dict[str, str | None]] = {
    "hlt": {"svm": "hlt", "vmx": "HLT"},
    "msr": {"svm": "msr", "vmx": "MSR_WRITE"},  # VMX: MSR_READ for reads
    "io": {"svm": "io", "vmx": "IO_INSTRUCTION"},
    "mmio": {"svm": "npf", "vmx": "EPT_MISCONFIG"},
    "npf": {"svm": "npf", "vmx": "EPT_VIOLATION"},
    "intr": {"svm": "interrupt", "vmx": "EXTERNAL_INTERRUPT"},
    "cpuid": {"svm": "cpuid", "vmx": "CPUID"},
    "apic_write": {"svm": None, "vmx": "APIC_WRITE"},
    "timer": {"svm": None, "vmx": "PREEMPTION_TIMER"},
    "eoi": {"svm": None, "vmx": "EOI_INDUCED"},
    "vintr": {"svm": "vintr", "vmx": "INTERRUPT_WINDOW"},
    "pause": {"svm": "pause", "vmx": "PAUSE_INSTRUCTION"},
}


@dataclasses.dataclass(frozen=True)
class Dist:
    """A duration distribution in ns: log-normal (median, sigma) or exponential (mean)."""

    median: float | None = None
    sigma: float = 0.0
    mean: float | None = None
    low: float = 1.0

    @classmethod
    def parse(cls, spec, where: str) -> Dist:
        if isinstance(spec, int | float):
            return cls(median=float(spec))
        if not isinstance(spec, dict):
            raise UsageError(f"{where}: expected a number or {{ median = ..., sigma = ... }}")
        unknown = set(spec) - {"median", "sigma", "mean", "low"}
        if unknown:
            raise UsageError(f"{where}: unknown keys {sorted(unknown)}")
        d = cls(median=spec.get("median"), sigma=float(spec.get("sigma", 0.0)), mean=spec.get("mean"),
                low=float(spec.get("low", 1.0)))
        if (d.median is None) == (d.mean is None):
            raise UsageError(f"{where}: give either median (log-normal) or mean (exponential)")
        if (d.median or d.mean or 0) <= 0 or d.sigma < 0:
            raise UsageError(f"{where}: durations must be positive")
        return d

    def draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        if self.mean is not None:
            x = rng.exponential(self.mean, n)
        elif self.sigma == 0:
            x = np.full(n, float(self.median))
        else:
            x = rng.lognormal(math.log(self.median), self.sigma, n)
        return np.maximum(np.rint(x), self.low).astype(np.int64)

    @property
    def expected(self) -> float:
        if self.mean is not None:
            return float(self.mean)
        return float(self.median) * math.exp(self.sigma ** 2 / 2)


@dataclasses.dataclass(frozen=True)
class MsrSpec:
    index: int
    weight: float
    write: float  # probability that an access is a write
    data: str  # "tsc_deadline", "address", "const", "random"
    value: int = 0


@dataclasses.dataclass(frozen=True)
class PortSpec:
    port: int
    weight: float
    size: int
    write: float
    userspace: bool  # handled by QEMU (KVM_EXIT_IO) rather than in the kernel


@dataclasses.dataclass(frozen=True)
class ExitClass:
    name: str  # one of CLASS_REASONS
    weight: float
    handling: Dist  # exit -> entry in the kernel (without QEMU time, blocking or preemption)
    isa: str | None = None  # only on this ISA
    userspace: float = 0.0  # probability of a QEMU round trip (kvm_userspace_exit)
    qemu: Dist | None = None  # time in QEMU on such a round trip
    wake: Dist | None = None  # hlt: time until the interrupt that ends the halt
    pending: float = 0.0  # hlt: probability an interrupt is already pending (no halt)
    vector: int = 0xEC  # interrupt vector delivered on wake-up (Linux LOCAL_TIMER_VECTOR)
    msrs: tuple[MsrSpec, ...] = ()
    ports: tuple[PortSpec, ...] = ()
    gpa: int = 0xFEBF0000  # mmio/npf: guest-physical address base
    ioeventfd: float = 0.0  # mmio: probability the write is an ioeventfd doorbell (no QEMU)
    write: float = 1.0  # mmio/apic_write: write probability
    reg: int = 0x380  # apic_write: APIC register (TMICT)


@dataclasses.dataclass(frozen=True)
class HostThread:
    comm: str  # "{cpu}" is replaced by the CPU number
    per_cpu: int
    sleep: Dist
    run: Dist
    prio: int = 120


@dataclasses.dataclass(frozen=True)
class Nested:
    reflect: float  # probability an L2 exit is reflected to L1 (else L0 handles it alone)
    l1_run: Dist  # L1 instructions between two of its intercepted ones
    l1_handle: Dist  # L1's handling of a reflected exit, between its VMLOAD of the host area and the next VMLOAD
    intercept: Dist  # L0's emulation of an intercepted VMLOAD/VMSAVE
    vmrun: Dist  # L0's emulation of VMRUN (nested_svm_vmrun) up to kvm_entry into L2
    reflect_cost: Dist  # L0: from the L2 exit to kvm_entry into L1 (nested_svm_vmexit)


@dataclasses.dataclass(frozen=True)
class Profile:
    name: str
    summary: str
    isa: str | None  # "svm" when the profile only makes sense there
    run: Dist  # guest run time before an exit
    exits: tuple[ExitClass, ...]
    host_threads: tuple[HostThread, ...]
    poll_ns: int  # halt polling: a halt shorter than this is polled, not slept
    pre_block: Dist  # hlt exit -> sched_switch away
    wake_to_switch: Dist  # sched_waking -> sched_switch to the woken vCPU (idle CPU)
    switch_to_entry: Dist  # sched_switch in -> kvm_entry
    base_slice_ns: int  # EEVDF base slice before scaling with the CPU count
    migrate: bool
    nested: Nested | None = None
    vms: tuple[str, ...] = ()  # mixed: one VM per listed profile
    oversubscription: float = 1.0  # mixed: vCPUs per host CPU
    path: str = ""

    def exits_for(self, isa: str) -> tuple[ExitClass, ...]:
        return tuple(e for e in self.exits if e.isa in (None, isa) and CLASS_REASONS[e.name][isa] is not None)


def profile_names() -> list[str]:
    root = resources.files(__package__).joinpath("profiles")
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".toml"))


def _dist(d: dict, key: str, where: str, default=None) -> Dist | None:
    if key not in d:
        if default is None:
            return None
        return Dist.parse(default, f"{where}.{key}")
    return Dist.parse(d[key], f"{where}.{key}")


def _exit_class(e: dict, where: str) -> ExitClass:
    name = e.get("class")
    if name not in CLASS_REASONS:
        raise UsageError(f"{where}: class must be one of {', '.join(CLASS_REASONS)} (got {name!r})")
    msrs = tuple(MsrSpec(int(m["index"]), float(m.get("weight", 1)), float(m.get("write", 1)),
                         str(m.get("data", "const")), int(m.get("value", 0))) for m in e.get("msrs", []))
    ports = tuple(PortSpec(int(p["port"]), float(p.get("weight", 1)), int(p.get("size", 1)),
                           float(p.get("write", 1)), bool(p.get("userspace", True))) for p in e.get("ports", []))
    if name == "msr" and not msrs:
        raise UsageError(f"{where}: an msr class needs msrs = [{{ index = ... }}]")
    if name == "io" and not ports:
        raise UsageError(f"{where}: an io class needs ports = [{{ port = ... }}]")
    if name == "hlt" and "wake_ns" not in e:
        raise UsageError(f"{where}: an hlt class needs wake_ns (time until the waking interrupt)")
    isa = e.get("isa")
    if isa not in (None, "svm", "vmx"):
        raise UsageError(f"{where}: isa must be svm or vmx")
    return ExitClass(
        name=name, weight=float(e.get("weight", 1.0)), handling=_dist(e, "handling_ns", where, 1000),
        isa=isa, userspace=float(e.get("userspace", 0.0)), qemu=_dist(e, "qemu_ns", where, 15000),
        wake=_dist(e, "wake_ns", where), pending=float(e.get("pending", 0.0)),
        vector=int(e.get("vector", 0xEC)), msrs=msrs, ports=ports, gpa=int(e.get("gpa", 0xFEBF0000)),
        ioeventfd=float(e.get("ioeventfd", 0.0)), write=float(e.get("write", 1.0)), reg=int(e.get("reg", 0x380)),
    )


def parse_profile(d: dict, where: str = "profile") -> Profile:
    if "name" not in d:
        raise UsageError(f"{where}: no name")
    where = f"profile {d['name']}"
    if "vms" in d:
        vms = tuple(str(v) for v in d["vms"])
        if not vms:
            raise UsageError(f"{where}: vms is empty")
        return Profile(name=d["name"], summary=d.get("summary", ""), isa=None, run=Dist(median=1.0), exits=(),
                       host_threads=(), poll_ns=0, pre_block=Dist(median=1.0), wake_to_switch=Dist(median=1.0),
                       switch_to_entry=Dist(median=1.0), base_slice_ns=int(d.get("base_slice_ns", 750_000)),
                       migrate=True, vms=vms, oversubscription=float(d.get("oversubscription", 2.0)))
    g = d.get("guest", {})
    s = d.get("sched", {})
    exits = tuple(_exit_class(e, f"{where} exit {i}") for i, e in enumerate(d.get("exit", [])))
    if not exits:
        raise UsageError(f"{where}: no [[exit]] classes")
    hosts = tuple(HostThread(str(h["comm"]), int(h.get("per_cpu", 1)), Dist.parse(h["sleep_ns"], f"{where} host sleep_ns"),
                             Dist.parse(h["run_ns"], f"{where} host run_ns"), int(h.get("prio", 120)))
                  for h in d.get("host_thread", []))
    nested = None
    if "nested" in d:
        n = d["nested"]
        nested = Nested(float(n.get("reflect", 0.9)), _dist(n, "l1_run_ns", where, 400),
                        _dist(n, "l1_handle_ns", where, 3000), _dist(n, "intercept_ns", where, 1500),
                        _dist(n, "vmrun_ns", where, 4000), _dist(n, "reflect_ns", where, 3000))
    isa = d.get("isa")
    if isa not in (None, "svm", "vmx"):
        raise UsageError(f"{where}: isa must be svm or vmx")
    return Profile(
        name=d["name"], summary=d.get("summary", ""), isa=isa, run=_dist(g, "run_ns", where, 20000),
        exits=exits, host_threads=hosts, poll_ns=int(s.get("poll_ns", 10_000)),
        pre_block=_dist(s, "pre_block_ns", where, {"median": 5000, "sigma": 0.6}),
        wake_to_switch=_dist(s, "wake_to_switch_ns", where, {"median": 3000, "sigma": 0.4}),
        switch_to_entry=_dist(s, "switch_to_entry_ns", where, {"median": 3000, "sigma": 0.6}),
        base_slice_ns=int(s.get("base_slice_ns", 750_000)), migrate=bool(s.get("migrate", True)), nested=nested,
    )


def load_profile(name_or_path: str) -> Profile:
    """A built-in profile by name (`profile_names()`) or a profile .toml file."""
    p = Path(name_or_path)
    if p.suffix == ".toml":
        if not p.is_file():
            raise UsageError(f"profile file {p} does not exist")
        text, where = p.read_text(), str(p)
    elif name_or_path in profile_names():
        text = resources.files(__package__).joinpath("profiles", f"{name_or_path}.toml").read_text()
        where = name_or_path
    else:
        raise UsageError(f"unknown profile {name_or_path!r} (built-ins: {', '.join(profile_names())}, "
                         "or a .toml file)")
    try:
        d = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"profile {where}: {exc}") from None
    try:
        prof = parse_profile(d, where)
    except (KeyError, TypeError, ValueError) as exc:
        raise UsageError(f"profile {where}: bad value ({type(exc).__name__}: {exc})") from None
    return dataclasses.replace(prof, path=where)
