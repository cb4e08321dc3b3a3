"""Exit episodes: each kvm_exit paired with its vCPU thread's next kvm_entry, and what happened
on that thread in between (MSR accesses, userspace round trips, scheduling, nested transitions).

Everything is whole-array work (replay/locate.py): exits and entries are put in (thread, row)
order once; an event finds its episode with one binary search of its key (thread << 39 | row)
among the exits; per-episode aggregates are bincounts and scatters. Rows are in timestamp order,
so "between exit and entry" is a row range. The whole event table is never copied: only the
per-event tables and columns the replay needs are read.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from .kvm import reasons, state
from .replay.locate import BIG, ROW_MASK, SHIFT, Locator, codes, column, keys, runs, thread_order, unique
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
# Events only a vCPU thread emits: the threads that carry them are the vCPU threads.
VCPU_EVENTS = ("kvm_exit", "kvm_entry", "kvm_userspace_exit", "kvm_fpu", "kvm_msr", "kvm_pio", "kvm_mmio",
               "kvm_emulate_insn", "kvm_vcpu_wakeup")
# Attached events counted per episode (table -> column).
COUNTED_EVENTS = (("kvm_fpu", "n_fpu"), ("kvm_emulate_insn", "n_emulate"), ("kvm_nested_vmexit", "n_nested_vmexit"),
                  ("kvm_nested_vmexit_inject", "n_nested_inject"), ("kvm_nested_vmenter", "n_nested_vmenter"),
                  ("kvm_nested_vmrun", "n_nested_vmenter"),  # its name before Linux 5.x
                  ("kvm_smm_transition", "n_smm"), ("kvm_vcpu_wakeup", "n_wakeup"), ("kvm_pio", "n_pio"),
                  ("kvm_mmio", "n_mmio"))
# A task that takes the CPU after a sched-out returns to user mode there (firing the user-return
# notifier) unless it is the idle task (pid 0) or a kernel thread. sched_switch carries only the
# next task's comm, so kernel threads are told by the names the kernel gives them (kthread_create
# formats in kernel/ and drivers/, "vhost-%d" in drivers/vhost/vhost.c: a kthread before 6.4 and a
# vhost_task, which never returns to user mode either, since). Anything else counts as a user task.
KERNEL_THREAD_COMM = (r"^(swapper|kworker/|ksoftirqd/|migration/|rcu_|rcuo|rcub/|cpuhp/|idle_inject/|watchdog/|"
                      r"irq/|kthreadd$|kcompactd|kswapd|khugepaged|ksmd$|kauditd$|oom_reaper$|writeback$|"
                      r"kblockd$|jbd2/|kvm-nx-lpage|kvm-pit/|vhost-|khungtaskd$|kdevtmpfs$|scsi_|nvme-|"
                      r"ext4-|xfs|btrfs-|kcryptd|kdmflush|psimon$|kthrotld$|edac-poller$)")
# Bit of each lazy MSR set in the per-episode flags: reads in the low nibble, writes in the high.
MSR_SET_BITS = {name: i for i, name in enumerate(state.LAZY_MSR_COLUMN)}


@dataclasses.dataclass
class Episodes:
    """The episode table plus the counts of what could not be paired (never silently skipped)."""

    table: pl.DataFrame  # one row per kvm_exit (see docs/model.md)
    threads: pl.DataFrame  # one row per vCPU thread: pid, comm, vcpu, vm, first_row, events, exits, first_entries
    isa: int | None
    counts: dict[str, int]
    warnings: list[str]
    sync_events: dict[str, int]  # sync-point events seen on vCPU threads, with or without exits
    span_ns: int

    @property
    def paired(self) -> pl.DataFrame:
        return self.table.filter(pl.col("entry_row").is_not_null())


def _nullable(values: np.ndarray, valid: np.ndarray, dtype=None) -> pl.Series:
    return pl.from_arrow(pa.array(values if dtype is None else values.astype(dtype), mask=~valid))


def build_episodes(trace: Trace) -> Episodes:
    warnings: list[str] = []
    counts: dict[str, int] = {}
    span = trace.meta.duration_ns
    if not trace.has("sched_switch"):
        warnings.append("no sched_switch recorded: preemption sync points unknown (nor blocking ones: "
                        "record sched/sched_switch with the kvm events)")

    if not trace.has("kvm_exit") or trace.table("kvm_exit").num_rows == 0:
        threads = _threads(trace, None)
        sync = _sync_point_counts(trace, threads["pid"].to_numpy())
        names = ", ".join(f"{k} {v}" for k, v in sync.items() if not k.startswith("kvm_msr_")) or "none"
        warnings.append("no kvm_exit events: exit-level replay impossible (this KVM or this recording does "
                        "not fire kvm_exit/kvm_entry); only sync-point events are counted: " + names)
        return Episodes(pl.DataFrame(schema={"exit_row": pl.Int64}), threads, None, counts, warnings, sync, span)

    ex = trace.table("kvm_exit")
    n = ex.num_rows
    isa_vals = pc.unique(ex.column("isa")).drop_null().to_pylist() if "isa" in ex.column_names else []
    isa = int(isa_vals[0]) if len(isa_vals) == 1 else (None if not isa_vals else int(max(isa_vals)))
    if len(isa_vals) > 1:
        warnings.append(f"kvm_exit events carry several ISAs {sorted(isa_vals)}; using {isa}")
    if isa is None:
        warnings.append("kvm_exit events do not say their ISA; reason names unknown")
    en = trace.table("kvm_entry") if trace.has("kvm_entry") else None
    if en is None:
        warnings.append("no kvm_entry events: exit handling times unknown")
        en = pa.table({"row": pa.array([], pa.int64()), "ts": pa.array([], pa.int64()),
                       "cpu": pa.array([], pa.int32()), "pid": pa.array([], pa.int32())})

    ex_row, ex_pid = column(ex, "row", np.int64), column(ex, "pid", np.int32)
    upids = unique([ex_pid, column(en, "pid", np.int32)])

    # Exits in (thread, row) order, and where each one's episode ends.
    o = thread_order(ex_code := codes(upids, ex_pid))
    exit_keys = keys(ex_code[o], ex_row[o])
    same_next = np.zeros(n, bool)
    same_next[:-1] = (exit_keys[1:] >> SHIFT) == (exit_keys[:-1] >> SHIFT)
    end_row = np.full(n, BIG)
    end_row[:-1] = np.where(same_next[:-1], exit_keys[1:] & ROW_MASK, BIG)  # the next exit of the thread
    paired, ent, first_entries, entry_runs = _pair(exit_keys, end_row, upids, en)
    # Per-thread summaries of the two big tables, for the thread table (no group-by over them).
    c, start, size = runs(exit_keys)
    vid = ex.column("vcpu_id").take(pa.array(o[start])) if "vcpu_id" in ex.column_names else None
    summaries = [_summary(upids[c], exit_keys[start] & ROW_MASK, size, vid, True), entry_runs]
    end_row[paired] = column(en, "row", np.int64)[ent[paired]]
    n_paired = int(paired.sum())
    counts.update(exits=n, entries=en.num_rows, exits_without_entry=int((~paired & same_next).sum()),
                  exits_open_at_end=int((~paired & ~same_next).sum()),
                  entries_without_exit=en.num_rows - n_paired - first_entries, first_entries=first_entries)
    del same_next
    paired_t = np.empty(n, bool)
    paired_t[o] = paired
    ent_t = np.zeros(n, np.int64)
    ent_t[o] = ent
    del paired, ent
    locate = Locator(exit_keys, end_row, o)

    cols: dict[str, object] = {}
    entry_row = column(en, "row", np.int64)[ent_t] if en.num_rows else np.zeros(n, np.int64)
    entry_cpu = column(en, "cpu", np.int32)[ent_t] if en.num_rows else np.zeros(n, np.int32)
    ts = column(ex, "ts", np.int64)
    latency = (column(en, "ts", np.int64)[ent_t] if en.num_rows else ts) - ts
    exit_cpu = column(ex, "cpu", np.int32)
    migrated = paired_t & (entry_cpu != exit_cpu)
    crosses = _crossing_drops(trace, ts, exit_cpu, ts + latency, entry_cpu, paired_t)
    entry_vcpu = None
    if en.num_rows and "vcpu_id" in en.column_names and ("vcpu_id" not in ex.column_names
                                                          or ex.column("vcpu_id").null_count):
        entry_vcpu = np.where(paired_t, column(en, "vcpu_id", np.int64, -1)[ent_t], -1)
    del ent_t
    cols["entry_row"] = _nullable(entry_row, paired_t)
    cols["entry_cpu"] = _nullable(entry_cpu, paired_t)
    cols["latency_ns"] = _nullable(latency, paired_t)
    neg = int((paired_t & (latency < 0)).sum())
    del entry_row, entry_cpu, latency
    counts["out_of_order"] = neg + int(trace.meta.extra.get("ts_inversions") or 0)
    if neg:
        warnings.append(f"{neg} episodes whose entry precedes the exit (timestamps out of order)")
    counts["episodes_crossing_dropped_events"] = int(crosses.sum())
    if crosses.any():
        warnings.append(f"{int(crosses.sum())} episodes cross dropped events: their attached events (and "
                        "sync points) may be incomplete (see crosses_drop)")

    # What happened in between, on that thread.
    put_ts = np.full(n, BIG)
    us_row = None
    if trace.has("kvm_userspace_exit"):
        ue = trace.table("kvm_userspace_exit")
        loc = locate(codes(upids, column(ue, "pid", np.int32)), column(ue, "row", np.int64))
        cols["n_userspace"] = loc.count(n)
        reason = loc.first(column(ue, "reason", np.int16), n, -1)
        cols["uexit_reason"] = _nullable(reason, reason != -1)
        loc.first_into(column(ue, "ts", np.int64), put_ts, np.minimum)
        us_row = loc.first(column(ue, "row", np.int64), n, BIG)
    sched_state = None
    if trace.has("sched_switch"):
        ss = trace.table("sched_switch")
        prev_pid, next_pid = column(ss, "prev_pid", np.int32), column(ss, "next_pid", np.int32)
        rows = column(ss, "row", np.int64)
        loc = locate(np.where(prev_pid != next_pid, codes(upids, prev_pid), -1), rows)
        cols["n_sched_out"] = loc.count(n, dtype=np.uint16)
        # vcpu_put runs from the preempt notifier only while KVM_RUN is under way (before the
        # kvm_userspace_exit that ends it); later sched-outs of the thread are plain task switches.
        inside = loc.loc >= 0
        in_run = inside.copy()
        if us_row is not None:
            in_run[inside] = rows[inside] < us_row[loc.loc[inside]]
        cols["n_sched_out_kvm"] = loc.count(n, in_run, np.uint16)
        sched_state = loc.first(column(ss, "prev_state", np.int16), n, -1)
        loc.first_into(column(ss, "ts", np.int64), put_ts, np.minimum)
        nxt = loc.first(next_pid, n, -1)
        cols["sched_next_pid"] = _nullable(nxt, nxt != -1)
        user_next = next_pid != 0
        if "next_comm" in ss.column_names:
            comm = ss.column("next_comm").cast(pa.string())
            kthread = pc.fill_null(pc.match_substring_regex(comm, KERNEL_THREAD_COMM), False)
            user_next &= ~np.asarray(kthread.to_numpy(zero_copy_only=False), bool)
        cols["sched_to_user"] = loc.any(n, user_next)
        del loc, rows, prev_pid, next_pid, inside, in_run
    del us_row
    if trace.has("kvm_msr"):
        ms = trace.table("kvm_msr")
        loc = locate(codes(upids, column(ms, "pid", np.int32)), column(ms, "row", np.int64))
        ecx = column(ms, "ecx", np.int64)
        cols["n_msr"] = loc.count(n)
        first = loc.first(ecx.astype(np.uint32), n, np.uint32(0xFFFFFFFF))  # not an MSR index
        cols["msr_first"] = _nullable(first, first != 0xFFFFFFFF)
        # One pass over the MSR events: a bit per lazy set and direction, OR-ed per episode.
        bit_of = {}
        for set_name, bit in MSR_SET_BITS.items():
            for msr in state.LAZY_MSR_SETS[set_name]:
                bit_of[msr] = bit_of.get(msr, 0) | (1 << bit)
        sets = pl.Series(ecx).replace_strict(bit_of, default=0, return_dtype=pl.UInt8).to_numpy()
        wr = column(ms, "write", np.int8) != 0
        flags = loc.bits(n, np.where(wr, sets << 4, sets).astype(np.uint8))
        for set_name, bit in MSR_SET_BITS.items():
            suffix = state.LAZY_MSR_COLUMN[set_name]
            cols[f"msr_lazy_{suffix}_r"] = (flags & (1 << bit)) != 0
            cols[f"msr_lazy_{suffix}_w"] = (flags & (16 << bit)) != 0
        del loc, ecx, sets, wr, flags
    for name, col in COUNTED_EVENTS:
        if trace.has(name):
            t = trace.table(name)
            c = locate(codes(upids, column(t, "pid", np.int32)), column(t, "row", np.int64)).count(n)
            cols[col] = c if col not in cols else np.minimum(cols[col].astype(np.uint16) + c, 255).astype(np.uint8)
    del locate, exit_keys, end_row, o

    zero8 = np.zeros(n, np.uint8)
    for c in ("n_msr", "n_userspace", *dict.fromkeys(c for _, c in COUNTED_EVENTS)):
        cols.setdefault(c, zero8)
    for c in ("n_sched_out", "n_sched_out_kvm"):
        cols.setdefault(c, np.zeros(n, np.uint16))
    for c in ("sched_to_user", *(f"msr_lazy_{x}_{d}" for x in state.LAZY_MSR_COLUMN.values() for d in "rw")):
        cols.setdefault(c, np.zeros(n, bool))
    for c, dt in (("uexit_reason", pl.Int16), ("msr_first", pl.UInt32), ("sched_next_pid", pl.Int32)):
        cols.setdefault(c, pl.Series([None], dtype=dt).extend_constant(None, n - 1))

    code = column(ex, "exit_reason", np.uint32)
    isa_arr = column(ex, "isa", np.int8) if "isa" in ex.column_names else np.full(n, isa or 0, np.int8)
    userspace, sched_out = cols["n_userspace"] > 0, cols["n_sched_out"] > 0
    if sched_state is None:
        sched_state = np.full(n, -1, np.int16)
    runnable = (sched_state & TASK_RUNNING_MASK) == 0
    nested = ((isa_arr == reasons.ISA_SVM) & np.isin(code, NESTED_SVM_REASONS)) | (
        (cols["n_nested_vmexit"] | cols["n_nested_inject"] | cols["n_nested_vmenter"]) > 0)
    cls = np.select([nested, userspace, sched_out & ~runnable, sched_out & runnable], [0, 1, 2, 3], 4)
    reason_code, reason_names = _reason_codes(isa_arr, code)
    # An MSR exit that writes: SVM says so in EXITINFO1 (1 = WRMSR, APM vol. 2), VMX in the reason.
    msr_write = (isa_arr == reasons.ISA_VMX) & np.isin(code, (reasons.VMX_EXIT_MSR_WRITE,
                                                             reasons.VMX_EXIT_MSR_WRITE_IMM))
    svm_msr = np.flatnonzero((isa_arr == reasons.ISA_SVM) & (code == reasons.SVM_EXIT_MSR))
    if svm_msr.size and "info1" in ex.column_names:
        msr_write[svm_msr] = pc.equal(ex.column("info1").take(pa.array(svm_msr)), 1).to_numpy(zero_copy_only=False)

    threads = _threads(trace, summaries)
    t_idx = np.searchsorted(threads["pid"].to_numpy(), upids)[ex_code]  # thread table row of each exit
    del ex_code
    vcpu = threads["vcpu"].to_numpy()[t_idx]
    if entry_vcpu is not None:
        vcpu = np.where(entry_vcpu >= 0, entry_vcpu, vcpu)
    if "vcpu_id" in ex.column_names:
        ev = ex.column("vcpu_id")
        vcpu = (np.where(pc.is_null(ev).to_numpy(zero_copy_only=False), vcpu, column(ex, "vcpu_id", np.int64))
                if ev.null_count else column(ex, "vcpu_id", np.int32))
    # Rows fit in 32 bits below 2**31 events (every trace this machine can hold).
    row_t = np.int32 if len(trace) < 2**31 else np.int64
    cols["entry_row"] = cols["entry_row"].cast(pl.Int32 if row_t is np.int32 else pl.Int64)
    ep = pl.DataFrame({
        "exit_row": ex_row.astype(row_t), "ts": ts, "cpu": exit_cpu, "pid": ex_pid, "exit_reason": code, "isa": isa_arr,
        "msr_write_exit": msr_write, **cols, "vcpu": vcpu.astype(np.int32, copy=False),
        "vm": threads["vm"].to_numpy()[t_idx], "sched_state": _nullable(sched_state, sched_state != -1),
        "userspace": userspace, "sched_out": sched_out, "preempted": sched_out & runnable,
        "blocked": sched_out & ~runnable, "migrated": migrated, "nested": nested,
        "put_ts": _nullable(put_ts, put_ts != BIG), "crosses_drop": crosses,
    })
    ep = ep.with_columns(
        pl.from_arrow(pa.DictionaryArray.from_arrays(pa.array(cls.astype(np.int8)), pa.array(CLASSES)))
        .cast(pl.Enum(CLASSES)).alias("cls"),
        pl.Series("reason_code", reason_code.astype(np.uint16)),
        pl.from_arrow(pa.DictionaryArray.from_arrays(pa.array(reason_code.astype(np.int32)),
                                                     pa.array(reason_names, pa.string())).cast(pa.string()))
        .alias("reason"),
    )
    sync = _sync_point_counts(trace, threads["pid"].to_numpy())
    # The entry that ends a put episode is a vcpu_load; a thread's very first entry is one too
    # (counts["first_entries"]).
    return Episodes(ep, threads, isa, counts, warnings, sync, span)


def _summary(pid: np.ndarray, first_row: np.ndarray, events: np.ndarray, vid: pa.Array | None,
             exits: bool, run_starts: np.ndarray | None = None) -> pl.DataFrame:
    return pl.DataFrame({"pid": pid.astype(np.int64), "first_row": first_row.astype(np.int64),
                         "events": events.astype(np.int64),
                         "vid": pl.from_arrow(vid).cast(pl.Int64) if vid is not None else [None] * pid.size,
                         "_is_exit": np.full(pid.size, int(exits), np.int64),
                         "_run_starts": np.zeros(pid.size, np.int64) if run_starts is None else run_starts},
                        schema_overrides={"vid": pl.Int64})


def _pair(exit_keys: np.ndarray, next_exit_row: np.ndarray, upids: np.ndarray, en: pa.Table
          ) -> tuple[np.ndarray, np.ndarray, int, pl.DataFrame | None]:
    """Pair each exit (in thread order) with its thread's next kvm_entry if no other exit comes
    first: (paired, index in the kvm_entry table, entries that start their thread (KVM_RUN
    starts), the entries' per-thread summary)."""
    n, m = exit_keys.size, en.num_rows
    if m == 0:
        return np.zeros(n, bool), np.zeros(n, np.int64), 0, None
    oe = thread_order(en_code := codes(upids, column(en, "pid", np.int32)))
    entry_keys = keys(en_code[oe], column(en, "row", np.int64)[oe])
    del en_code
    pos = np.searchsorted(entry_keys, exit_keys, "right")
    np.minimum(pos, m - 1, out=pos)
    nxt = entry_keys[pos]  # the first entry key after each exit's (clamped: check it is after)
    paired = ((nxt ^ exit_keys) >> SHIFT == 0) & ((nxt & ROW_MASK) < next_exit_row) & (nxt > exit_keys)
    del nxt
    ent = oe[pos]
    del pos
    first = np.ones(m, bool)
    first[1:] = (entry_keys[1:] >> SHIFT) != (entry_keys[:-1] >> SHIFT)
    prev = np.searchsorted(exit_keys, entry_keys[first], "left") - 1
    has_prev_exit = (prev >= 0) & ((exit_keys[np.maximum(prev, 0)] >> SHIFT) == (entry_keys[first] >> SHIFT))
    c, start, size = runs(entry_keys)
    vid = en.column("vcpu_id").take(pa.array(oe[start])) if "vcpu_id" in en.column_names else None
    # runs() and first[] list the same threads in the same order.
    summary = _summary(upids[c], entry_keys[start] & ROW_MASK, size, vid, False, (~has_prev_exit).astype(np.int64))
    return paired, ent, int((~has_prev_exit).sum()), summary


def _reason_codes(isa: np.ndarray, code: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """A dense id per distinct (isa, exit_reason) pair and the kernel's name of each."""
    key = (isa.astype(np.int64) << 32) | code
    uniq = unique([key])
    names = reasons.reason_names(uniq >> 32, uniq & 0xFFFFFFFF).to_pylist()
    if uniq.size < 65535:
        return codes(uniq, key).astype(np.uint16) if uniq[-1] < 2**23 else \
            np.searchsorted(uniq, key).astype(np.uint16), names
    return np.searchsorted(uniq, key), names


def _crossing_drops(trace: Trace, start: np.ndarray, cpu: np.ndarray, entry_ts: np.ndarray, entry_cpu: np.ndarray,
                    paired: np.ndarray) -> np.ndarray:
    """Episodes whose time span overlaps a loss window on a CPU they ran on.

    A loss on CPU c lies between the last event recorded on c before the marker and the marker
    event itself; an episode is affected if it ran on c (exit or entry CPU) during that window.
    Unpaired exits are affected by any loss after them on their CPU.
    """
    out = np.zeros(start.size, bool)
    drops = [d for d in trace.meta.dropped if d.row is not None]
    if not drops or start.size == 0:
        return out
    ev_cpu = np.asarray(trace.events.column("cpu").to_numpy())
    ev_ts = np.asarray(trace.events.column("ts").to_numpy())
    end = np.where(paired, entry_ts, BIG)
    for c in sorted({d.cpu for d in drops}):
        rows_c = np.flatnonzero(ev_cpu == c)
        marks = np.array(sorted(d.row for d in drops if d.cpu == c), np.int64)
        prev = np.searchsorted(rows_c, marks, "left") - 1
        w_lo = np.where(prev >= 0, ev_ts[rows_c[np.maximum(prev, 0)]], np.iinfo(np.int64).min)
        w_hi = ev_ts[marks]
        on_c = (cpu == c) | (paired & (entry_cpu == c))
        # Windows on one CPU are disjoint and ordered: those overlapping (start, end] are the ones
        # opening before `end` minus those closing at or before `start`.
        hits = np.searchsorted(w_lo, end, "left") - np.searchsorted(w_hi, start, "right")
        out |= on_c & (hits > 0)
    return out


def _threads(trace: Trace, summaries: list[pl.DataFrame | None] | None) -> pl.DataFrame:
    """vCPU threads with their vCPU id and VM.

    vCPU id: the tracepoints' vcpu_id where recorded, else "CPU N/KVM" in the thread's name, else
    the order of first appearance (as `perf kvm` does). VM: sched_switch carries no tgid, so
    threads are grouped by pid order: QEMU creates a VM's vCPU threads one after another, so a vCPU
    id that does not grow starts a new VM. The VM is named by its lowest vCPU thread pid.
    """
    parts = [p for p in summaries or [] if p is not None]
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
    comm = trace.events.column("comm").take(pa.array(base["first_row"].to_numpy()))
    base = base.with_columns(pl.from_arrow(comm.cast(pa.string())).alias("comm"))
    base = base.sort("first_row").with_columns(
        pl.coalesce(pl.col("vid"), pl.col("comm").str.extract(r"CPU (\d+)/KVM", 1).cast(pl.Int64),
                    (pl.int_range(pl.len()).cast(pl.Int64))).alias("vcpu"))
    base = base.sort("pid").with_columns(
        (pl.col("vcpu") <= pl.col("vcpu").shift(1)).fill_null(True).cum_sum().alias("_vm_idx"))
    base = base.with_columns(pl.col("pid").min().over("_vm_idx").cast(pl.Int32).alias("vm")).drop("_vm_idx", "vid")
    return base.with_columns(pl.col("pid").cast(pl.Int32)).select(
        "pid", "comm", "vcpu", "vm", "first_row", "events", "exits", "first_entries").sort("pid")


def _sync_point_counts(trace: Trace, pids: np.ndarray) -> dict[str, int]:
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
