"""Cost profiles: cycles per state operation as low/typical/high with a cited source each."""
from __future__ import annotations

import dataclasses
import tomllib
from importlib import resources
from pathlib import Path

from ..errors import UsageError
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
    ops = {}
    for op, d in (data.get("ops") or {}).items():
        if op not in OPERATIONS:
            raise UsageError(f"cost profile {where}: unknown operation {op!r} (known: {', '.join(OPERATIONS)})")
        try:
            lo, ty, hi = (float(d[k]) for k in LEVELS)
        except (KeyError, TypeError, ValueError):
            raise UsageError(f"cost profile {where}: [ops.{op}] needs numeric low, typical, high") from None
        if not lo <= ty <= hi:
            raise UsageError(f"cost profile {where}: [ops.{op}] needs low <= typical <= high")
        src = d.get("source")
        if not src:
            raise UsageError(f"cost profile {where}: [ops.{op}] needs a source (or 'assumption: ...')")
        ops[op] = OpCost(lo, ty, hi, str(src))
    missing = [op for op in OPERATIONS if op not in ops]
    if missing:
        raise UsageError(f"cost profile {where}: no cost for {', '.join(missing)}")
    return CostProfile(str(data.get("name", where)), str(data.get("summary", "")),
                       float(data.get("cpu_mhz", 2500)), ops)


def builtin_cost_names() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files(__package__).joinpath("costs").iterdir()
                  if p.name.endswith(".toml"))


def load_costs(name_or_path: str = "epyc") -> CostProfile:
    p = Path(name_or_path)
    if p.suffix == ".toml" or p.exists():
        if not p.exists():
            raise UsageError(f"cost profile {p} does not exist")
        try:
            return parse_costs(tomllib.loads(p.read_text()), str(p))
        except tomllib.TOMLDecodeError as exc:
            raise UsageError(f"cost profile {p}: not valid TOML: {exc}") from None
    if name_or_path not in builtin_cost_names():
        raise UsageError(f"unknown cost profile {name_or_path!r} (built-ins: {', '.join(builtin_cost_names())})")
    text = resources.files(__package__).joinpath("costs", f"{name_or_path}.toml").read_text()
    return parse_costs(tomllib.loads(text), name_or_path)
