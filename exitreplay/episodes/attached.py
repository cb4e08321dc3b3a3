"""Step 2, attached events: what happened on an exit's thread between the exit and its entry.

Every per-event table is located once (one binary search per event, locate.Locator) and turned
into per-episode columns by run lengths, first values and OR-ed bit flags: no loop per event. An
event that falls outside every episode (before a thread's first exit, after its last) is not
attached; a streamed window passes its open episodes' partial columns on instead.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import polars as pl
import pyarrow as pa

from ..kvm import state, x86insn
from ..trace import Trace
from .locate import BIG, Locator, codes, column

# Attached events counted per episode (table -> column).
COUNTED_EVENTS = (("kvm_fpu", "n_fpu"), ("kvm_nested_vmexit", "n_nested_vmexit"),
                  ("kvm_nested_vmexit_inject", "n_nested_inject"), ("kvm_nested_vmenter", "n_nested_vmenter"),
                  ("kvm_nested_vmrun", "n_nested_vmenter"),  # its name before Linux 5.x
                  ("kvm_smm_transition", "n_smm"), ("kvm_vcpu_wakeup", "n_wakeup"), ("kvm_pio", "n_pio"),
                  ("kvm_mmio", "n_mmio"))
# Bit of each lazy MSR set in the per-episode flags: reads in the low nibble, writes in the high.
MSR_SET_BITS = {name: i for i, name in enumerate(state.LAZY_MSR_COLUMN)}


@dataclasses.dataclass
class Attached:
    cols: dict[str, object]  # per-episode columns for the episode table
    put_ts: np.ndarray  # the first vcpu_put moment (userspace exit or sched-out), BIG where none
    put_row: np.ndarray  # its row
    us_row: np.ndarray  # the first kvm_userspace_exit's row, BIG where none
    sched_state: np.ndarray  # the first sched-out's prev_state, -1 where none
    counts: dict[str, int]


def attach(trace: Trace, locate: Locator, upids: np.ndarray, n: int, cut: tuple[int, int] | None = None
           ) -> Attached:
    """cut: count events (the `counts`) only in these rows [lo, hi) (a streamed view owns those)."""
    cols: dict[str, object] = {}
    counts: dict[str, int] = {}
    put_ts, put_row = np.full(n, BIG), np.full(n, BIG)
    us_row = _userspace(trace, locate, upids, n, cols, put_ts, put_row)
    sched_state = _sched_outs(trace, locate, upids, n, us_row, cols, put_ts, put_row)
    _msrs(trace, locate, upids, n, put_row, cols)
    _emulation(trace, locate, upids, n, cols, counts, cut)
    for name, col in COUNTED_EVENTS:
        if trace.has(name):
            t = trace.table(name)
            c = locate(codes(upids, column(t, "pid", np.int32)), column(t, "row", np.int64)).count(n)
            cols[col] = c if col not in cols else np.minimum(cols[col].astype(np.uint16) + c, 255).astype(np.uint8)
    _defaults(cols, n)
    return Attached(cols, put_ts, put_row, us_row, sched_state, counts)


def _userspace(trace, locate, upids, n, cols, put_ts, put_row) -> np.ndarray:
    """kvm_userspace_exit: KVM_RUN returned, a vcpu_put."""
    if not trace.has("kvm_userspace_exit"):
        return np.full(n, BIG)
    ue = trace.table("kvm_userspace_exit")
    rows = column(ue, "row", np.int64)
    loc = locate(codes(upids, column(ue, "pid", np.int32)), rows)
    cols["n_userspace"] = loc.count(n)
    reason = loc.first(column(ue, "reason", np.int16), n, -1)
    cols["uexit_reason"] = nullable(reason, reason != -1)
    loc.first_into(column(ue, "ts", np.int64), put_ts, np.minimum)
    loc.first_into(rows, put_row, np.minimum)
    return loc.first(rows, n, BIG)


def _sched_outs(trace, locate, upids, n, us_row, cols, put_ts, put_row) -> np.ndarray:
    """sched_switch away from the thread: each one before the KVM_RUN return is a vcpu_put call
    (kvm_sched_out, the preempt notifier); later ones are plain task switches."""
    if not trace.has("sched_switch"):
        return np.full(n, -1, np.int16)
    ss = trace.table("sched_switch")
    prev_pid, next_pid = column(ss, "prev_pid", np.int32), column(ss, "next_pid", np.int32)
    rows = column(ss, "row", np.int64)
    loc = locate(np.where(prev_pid != next_pid, codes(upids, prev_pid), -1), rows)
    cols["n_sched_out"] = loc.count(n, dtype=np.uint16)
    inside = loc.loc >= 0
    in_run = inside.copy()
    in_run[inside] = rows[inside] < us_row[loc.loc[inside]]
    cols["n_sched_out_kvm"] = loc.count(n, in_run, np.uint16)
    loc.first_into(column(ss, "ts", np.int64), put_ts, np.minimum)
    loc.first_into(rows, put_row, np.minimum)
    nxt = loc.first(next_pid, n, -1)
    cols["sched_next_pid"] = nullable(nxt, nxt != -1)
    return loc.first(column(ss, "prev_state", np.int16), n, -1)


def _msrs(trace, locate, upids, n, put_row, cols) -> None:
    """kvm_msr: the handler's MSR accesses, as one bit per lazy set and direction. Only those
    before the episode's first put count: after vcpu_put the guest values are in memory (VMX reads
    its cached KERNEL_GS_BASE, vmx_read_guest_kernel_gs_base(); SVM's VMCB is in sync)."""
    if not trace.has("kvm_msr"):
        return
    ms = trace.table("kvm_msr")
    rows = column(ms, "row", np.int64)
    loc = locate(codes(upids, column(ms, "pid", np.int32)), rows)
    ecx = column(ms, "ecx", np.int64)
    cols["n_msr"] = loc.count(n)
    first = loc.first(ecx.astype(np.uint32), n, np.uint32(0xFFFFFFFF))  # not an MSR index
    cols["msr_first"] = nullable(first, first != 0xFFFFFFFF)
    bit_of: dict[int, int] = {}
    for set_name, bit in MSR_SET_BITS.items():
        for msr in state.LAZY_MSR_SETS[set_name]:
            bit_of[msr] = bit_of.get(msr, 0) | (1 << bit)
    sets = pl.Series(ecx).replace_strict(bit_of, default=0, return_dtype=pl.UInt8).to_numpy()
    before_put = (loc.loc >= 0) & (rows < put_row[np.maximum(loc.loc, 0)])
    wr = column(ms, "write", np.int8) != 0
    flags = loc.bits(n, np.where(before_put, np.where(wr, sets << 4, sets), 0).astype(np.uint8))
    for set_name, bit in MSR_SET_BITS.items():
        suffix = state.LAZY_MSR_COLUMN[set_name]
        cols[f"msr_lazy_{suffix}_r"] = (flags & (1 << bit)) != 0
        cols[f"msr_lazy_{suffix}_w"] = (flags & (16 << bit)) != 0


def _emulation(trace, locate, upids, n, cols, counts, cut=None) -> None:
    """kvm_emulate_insn: how many, and whether a decoded instruction reads or writes the state
    VMLOAD/VMSAVE move (kvm/x86insn.py)."""
    if not trace.has("kvm_emulate_insn"):
        return
    t = trace.table("kvm_emulate_insn")
    loc = locate(codes(upids, column(t, "pid", np.int32)), column(t, "row", np.int64))
    cols["n_emulate"] = loc.count(n)
    r = column(t, "row", np.int64)
    mine = ((r >= cut[0]) & (r < cut[1])) if cut is not None else np.ones(t.num_rows, bool)
    if "insn" not in t.column_names:
        acc = np.full(t.num_rows, x86insn.READ, np.uint8)  # bytes not recorded: assume a read
        counts["emulations_undecoded"] = int(mine.sum())
    else:
        length = column(t, "len", np.int64) if "len" in t.column_names else None
        flags = column(t, "flags", np.int64) if "flags" in t.column_names else None
        cls, acc = x86insn.decode(t.column("insn"), length, flags)
        counts["emulations_undecoded"] = int(((cls == x86insn.CLASSES.index("undecoded")) & mine).sum())
        counts["emulations_touching_deferred_state"] = int(((acc != 0) & mine).sum())
        if flags is None and mine.any():
            counts["emulations_mode_assumed_64bit"] = int(mine.sum())
    bits = loc.bits(n, acc)
    cols["emu_read"] = (bits & x86insn.READ) != 0
    cols["emu_write"] = (bits & x86insn.WRITE) != 0


def _defaults(cols: dict, n: int) -> None:
    zero8 = np.zeros(n, np.uint8)
    for c in ("n_msr", "n_userspace", "n_emulate", *dict.fromkeys(c for _, c in COUNTED_EVENTS)):
        cols.setdefault(c, zero8)
    for c in ("n_sched_out", "n_sched_out_kvm"):
        cols.setdefault(c, np.zeros(n, np.uint16))
    for c in ("emu_read", "emu_write", *(f"msr_lazy_{x}_{d}" for x in state.LAZY_MSR_COLUMN.values() for d in "rw")):
        cols.setdefault(c, np.zeros(n, bool))
    for c, dt in (("uexit_reason", pl.Int16), ("msr_first", pl.UInt32), ("sched_next_pid", pl.Int32)):
        cols.setdefault(c, pl.Series([None], dtype=dt).extend_constant(None, n - 1))


def nullable(values: np.ndarray, valid: np.ndarray, dtype=None) -> pl.Series:
    return pl.from_arrow(pa.array(values if dtype is None else values.astype(dtype), mask=~valid))
