"""Exit episodes: each kvm_exit paired with its vCPU thread's next kvm_entry, and what happened
on that thread in between (MSR accesses, userspace round trips, scheduling, nested transitions).

Everything is whole-table Polars work: pairing is a shift within each thread's sorted sequence of
exits and entries; attached events find their episode with an as-of join on the global row index
(rows are in timestamp order, so "between exit and entry" is a row range).
"""
from __future__ import annotations

import dataclasses

import numpy as np
import polars as pl

from .kvm import reasons, state
from .trace import Trace

# Episode classes, in the order they take precedence.
CLASSES = ("nested", "userspace", "blocked", "preempted", "kernel")
NESTED_SVM_REASONS = (reasons.SVM_EXIT_VMRUN, reasons.SVM_EXIT_VMLOAD, reasons.SVM_EXIT_VMSAVE,
                      reasons.SVM_EXIT_STGI, reasons.SVM_EXIT_CLGI)
# Exits whose handlers read or write TR/LDTR/segment state, or switch tasks / enter SMM.
SVM_SEGMENT_REASONS = (reasons.SVM_EXIT_READ_TR, reasons.SVM_EXIT_WRITE_TR, reasons.SVM_EXIT_READ_LDTR,
                       reasons.SVM_EXIT_WRITE_LDTR)
VMX_SEGMENT_REASONS = (reasons.VMX_EXIT_LDTR_TR,)
TASK_SWITCH = {reasons.ISA_SVM: reasons.SVM_EXIT_TASK_SWITCH, reasons.ISA_VMX: reasons.VMX_EXIT_TASK_SWITCH}
MSR_EXITS = {reasons.ISA_SVM: (reasons.SVM_EXIT_MSR,),
             reasons.ISA_VMX: (reasons.VMX_EXIT_MSR_READ, reasons.VMX_EXIT_MSR_WRITE,
                               reasons.VMX_EXIT_MSR_READ_IMM, reasons.VMX_EXIT_MSR_WRITE_IMM)}
TASK_RUNNING_MASK = 0xFF  # prev_state without the preempted (R+) bit: 0 means still runnable


@dataclasses.dataclass
class Episodes:
    """The episode table plus the counts of what could not be paired (never silently skipped)."""

    table: pl.DataFrame  # one row per kvm_exit (see docs/model.md)
    threads: pl.DataFrame  # one row per vCPU thread: pid, vcpu, vm, comm, exits, first_entry_row
    isa: int | None
    counts: dict[str, int]
    warnings: list[str]
    sync_events: dict[str, int]  # sync-point events seen on vCPU threads, with or without exits
    span_ns: int

    @property
    def paired(self) -> pl.DataFrame:
        return self.table.filter(pl.col("entry_row").is_not_null())


def _tbl(trace: Trace, name: str) -> pl.DataFrame | None:
    return pl.from_arrow(trace.table(name)) if trace.has(name) else None  # type: ignore[return-value]


def _attach(ep: pl.DataFrame, ev: pl.DataFrame, thread_col: str, aggs: list[pl.Expr]) -> pl.DataFrame:
    """Aggregate events `ev` (columns row + thread_col + ...) into the episode whose row range holds them."""
    if ev is None or ev.height == 0:
        return ep
    left = ev.rename({"row": "ev_row"}).with_columns(pl.col(thread_col).cast(pl.Int32).alias("_tid"))
    left = left.sort("ev_row")
    right = ep.select(pl.col("exit_row"), pl.col("pid").alias("_tid"), pl.col("entry_row"),
                      pl.col("next_exit_row")).sort("exit_row")
    j = left.join_asof(right, left_on="ev_row", right_on="exit_row", by="_tid", strategy="backward",
                     check_sortedness=False)
    inside = pl.col("exit_row").is_not_null() & (
        pl.when(pl.col("entry_row").is_not_null()).then(pl.col("ev_row") < pl.col("entry_row"))
        .otherwise(pl.col("ev_row") < pl.col("next_exit_row").fill_null(2**62))
    )
    g = j.filter(inside).group_by("exit_row").agg(aggs)
    out = ep.join(g, on="exit_row", how="left")
    return out


def build_episodes(trace: Trace) -> Episodes:
    warnings: list[str] = []
    counts: dict[str, int] = {}
    exits = _tbl(trace, "kvm_exit")
    entries = _tbl(trace, "kvm_entry")
    span = trace.meta.duration_ns

    # vCPU threads: every thread that emits per-vCPU KVM events.
    vcpu_events = [n for n in ("kvm_exit", "kvm_entry", "kvm_userspace_exit", "kvm_fpu", "kvm_msr",
                               "kvm_pio", "kvm_mmio", "kvm_emulate_insn", "kvm_vcpu_wakeup") if trace.has(n)]
    ev = trace.df()
    ev = ev.with_row_index("row").with_columns(pl.col("row").cast(pl.Int64))
    vcpu_pids = ev.filter(pl.col("event").cast(pl.Utf8).is_in(vcpu_events)).select("pid").unique()
    sync = _sync_point_counts(trace, vcpu_pids["pid"].to_list())

    if exits is None or exits.height == 0:
        warnings.append("no kvm_exit events: exit-level replay impossible (this KVM or this recording does "
                        "not fire kvm_exit/kvm_entry); sync-point events are still counted")
        empty = pl.DataFrame(schema={"exit_row": pl.Int64})
        threads = _threads(ev, vcpu_pids, None, None)
        return Episodes(empty, threads, None, counts, warnings, sync, span)

    isa_vals = exits["isa"].unique().drop_nulls().to_list() if "isa" in exits.columns else []
    isa = int(isa_vals[0]) if len(isa_vals) == 1 else (None if not isa_vals else int(max(isa_vals)))
    if len(isa_vals) > 1:
        warnings.append(f"kvm_exit events carry several ISAs {isa_vals}; using {isa}")
    if isa is None:
        warnings.append("kvm_exit events do not say their ISA; reason names unknown")
    ex = exits.select(
        pl.col("row").alias("exit_row"), pl.col("ts"), pl.col("cpu"), pl.col("pid").cast(pl.Int32),
        pl.col("exit_reason").cast(pl.Int64),
        (pl.col("isa").cast(pl.Int64) if "isa" in exits.columns else pl.lit(isa, pl.Int64)).alias("isa"),
        *(pl.col(c).cast(pl.UInt64) for c in ("info1", "info2") if c in exits.columns),
        (pl.col("vcpu_id").cast(pl.Int64) if "vcpu_id" in exits.columns else pl.lit(None, pl.Int64))
        .alias("exit_vcpu"),
    )
    if entries is None:
        entries = pl.DataFrame(schema={"row": pl.Int64, "ts": pl.Int64, "cpu": pl.Int32, "pid": pl.Int32})
        warnings.append("no kvm_entry events: exit handling times unknown")
    en = entries.select(
        pl.col("row").alias("entry_row"), pl.col("ts").alias("entry_ts"), pl.col("cpu").alias("entry_cpu"),
        pl.col("pid").cast(pl.Int32),
        (pl.col("vcpu_id").cast(pl.Int64) if "vcpu_id" in entries.columns else pl.lit(None, pl.Int64))
        .alias("entry_vcpu"),
    )

    # Pair within each thread: an exit pairs with the very next event of its thread if that is an entry.
    seq = pl.concat([
        ex.select(pl.col("pid"), pl.col("exit_row").alias("row"), pl.lit(0, pl.Int8).alias("kind")),
        en.select(pl.col("pid"), pl.col("entry_row").alias("row"), pl.lit(1, pl.Int8).alias("kind")),
    ]).sort(["pid", "row"])
    seq = seq.with_columns(
        pl.col("kind").shift(-1).over("pid").alias("next_kind"),
        pl.col("row").shift(-1).over("pid").alias("next_row"),
        pl.col("kind").shift(1).over("pid").alias("prev_kind"),
    )
    ex_seq = seq.filter(pl.col("kind") == 0)
    pairs = ex_seq.select(
        pl.col("row").alias("exit_row"),
        pl.when(pl.col("next_kind") == 1).then(pl.col("next_row")).otherwise(None).alias("entry_row"),
        pl.when(pl.col("next_kind") == 0).then(pl.col("next_row")).otherwise(None).alias("next_exit_row"),
    )
    counts["exits"] = ex.height
    counts["entries"] = en.height
    counts["exits_without_entry"] = int(ex_seq.filter(pl.col("next_kind") == 0).height)
    counts["exits_open_at_end"] = int(ex_seq.filter(pl.col("next_kind").is_null()).height)
    en_seq = seq.filter(pl.col("kind") == 1)
    counts["entries_without_exit"] = int(en_seq.filter(pl.col("prev_kind") != 0).height)
    counts["first_entries"] = int(en_seq.filter(pl.col("prev_kind").is_null()).height)

    ep = ex.join(pairs, on="exit_row", how="left").join(
        en.select("entry_row", "entry_ts", "entry_cpu", "entry_vcpu"), on="entry_row", how="left")
    ep = ep.with_columns((pl.col("entry_ts") - pl.col("ts")).alias("latency_ns"))
    neg = ep.filter(pl.col("latency_ns") < 0).height
    counts["out_of_order"] = int(neg + (trace.meta.extra.get("ts_inversions") or 0))
    if neg:
        warnings.append(f"{neg} episodes whose entry precedes the exit (timestamps out of order)")

    # What happened in between, on that thread.
    msr = _tbl(trace, "kvm_msr")
    if msr is not None:
        svm_lazy = list(state.SVM_LAZY_MSRS)
        vmx_lazy = list(state.VMX_LAZY_MSRS)
        ecx = pl.col("ecx").cast(pl.Int64)
        wr = pl.col("write").cast(pl.Int64) != 0
        ep = _attach(ep, msr, "pid", [
            pl.len().alias("n_msr"),
            (ecx.is_in(svm_lazy) & ~wr).sum().alias("msr_lazy_svm_r"),
            (ecx.is_in(svm_lazy) & wr).sum().alias("msr_lazy_svm_w"),
            (ecx.is_in(vmx_lazy) & ~wr).sum().alias("msr_lazy_vmx_r"),
            (ecx.is_in(vmx_lazy) & wr).sum().alias("msr_lazy_vmx_w"),
            ecx.first().alias("msr_first"),
        ])
    ue = _tbl(trace, "kvm_userspace_exit")
    if ue is not None:
        ep = _attach(ep, ue, "pid", [pl.len().alias("n_userspace"), pl.col("reason").first().alias("uexit_reason"),
                                     pl.col("ts").min().alias("userspace_ts")])
    ss = _tbl(trace, "sched_switch")
    if ss is not None:
        away = ss.filter(pl.col("prev_pid") != pl.col("next_pid"))
        ep = _attach(ep, away, "prev_pid", [
            pl.len().alias("n_sched_out"),
            pl.col("prev_state").cast(pl.Int64).first().alias("sched_state"),
            pl.col("ts").min().alias("sched_ts"),
            pl.col("next_pid").first().alias("sched_next_pid"),
        ])
    else:
        warnings.append("no sched_switch recorded: preemption and blocking sync points unknown")
    for name, col in (("kvm_fpu", "n_fpu"), ("kvm_emulate_insn", "n_emulate"),
                      ("kvm_nested_vmexit", "n_nested_vmexit"), ("kvm_nested_vmexit_inject", "n_nested_inject"),
                      ("kvm_nested_vmenter", "n_nested_vmenter"), ("kvm_smm_transition", "n_smm"),
                      ("kvm_vcpu_wakeup", "n_wakeup"), ("kvm_pio", "n_pio"), ("kvm_mmio", "n_mmio")):
        t = _tbl(trace, name)
        if t is not None:
            ep = _attach(ep, t, "pid", [pl.len().alias(col)])
    int_cols = ["n_msr", "msr_lazy_svm_r", "msr_lazy_svm_w", "msr_lazy_vmx_r", "msr_lazy_vmx_w", "n_userspace",
                "n_sched_out", "n_fpu", "n_emulate", "n_nested_vmexit", "n_nested_inject", "n_nested_vmenter",
                "n_smm", "n_wakeup", "n_pio", "n_mmio"]
    ep = ep.with_columns([
        (pl.col(c).fill_null(0).cast(pl.Int64) if c in ep.columns else pl.lit(0, pl.Int64)).alias(c)
        for c in int_cols
    ])
    for c, dt in (("uexit_reason", pl.Int64), ("userspace_ts", pl.Int64), ("sched_state", pl.Int64),
                  ("sched_ts", pl.Int64), ("sched_next_pid", pl.Int32), ("msr_first", pl.Int64)):
        if c not in ep.columns:
            ep = ep.with_columns(pl.lit(None, dt).alias(c))

    # Losses inside an episode make its attached events incomplete.
    drop_rows = np.array(sorted(d.row for d in trace.meta.dropped if d.row is not None), dtype=np.int64)
    if drop_rows.size:
        lo = ep["exit_row"].to_numpy()
        hi = ep["entry_row"].fill_null(2**62).to_numpy()
        crossing = np.searchsorted(drop_rows, hi, "right") - np.searchsorted(drop_rows, lo, "right") > 0
        ep = ep.with_columns(pl.Series("crosses_drop", crossing))
    else:
        ep = ep.with_columns(pl.lit(False).alias("crosses_drop"))
    counts["episodes_crossing_dropped_events"] = int(ep["crosses_drop"].sum())

    nested_reason = (pl.col("isa") == reasons.ISA_SVM) & pl.col("exit_reason").is_in(list(NESTED_SVM_REASONS))
    ep = ep.with_columns(
        (pl.col("n_userspace") > 0).alias("userspace"),
        (pl.col("n_sched_out") > 0).alias("sched_out"),
        ((pl.col("n_sched_out") > 0) & ((pl.col("sched_state") & TASK_RUNNING_MASK) == 0)).alias("preempted"),
        ((pl.col("n_sched_out") > 0) & ((pl.col("sched_state") & TASK_RUNNING_MASK) != 0)).alias("blocked"),
        (pl.col("entry_cpu").is_not_null() & (pl.col("entry_cpu") != pl.col("cpu"))).alias("migrated"),
        (nested_reason | (pl.col("n_nested_vmexit") + pl.col("n_nested_inject") + pl.col("n_nested_vmenter") > 0))
        .alias("nested"),
    )
    ep = ep.with_columns(
        pl.when(pl.col("nested")).then(pl.lit("nested"))
        .when(pl.col("userspace")).then(pl.lit("userspace"))
        .when(pl.col("blocked")).then(pl.lit("blocked"))
        .when(pl.col("preempted")).then(pl.lit("preempted"))
        .otherwise(pl.lit("kernel")).alias("cls"),
        # The first moment the thread needs host user state back (vcpu_put), if it does.
        pl.min_horizontal("userspace_ts", "sched_ts").alias("put_ts"),
    )
    names = reasons.reason_names(ep["isa"].fill_null(0).to_numpy(), ep["exit_reason"].to_numpy())
    ep = ep.with_columns(pl.Series("reason", names.to_pylist(), dtype=pl.Utf8))

    threads = _threads(ev, vcpu_pids, ex, en)
    ep = ep.join(threads.select("pid", "vcpu", "vm"), on="pid", how="left")
    ep = ep.with_columns(pl.coalesce("exit_vcpu", "entry_vcpu", "vcpu").alias("vcpu")).drop(
        "exit_vcpu", "entry_vcpu")
    ep = ep.sort("exit_row")
    # The entry that starts each thread's first run after a put is a vcpu_load: flag the episode
    # before it. A thread's very first entry is a load too (counted in counts["first_entries"]).
    return Episodes(ep, threads, isa, counts, warnings, sync, span)


def _threads(ev: pl.DataFrame, vcpu_pids: pl.DataFrame, ex: pl.DataFrame | None,
             en: pl.DataFrame | None) -> pl.DataFrame:
    """vCPU threads with their vCPU id and VM.

    vCPU id: the tracepoints' vcpu_id where recorded, else the order of first appearance (as
    `perf kvm` does). VM: sched_switch carries no tgid, so threads are grouped by pid order: QEMU
    creates a VM's vCPU threads one after another, so a vCPU id that does not grow starts a new VM.
    The VM is named by its lowest vCPU thread pid.
    """
    base = ev.filter(pl.col("pid").is_in(vcpu_pids["pid"].implode())).group_by("pid").agg(
        pl.col("comm").cast(pl.Utf8).drop_nulls().first().alias("comm"),
        pl.col("row").min().alias("first_row"),
        pl.len().alias("events"),
    )
    vids = []
    if ex is not None and ex["exit_vcpu"].null_count() < ex.height:
        vids.append(ex.group_by("pid").agg(pl.col("exit_vcpu").drop_nulls().first().alias("vid")))
    if en is not None and en.height and en["entry_vcpu"].null_count() < en.height:
        vids.append(en.group_by("pid").agg(pl.col("entry_vcpu").drop_nulls().first().alias("vid")))
    if vids:
        v = pl.concat(vids).group_by("pid").agg(pl.col("vid").drop_nulls().first())
        base = base.join(v, on="pid", how="left")
    else:
        base = base.with_columns(pl.lit(None, pl.Int64).alias("vid"))
    # Threads whose vcpu ids are unknown: number them per comm-family by first appearance.
    base = base.sort("first_row").with_columns(
        pl.coalesce(pl.col("vid"), pl.col("comm").str.extract(r"CPU (\d+)/KVM", 1).cast(pl.Int64),
                    (pl.int_range(pl.len()).cast(pl.Int64))).alias("vcpu"))
    base = base.sort("pid").with_columns(
        (pl.col("vcpu") <= pl.col("vcpu").shift(1)).fill_null(True).cum_sum().alias("_vm_idx"))
    base = base.with_columns(pl.col("pid").min().over("_vm_idx").alias("vm")).drop("_vm_idx", "vid")
    if ex is not None:
        base = base.join(ex.group_by("pid").agg(pl.len().alias("exits")), on="pid", how="left")
    else:
        base = base.with_columns(pl.lit(0, pl.UInt32).alias("exits"))
    return base.with_columns(pl.col("exits").fill_null(0)).sort("pid")


def _sync_point_counts(trace: Trace, pids: list[int]) -> dict[str, int]:
    """Sync-point events on vCPU threads, counted even when there is no kvm_exit to attach them to."""
    out: dict[str, int] = {}
    if trace.has("kvm_msr"):
        m = pl.from_arrow(trace.table("kvm_msr"))
        out["kvm_msr"] = m.height
        ecx = m["ecx"].cast(pl.Int64)
        out["kvm_msr_vmload_managed"] = int(ecx.is_in(list(state.SVM_LAZY_MSRS)).sum())
        out["kvm_msr_kernel_gs_base"] = int((ecx == state.MSR_KERNEL_GS_BASE).sum())
        out["kvm_msr_vmx_user_return"] = int(ecx.is_in(list(state.VMX_LAZY_MSRS)).sum())
    if trace.has("kvm_userspace_exit"):
        out["kvm_userspace_exit"] = trace.table("kvm_userspace_exit").num_rows
    if trace.has("sched_switch"):
        s = pl.from_arrow(trace.table("sched_switch"))
        away = s.filter(pl.col("prev_pid").is_in(pids) & (pl.col("prev_pid") != pl.col("next_pid")))
        out["sched_out_of_vcpu_threads"] = away.height
        out["preemptions"] = int(((away["prev_state"].cast(pl.Int64) & TASK_RUNNING_MASK) == 0).sum())
        out["blockings"] = away.height - out["preemptions"]
    if trace.has("kvm_fpu"):
        out["kvm_fpu"] = trace.table("kvm_fpu").num_rows
    return out
