"""Step 3a, boundary inference: the vcpu_load/vcpu_put points no tracepoint marks.

- A put: a kvm_userspace_exit (KVM_RUN returns) or a sched-out of the thread inside the episode,
  or a CPU change with neither recorded: a task changes CPU only while it is switched out, so the
  entry on another CPU follows a sched-out (kvm_sched_out -> vcpu_put) that the trace lost.
- A load: the entry after a put; and a thread's first entry when it starts KVM_RUN. On 6.x
  KVM_RUN starts with `kvm_fpu: load` (kvm_load_guest_fpu(), x86.c): where kvm_fpu is recorded,
  a first entry with no load before it is a vCPU that was already running when the trace began
  (it is loaded, but the trace did not see the load), unless a sched-in of the thread comes first
  (it was switched out inside KVM_RUN: a put before the trace, so the entry is a load). Where
  kvm_fpu is not recorded, the first entry is assumed to start KVM_RUN.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from ..trace import Trace
from .locate import codes, column, keys, runs, thread_order
from .pairing import Pairing

FIRST_KINDS = ("kvm_run", "sched_in", "mid_exit", "assumed")  # how each thread's first entry is read
FIRST_LOADS = ("kvm_run", "sched_in", "assumed")  # the kinds that are a load


def first_entries(trace: Trace, p: Pairing, en: pa.Table, carry=None) -> dict[str, np.ndarray]:
    """The threads whose first kvm_entry precedes their first exit: code, row, CPU, kind (an index
    into FIRST_KINDS). carry: an earlier view's Carry (what it saw before this view)."""
    idx = p.first_entry
    code = codes(p.upids, column(en, "pid", np.int32)[idx])
    row = column(en, "row", np.int64)[idx]
    fpu = _earlier(trace, "kvm_fpu", "pid", p.upids, code, row, lambda t: column(t, "load", np.int64) != 0)
    sched_in = _earlier(trace, "sched_switch", "next_pid", p.upids, code, row)
    if carry is not None:
        fpu |= np.isin(p.upids[code], carry.pre_fpu)
        sched_in |= np.isin(p.upids[code], carry.pre_sched_in)
    traced = trace.has("kvm_fpu") or (carry is not None and "kvm_fpu" in carry.seen)
    kind = np.where(fpu, 0, np.where(sched_in, 1, np.where(traced, 2, 3))).astype(np.int8)
    return {"code": code, "row": row, "cpu": column(en, "cpu", np.int32)[idx], "kind": kind}


def running_at_start(p: Pairing, ex: pa.Table, first_codes: np.ndarray, started: np.ndarray | None = None
                     ) -> dict[str, np.ndarray]:
    """Threads whose first event is an exit: they were in guest mode when the trace began, so
    loaded. Their first exit: code, row, CPU. started: pids an earlier view has seen start."""
    c, start, _ = runs(p.exit_keys)
    keep = ~np.isin(c, first_codes)
    if started is not None:
        keep &= ~np.isin(p.upids[c], started)
    first_exit = p.order[start[keep]]
    return {"code": c[keep].astype(np.int32), "row": column(ex, "row", np.int64)[first_exit],
            "cpu": column(ex, "cpu", np.int32)[first_exit]}


def _earlier(trace: Trace, name: str, pid_col: str, upids: np.ndarray, code: np.ndarray, row: np.ndarray,
             select=None) -> np.ndarray:
    """For each (thread code, row): does the table hold an event of that thread before the row?"""
    out = np.zeros(code.size, bool)
    if not trace.has(name) or code.size == 0:
        return out
    t = trace.table(name)
    ev_code = codes(upids, column(t, pid_col, np.int32))
    ev_row = column(t, "row", np.int64)
    keep = (ev_code >= 0) & (select(t) if select is not None and t.num_rows else True)
    ev_code, ev_row = ev_code[keep], ev_row[keep]
    o = thread_order(ev_code)
    k = keys(ev_code[o], ev_row[o])
    c, start, _ = runs(k)
    first_row = np.full(upids.size, np.iinfo(np.int64).max)
    first_row[c] = ev_row[o][start]
    return first_row[code] < row


def moved_without_switch(migrated: np.ndarray, userspace: np.ndarray, sched_out: np.ndarray) -> np.ndarray:
    """Entries on another CPU with no put recorded in the episode: an implied put (cause unknown)."""
    return migrated & ~userspace & ~sched_out
