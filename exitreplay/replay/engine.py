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

from ..episodes.boundaries import FIRST_LOADS
from ..episodes.userreturn import HOST, OTHER_VCPU, OTHER_VM
from ..kvm import handlers, reasons
from ..kvm.state import LAZY_MSR_COLUMN
from ..stats import GroupIndex
from .costs import LEVELS, CostProfile
from .policy import BOUNDARIES, OPERATIONS, Lazy, Policy

# Boundaries found in the episode table (the lazy ones depend on the policy).
EPISODE_BOUNDARIES = tuple(b for b in BOUNDARIES if not b.startswith("lazy_"))


def boundary_frame(ep: pl.DataFrame) -> pl.DataFrame:
    """The policy-independent boundary columns b_<name> of each episode (counts, mostly 0/1)."""
    # The thread entered its guest again: an entry, or one that was lost before its next exit.
    has_entry = pl.col("latency_ns").is_not_null() | (pl.col("entry_lost") if "entry_lost" in ep.columns
                                                       else pl.lit(False))
    moved = pl.col("moved") if "moved" in ep.columns else pl.lit(False)
    put = pl.col("userspace") | pl.col("sched_out") | moved
    switched = (pl.col("sched_out") | moved) & ~pl.col("userspace")  # put by a task switch, not a KVM_RUN return
    sched_in_run = pl.col("n_sched_out_kvm").cast(pl.UInt16) + moved.cast(pl.UInt16)
    uret = pl.col("uret_state")
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
        (switched & has_entry).cast(pl.Int8).alias("b_load_sched"),
        (switched & has_entry & pl.col("migrated")).cast(pl.Int8).alias("b_load_migrated"),
        # What the load's CPU holds in its user-return MSRs (episodes/userreturn.py):
        # kvm_set_user_return_msr() writes only values that differ.
        (uret == HOST).fill_null(False).cast(pl.Int8).alias("b_load_after_user_return"),
        (uret == OTHER_VCPU).fill_null(False).cast(pl.Int8).alias("b_load_after_other_vcpu"),
        (uret == OTHER_VM).fill_null(False).cast(pl.Int8).alias("b_load_after_other_vm"),
        pl.col("user_returns").cast(pl.UInt16).alias("b_user_return"),
    )


def extra_boundaries(extra: pl.DataFrame | None) -> dict[str, float]:
    """Boundaries that belong to no exit (Episodes.extra): first-entry loads and the user
    returns they arm."""
    if extra is None or extra.height == 0:
        return {}
    load = pl.col("first_kind").is_in(list(FIRST_LOADS)).fill_null(False)
    row = extra.select(
        load.sum().alias("load"), load.sum().alias("load_every"),
        pl.col("first_kind").is_in(["kvm_run", "assumed"]).fill_null(False).sum().alias("load_kvm_run"),
        (pl.col("first_kind") == "sched_in").fill_null(False).sum().alias("load_sched"),
        (pl.col("uret_state") == HOST).fill_null(False).sum().alias("load_after_user_return"),
        (pl.col("uret_state") == OTHER_VCPU).fill_null(False).sum().alias("load_after_other_vcpu"),
        (pl.col("uret_state") == OTHER_VM).fill_null(False).sum().alias("load_after_other_vm"),
        pl.col("user_returns").sum().alias("user_return"),
    ).row(0, named=True)
    return {k: float(v or 0) for k, v in row.items()}


def lazy_columns(ep: pl.DataFrame | None, lazy: Lazy, msr_traced: bool
                 ) -> tuple[pl.Expr, pl.Expr, dict[str, pl.Expr]]:
    """(any lazy access, lazy write, per-cause expressions) for one policy's lazy settings.

    The expressions apply to any episode table (`ep` is accepted for callers that pass one)."""
    isa = pl.col("isa")
    reason = pl.col("exit_reason")
    svm, vmx = isa == reasons.ISA_SVM, isa == reasons.ISA_VMX
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
        any_msr = (svm & reason.is_in(list(handlers.SVM_MSR_REASONS))) | (
            vmx & reason.is_in(list(handlers.VMX_MSR_REASONS)))
        causes["msr_unknown_index"] = any_msr
        writes.append(any_msr & pl.col("msr_write_exit"))
    if lazy.emulation == "all":
        causes["emulation"] = pl.col("n_emulate") > 0
    elif lazy.emulation == "decoded":
        causes["emulation"] = pl.col("emu_read") | pl.col("emu_write")
        writes.append(pl.col("emu_write"))
    if lazy.segment_exits:
        causes["segment"] = (svm & reason.is_in(list(handlers.SVM_SEGMENT_REASONS))) | (
            vmx & reason.is_in(list(handlers.VMX_SEGMENT_REASONS)))
        writes.append(svm & reason.is_in(list(handlers.SVM_WRITE_SEGMENT)))
    if lazy.task_switch:
        ts = (svm & (reason == handlers.TASK_SWITCH[reasons.ISA_SVM])) | (
            vmx & (reason == handlers.TASK_SWITCH[reasons.ISA_VMX]))
        causes["task_switch"] = ts
        writes.append(ts)
    if lazy.smm:
        smm = (pl.col("n_smm") > 0) | (svm & (reason == reasons.SVM_EXIT_SMI))
        causes["smm"] = smm
        writes.append(smm)
    if lazy.nested:
        nested_write = svm & reason.is_in(list(handlers.NESTED_WRITES))
        causes["nested"] = nested_write | (svm & reason.is_in(list(handlers.NESTED_READS)))
        writes.append(nested_write)
    if lazy.put_absorbs:
        # An episode with a put syncs everything at the put anyway: its lazy accesses cost nothing more.
        moved = pl.col("moved") if ep is None or "moved" in ep.columns else pl.lit(False)
        not_put = ~(pl.col("userspace") | pl.col("sched_out") | moved)
        causes = {k: (v.fill_null(False) & not_put) for k, v in causes.items()}
    else:
        causes = {k: v.fill_null(False) for k, v in causes.items()}
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


@dataclasses.dataclass
class Slots:
    """Policies with the same lazy settings share their columns (one slot each)."""
    slot: dict[Lazy, int]
    causes: dict[tuple[Lazy, str], list[str]]  # (lazy settings, variant) -> cause names


def episode_sums(b: pl.DataFrame, policies: Sequence[Policy], msr_traced: bool | None, keys: list[str],
                 index: GroupIndex | None = None) -> tuple[pl.DataFrame, Slots]:
    """Every sum the replay needs, per group of `keys` (one row per distinct combination): the
    boundary counts, each lazy slot's reads, writes and causes, the put causes and the host time
    until each put. Sums over groups add up, so these partial sums merge across windows.
    msr_traced None: the lazy sums both as if kvm_msr were traced (suffix "t") and not ("u"), for
    a stream that learns only at its end whether the trace has any (results_from_sums' variant)."""
    b = b if "b_exit" in b.columns else boundary_frame(b)
    aggs: list[pl.Expr] = [pl.col(f"b_{k}").cast(pl.Int64).sum().alias(k) for k in EPISODE_BOUNDARIES]
    slots = Slots({}, {})
    variants = {"": msr_traced} if msr_traced is not None else {"t": True, "u": False}
    for p in policies:
        if p.lazy in slots.slot:
            continue
        i = slots.slot[p.lazy] = len(slots.slot)
        for sfx, traced in variants.items():
            any_lazy, lazy_w, causes = lazy_columns(None, p.lazy, traced)
            aggs += [(any_lazy & ~lazy_w).cast(pl.Int64).sum().alias(f"lazy_read#{i}{sfx}"),
                     lazy_w.cast(pl.Int64).sum().alias(f"lazy_write#{i}{sfx}")]
            aggs += [v.cast(pl.Int64).sum().alias(f"cause#{i}{sfx}#{k}") for k, v in causes.items()]
            slots.causes[(p.lazy, sfx)] = list(causes)
    until_put = pl.coalesce(pl.col("put_ts") - pl.col("ts"), pl.col("latency_ns")).clip(lower_bound=0)
    aggs += [
        pl.col("userspace").cast(pl.Int64).sum().alias("put:userspace"),
        (pl.col("preempted") & ~pl.col("userspace")).cast(pl.Int64).sum().alias("put:preempted"),
        (pl.col("blocked") & ~pl.col("userspace")).cast(pl.Int64).sum().alias("put:blocked"),
        (pl.col("migrated") & pl.col("sched_out")).cast(pl.Int64).sum().alias("put:migrated"),
        (pl.col("moved") if "moved" in b.columns else pl.lit(False)).cast(pl.Int64).sum().alias("put:unknown"),
        until_put.sum().cast(pl.Int64).alias("host_until_put"),
        pl.when(pl.col("b_user_return") == 1).then(until_put)
        .otherwise(pl.col("latency_ns").clip(lower_bound=0)).sum().cast(pl.Int64).alias("live_until_user_return"),
    ]
    if not b.height:
        return pl.DataFrame(), slots
    # One pass: every sum per fine group (each distinct combination of the keys).
    index = index if index is not None and set(keys) <= set(index.keys) else GroupIndex(b, keys)
    fine = index.groups(keys)
    per = b.with_columns(pl.Series("_g", fine.gid)).group_by("_g").agg(aggs).sort("_g")
    return pl.concat([b.select(keys)[fine.rep[per["_g"].to_numpy()]], per.drop("_g")], how="horizontal"), slots


def results_from_sums(per: pl.DataFrame, keys: list[str], slots: Slots, policies: Sequence[Policy],
                      costs: CostProfile, *, extra: Mapping[str, float] | None = None, span_ns: int, cpus: int,
                      groups: Mapping[str, list[str]] | None = None, variant: str = "") -> dict[str, PolicyResult]:
    """Each policy's operations, cycles, sync causes and exposure from episode_sums' table
    (variant: "t" or "u" where it was summed with msr_traced None)."""
    tot = per.select(pl.exclude(keys).sum()).row(0, named=True) if per.height else {}
    grouped = {name: per.group_by(ks).agg(pl.exclude(keys).sum()) for name, ks in (groups or {}).items()} \
        if per.height else {}
    out: dict[str, PolicyResult] = {}
    for p in policies:
        i = f"{slots.slot[p.lazy]}{variant}"
        bcount = {k: float(tot.get(k) or 0) for k in EPISODE_BOUNDARIES}
        bcount["lazy_read"] = float(tot.get(f"lazy_read#{i}") or 0)
        bcount["lazy_write"] = float(tot.get(f"lazy_write#{i}") or 0)
        for k, v in (extra or {}).items():
            bcount[k] += v
        ops = {op: sum(bcount[k] * p.count(k, op) for k in BOUNDARIES) for op in OPERATIONS}
        cycles = {lvl: sum(ops[op] * costs.cycles(op, lvl) for op in OPERATIONS) for lvl in LEVELS}

        sync_causes = {k: int(tot.get(k) or 0) for k in ("put:userspace", "put:preempted", "put:blocked",
                                                         "put:migrated", "put:unknown")}
        sync_causes.update({f"lazy:{c}": int(tot.get(f"cause#{i}#{c}") or 0)
                            for c in slots.causes[(p.lazy, variant)]})
        if p.syncs_every_exit:
            syncs = int(bcount["exit"])
            sync_causes = {"every exit": syncs, **sync_causes}
        else:
            syncs = int(bcount["put"] + bcount["lazy_read"] + bcount["lazy_write"])

        host_until_put = int(tot.get("host_until_put") or 0)
        if p.ist_off == "loaded":
            ist_ns, ist_scope = host_until_put, "host time with a vCPU loaded"
        elif p.ist_off == "always":
            ist_ns, ist_scope = span_ns * max(cpus, 1), "always (kernel without IST): trace span x CPUs"
        else:
            ist_ns, ist_scope = 0, "never"
        live = {"loaded": host_until_put, "until_user_return": int(tot.get("live_until_user_return") or 0),
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


def replay_all(ep: pl.DataFrame, policies: Sequence[Policy], costs: CostProfile, *,
               extra: Mapping[str, float] | None = None, msr_traced: bool, span_ns: int, cpus: int,
               groups: Mapping[str, list[str]] | None = None, index: GroupIndex | None = None
               ) -> dict[str, PolicyResult]:
    """Operations, cycles, sync causes and exposure of each policy on an episode table.

    extra: boundary counts that belong to no episode (extra_boundaries(Episodes.extra): first
    entries and the user returns they arm). groups: name -> key columns; each result's
    by_group[name] holds the typical cycles the policy spends per group (the extra boundaries
    are not attributed to a group).
    index: a grouping of the same rows by (at least) every key of `groups`, if one exists already.
    """
    b = ep if "b_exit" in ep.columns else boundary_frame(ep)
    keys = list(dict.fromkeys(k for ks in (groups or {}).values() for k in ks))
    if not keys:
        b = b.with_columns(pl.lit(0, pl.Int8).alias("_all"))
        keys, index = ["_all"], None
    per, slots = episode_sums(b, policies, msr_traced, keys, index)
    return results_from_sums(per, keys, slots, policies, costs, extra=extra, span_ns=span_ns, cpus=cpus,
                             groups=groups)


def replay(ep: pl.DataFrame, policy: Policy, costs: CostProfile, *, extra: Mapping[str, float] | None = None,
           msr_traced: bool, span_ns: int, cpus: int) -> PolicyResult:
    """One policy on an episode table (see replay_all)."""
    return replay_all(ep, [policy], costs, extra=extra, msr_traced=msr_traced, span_ns=span_ns,
                      cpus=cpus)[policy.name]


def l1_loads(ep: pl.DataFrame, before: pl.DataFrame | None = None) -> int:
    """L1's own vcpu_loads seen from L0: an L1 KVM VMSAVEs its host save area once per load
    (svm_prepare_switch_to_guest) and, per L2 round trip, VMSAVEs the guest right after the
    #VMEXIT (__svm_vcpu_run). So the first VMSAVE exit after each VMRUN exit is per-exit, any other
    is a load. A VMSAVE before the thread's first VMRUN is taken as per-exit. before: each
    thread's last VMRUN/VMSAVE exit of an earlier window (pid, exit_reason), l1_last gives it."""
    r = l1_rows(ep)
    if before is not None and before.height:
        r = pl.concat([before.select(pl.col("pid").cast(r.schema["pid"]),
                                     pl.lit(-1).cast(r.schema["exit_row"]).alias("exit_row"),
                                     pl.col("exit_reason").cast(r.schema["exit_reason"])), r])
    if r.height == 0:
        return 0
    prev = pl.col("exit_reason").shift(1).over("pid")
    load = (pl.col("exit_reason") == reasons.SVM_EXIT_VMSAVE) & prev.is_not_null() & (prev != reasons.SVM_EXIT_VMRUN)
    return int(r.sort("pid", "exit_row").select((load & (pl.col("exit_row") >= 0)).sum()).item())


def l1_rows(ep: pl.DataFrame) -> pl.DataFrame:
    return ep.filter((pl.col("isa") == reasons.ISA_SVM)
                     & pl.col("exit_reason").is_in([reasons.SVM_EXIT_VMRUN, reasons.SVM_EXIT_VMSAVE])
                     ).select("pid", "exit_row", "exit_reason")


def l1_last(ep: pl.DataFrame, before: pl.DataFrame | None = None) -> pl.DataFrame:
    """Each thread's last VMRUN/VMSAVE exit (pid, exit_reason), for l1_loads' `before`."""
    r = l1_rows(ep).select("pid", "exit_reason")
    if before is not None and before.height:
        r = pl.concat([before.select(pl.col("pid").cast(r.schema["pid"]),
                                     pl.col("exit_reason").cast(r.schema["exit_reason"])), r])
    return r.group_by("pid", maintain_order=True).last()


def nested_counts(ep: pl.DataFrame) -> dict[str, int]:
    """The policy-independent counts replay_nested needs (sums: they merge across windows)."""
    l1 = ep.filter((pl.col("isa") == reasons.ISA_SVM)
                   & pl.col("exit_reason").is_in(list(handlers.NESTED_VMLOAD_VMSAVE)))
    n = l1.height
    return {"n": n, "measured": int(l1["latency_ns"].drop_nulls().sum()) if n else 0,
            "n_vmload": int((l1["exit_reason"] == reasons.SVM_EXIT_VMLOAD).sum()) if n else 0,
            "loads": l1_loads(ep)}


def replay_nested(ep: pl.DataFrame, policy: Policy, baseline_exit_cycles: dict[str, float],
                  costs: CostProfile) -> dict:
    """Nested SVM: L1's intercepted VMLOAD/VMSAVE exits, measured, and what a policy leaves of them."""
    return nested_from_counts(nested_counts(ep), policy, baseline_exit_cycles, costs)


def nested_from_counts(c: dict[str, int], policy: Policy, baseline_exit_cycles: dict[str, float],
                       costs: CostProfile) -> dict:
    n, measured, n_vmload, loads = c["n"], c["measured"], c["n_vmload"], c["loads"]
    n_vmsave = n - n_vmload
    native = {lvl: 0.0 for lvl in LEVELS}
    if policy.nested == "vls":
        remaining = 0
        # The instructions still run, in hardware, in L1.
        native = {lvl: n_vmload * costs.cycles("vmload", lvl) + n_vmsave * costs.cycles("vmsave", lvl)
                  for lvl in LEVELS}
    elif policy.nested == "l1-ist-off":
        # L1 running ist-off keeps, per L1 load, its host VMSAVE and guest VMLOAD, and adds at
        # the put before the next load a guest VMSAVE and host VMLOAD (L1's puts are not visible
        # from L0: one per load is assumed). Only the per-L2-exit VMLOAD/VMSAVE go.
        remaining = 4 * loads
    else:
        remaining = n
    removed = n - remaining
    # Each removed exit also saves L0's own per-exit switching (the baseline's exit operations).
    l0_saved = {lvl: removed * baseline_exit_cycles[lvl] for lvl in LEVELS}
    return {"l1_vmload_vmsave_exits": n, "l1_vmload_exits": n_vmload, "l1_vmsave_exits": n_vmsave,
            "l1_loads": loads, "remaining_exits": remaining, "removed_exits": removed,
            "measured_ns_removed": int(measured * removed / n) if n else 0, "measured_ns_total": measured,
            "l0_cycles_saved": l0_saved, "native_cycles_added": native}
