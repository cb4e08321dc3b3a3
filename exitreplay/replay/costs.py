"""Cost profiles: cycles per state operation as low/typical/high with a cited source each, one
profile per CPU family (docs/costs.md). The default follows the trace: its CPU model where the
metadata names one, else its ISA (SVM: AMD, VMX: Intel)."""
from __future__ import annotations

import dataclasses
import re
import tomllib
from importlib import resources
from pathlib import Path

from ..errors import UsageError
from ..tomlfile import load_toml
from .policy import OPERATIONS

LEVELS = ("low", "typical", "high")
GSBASE_METHODS = ("msr", "fsgsbase")
# Names kept for profiles that were renamed (the values live in one file only).
ALIASES = {"epyc": "zen"}


@dataclasses.dataclass(frozen=True)
class OpCost:
    low: float
    typical: float
    high: float
    source: str


@dataclasses.dataclass(frozen=True)
class CostProfile:
    name: str
    summary: str
    cpu_mhz: float
    ops: dict[str, OpCost]  # gsbase priced by gsbase_method
    isa: str = "any"  # the ISA whose traces get this profile by default
    cpu_match: str = ""  # a regex on the trace's CPU model that selects this profile
    gsbase_method: str = "fsgsbase"
    gsbase_by_method: dict[str, OpCost] = dataclasses.field(default_factory=dict)

    def cycles(self, op: str, level: str = "typical") -> float:
        c = self.ops.get(op)
        return 0.0 if c is None else getattr(c, level)

    def with_gsbase_method(self, method: str) -> CostProfile:
        """The same profile with the GS base switch priced by the other method."""
        if method not in self.gsbase_by_method:
            raise UsageError(f"cost profile {self.name}: no price for the GS base switch by {method!r} "
                             f"(it has: {', '.join(self.gsbase_by_method) or 'none'})")
        return dataclasses.replace(self, gsbase_method=method, ops={**self.ops, "gsbase": self.gsbase_by_method[method]})


def parse_costs(data: dict, where: str) -> CostProfile:
    known = {"name", "summary", "cpu_mhz", "ops", "isa", "cpu_match", "gsbase"}
    extra = set(data) - known
    if extra:
        raise UsageError(f"cost profile {where}: unknown keys {sorted(extra)} (allowed: {sorted(known)})")
    ops = {}
    if not isinstance(data.get("ops") or {}, dict):
        raise UsageError(f"cost profile {where}: [ops] must be a table of [ops.<operation>] tables")
    for op, d in (data.get("ops") or {}).items():
        if op not in OPERATIONS:
            raise UsageError(f"cost profile {where}: unknown operation {op!r} (known: {', '.join(OPERATIONS)})")
        ops[op] = _op_cost(d, f"ops.{op}", where)
    method, by_method = _gsbase(data.get("gsbase"), ops, where)
    if by_method:
        ops["gsbase"] = by_method[method]
    missing = [op for op in OPERATIONS if op not in ops]
    if missing:
        raise UsageError(f"cost profile {where}: no cost for {', '.join(missing)}")
    mhz = data.get("cpu_mhz", 2500)
    if isinstance(mhz, bool) or not isinstance(mhz, int | float) or not 0 < mhz < float("inf"):
        raise UsageError(f"cost profile {where}: cpu_mhz must be a positive number, not {mhz!r}")
    isa, match = data.get("isa", "any"), data.get("cpu_match", "")
    if isa not in ("svm", "vmx", "any") or not isinstance(match, str):
        raise UsageError(f"cost profile {where}: isa must be svm, vmx or any and cpu_match a string")
    return CostProfile(str(data.get("name", where)), str(data.get("summary", "")), float(mhz), ops, isa, match,
                       method, by_method)


def _gsbase(table: object, ops: dict[str, OpCost], where: str) -> tuple[str, dict[str, OpCost]]:
    """[gsbase]: the method the profile's host uses and a price per method. The MSR method is
    counted in the profile's own RDMSR/WRMSR (`rdmsr = 1, wrmsr = 2`: save the guest's GS base,
    load the host's, load the guest's again); the FSGSBASE method has its own price."""
    if table is None:
        if "gsbase" in ops or "rdmsr" not in ops or "wrmsr" not in ops:
            return "fsgsbase", {}
        # A profile written before the gsbase operation: priced as the MSR method.
        table = {"method": "msr", "msr": {"rdmsr": 1, "wrmsr": 2, "source": (
            "no [gsbase] in this profile: the MSR method, 1 RDMSR + 2 WRMSR at its MSR costs")}}
    if not isinstance(table, dict) or table.get("method") not in GSBASE_METHODS:
        raise UsageError(f"cost profile {where}: [gsbase] needs method = one of {GSBASE_METHODS}")
    out: dict[str, OpCost] = {}
    msr = table.get("msr")
    if isinstance(msr, dict):
        try:
            r, w = float(msr.get("rdmsr", 0)), float(msr.get("wrmsr", 0))
        except (TypeError, ValueError):
            raise UsageError(f"cost profile {where}: [gsbase.msr] rdmsr and wrmsr must be counts") from None
        if "rdmsr" not in ops or "wrmsr" not in ops:
            raise UsageError(f"cost profile {where}: [gsbase.msr] needs [ops.rdmsr] and [ops.wrmsr]")
        out["msr"] = OpCost(*(r * getattr(ops["rdmsr"], lv) + w * getattr(ops["wrmsr"], lv) for lv in LEVELS),
                            str(msr.get("source") or f"{r:g} RDMSR + {w:g} WRMSR at this profile's costs"))
    if isinstance(table.get("fsgsbase"), dict):
        out["fsgsbase"] = _op_cost(table["fsgsbase"], "gsbase.fsgsbase", where)
    if table["method"] not in out:
        raise UsageError(f"cost profile {where}: [gsbase] method {table['method']!r} has no [gsbase.{table['method']}]")
    return table["method"], out


def _op_cost(d: object, table: str, where: str) -> OpCost:
    try:
        if not isinstance(d, dict) or any(isinstance(d[k], bool) for k in LEVELS):
            raise TypeError
        lo, ty, hi = (float(d[k]) for k in LEVELS)
    except (KeyError, TypeError, ValueError):
        raise UsageError(f"cost profile {where}: [{table}] needs numeric low, typical, high") from None
    if not 0 <= lo <= ty <= hi < float("inf"):
        raise UsageError(f"cost profile {where}: [{table}] needs 0 <= low <= typical <= high")
    src = d.get("source")
    if not src:
        raise UsageError(f"cost profile {where}: [{table}] needs a source (or 'assumption: ...')")
    return OpCost(lo, ty, hi, str(src))


def builtin_cost_names() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files(__package__).joinpath("costs").iterdir()
                  if p.name.endswith(".toml"))


def load_costs(name_or_path: str = "zen") -> CostProfile:
    """A built-in profile by name (or a former name, ALIASES), or a user's TOML file by path."""
    name_or_path = ALIASES.get(name_or_path, name_or_path)
    p = Path(name_or_path)
    if p.suffix == ".toml" or p.exists():
        data = load_toml(p, "cost profile")
        return parse_costs(data, str(p))
    if name_or_path not in builtin_cost_names():
        raise UsageError(f"unknown cost profile {name_or_path!r} (built-ins: {', '.join(builtin_cost_names())})")
    text = resources.files(__package__).joinpath("costs", f"{name_or_path}.toml").read_text()
    return parse_costs(tomllib.loads(text), name_or_path)


def default_costs(isa: str | None, cpu_model: str | None = None) -> CostProfile:
    """The built-in profile for a trace: the first whose cpu_match matches its CPU model, else the
    one for its ISA (SVM: zen, VMX: intel; unknown ISA: zen)."""
    profiles = [load_costs(n) for n in builtin_cost_names()]
    if cpu_model:
        for prof in profiles:
            if prof.cpu_match and re.search(prof.cpu_match, cpu_model, re.IGNORECASE):
                return prof
    for prof in profiles:
        if prof.isa == (isa or "svm"):
            return prof
    return load_costs("zen")
