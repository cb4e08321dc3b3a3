"""Cost profiles: cycles per state operation as low/typical/high with a cited source each."""
from __future__ import annotations

import dataclasses
import tomllib
from importlib import resources
from pathlib import Path

from ..errors import UsageError
from ..tomlfile import load_toml
from .policy import OPERATIONS

LEVELS = ("low", "typical", "high")


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
    ops: dict[str, OpCost]

    def cycles(self, op: str, level: str = "typical") -> float:
        c = self.ops.get(op)
        return 0.0 if c is None else getattr(c, level)


def parse_costs(data: dict, where: str) -> CostProfile:
    known = {"name", "summary", "cpu_mhz", "ops"}
    extra = set(data) - known
    if extra:
        raise UsageError(f"cost profile {where}: unknown keys {sorted(extra)} (allowed: {sorted(known)})")
    ops = {}
    if not isinstance(data.get("ops") or {}, dict):
        raise UsageError(f"cost profile {where}: [ops] must be a table of [ops.<operation>] tables")
    for op, d in (data.get("ops") or {}).items():
        if op not in OPERATIONS:
            raise UsageError(f"cost profile {where}: unknown operation {op!r} (known: {', '.join(OPERATIONS)})")
        try:
            if any(isinstance(d[k], bool) for k in LEVELS):
                raise TypeError
            lo, ty, hi = (float(d[k]) for k in LEVELS)
        except (KeyError, TypeError, ValueError):
            raise UsageError(f"cost profile {where}: [ops.{op}] needs numeric low, typical, high") from None
        if not 0 <= lo <= ty <= hi < float("inf"):
            raise UsageError(f"cost profile {where}: [ops.{op}] needs 0 <= low <= typical <= high")
        src = d.get("source")
        if not src:
            raise UsageError(f"cost profile {where}: [ops.{op}] needs a source (or 'assumption: ...')")
        ops[op] = OpCost(lo, ty, hi, str(src))
    missing = [op for op in OPERATIONS if op not in ops]
    if missing:
        raise UsageError(f"cost profile {where}: no cost for {', '.join(missing)}")
    mhz = data.get("cpu_mhz", 2500)
    if isinstance(mhz, bool) or not isinstance(mhz, int | float) or not 0 < mhz < float("inf"):
        raise UsageError(f"cost profile {where}: cpu_mhz must be a positive number, not {mhz!r}")
    return CostProfile(str(data.get("name", where)), str(data.get("summary", "")), float(mhz), ops)


def builtin_cost_names() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files(__package__).joinpath("costs").iterdir()
                  if p.name.endswith(".toml"))


def load_costs(name_or_path: str = "epyc") -> CostProfile:
    p = Path(name_or_path)
    if p.suffix == ".toml" or p.exists():
        data = load_toml(p, "cost profile")
        return parse_costs(data, str(p))
    if name_or_path not in builtin_cost_names():
        raise UsageError(f"unknown cost profile {name_or_path!r} (built-ins: {', '.join(builtin_cost_names())})")
    text = resources.files(__package__).joinpath("costs", f"{name_or_path}.toml").read_text()
    return parse_costs(tomllib.loads(text), name_or_path)
