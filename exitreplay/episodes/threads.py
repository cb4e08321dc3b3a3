"""The vCPU thread table and the sync-point events counted on vCPU threads (with or without exits)."""
from __future__ import annotations

import numpy as np
import polars as pl
import pyarrow as pa

from ..kvm import state
from ..trace import Trace
from .locate import codes, column
from .tasks import TASK_RUNNING_MASK

# Events only a vCPU thread emits: the threads that carry them are the vCPU threads.
VCPU_EVENTS = ("kvm_exit", "kvm_entry", "kvm_userspace_exit", "kvm_fpu", "kvm_msr", "kvm_pio", "kvm_mmio",
               "kvm_emulate_insn", "kvm_vcpu_wakeup")


def summary(pid: np.ndarray, first_row: np.ndarray, events: np.ndarray, vid: pa.Array | None,
             exits: bool, run_starts: np.ndarray | None = None) -> pl.DataFrame:
    return pl.DataFrame({"pid": pid.astype(np.int64), "first_row": first_row.astype(np.int64),
                         "events": events.astype(np.int64),
                         "vid": pl.from_arrow(vid).cast(pl.Int64) if vid is not None else [None] * pid.size,
                         "_is_exit": np.full(pid.size, int(exits), np.int64),
                         "_run_starts": np.zeros(pid.size, np.int64) if run_starts is None else run_starts},
                        schema_overrides={"vid": pl.Int64})


def thread_table(trace: Trace, summaries: list[pl.DataFrame | None] | None,
                 known: pl.DataFrame | None = None) -> pl.DataFrame:
    """vCPU threads with their vCPU id and VM.

    vCPU id: the tracepoints' vcpu_id where recorded, else "CPU N/KVM" in the thread's name, else
    the order of first appearance (as `perf kvm` does). VM: sched_switch carries no tgid, so
    threads are grouped by pid order: QEMU creates a VM's vCPU threads one after another, so a vCPU
    id that does not grow starts a new VM. The VM is named by its lowest vCPU thread pid.
    known: the threads of earlier windows of a streamed trace (pid, first_row, comm, vid): the
    rules above apply to them and this window's threads together.
    """
    parts = [p for p in summaries or [] if p is not None]
    if known is not None and known.height:
        parts.append(known.select(pl.col("pid").cast(pl.Int64), pl.col("first_row").cast(pl.Int64),
                                  pl.lit(0, pl.Int64).alias("events"), pl.col("vid").cast(pl.Int64),
                                  pl.lit(0, pl.Int64).alias("_is_exit"), pl.lit(0, pl.Int64).alias("_run_starts")))
    for name in VCPU_EVENTS:
        if not trace.has(name) or (summaries is not None and name in ("kvm_exit", "kvm_entry")):
            continue
        t = trace.table(name)
        pid = pl.from_arrow(t.column("pid")).alias("pid")
        row = pl.from_arrow(t.column("row")).alias("row")
        vid = (pl.from_arrow(t.column("vcpu_id")).alias("vid") if "vcpu_id" in t.column_names
               else pl.Series("vid", [None], pl.Int64).extend_constant(None, t.num_rows - 1) if t.num_rows else None)
        if t.num_rows == 0:
            continue
        df = pl.DataFrame([pid, row, vid])
        parts.append(df.group_by("pid").agg(
            pl.col("row").min().cast(pl.Int64).alias("first_row"), pl.len().cast(pl.Int64).alias("events"),
            pl.col("vid").drop_nulls().first().cast(pl.Int64).alias("vid"),
            pl.lit(int(name == "kvm_exit"), pl.Int64).alias("_is_exit"),
            pl.lit(0, pl.Int64).alias("_run_starts")).with_columns(pl.col("pid").cast(pl.Int64)))
    if not parts:
        return pl.DataFrame(schema={"pid": pl.Int32, "comm": pl.Utf8, "vcpu": pl.Int64, "vm": pl.Int32,
                                    "first_row": pl.Int64, "events": pl.Int64, "exits": pl.Int64,
                                    "first_entries": pl.Int64})
    allp = pl.concat(parts, how="vertical_relaxed")
    base = allp.sort("first_row").group_by("pid", maintain_order=True).agg(
        pl.col("first_row").min(), pl.col("events").sum(),
        pl.col("vid").drop_nulls().first(),  # the first table (by first row) that carries it
        (pl.col("events") * pl.col("_is_exit")).sum().alias("exits"),
        pl.col("_run_starts").sum().alias("first_entries"))
    fr = base["first_row"].to_numpy() - trace.row_base
    here = fr >= 0  # threads first seen in an earlier window keep the name they had there
    comm = np.full(fr.size, None, object)
    if here.any():
        comm[here] = trace.events.column("comm").take(pa.array(fr[here])).cast(pa.string()).to_numpy(
            zero_copy_only=False)
    if known is not None and (~here).any():
        names = dict(zip(known["pid"].to_list(), known["comm"].to_list()))
        comm[~here] = [names.get(p) for p in base["pid"].to_numpy()[~here].tolist()]
    base = base.with_columns(pl.Series("comm", comm.tolist(), pl.Utf8))
    base = base.sort("first_row").with_columns(
        pl.coalesce(pl.col("vid"), pl.col("comm").str.extract(r"CPU (\d+)/KVM", 1).cast(pl.Int64),
                    (pl.int_range(pl.len()).cast(pl.Int64))).alias("vcpu"))
    return assign_vms(base.drop("vid"))


def assign_vms(threads: pl.DataFrame) -> pl.DataFrame:
    """The VM of each thread (see thread_table): by pid order, a vCPU id that does not grow
    starts a new VM, named by its lowest thread pid."""
    base = threads.sort("pid").with_columns(
        (pl.col("vcpu") <= pl.col("vcpu").shift(1)).fill_null(True).cum_sum().alias("_vm_idx"))
    base = base.with_columns(pl.col("pid").min().over("_vm_idx").cast(pl.Int32).alias("vm")).drop("_vm_idx")
    return base.with_columns(pl.col("pid").cast(pl.Int32)).select(
        "pid", "comm", "vcpu", "vm", "first_row", "events", "exits", "first_entries").sort("pid")


def sync_point_counts(trace: Trace, pids: np.ndarray) -> dict[str, int]:
    """Sync-point events on vCPU threads, counted even when there is no kvm_exit to attach them to."""
    out: dict[str, int] = {}
    if trace.has("kvm_msr"):
        m = trace.table("kvm_msr")
        ecx = pl.Series(column(m, "ecx", np.int64))
        wr = column(m, "write", np.int8) != 0
        kgs = (ecx == state.MSR_KERNEL_GS_BASE).to_numpy()
        out["kvm_msr"] = m.num_rows
        out["kvm_msr_vmload_managed"] = int(ecx.is_in(list(state.SVM_LAZY_MSRS)).sum())
        out["kvm_msr_kernel_gs_base"] = int(kgs.sum())
        out["kvm_msr_kernel_gs_base_reads"] = int((kgs & ~wr).sum())
        out["kvm_msr_kernel_gs_base_writes"] = int((kgs & wr).sum())
        out["kvm_msr_vmx_user_return"] = int(ecx.is_in(list(state.VMX_LAZY_MSRS)).sum())
    if trace.has("kvm_userspace_exit"):
        out["kvm_userspace_exit"] = trace.table("kvm_userspace_exit").num_rows
    if trace.has("sched_switch"):
        s = trace.table("sched_switch")
        prev, nxt = column(s, "prev_pid", np.int64), column(s, "next_pid", np.int64)
        away = (codes(np.asarray(pids, np.int64), prev) >= 0) & (prev != nxt)
        runnable = (column(s, "prev_state", np.int64) & TASK_RUNNING_MASK) == 0
        out["sched_out_of_vcpu_threads"] = int(away.sum())
        out["preemptions"] = int((away & runnable).sum())
        out["blockings"] = out["sched_out_of_vcpu_threads"] - out["preemptions"]
    if trace.has("kvm_fpu"):
        out["kvm_fpu"] = trace.table("kvm_fpu").num_rows
    return out
