"""Step 3b, the user-return MSRs: what each CPU holds at a vcpu_load, and when the CPU's return to
user mode fires kvm_on_user_return().

The notifier belongs to the CPU, not to the vCPU thread: kvm_set_user_return_msr() (x86.c)
registers a per-CPU notifier and sets TIF_USER_RETURN_NOTIFY on the current task;
propagate_user_return_notify() (include/linux/user-return-notifier.h, called from
__switch_to_xtra) moves the flag from prev to next at every context switch, so the first task to
return to user mode on that CPU fires it, whichever task that is: the vCPU thread at its KVM_RUN
return, a user task after the idle task or a kernel thread, never the idle task or a kernel
thread, and never a vCPU thread that resumes inside KVM_RUN (it goes back to its guest).
kvm_set_user_return_msr() writes only values the CPU does not hold already, and
kvm_on_user_return() restores only slots that differ from the host's.

So the inference follows each CPU's task sequence. Marks, per CPU in row order:
LOAD (a vcpu_load that switches state, at its kvm_entry), ARM (a vCPU already loaded when the
trace began), PUT (a vcpu_put), URET (a return to user mode: a kvm_userspace_exit, or a
sched_switch to a task that returns to user mode), LOSS (the ring buffer lost events there).
A LOAD finds host values after a URET (or first on its CPU, or after a LOSS: assumed), another
vCPU's values after another LOAD, and its own after its own. A URET fires the notifier when the
CPU's last LOAD/ARM came after its last URET. Everything is a sort and a few forward fills over
the marks: the state that crosses a window boundary is each CPU's last LOAD/ARM/URET/LOSS mark
(`infer`'s `initial`, `UserReturns.final`).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import polars as pl

from ..trace import Trace
from .locate import codes, column
from .tasks import next_is_user_task

LOSS, PUT, URET, LOAD, ARM = 0, 1, 2, 3, 4  # also the order of marks on the same row
# What a LOAD finds in the user-return MSRs (the episode column `uret_state`).
SAME, HOST, OTHER_VCPU, OTHER_VM = 0, 1, 2, 3
MARK_SCHEMA = {"cpu": pl.Int32, "row": pl.Int64, "kind": pl.Int8, "code": pl.Int32, "ep": pl.Int64,
               "first": pl.Int64}
# Thread markers for "is this vCPU thread inside KVM_RUN?"
IN_RUN, RUN_START, RUN_END = 0, 1, 2
_ROW_BITS = 40  # rows below 2**40, thread codes below 2**21 in a packed marker


@dataclasses.dataclass
class UserReturns:
    load_state: pl.DataFrame  # per LOAD mark: ep, first, state
    fired: pl.DataFrame  # per fired URET: ep (attributed episode or -1), first, code, unknown
    final: pl.DataFrame  # per CPU: the last state-setting mark (the carry to a next window)
    urets: int
    urets_fired: int


def marks(cpu: np.ndarray, row: np.ndarray, kind: int, code: np.ndarray | int = -1, ep: np.ndarray | int = -1,
          first: np.ndarray | int = -1) -> pl.DataFrame:
    size = len(cpu)
    def full(v):
        return np.broadcast_to(np.asarray(v, np.int64), (size,))
    return pl.DataFrame({"cpu": np.asarray(cpu, np.int32), "row": np.asarray(row, np.int64),
                         "kind": np.full(size, kind, np.int8), "code": full(code).astype(np.int32),
                         "ep": full(ep), "first": full(first)}, schema=MARK_SCHEMA)


def user_return_marks(trace: Trace, upids: np.ndarray, in_run: Callable[[np.ndarray, np.ndarray], np.ndarray]
                      ) -> pl.DataFrame:
    """URET marks: every kvm_userspace_exit on its CPU, and every sched_switch whose next task
    returns to user mode (not idle, not a kernel thread, not a vCPU thread inside KVM_RUN)."""
    parts = []
    if trace.has("kvm_userspace_exit"):
        ue = trace.table("kvm_userspace_exit")
        parts.append(marks(column(ue, "cpu", np.int32), column(ue, "row", np.int64), URET))
    if trace.has("sched_switch"):
        ss = trace.table("sched_switch")
        nxt = column(ss, "next_pid", np.int32)
        rows = column(ss, "row", np.int64)
        vcpu = codes(upids, nxt)
        user = next_is_user_task(ss, nxt) & ~((vcpu >= 0) & in_run(vcpu, rows))
        parts.append(marks(column(ss, "cpu", np.int32)[user], rows[user], URET))
    return pl.concat(parts) if parts else marks(np.zeros(0), np.zeros(0), URET)


def run_state(trace: Trace, upids: np.ndarray, carried: tuple[np.ndarray, np.ndarray] | None = None
              ) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """A function (thread code, row) -> whether that vCPU thread is inside KVM_RUN then.

    Inside: its last marker before the row is a kvm_entry/kvm_exit or a KVM_RUN start (kvm_fpu
    load); outside: a kvm_userspace_exit. With no marker before, the next one decides: an entry,
    exit or userspace exit means it was inside; a KVM_RUN start means it was not.
    carried: (thread codes, marker kinds) of an earlier window, placed just before this one.
    The function's `last_kind(cut)` gives (codes, kinds) of each thread's last marker before a row."""
    parts = []
    if carried is not None and carried[0].size:
        row0 = max(trace.row_base - 1, 0)
        parts.append((carried[0].astype(np.int64) << (_ROW_BITS + 2)) | (row0 << 2) | carried[1].astype(np.int64))
    for name, kind in (("kvm_entry", IN_RUN), ("kvm_exit", IN_RUN), ("kvm_userspace_exit", RUN_END),
                       ("kvm_fpu", RUN_START)):
        if not trace.has(name):
            continue
        t = trace.table(name)
        c = codes(upids, column(t, "pid", np.int32)).astype(np.int64)
        keep = c >= 0
        if name == "kvm_fpu" and "load" in t.column_names:
            keep &= column(t, "load", np.int64) != 0
        # One int64 per marker: thread, row, kind; sorting it sorts by (thread, row).
        parts.append((c[keep] << (_ROW_BITS + 2)) | (column(t, "row", np.int64)[keep] << 2) | kind)
    packed = np.sort(np.concatenate(parts)) if parts else np.zeros(0, np.int64)
    mk, mkind = packed >> 2, (packed & 3).astype(np.int8)

    def in_run(qcode: np.ndarray, qrow: np.ndarray) -> np.ndarray:
        out = np.zeros(qcode.size, bool)
        if mk.size == 0:
            return out
        q = (np.maximum(qcode, 0).astype(np.int64) << _ROW_BITS) | qrow
        p = np.searchsorted(mk, q, "right") - 1
        same_prev = (p >= 0) & ((mk[np.maximum(p, 0)] >> _ROW_BITS) == (q >> _ROW_BITS))
        nx = np.minimum(p + 1, mk.size - 1)
        same_next = (p + 1 < mk.size) & ((mk[nx] >> _ROW_BITS) == (q >> _ROW_BITS))
        prev_in = same_prev & (mkind[np.maximum(p, 0)] != RUN_END)
        next_says_in = ~same_prev & same_next & (mkind[nx] != RUN_START)
        return (qcode >= 0) & (prev_in | next_says_in)

    def last_kind(cut: int) -> tuple[np.ndarray, np.ndarray]:
        keep = ((mk & ((1 << _ROW_BITS) - 1)) < cut) if mk.size else np.zeros(0, bool)
        k, kk = mk[keep] >> _ROW_BITS, mkind[keep]
        last = np.flatnonzero(np.append(k[1:] != k[:-1], True)) if k.size else np.zeros(0, np.int64)
        return k[last], kk[last]
    in_run.last_kind = last_kind  # type: ignore[attr-defined]
    return in_run


def infer(m: pl.DataFrame, vm_of_code: np.ndarray, initial: pl.DataFrame | None = None,
          cut: int | None = None) -> UserReturns:
    """Replay each CPU's marks (see the module docstring): one sort and running maxima of mark
    indices, no loop per mark. `initial`: per CPU, the last state-setting mark of a previous
    window (cpu, kind, code), as UserReturns.final gives it. `cut`: `final` is the state before
    that row (a streamed view hands on the state where the next view starts), else at the end."""
    if initial is not None and initial.height:
        # Negative rows: before every mark of this window (the state mark at -2, the CPU's last
        # put after it at -1); they set state but are no loads or returns.
        cols = initial.columns
        m = pl.concat([initial.select(
            pl.col("cpu").cast(pl.Int32),
            (pl.col("row") if "row" in cols else pl.lit(-1)).cast(pl.Int64).alias("row"),
            pl.col("kind").cast(pl.Int8), pl.col("code").cast(pl.Int32),
            (pl.col("ep") if "ep" in cols else pl.lit(-1)).cast(pl.Int64).alias("ep"),
            (pl.col("first") if "first" in cols else pl.lit(-1)).cast(pl.Int64).alias("first")), m])
    cpu, row, kind = (m[c].to_numpy() for c in ("cpu", "row", "kind"))
    o = np.argsort((cpu.astype(np.int64) << 44) | ((row + 3) << 3) | kind, kind="stable")  # carried rows are -2, -1
    cpu, kind, carried = cpu[o], kind[o], row[o] < 0
    code, ep, first = (m[c].to_numpy()[o] for c in ("code", "ep", "first"))
    vm = np.where(code >= 0, vm_of_code[np.clip(code, 0, max(vm_of_code.size - 1, 0))] if vm_of_code.size else -1, -1)
    idx = np.arange(kind.size)
    state = np.isin(kind, [LOSS, URET, LOAD, ARM])
    p = _last_before(np.where(state, idx, -1), cpu)  # the CPU's last state-setting mark before each
    put = _last_before(np.where(kind == PUT, idx, -1), cpu, inclusive=True)
    pc = np.maximum(p, 0)
    p_kind = np.where(p >= 0, kind[pc], -1)
    is_load, is_uret = (kind == LOAD) & ~carried, (kind == URET) & ~carried
    host = (p < 0) | np.isin(p_kind, [URET, LOSS])
    load_state = np.select([host, code[pc] == code, vm[pc] == vm], [HOST, SAME, OTHER_VCPU], OTHER_VM)
    prev = np.where(p >= 0, code[pc], -1)  # whose values the CPU held (for a stream's later VM map)
    loads = pl.DataFrame({"ep": ep[is_load], "first": first[is_load], "state": load_state[is_load].astype(np.int8),
                          "prev": prev[is_load].astype(np.int32)})
    fired = is_uret & (p >= 0) & np.isin(p_kind, [LOAD, ARM, LOSS])
    # The put that let the CPU run other tasks (if it came after the arming mark), else the
    # episode or first entry that armed it.
    by_put = (put > p) & (put >= 0)
    srow = row[o]
    fired_df = pl.DataFrame({"ep": np.where(by_put, ep[np.maximum(put, 0)], ep[pc])[fired],
                             "first": np.where(by_put, -1, first[pc])[fired], "code": code[pc][fired],
                             "unknown": (p_kind == LOSS)[fired], "row": srow[fired]})
    final = _final(cpu, kind, code, ep, first, state, srow, cut)
    return UserReturns(loads, fired_df, final, int(is_uret.sum()), int(fired.sum()))


def _final(cpu, kind, code, ep, first, state, row, cut) -> pl.DataFrame:
    """Per CPU: its last state-setting mark before `cut` (row -2) and the last put after it
    (row -1), as `infer`'s `initial` takes them."""
    before = row < cut if cut is not None else np.ones(row.size, bool)
    idx = np.arange(kind.size)
    last = np.flatnonzero(np.append(cpu[1:] != cpu[:-1], True)) if cpu.size else np.zeros(0, np.int64)
    # The last position before the cut on each CPU: marks are sorted by (cpu, row).
    upto = np.where(before, idx, -1)
    fin = _last_before(np.where(state & before, idx, -1), cpu, inclusive=True)
    put = _last_before(np.where((kind == PUT) & before, idx, -1), cpu, inclusive=True)
    end = _last_before(upto, cpu, inclusive=True)[last]
    ok = end >= 0
    f, pt = fin[last][ok], put[last][ok]
    has_s, has_p = f >= 0, (pt >= 0) & (pt > f)
    fs, ps = np.maximum(f, 0), np.maximum(pt, 0)
    c = cpu[last][ok]
    rows = [pl.DataFrame({"cpu": c[has_s], "row": np.full(int(has_s.sum()), -2, np.int64),
                          "kind": kind[fs][has_s], "code": code[fs][has_s], "ep": ep[fs][has_s],
                          "first": first[fs][has_s]}),
            pl.DataFrame({"cpu": c[has_p], "row": np.full(int(has_p.sum()), -1, np.int64),
                          "kind": np.full(int(has_p.sum()), PUT, np.int8), "code": code[ps][has_p],
                          "ep": ep[ps][has_p], "first": first[ps][has_p]})]
    return pl.concat(rows, how="vertical_relaxed")


def _last_before(marked: np.ndarray, cpu: np.ndarray, inclusive: bool = False) -> np.ndarray:
    """Per position (sorted by CPU): the last marked index before it (or at it) on the same CPU,
    -1 if none."""
    run = np.maximum.accumulate(marked) if marked.size else marked
    if not inclusive:
        run = np.concatenate([[-1], run[:-1]]) if run.size else run
    return np.where((run >= 0) & (cpu[np.maximum(run, 0)] == cpu), run, -1)


def cpus_without_sched_switch(trace: Trace, vcpu_cpus: np.ndarray) -> list[int]:
    """CPUs that ran vCPUs but recorded no sched_switch (a per-CPU filter, or a lost buffer)."""
    if not trace.has("sched_switch"):
        return sorted(set(vcpu_cpus.tolist()))
    seen = set(np.unique(column(trace.table("sched_switch"), "cpu", np.int32)).tolist())
    return sorted(set(np.unique(vcpu_cpus).tolist()) - seen)
