"""Policies as data: which state operations run at which boundary.

A policy is a TOML file (built-ins in `policies/`, or a user's own path) with
`[ops.<boundary>]` tables of operation counts. See docs/policies.md for the format and the kernel
history of each built-in.
"""
from __future__ import annotations

import dataclasses
import tomllib
from importlib import resources
from pathlib import Path

from ..errors import UsageError
from ..kvm.state import LAZY_MSR_SETS
from ..tomlfile import load_toml

# gsbase: switching the GS base around an exit by hand (save the guest's, load the host's after
# #VMEXIT, the guest's again before VMRUN), priced by method in the cost profile (costs.md).
OPERATIONS = ("vmload", "vmsave", "ltr", "wrmsr", "rdmsr", "seg_reload", "ist_toggle", "gsbase")
# Boundaries the replay finds in a trace (docs/model.md says how each is inferred).
BOUNDARIES = (
    "exit",            # every kvm_exit/kvm_entry round trip
    "load",            # every vcpu_load that switches state (first entry, re-entry after a put)
    "load_kvm_run",    # loads that start KVM_RUN (first entry, re-entry after a userspace return)
    "load_sched",      # loads after preemption or blocking without a userspace return
    "load_migrated",   # loads after preemption or blocking on another pCPU
    "load_after_user_return",  # loads that find host values in the user-return MSRs (see model.md)
    "load_after_other_vcpu",  # loads that find another vCPU's values of the same VM there
    "load_after_other_vm",  # loads that find another VM's values there
    "load_every",      # every vcpu_load call: each sched-in inside KVM_RUN and each KVM_RUN start
    "put",             # every vcpu_put that switches state (userspace return, preemption, blocking)
    "put_every",       # every vcpu_put call: each sched-out inside KVM_RUN and each KVM_RUN return
    "user_return",     # the CPU returns to host user mode while guest values are loaded
    "lazy_read",       # a handler reads state the policy left in the CPU (no put in that episode)
    "lazy_write",      # ... and writes it
)
EXPOSURE_KINDS = {"ist_off": ("none", "loaded", "always"),
                  "guest_state_live": ("none", "loaded", "until_user_return", "always")}
NESTED_MODES = ("none", "measured", "vls", "l1-ist-off")
MSR_SETS = tuple(LAZY_MSR_SETS)
# emulation: "decoded" syncs only when the instruction's bytes touch deferred state
# (kvm/x86insn.py); "all" on every kvm_emulate_insn (the conservative rule); true/false = all/none.
EMULATION_MODES = ("none", "all", "decoded")
LAZY_KEYS = {"msrs": MSR_SETS, "msrs_read": MSR_SETS, "msrs_write": MSR_SETS, "emulation": EMULATION_MODES,
             "segment_exits": bool, "task_switch": bool, "smm": bool, "nested": bool,
             "msr_exit_without_ecx": bool, "put_absorbs": bool}


@dataclasses.dataclass(frozen=True)
class Lazy:
    msrs: str = "none"
    msrs_read: str | None = None  # None: as msrs
    msrs_write: str | None = None
    emulation: str = "none"
    segment_exits: bool = False
    task_switch: bool = False
    smm: bool = False
    nested: bool = False  # the emulated VMLOAD writes, VMSAVE reads (kvm/handlers.py)
    msr_exit_without_ecx: bool = False
    # A sync before the episode's put costs nothing more when the put syncs anyway (Xen's sync
    # states on SVM); false where the access runs with guest state loaded and costs on its own
    # (VMX: vmx_read_guest_kernel_gs_base() does an RDMSR while guest_state_loaded is set).
    put_absorbs: bool = True

    @property
    def read_set(self) -> str:
        return self.msrs if self.msrs_read is None else self.msrs_read

    @property
    def write_set(self) -> str:
        return self.msrs if self.msrs_write is None else self.msrs_write

    @property
    def enabled(self) -> bool:
        return self.read_set != "none" or self.write_set != "none" or self.emulation != "none" \
            or self.segment_exits or self.task_switch or self.smm or self.nested or self.msr_exit_without_ecx


@dataclasses.dataclass(frozen=True)
class Policy:
    name: str
    isa: str  # "svm" | "vmx" | "any"
    summary: str
    sources: tuple[str, ...]
    ops: dict[str, dict[str, float]]  # boundary -> operation -> count
    lazy: Lazy
    ist_off: str
    guest_state_live: str
    nested: str = "none"
    kernel: str = ""  # the kernel (version range or commit) whose behaviour the policy stands for
    path: str | None = None

    def count(self, boundary: str, op: str) -> float:
        return self.ops.get(boundary, {}).get(op, 0)

    @property
    def syncs_every_exit(self) -> bool:
        """A policy that switches user state on every exit never defers it: each exit is a sync."""
        return any(self.count("exit", op) for op in ("vmload", "vmsave", "wrmsr"))


def _fail(where: str, msg: str) -> None:
    raise UsageError(f"policy {where}: {msg}")


def parse_policy(data: dict, where: str) -> Policy:
    known = {"name", "isa", "summary", "kernel", "sources", "ops", "lazy", "exposure", "nested"}
    extra = set(data) - known
    if extra:
        _fail(where, f"unknown keys {sorted(extra)} (allowed: {sorted(known)})")
    name = data.get("name")
    if not isinstance(name, str) or not name:
        _fail(where, "needs a name (name = \"...\")")
    sources = data.get("sources", [])
    if not isinstance(sources, list) or not all(isinstance(x, str) for x in sources):
        _fail(where, "sources must be a list of strings")
    isa = data.get("isa", "any")
    if isa not in ("svm", "vmx", "any"):
        _fail(where, f"isa must be svm, vmx or any, not {isa!r}")
    ops: dict[str, dict[str, float]] = {}
    if not isinstance(data.get("ops") or {}, dict):
        _fail(where, "[ops] must be a table of [ops.<boundary>] tables")
    for boundary, table in (data.get("ops") or {}).items():
        if boundary not in BOUNDARIES:
            _fail(where, f"unknown boundary [ops.{boundary}] (known: {', '.join(BOUNDARIES)})")
        if not isinstance(table, dict):
            _fail(where, f"[ops.{boundary}] must be a table of operation = count")
        for op, n in table.items():
            if op not in OPERATIONS:
                _fail(where, f"unknown operation {op!r} in [ops.{boundary}] (known: {', '.join(OPERATIONS)})")
            if not isinstance(n, int | float) or isinstance(n, bool) or not n >= 0 or n == float("inf"):
                _fail(where, f"[ops.{boundary}] {op} must be a non-negative number, not {n!r}")
        ops[boundary] = {op: float(n) for op, n in table.items()}
    lz = _parse_lazy(data.get("lazy") or {}, where)
    exp = data.get("exposure") or {}
    if not isinstance(exp, dict):
        _fail(where, "[exposure] must be a table")
    for k, v in exp.items():
        if k not in EXPOSURE_KINDS:
            _fail(where, f"unknown [exposure] key {k!r}")
        if v not in EXPOSURE_KINDS[k]:
            _fail(where, f"[exposure] {k} must be one of {EXPOSURE_KINDS[k]}")
    nested = data.get("nested", "none")
    if nested not in NESTED_MODES:
        _fail(where, f"nested must be one of {NESTED_MODES}")
    kernel = data.get("kernel", "")
    if not isinstance(kernel, str):
        _fail(where, "kernel must be a string (the kernel versions or commit the policy stands for)")
    return Policy(name=name, isa=isa, summary=str(data.get("summary", "")), kernel=kernel,
                  sources=tuple(sources), ops=ops, lazy=Lazy(**lz),
                  ist_off=exp.get("ist_off", "none"), guest_state_live=exp.get("guest_state_live", "none"),
                  nested=nested)


def _parse_lazy(lz: object, where: str) -> dict:
    if not isinstance(lz, dict):
        _fail(where, "[lazy] must be a table")
    out = dict(lz)
    for k, v in lz.items():
        if k not in LAZY_KEYS:
            _fail(where, f"unknown [lazy] key {k!r} (known: {', '.join(LAZY_KEYS)})")
        allowed = LAZY_KEYS[k]
        if k == "emulation" and isinstance(v, bool):
            out[k] = "all" if v else "none"
        elif allowed is bool and not isinstance(v, bool):
            _fail(where, f"[lazy] {k} must be true or false")
        elif isinstance(allowed, tuple) and v not in allowed:
            _fail(where, f"[lazy] {k} must be one of {allowed}" + (" (or true/false)" if k == "emulation" else ""))
    return out


def builtin_names() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files(__package__).joinpath("policies").iterdir()
                  if p.name.endswith(".toml"))


def load_policy(name_or_path: str) -> Policy:
    """A built-in policy by name, or a user's TOML file by path."""
    p = Path(name_or_path)
    if p.suffix == ".toml" or p.exists():
        data = load_toml(p, "policy file")
        pol = parse_policy(data, str(p))
        return dataclasses.replace(pol, path=str(p))
    if name_or_path not in builtin_names():
        raise UsageError(f"unknown policy {name_or_path!r} (built-ins: {', '.join(builtin_names())}; "
                         "or give a path to a .toml file)")
    text = resources.files(__package__).joinpath("policies", f"{name_or_path}.toml").read_text()
    return parse_policy(tomllib.loads(text), name_or_path)


def builtin_policies() -> list[Policy]:
    return [load_policy(n) for n in builtin_names()]
