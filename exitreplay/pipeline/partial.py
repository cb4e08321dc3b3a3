"""What a fold adds up (Partial), with the facts a Report needs (Snapshot), and how the
snapshots of consecutive time ranges merge: every part is a sum, a union or a table of counts."""
from __future__ import annotations

import copy
import dataclasses
from collections import Counter

import polars as pl

from .latency import KEYS, LatencyCounts

# What the Report needs besides the sums: the settings and the file's facts.
FACTS = ("meta", "first_ts", "last_ts", "events", "dropped", "threads", "isa", "msr_traced", "slots", "raw_tsc",
         "t_mhz", "ns_per_unit", "bounds", "in_window", "win_first", "win_last", "policies", "costs_arg",
         "baseline", "flt", "cpu_mhz", "tsc_mhz", "gsbase_method", "all_policies")


@dataclasses.dataclass
class Snapshot:
    part: Partial
    facts: dict


@dataclasses.dataclass
class Partial:
    """What the owned exits of the views so far add up to (every part merges by addition)."""
    sums: pl.DataFrame = dataclasses.field(default_factory=pl.DataFrame)  # per (reason, pid, vcpu)
    lat: LatencyCounts = dataclasses.field(default_factory=LatencyCounts)
    views: dict[str, LatencyCounts] = dataclasses.field(default_factory=lambda: event_view_counts())  # per kind
    extra: Counter = dataclasses.field(default_factory=Counter)
    counts: Counter = dataclasses.field(default_factory=Counter)
    classes: Counter = dataclasses.field(default_factory=Counter)
    sync: Counter = dataclasses.field(default_factory=Counter)
    nested: Counter = dataclasses.field(default_factory=Counter)
    # Loads that found another vCPU's values: whether it was one of the same VM is decided at
    # the end, with every thread known (reason, pid, vcpu, prev pid, n; extras without reason).
    others: pl.DataFrame = dataclasses.field(default_factory=pl.DataFrame)
    extra_others: pl.DataFrame = dataclasses.field(default_factory=pl.DataFrame)
    exit_cpus: set = dataclasses.field(default_factory=set)
    seen: set = dataclasses.field(default_factory=set)
    sched_cpus: set = dataclasses.field(default_factory=set)
    warnings: list[str] = dataclasses.field(default_factory=list)


def event_view_counts() -> dict[str, LatencyCounts]:
    """The value counts of the ioport/mmio/msr/npf views (views.py), keyed by each view's keys."""
    from ..views import KEY_TYPES

    return {kind: LatencyCounts(key_schema=types) for kind, types in KEY_TYPES.items()}


def add_counts(acc: pl.DataFrame, new: pl.DataFrame, keys: list[str], col: str) -> pl.DataFrame:
    if not new.height:
        return acc
    if not acc.height:
        return new
    return pl.concat([acc, new], how="vertical_relaxed").group_by(keys).agg(pl.col(col).sum())


def _same_vm(df: pl.DataFrame, vm_of_pid: pl.DataFrame) -> pl.DataFrame:
    prev = vm_of_pid.rename({"pid": "uret_prev_pid", "vm": "prev_vm"})
    return df.join(vm_of_pid, on="pid", how="left").join(prev, on="uret_prev_pid", how="left").with_columns(
        (pl.col("vm") == pl.col("prev_vm")).fill_null(False).alias("same"))


def reclassify(part: Partial, vm_of_pid: pl.DataFrame) -> tuple[pl.DataFrame, dict]:
    """The sums and extras with each other-vCPU load split by the final VM of both threads."""
    sums, extra = part.sums, dict(part.extra)
    if part.others.height:
        o = _same_vm(part.others, vm_of_pid).group_by(KEYS).agg(
            pl.col("len").filter(pl.col("same")).sum().alias("_v"), pl.col("len").filter(~pl.col("same")).sum()
            .alias("_m"))
        sums = sums.join(o, on=KEYS, how="left").with_columns(
            pl.col("_v").fill_null(0).alias("load_after_other_vcpu"),
            pl.col("_m").fill_null(0).alias("load_after_other_vm")).drop("_v", "_m")
    if part.extra_others.height:
        e = _same_vm(part.extra_others, vm_of_pid)
        extra["load_after_other_vcpu"] = float(e.filter(pl.col("same"))["len"].sum())
        extra["load_after_other_vm"] = float(e.filter(~pl.col("same"))["len"].sum())
    return sums, extra


def merge(snaps: list[Snapshot]) -> Snapshot:
    """Workers' snapshots of consecutive time ranges (in time order) as one."""
    snaps = [s for s in snaps if s is not None and s.facts.get("meta") is not None]
    if not snaps:
        raise ValueError("nothing to merge")
    a = copy.deepcopy(snaps[0])
    for b in snaps[1:]:
        _merge_part(a.part, b.part)
        fa, fb = a.facts, b.facts
        fa["events"] += fb["events"]
        fa["dropped"] = [*fa["dropped"], *fb["dropped"]]
        fa["first_ts"] = fb["first_ts"] if fa["first_ts"] is None else fa["first_ts"]
        fa["last_ts"] = fb["last_ts"] if fb["last_ts"] is not None else fa["last_ts"]
        fa["meta"] = fb["meta"]  # the last range's: the file's warnings are complete there
        fa["isa"] = fa["isa"] if fa["isa"] is not None else fb["isa"]
        fa["msr_traced"] = fa["msr_traced"] or fb["msr_traced"]
        fa["slots"] = fa["slots"] or fb["slots"]
        fa["threads"] = _merge_threads(fa["threads"], fb["threads"])
    return a


def _merge_part(a: Partial, b: Partial) -> None:
    a.sums = b.sums if not a.sums.height else a.sums if not b.sums.height else pl.concat(
        [a.sums, b.sums], how="diagonal_relaxed").group_by(KEYS).agg(pl.exclude(KEYS).sum())
    a.lat.merge(b.lat)
    for kind, counts in b.views.items():
        a.views[kind].merge(counts)
    for f in ("extra", "counts", "classes", "sync", "nested"):
        getattr(a, f).update(getattr(b, f))
    a.others = add_counts(a.others, b.others, KEYS + ["uret_prev_pid"], "len")
    a.extra_others = add_counts(a.extra_others, b.extra_others, ["pid", "uret_prev_pid"], "len")
    a.exit_cpus |= b.exit_cpus
    a.sched_cpus |= b.sched_cpus
    a.seen |= b.seen
    a.warnings += [w for w in b.warnings if w not in a.warnings]


def _merge_threads(a: pl.DataFrame, b: pl.DataFrame) -> pl.DataFrame:
    """Both workers' vCPU threads (the earlier range's name and vCPU id first), VMs drawn again."""
    if not a.height or not b.height:
        return a if a.height else b
    from ..episodes.threads import assign_vms

    both = pl.concat([a, b.filter(~pl.col("pid").is_in(a["pid"].implode()))], how="vertical_relaxed")
    return assign_vms(both.drop("vm"))
