"""Vectorized replay: boundaries found once per episode, each policy a weighting of them.

A policy's operations at a boundary are counts, so its per-episode operations are a linear
combination of boundary columns; totals are column sums, and so are the totals per exit reason
or per vCPU (grouped sums). The only per-policy work is the lazy sync set (which episodes touch
state that policy leaves in the CPU): a few column expressions, summed in the same pass as the
policy-independent boundaries, for every policy at once.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import polars as pl

from ..episodes import SVM_SEGMENT_REASONS, VMX_SEGMENT_REASONS
from ..kvm import reasons
from ..kvm.state import LAZY_MSR_COLUMN
from ..stats import GroupIndex
from .costs import LEVELS, CostProfile
from .policy import BOUNDARIES, OPERATIONS, Lazy, Policy

SVM_WRITE_SEGMENT = (reasons.SVM_EXIT_WRITE_TR, reasons.SVM_EXIT_WRITE_LDTR)
NESTED_VMLOAD_VMSAVE = (reasons.SVM_EXIT_VMLOAD, reasons.SVM_EXIT_VMSAVE)
# Boundaries found in the episode table (the lazy ones depend on the policy).
EPISODE_BOUNDARIES = tuple(b for b in BOUNDARIES if not b.startswith("lazy_"))
# Boundaries a thread's first kvm_entry adds (a KVM_RUN start the episode table does not hold).
FIRST_ENTRY_BOUNDARIES = ("load", "load_kvm_run", "load_every", "load_after_user_return")


def boundary_frame(ep: pl.DataFrame) -> pl.DataFrame:
    """The policy-independent boundary columns b_<name> of each episode (counts, mostly 0/1)."""
    has_entry = pl.col("latency_ns").is_not_null()
    put = pl.col("userspace") | pl.col("sched_out")
    # The user-return notifier fires if this CPU returns to user mode while guest values are
    # loaded: a KVM_RUN return, or a user task taking the CPU after a sched-out.
    user_return = pl.col("userspace") | pl.col("sched_to_user")
    sched_in_run = pl.col("n_sched_out_kvm")
    return ep.with_columns(
        pl.lit(1, pl.Int8).alias("b_exit"),
        put.cast(pl.Int8).alias("b_put"),
        (pl.col("userspace").cast(pl.UInt16) + sched_in_run).alias("b_put_every"),
        (put & has_entry).cast(pl.Int8).alias("b_load"),
        # Each sched-out inside KVM_RUN is followed by a sched-in inside it (the thread runs again
        # to reach the entry or the userspace exit); a userspace round trip adds the KVM_RUN start.
        (pl.when(has_entry | pl.col("userspace")).then(sched_in_run).otherwise(0).cast(pl.UInt16)
         + (pl.col("userspace") & has_entry).cast(pl.UInt16)).alias("b_load_every"),
        (pl.col("userspace") & has_entry).cast(pl.Int8).alias("b_load_kvm_run"),
        (pl.col("sched_out") & ~pl.col("userspace") & has_entry).cast(pl.Int8).alias("b_load_sched"),
        (pl.col("sched_out") & ~pl.col("userspace") & has_entry & pl.col("migrated")).cast(pl.Int8)
        .alias("b_load_migrated"),
        # kvm_set_user_return_msr() writes only values that differ from what the CPU holds: after
        # a user return it holds host values again; after a migration, most likely too.
        (put & has_entry & (user_return | pl.col("migrated"))).cast(pl.Int8).alias("b_load_after_user_return"),
        user_return.cast(pl.Int8).alias("b_user_return"),
    )


def lazy_columns(ep: pl.DataFrame | None, lazy: Lazy, msr_traced: bool
                 ) -> tuple[pl.Expr, pl.Expr, dict[str, pl.Expr]]:
    """(any lazy access, lazy write, per-cause expressions) for one policy's lazy settings.

    The expressions apply to any episode table (`ep` is accepted for callers that pass one)."""
    isa = pl.col("isa")
    reason = pl.col("exit_reason")
    causes: dict[str, pl.Expr] = {}
    writes: list[pl.Expr] = []
    msr_parts = []
    if lazy.read_set != "none":
        msr_parts.append(pl.col(f"msr_lazy_{LAZY_MSR_COLUMN[lazy.read_set]}_r"))
    if lazy.write_set != "none":
        w = pl.col(f"msr_lazy_{LAZY_MSR_COLUMN[lazy.write_set]}_w")
        msr_parts.append(w)
        writes.append(w)
    if msr_parts:
        causes["msr"] = pl.any_horizontal(msr_parts)
    if lazy.msr_exit_without_ecx and not msr_traced:
        svm_msr = (isa == reasons.ISA_SVM) & (reason == reasons.SVM_EXIT_MSR)
        vmx_msr = (isa == reasons.ISA_VMX) & reason.is_in([reasons.VMX_EXIT_MSR_READ, reasons.VMX_EXIT_MSR_WRITE])
        causes["msr_unknown_index"] = svm_msr | vmx_msr
        writes.append((svm_msr | vmx_msr) & pl.col("msr_write_exit"))
    if lazy.emulation:
        causes["emulation"] = pl.col("n_emulate") > 0
    if lazy.segment_exits:
        causes["segment"] = ((isa == reasons.ISA_SVM) & reason.is_in(list(SVM_SEGMENT_REASONS))) | (
            (isa == reasons.ISA_VMX) & reason.is_in(list(VMX_SEGMENT_REASONS)))
        writes.append((isa == reasons.ISA_SVM) & reason.is_in(list(SVM_WRITE_SEGMENT)))
    if lazy.task_switch:
        ts = ((isa == reasons.ISA_SVM) & (reason == reasons.SVM_EXIT_TASK_SWITCH)) | (
            (isa == reasons.ISA_VMX) & (reason == reasons.VMX_EXIT_TASK_SWITCH))
        causes["task_switch"] = ts
        writes.append(ts)
    if lazy.smm:
        smm = (pl.col("n_smm") > 0) | ((isa == reasons.ISA_SVM) & (reason == reasons.SVM_EXIT_SMI))
        causes["smm"] = smm
        writes.append(smm)
    if lazy.nested:
        causes["nested"] = pl.col("nested")
        writes.append(pl.col("nested"))
    # An episode with a put syncs everything at the put anyway: its lazy accesses cost nothing more.
    not_put = ~(pl.col("userspace") | pl.col("sched_out"))
    causes = {k: (v.fill_null(False) & not_put) for k, v in causes.items()}
    if not causes:
        return pl.lit(False), pl.lit(False), {}
    any_ = pl.any_horizontal(list(causes.values()))
    wr = (pl.any_horizontal(writes).fill_null(False) & any_) if writes else pl.lit(False)
    return any_, wr, causes


@dataclasses.dataclass
class PolicyResult:
    policy: Policy
    ops: dict[str, float]  # executed, per operation
    boundaries: dict[str, float]  # count of each boundary
    cycles: dict[str, float]  # low/typical/high of the executed operations
    sync_causes: dict[str, int]
    syncs: int
    ist_off_ns: int | None
    ist_off_scope: str
    guest_state_live_ns: int | None
    by_group: dict[str, pl.DataFrame] = dataclasses.field(default_factory=dict)  # keys + cycles_typical
    nested: dict | None = None


def _weights(policy: Policy, costs: CostProfile, level: str = "typical") -> dict[str, float]:
    return {k: sum(policy.count(k, op) * costs.cycles(op, level) for op in OPERATIONS) for k in BOUNDARIES}


def replay_all(ep: pl.DataFrame, policies: Sequence[Policy], costs: CostProfile, *, first_loads: int,
               msr_traced: bool, span_ns: int, cpus: int,
               groups: Mapping[str, list[str]] | None = None, index: GroupIndex | None = None
               ) -> dict[str, PolicyResult]:
    """Operations, cycles, sync causes and exposure of each policy on an episode table.

    groups: name -> key columns; each result's by_group[name] holds the typical cycles the
    policy spends per group (first entries, which precede every episode, are not attributed).
    index: a grouping of the same rows by (at least) every key of `groups`, if one exists already.
    """
    b = ep if "b_exit" in ep.columns else boundary_frame(ep)
    aggs: list[pl.Expr] = [pl.col(f"b_{k}").cast(pl.Int64).sum().alias(k) for k in EPISODE_BOUNDARIES]
    # Policies with the same lazy settings share their columns: each distinct setting is one
    # lazy read and one lazy write column, summed with everything else in one pass.
    lazy_aggs: list[pl.Expr] = []
    cause_names: dict[Lazy, list[str]] = {}
    slot: dict[Lazy, int] = {}
    for p in policies:
        if p.lazy in slot:
            continue
        i = slot[p.lazy] = len(slot)
        any_lazy, lazy_w, causes = lazy_columns(None, p.lazy, msr_traced)
        lazy_aggs += [(any_lazy & ~lazy_w).cast(pl.Int64).sum().alias(f"lazy_read#{i}"),
                      lazy_w.cast(pl.Int64).sum().alias(f"lazy_write#{i}")]
        aggs += [v.cast(pl.Int64).sum().alias(f"cause#{i}#{k}") for k, v in causes.items()]
        cause_names[p.lazy] = list(causes)
    until_put = pl.coalesce(pl.col("put_ts") - pl.col("ts"), pl.col("latency_ns")).clip(lower_bound=0)
    aggs += [
        pl.col("userspace").cast(pl.Int64).sum().alias("put:userspace"),
        (pl.col("preempted") & ~pl.col("userspace")).cast(pl.Int64).sum().alias("put:preempted"),
        (pl.col("blocked") & ~pl.col("userspace")).cast(pl.Int64).sum().alias("put:blocked"),
        (pl.col("migrated") & pl.col("sched_out")).cast(pl.Int64).sum().alias("put:migrated"),
        until_put.sum().alias("host_until_put"),
        pl.when(pl.col("b_user_return") == 1).then(until_put)
        .otherwise(pl.col("latency_ns").clip(lower_bound=0)).sum().alias("live_until_user_return"),
    ]
    # One pass: every sum per fine group (each distinct combination of all grouping keys); the
    # totals and each grouping's table are sums over those few groups.
    keys = list(dict.fromkeys(k for ks in (groups or {}).values() for k in ks))
    sums = [pl.col(f"b_{k}").cast(pl.Int64).sum().alias(k) for k in EPISODE_BOUNDARIES]
    if keys and b.height:
        index = index if index is not None and set(keys) <= set(index.keys) else GroupIndex(b, keys)
        fine = index.groups(keys)
        per = b.with_columns(pl.Series("_g", fine.gid)).group_by("_g").agg(
            aggs[len(sums):] + sums + lazy_aggs).sort("_g")
        per = pl.concat([b.select(keys)[fine.rep[per["_g"].to_numpy()]], per.drop("_g")], how="horizontal")
        tot = per.select(pl.exclude(keys).sum()).row(0, named=True)
        grouped = {name: per.group_by(ks).agg(pl.exclude(keys).sum()) for name, ks in (groups or {}).items()}
    else:
        tot = b.select(aggs + lazy_aggs).row(0, named=True)
        grouped = {}
    out: dict[str, PolicyResult] = {}
    for p in policies:
        i = slot[p.lazy]
        bcount = {k: float(tot.get(k) or 0) for k in EPISODE_BOUNDARIES}
        bcount["lazy_read"] = float(tot[f"lazy_read#{i}"] or 0)
        bcount["lazy_write"] = float(tot[f"lazy_write#{i}"] or 0)
        for k in FIRST_ENTRY_BOUNDARIES:
            bcount[k] += first_loads
        ops = {op: sum(bcount[k] * p.count(k, op) for k in BOUNDARIES) for op in OPERATIONS}
        cycles = {lvl: sum(ops[op] * costs.cycles(op, lvl) for op in OPERATIONS) for lvl in LEVELS}

        sync_causes = {k: int(tot[k] or 0) for k in ("put:userspace", "put:preempted", "put:blocked",
                                                     "put:migrated")}
        sync_causes.update({f"lazy:{c}": int(tot[f"cause#{i}#{c}"] or 0) for c in cause_names[p.lazy]})
        if p.syncs_every_exit:
            syncs = int(bcount["exit"])
            sync_causes = {"every exit": syncs, **sync_causes}
        else:
            syncs = int(bcount["put"] + bcount["lazy_read"] + bcount["lazy_write"])

        host_until_put = int(tot["host_until_put"] or 0)
        if p.ist_off == "loaded":
            ist_ns, ist_scope = host_until_put, "host time with a vCPU loaded"
        elif p.ist_off == "always":
            ist_ns, ist_scope = span_ns * max(cpus, 1), "always (kernel without IST): trace span x CPUs"
        else:
            ist_ns, ist_scope = 0, "never"
        live = {"loaded": host_until_put, "until_user_return": int(tot["live_until_user_return"] or 0),
                "always": span_ns * max(cpus, 1)}.get(p.guest_state_live, 0)

        w = _weights(p, costs)
        by_group = {}
        for name, g in grouped.items():
            gkeys = list((groups or {})[name])
            expr = pl.sum_horizontal(
                [pl.col(k) * w[k] for k in EPISODE_BOUNDARIES]
                + [pl.col(f"lazy_read#{i}") * w["lazy_read"], pl.col(f"lazy_write#{i}") * w["lazy_write"]])
            by_group[name] = g.select(*gkeys, expr.cast(pl.Float64).alias("cycles_typical"))
        out[p.name] = PolicyResult(p, ops, bcount, cycles, sync_causes, syncs, ist_ns, ist_scope, live, by_group)
    return out


def replay(ep: pl.DataFrame, policy: Policy, costs: CostProfile, *, first_loads: int,
           msr_traced: bool, span_ns: int, cpus: int) -> PolicyResult:
    """One policy on an episode table (see replay_all)."""
    return replay_all(ep, [policy], costs, first_loads=first_loads, msr_traced=msr_traced,
                      span_ns=span_ns, cpus=cpus)[policy.name]


def replay_nested(ep: pl.DataFrame, policy: Policy, baseline_exit_cycles: dict[str, float],
                  costs: CostProfile) -> dict:
    """Nested SVM: L1's intercepted VMLOAD/VMSAVE exits, measured, and what a policy leaves of them."""
    l1 = ep.filter((pl.col("isa") == reasons.ISA_SVM) & pl.col("exit_reason").is_in(list(NESTED_VMLOAD_VMSAVE)))
    n = l1.height
    measured = int(l1["latency_ns"].drop_nulls().sum()) if n else 0
    n_vmload = int((l1["exit_reason"] == reasons.SVM_EXIT_VMLOAD).sum()) if n else 0
    n_vmsave = n - n_vmload
    if policy.nested == "vls":
        remaining = 0
        # The instructions still run, in hardware, in L1.
        native = {lvl: n_vmload * costs.cycles("vmload", lvl) + n_vmsave * costs.cycles("vmsave", lvl)
                  for lvl in LEVELS}
    elif policy.nested == "l1-ist-off":
        remaining = 0
        native = {lvl: 0.0 for lvl in LEVELS}
    else:
        remaining = n
        native = {lvl: 0.0 for lvl in LEVELS}
    removed = n - remaining
    # Each removed exit also saves L0's own per-exit switching (the baseline's exit operations).
    l0_saved = {lvl: removed * baseline_exit_cycles[lvl] for lvl in LEVELS}
    return {"l1_vmload_vmsave_exits": n, "l1_vmload_exits": n_vmload, "l1_vmsave_exits": n_vmsave,
            "remaining_exits": remaining, "removed_exits": removed,
            "measured_ns_removed": int(measured * removed / n) if n else 0, "measured_ns_total": measured,
            "l0_cycles_saved": l0_saved, "native_cycles_added": native}
