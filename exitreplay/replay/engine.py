"""Vectorized replay: boundaries found once per episode, each policy a weighting of them.

A policy's operations at a boundary are counts, so its per-episode operations are a linear
combination of 0/1 boundary columns; totals are column sums. The only per-policy work is the lazy
sync set (which episodes touch state that policy leaves in the CPU): a few column expressions.
"""
from __future__ import annotations

import dataclasses

import polars as pl

from ..episodes import SVM_SEGMENT_REASONS, VMX_SEGMENT_REASONS, Episodes
from ..kvm import reasons
from .costs import LEVELS, CostProfile
from .policy import BOUNDARIES, OPERATIONS, Lazy, Policy

SVM_WRITE_SEGMENT = (reasons.SVM_EXIT_WRITE_TR, reasons.SVM_EXIT_WRITE_LDTR)
NESTED_VMLOAD_VMSAVE = (reasons.SVM_EXIT_VMLOAD, reasons.SVM_EXIT_VMSAVE)


def boundary_frame(ep: pl.DataFrame) -> pl.DataFrame:
    """0/1 columns for the policy-independent boundaries of each episode."""
    has_entry = pl.col("entry_row").is_not_null()
    put = pl.col("userspace") | pl.col("sched_out")
    return ep.with_columns(
        pl.lit(1, pl.Int8).alias("b_exit"),
        put.cast(pl.Int8).alias("b_put"),
        (put & has_entry).cast(pl.Int8).alias("b_load"),
        (pl.col("userspace") & has_entry).cast(pl.Int8).alias("b_load_kvm_run"),
        (pl.col("sched_out") & ~pl.col("userspace") & has_entry).cast(pl.Int8).alias("b_load_sched"),
        (pl.col("sched_out") & ~pl.col("userspace") & has_entry & pl.col("migrated")).cast(pl.Int8)
        .alias("b_load_migrated"),
        # The user-return notifier fires if this CPU returns to user mode while guest values are
        # loaded: a KVM_RUN return, or (approximately) another task running here after a sched-out.
        (pl.col("userspace") | (pl.col("sched_out") & (pl.col("sched_next_pid").fill_null(0) != 0)))
        .cast(pl.Int8).alias("b_user_return"),
    )


def lazy_columns(ep: pl.DataFrame, lazy: Lazy, msr_traced: bool) -> tuple[pl.Expr, pl.Expr, dict[str, pl.Expr]]:
    """(any lazy access, lazy write, per-cause expressions) for one policy's lazy settings."""
    isa = pl.col("isa")
    reason = pl.col("exit_reason")
    causes: dict[str, pl.Expr] = {}
    writes: list[pl.Expr] = []
    if lazy.msrs != "none":
        r = pl.col(f"msr_lazy_{lazy.msrs}_r")
        w = pl.col(f"msr_lazy_{lazy.msrs}_w")
        causes["msr"] = (r + w) > 0
        writes.append(w > 0)
    if lazy.msr_exit_without_ecx and not msr_traced:
        svm_msr = (isa == reasons.ISA_SVM) & (reason == reasons.SVM_EXIT_MSR)
        vmx_msr = (isa == reasons.ISA_VMX) & reason.is_in([reasons.VMX_EXIT_MSR_READ, reasons.VMX_EXIT_MSR_WRITE])
        causes["msr_unknown_index"] = svm_msr | vmx_msr
        writes.append((svm_msr & (pl.col("info1") == 1)) | (vmx_msr & (reason == reasons.VMX_EXIT_MSR_WRITE)))
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
    per_episode_typical: pl.Series | None  # typical cycles of each episode (for attribution)
    nested: dict | None = None


def replay(ep: pl.DataFrame, policy: Policy, costs: CostProfile, *, first_loads: int,
           msr_traced: bool, span_ns: int, cpus: int) -> PolicyResult:
    """Operations, cycles, sync causes and exposure of one policy on an episode table."""
    b = ep if "b_exit" in ep.columns else boundary_frame(ep)
    any_lazy, lazy_w, causes = lazy_columns(b, policy.lazy, msr_traced)
    b = b.with_columns((any_lazy & ~lazy_w).cast(pl.Int8).alias("b_lazy_read"),
                       lazy_w.cast(pl.Int8).alias("b_lazy_write"))
    extra_first = {"load": first_loads, "load_kvm_run": first_loads}

    sums = b.select([pl.col(f"b_{k}").sum().alias(k) for k in BOUNDARIES]).row(0, named=True)
    bcount = {k: float(sums[k] or 0) + extra_first.get(k, 0) for k in BOUNDARIES}
    ops = {op: sum(bcount[k] * policy.count(k, op) for k in BOUNDARIES) for op in OPERATIONS}
    cycles = {lvl: sum(ops[op] * costs.cycles(op, lvl) for op in OPERATIONS) for lvl in LEVELS}

    # Typical cycles of each episode: the same linear combination, per row.
    w = {k: sum(policy.count(k, op) * costs.cycles(op, "typical") for op in OPERATIONS) for k in BOUNDARIES}
    per_ep = b.select(pl.sum_horizontal([pl.col(f"b_{k}") * w[k] for k in BOUNDARIES]).alias("c"))["c"]

    cause_counts = {}
    if causes:
        cc = b.select([v.sum().alias(k) for k, v in causes.items()]).row(0, named=True)
        cause_counts = {f"lazy:{k}": int(v or 0) for k, v in cc.items()}
    put_causes = b.select(
        (pl.col("userspace")).sum().alias("put:userspace"),
        (pl.col("preempted") & ~pl.col("userspace")).sum().alias("put:preempted"),
        (pl.col("blocked") & ~pl.col("userspace")).sum().alias("put:blocked"),
        (pl.col("migrated") & pl.col("sched_out")).sum().alias("put:migrated"),
    ).row(0, named=True)
    per_exit = any(policy.count("exit", op) for op in ("vmload", "vmsave", "wrmsr"))
    lazy_syncs = int(bcount["lazy_read"] + bcount["lazy_write"])
    syncs = int(bcount["exit"]) if per_exit else int(bcount["put"]) + lazy_syncs
    sync_causes = {**{k: int(v or 0) for k, v in put_causes.items()}, **cause_counts}
    if per_exit:
        sync_causes = {"every exit": int(bcount["exit"]), **sync_causes}

    # Exposure: host time between an exit and the first put (or the entry), while loaded.
    host_until_put = b.select(
        (pl.coalesce("put_ts", "entry_ts") - pl.col("ts")).clip(lower_bound=0).sum()).item()
    host_until_put = int(host_until_put or 0)
    if policy.ist_off == "loaded":
        ist_ns, ist_scope = host_until_put, "host time with a vCPU loaded"
    elif policy.ist_off == "always":
        ist_ns, ist_scope = span_ns * max(cpus, 1), "always (kernel without IST): trace span x CPUs"
    else:
        ist_ns, ist_scope = 0, "never"
    if policy.guest_state_live == "loaded":
        live = host_until_put
    elif policy.guest_state_live == "until_user_return":
        live = int(b.select(
            pl.when(pl.col("b_user_return") == 1).then(pl.coalesce("put_ts", "entry_ts") - pl.col("ts"))
            .otherwise(pl.col("entry_ts") - pl.col("ts")).clip(lower_bound=0).sum()).item() or 0)
    elif policy.guest_state_live == "always":
        live = span_ns * max(cpus, 1)
    else:
        live = 0
    return PolicyResult(policy, ops, bcount, cycles, sync_causes, syncs, ist_ns, ist_scope, live, per_ep)


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
    return {"l1_vmload_vmsave_exits": n, "remaining_exits": remaining, "removed_exits": removed,
            "measured_ns_removed": int(measured * removed / n) if n else 0, "measured_ns_total": measured,
            "l0_cycles_saved": l0_saved, "native_cycles_added": native}
