"""build_episodes: the named steps composed.

1. pairing (pairing.py): each kvm_exit with its thread's next kvm_entry;
2. attached events (attached.py): userspace returns, sched-outs, MSR accesses, emulation, nested
   and other events between an exit and its entry;
3. boundary inference: the puts and loads no tracepoint marks (boundaries.py), and what each CPU
   holds in its user-return MSRs and when it returns to user mode (userreturn.py);
4. classification (classify.py).

Each step is whole-array work over the trace's tables. For a trace streamed window by window,
the state a step needs from the previous window is explicit: the open exits (pairing), the
per-CPU last user-return mark (`Episodes.carry["user_return"]`, accepted back as `carry`), and
each thread's run state (the markers userreturn.run_state reads).
"""
from __future__ import annotations

import dataclasses

import numpy as np
import polars as pl
import pyarrow as pa

from ..trace import Trace
from . import streamed
from . import userreturn as ur
from .attached import attach, nullable
from .boundaries import FIRST_KINDS, FIRST_LOADS, first_entries, moved_without_switch, running_at_start
from .carry import Carry
from .classify import CLASSES, classes, exit_isa, msr_write_exits, reason_codes
from .drops import crossing_drops
from .locate import BIG, column
from .pairing import Pairing, empty_entries, entry_columns, pair
from .threads import sync_point_counts, thread_table

EXTRA_SCHEMA = {"pid": pl.Int32, "vcpu": pl.Int64, "vm": pl.Int32, "first_kind": pl.Utf8, "uret_state": pl.Int8,
                "user_returns": pl.Int64, "uret_prev_pid": pl.Int32, "row": pl.Int64}


# The warnings that carry a count, by the count they report (a stream writes them from its totals).
WARN = {
    "cpu_changes_without_sched_switch": lambda n: (
        f"{n} entries on another CPU with no sched_switch of the thread recorded: each counted as a vcpu_put "
        "and a vcpu_load, the put's cause unknown (class 'moved')"),
    "entries_before_exit": lambda n: f"{n} episodes whose entry precedes the exit (timestamps out of order)",
    "episodes_crossing_dropped_events": lambda n: (
        f"{n} episodes cross dropped events: their attached events (and sync points) may be incomplete "
        "(see crosses_drop)"),
    "first_entries_mid_exit": lambda n: (
        f"{n} vCPU threads were already inside KVM_RUN when the trace began (first kvm_entry with no kvm_fpu "
        "load before it): not counted as loads"),
    "no_exits": lambda names: (
        "no kvm_exit events: exit-level replay impossible (this KVM or this recording does not fire "
        "kvm_exit/kvm_entry); only sync-point events are counted: " + names),
    "cpus_without_sched_switch": lambda cpus: (
        f"no sched_switch recorded on CPU {', '.join(map(str, cpus))}: returns to user mode there are seen "
        "only at KVM_RUN returns; after a preemption or blocking they are unknown"),
}


# The warnings about an event type the recording lacks (a stream knows only at its end).
ABSENT = {
    "sched_switch": "no sched_switch recorded: preemption sync points unknown (nor blocking ones: record "
                    "sched/sched_switch with the kvm events)",
    "kvm_entry": "no kvm_entry events: exit handling times unknown",
    "kvm_fpu": "kvm_fpu not recorded: each vCPU thread's first kvm_entry is assumed to start KVM_RUN (a "
               "vcpu_load); record kvm/kvm_fpu to tell",
}


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
    # Boundaries that belong to no exit: threads' first entries (KVM_RUN starts) and the user
    # returns they arm: pid, vcpu, vm, first_kind (FIRST_KINDS or null), uret_state, user_returns.
    extra: pl.DataFrame = dataclasses.field(default_factory=lambda: pl.DataFrame(schema=EXTRA_SCHEMA))
    carry: Carry | None = None  # for the next view of a streamed trace (carry.py)
    cut: int | None = None  # the table holds the exits before this row (the view owns them)
    late: pl.DataFrame | None = None  # user returns fired for carried episodes: exit_row, count

    @property
    def paired(self) -> pl.DataFrame:
        return self.table.filter(pl.col("entry_row").is_not_null())


def build_episodes(trace: Trace, carry: Carry | None = None, final: bool = True,
                   own: tuple[int, int] | None = None) -> Episodes:
    """The episodes of a trace, or of one view of a streamed trace: with `final=False` the view
    owns only the exits before the earliest one still open at its end, and hands on a Carry
    (carry.py) that the next view, starting at that row, takes back. own: rows [lo, hi) this
    worker owns at all (one time range of a trace split over workers)."""
    warnings: list[str] = []
    span = trace.meta.duration_ns
    if not trace.has("sched_switch"):
        warnings.append(ABSENT["sched_switch"])
    if not trace.has("kvm_exit") or trace.table("kvm_exit").num_rows == 0:
        return _without_exits(trace, warnings, span)

    ex = trace.table("kvm_exit")
    n = ex.num_rows
    isa, isa_arr = exit_isa(ex, warnings)
    if trace.has("kvm_entry"):
        en = trace.table("kvm_entry")
    else:
        warnings.append(ABSENT["kvm_entry"])
        en = empty_entries()
    en_all = en
    if carry is not None and carry.consumed.size and en.num_rows:
        en = en.filter(pa.array(~np.isin(column(en, "row", np.int64), carry.consumed)))
    known = carry.threads["pid"].to_numpy() if carry is not None else None
    p = pair(ex, en, known)
    if carry is not None:
        p.first_entry = p.first_entry[~np.isin(column(en, "pid", np.int64)[p.first_entry], carry.started)]
    exit_row = column(ex, "row", np.int64)
    still_open = ~p.paired & (p.next_exit < 0)
    cut = trace.row_base + len(trace)
    if not final and still_open.any():
        cut = int(exit_row[still_open].min())
    counts = dict(p.counts)
    ent = entry_columns(p, ex, en)
    lo_r, hi_r = (own[0], min(cut, own[1])) if own is not None else (-1, cut)
    att = attach(trace, p.locator(), p.upids, n, None if final and own is None else (lo_r, hi_r))
    counts.update(att.counts)
    cols = att.cols
    ts, exit_cpu = column(ex, "ts", np.int64), column(ex, "cpu", np.int32)
    timing = _timing(trace, p, ent, ts, exit_cpu, counts, warnings)

    threads = thread_table(trace, p.summaries, carry.threads if carry is not None else None)
    thread_row = np.searchsorted(threads["pid"].to_numpy(), p.upids)  # thread table row of each code
    vm_of_code = threads["vm"].to_numpy()[thread_row]
    vcpu = _vcpu_ids(ex, en, p, threads["vcpu"].to_numpy()[thread_row], ent)
    code = column(ex, "exit_reason", np.uint32)
    moved = moved_without_switch(timing["migrated"], cols["n_userspace"] > 0, cols["n_sched_out"] > 0)
    flags = classes(isa_arr, code, cols, att.sched_state, moved)
    if moved.any():
        counts["cpu_changes_without_sched_switch"] = int(moved.sum())
        warnings.append(WARN["cpu_changes_without_sched_switch"](int(moved.sum())))
    first = first_entries(trace, p, en, carry)
    _first_entry_notes(trace, first, counts, warnings)
    returns = _user_returns(trace, p, ex, att, ent, flags, moved, first, vm_of_code, carry, cut, counts, warnings)

    reason_code, reason_names = reason_codes(isa_arr, code)
    row_t = np.int32 if len(trace) < 2**31 else np.int64  # rows fit in 32 bits below 2**31 events
    ep = pl.DataFrame({
        "exit_row": column(ex, "row", np.int64).astype(row_t), "ts": ts, "cpu": exit_cpu,
        "pid": column(ex, "pid", np.int32), "exit_reason": code, "isa": isa_arr,
        "msr_write_exit": msr_write_exits(ex, isa_arr, code), **timing["cols"], **cols,
        "vcpu": vcpu.astype(np.int32, copy=False), "vm": vm_of_code[p.exit_code],
        "sched_state": nullable(att.sched_state, att.sched_state != -1),
        **{k: flags[k] for k in ("userspace", "sched_out", "preempted", "blocked")},
        "migrated": timing["migrated"], "moved": moved, "entry_lost": p.entry_lost, "nested": flags["nested"],
        "put_ts": nullable(att.put_ts, att.put_ts != BIG), "crosses_drop": timing["crosses"],
        "uret_state": returns["uret_state"], "user_returns": returns["user_returns"],
        "uret_prev_pid": returns["uret_prev_pid"],
    })
    ep = ep.with_columns(
        pl.col("entry_row").cast(pl.Int32 if row_t is np.int32 else pl.Int64),
        pl.from_arrow(pa.DictionaryArray.from_arrays(pa.array(flags["cls"]), pa.array(CLASSES)))
        .cast(pl.Enum(CLASSES)).alias("cls"),
        pl.Series("reason_code", reason_code.astype(np.uint16)),
        pl.from_arrow(pa.DictionaryArray.from_arrays(pa.array(reason_code.astype(np.int32)),
                                                     pa.array(reason_names, pa.string())).cast(pa.string()))
        .alias("reason"),
    )
    extra = _extra_frame(returns, p, threads)
    owned_part = trace if final and own is None else trace.slice_rows(max(trace.row_base, lo_r), hi_r)
    sync = sync_point_counts(owned_part, threads["pid"].to_numpy())
    if own is not None:
        # First entries are this view's wherever they lie in the range; loose returns, before the cut.
        extra = extra.filter((pl.col("row") >= lo_r) & pl.when(pl.col("first_kind").is_not_null())
                             .then(pl.col("row") < own[1]).otherwise(pl.col("row") < hi_r))
    if carry is not None or not final or own is not None:
        counts.update(streamed.owned_counts(ep, trace, en_all, first, carry, (lo_r, hi_r), counts))
        if own is not None:
            fm = (first["row"] >= lo_r) & (first["row"] < own[1])
            kinds = np.bincount(first["kind"][fm], minlength=len(FIRST_KINDS))
            counts.update(first_entries=int(fm.sum()), **{f"first_entries_{k}": int(v) for k, v in zip(FIRST_KINDS, kinds)})
            mine = ep.filter((pl.col("exit_row") >= lo_r) & (pl.col("exit_row") < hi_r))
            counts["user_returns"] = int(mine["user_returns"].sum()) + int(extra["user_returns"].sum())
    eps = Episodes(ep, threads, isa, counts, warnings, sync, span, extra, cut=cut, late=returns["late"])
    if not final:
        eps.carry = streamed.hand_on(trace, eps, p, en, first, returns, carry, cut)
    if not final or own is not None:
        eps.table = ep.filter((pl.col("exit_row") >= lo_r) & (pl.col("exit_row") < hi_r))
    return eps


def sync_names(sync: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sync.items() if not k.startswith("kvm_msr_")) or "none"


def _without_exits(trace: Trace, warnings: list[str], span: int) -> Episodes:
    threads = thread_table(trace, None)
    sync = sync_point_counts(trace, threads["pid"].to_numpy())
    names = sync_names(sync)
    warnings.append(WARN["no_exits"](names))
    return Episodes(pl.DataFrame(schema={"exit_row": pl.Int64}), threads, None, {}, warnings, sync, span)


def _timing(trace: Trace, p: Pairing, ent: dict, ts: np.ndarray, exit_cpu: np.ndarray, counts: dict,
            warnings: list[str]) -> dict:
    """Entry row/CPU and exit -> entry time (null where unpaired), CPU changes, dropped events."""
    paired = p.paired
    migrated = paired & (ent["entry_cpu"] != exit_cpu)
    crosses = crossing_drops(trace, ts, exit_cpu, ent["entry_ts"], ent["entry_cpu"], paired)
    neg = int((paired & (ent["latency"] < 0)).sum())
    counts["out_of_order"] = neg + int(trace.meta.extra.get("ts_inversions") or 0)
    if neg:
        warnings.append(WARN["entries_before_exit"](neg))
    counts["episodes_crossing_dropped_events"] = int(crosses.sum())
    if crosses.any():
        warnings.append(WARN["episodes_crossing_dropped_events"](int(crosses.sum())))
    cols = {"entry_row": nullable(ent["entry_row"], paired), "entry_cpu": nullable(ent["entry_cpu"], paired),
            "latency_ns": nullable(ent["latency"], paired)}
    return {"cols": cols, "migrated": migrated, "crosses": crosses}


def _vcpu_ids(ex: pa.Table, en: pa.Table, p: Pairing, thread_vcpu: np.ndarray, ent: dict) -> np.ndarray:
    """The exit's vcpu_id where recorded, else its entry's, else the thread's vCPU id."""
    vcpu = thread_vcpu[p.exit_code]
    if en.num_rows and "vcpu_id" in en.column_names and ("vcpu_id" not in ex.column_names
                                                          or ex.column("vcpu_id").null_count):
        entry_vcpu = np.where(p.paired, column(en, "vcpu_id", np.int64, -1)[p.entry], -1)
        vcpu = np.where(entry_vcpu >= 0, entry_vcpu, vcpu)
    if "vcpu_id" in ex.column_names:
        ev = ex.column("vcpu_id")
        vcpu = (np.where(np.asarray(ev.is_null().to_numpy(zero_copy_only=False)), vcpu,
                         column(ex, "vcpu_id", np.int64)) if ev.null_count else column(ex, "vcpu_id", np.int32))
    return vcpu


def _first_entry_notes(trace: Trace, first: dict, counts: dict, warnings: list[str]) -> None:
    kinds = np.bincount(first["kind"], minlength=len(FIRST_KINDS))
    counts.update({f"first_entries_{k}": int(v) for k, v in zip(FIRST_KINDS, kinds)})
    if kinds[FIRST_KINDS.index("assumed")]:
        warnings.append(ABSENT["kvm_fpu"])
    if kinds[FIRST_KINDS.index("mid_exit")]:
        warnings.append(WARN["first_entries_mid_exit"](int(kinds[FIRST_KINDS.index("mid_exit")])))


def _user_returns(trace: Trace, p: Pairing, ex: pa.Table, att, ent: dict, flags: dict, moved: np.ndarray,
                  first: dict, vm_of_code: np.ndarray, carry: Carry | None, cut: int, counts: dict,
                  warnings: list[str]) -> dict:
    """Marks per CPU (userreturn.py) for every load, put, return to user mode and loss."""
    n = ex.num_rows
    exit_cpu, exit_row = column(ex, "cpu", np.int32), column(ex, "row", np.int64)
    put = flags["userspace"] | flags["sched_out"] | moved
    put_row = np.where(att.put_row != BIG, att.put_row, exit_row)
    load = put & p.paired
    # A lost entry was a load too: it happened just before the thread's next exit, on its CPU.
    lost = put & p.entry_lost
    nxt = p.next_exit[lost]
    idx = np.arange(n)
    first_load = np.isin(first["kind"], [FIRST_KINDS.index(k) for k in FIRST_LOADS])
    fidx = np.arange(first["code"].size)
    start = running_at_start(p, ex, first["code"], carry.started if carry is not None else None)
    first_exit_ep = np.searchsorted(exit_row, start["row"])
    parts = [
        ur.marks(exit_cpu[put], put_row[put], ur.PUT, p.exit_code[put], ep=idx[put]),
        ur.marks(ent["entry_cpu"][load], ent["entry_row"][load], ur.LOAD, p.exit_code[load], ep=idx[load]),
        ur.marks(exit_cpu[nxt], exit_row[nxt] - 1, ur.LOAD, p.exit_code[lost], ep=idx[lost]),
        ur.marks(first["cpu"][first_load], first["row"][first_load], ur.LOAD, first["code"][first_load],
                 first=fidx[first_load]),
        ur.marks(first["cpu"][~first_load], first["row"][~first_load], ur.ARM, first["code"][~first_load],
                 first=fidx[~first_load]),
        ur.marks(start["cpu"], start["row"], ur.ARM, start["code"], ep=first_exit_ep),
    ]
    run = ur.run_state(trace, p.upids, streamed.run_markers(carry, p.upids))
    parts.append(ur.user_return_marks(trace, p.upids, run))
    initial = None
    if carry is not None:
        parts.append(streamed.marks_back(carry.future, p.upids, exit_row))
        initial = streamed.marks_back(carry.user_return, p.upids, exit_row)
    drops = [d for d in trace.meta.dropped if d.row is not None]
    if drops:
        parts.append(ur.marks(np.array([d.cpu for d in drops]), np.array([d.row for d in drops]), ur.LOSS))
    m = pl.concat(parts)
    res = ur.infer(m, vm_of_code, initial, cut)
    own = res.fired["row"] < cut
    late = res.fired.filter(own & (pl.col("ep") <= -2))
    res.fired = res.fired.filter(own & (pl.col("ep") >= -1))
    uret_state = np.full(n, -1, np.int8)
    ls = res.load_state.filter(pl.col("ep") >= 0)
    uret_state[ls["ep"].to_numpy()] = ls["state"].to_numpy()
    prev = np.full(n, -1, np.int64)
    prev[ls["ep"].to_numpy()] = np.where(ls["prev"].to_numpy() >= 0, p.upids[np.maximum(ls["prev"].to_numpy(), 0)], -1)
    fired_ep = res.fired.filter(pl.col("ep") >= 0)["ep"].to_numpy()
    counts.update(user_returns=int(own.sum()),
                  user_returns_after_loss=int(res.fired["unknown"].sum()) if res.fired.height else 0)
    blind = ur.cpus_without_sched_switch(trace, exit_cpu)
    if blind and trace.has("sched_switch"):
        warnings.append(WARN["cpus_without_sched_switch"](blind))
    return {"uret_state": nullable(uret_state, uret_state >= 0),
            "uret_prev_pid": nullable(prev.astype(np.int32), uret_state >= ur.OTHER_VCPU),
            "user_returns": np.bincount(fired_ep, minlength=n).astype(np.uint16),
            "first": first, "first_state": res.load_state.filter(pl.col("first") >= 0),
            "fired_elsewhere": res.fired.filter(pl.col("ep") < 0), "final": res.final, "marks": m, "run": run,
            "late": late.group_by("ep").len().select(
                (-pl.col("ep") - 2).alias("exit_row"), pl.col("len").cast(pl.Int64).alias("count"))}


def _extra_frame(returns: dict, p: Pairing, threads: pl.DataFrame) -> pl.DataFrame:
    """First-entry loads and the user returns not attributed to an exit, by thread."""
    first = returns["first"]
    m = first["code"].size
    state = np.full(m, -1, np.int8)
    fs = returns["first_state"]
    state[fs["first"].to_numpy()] = fs["state"].to_numpy()
    prev = np.full(m, -1, np.int64)
    pv = fs["prev"].to_numpy()
    prev[fs["first"].to_numpy()] = np.where(pv >= 0, p.upids[np.maximum(pv, 0)], -1)
    prev[state < 2] = -1
    other = returns["fired_elsewhere"]
    per_first = np.bincount(other.filter(pl.col("first") >= 0)["first"].to_numpy(), minlength=m)
    loose = other.filter(pl.col("first") < 0)["code"].to_numpy()
    rows = pl.DataFrame({
        "pid": np.concatenate([p.upids[first["code"]], np.where(loose >= 0, p.upids[np.maximum(loose, 0)], -1)]),
        "first_kind": [FIRST_KINDS[k] for k in first["kind"]] + [None] * loose.size,
        "uret_state": np.concatenate([state, np.full(loose.size, -1, np.int8)]),
        "user_returns": np.concatenate([per_first, np.ones(loose.size, np.int64)]),
        "uret_prev_pid": np.concatenate([prev, np.full(loose.size, -1, np.int64)]),
        "row": np.concatenate([first["row"].astype(np.int64),
                               other.filter(pl.col("first") < 0)["row"].to_numpy().astype(np.int64)]),
    }, schema_overrides={"pid": pl.Int32, "first_kind": pl.Utf8, "uret_state": pl.Int8, "user_returns": pl.Int64,
                         "uret_prev_pid": pl.Int32, "row": pl.Int64})
    rows = rows.join(threads.select("pid", "vcpu", "vm"), on="pid", how="left")
    return rows.with_columns(pl.col("uret_state").replace(-1, None),
                             pl.col("uret_prev_pid").replace(-1, None)).select(list(EXTRA_SCHEMA))
