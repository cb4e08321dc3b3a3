"""A streamed view's carry: taken back at the start of a view, handed on at its cut (carry.py)."""
from __future__ import annotations

import numpy as np
import polars as pl
import pyarrow as pa

from . import userreturn as ur
from .carry import MARKS, Carry, deref, ref
from .locate import codes, column


def run_markers(carry: Carry | None, upids: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    if carry is None or carry.run_pids.size == 0:
        return None
    c = codes(upids, carry.run_pids.astype(np.int32))
    return c[c >= 0], carry.run_kinds[c >= 0]


def marks_back(df: pl.DataFrame, upids: np.ndarray, exit_row: np.ndarray) -> pl.DataFrame:
    """Carried marks as this view's marks: pids to thread codes, and each carried episode
    reference to the episode's index here when its exit is in this view."""
    ep = df["ep"].to_numpy().astype(np.int64)
    carried = ep <= -2
    r = deref(ep[carried])
    pos = np.searchsorted(exit_row, r)
    here = (pos < exit_row.size) & (exit_row[np.minimum(pos, max(exit_row.size - 1, 0))] == r) \
        if exit_row.size else np.zeros(r.size, bool)
    ep = ep.copy()
    sub = ep[carried]
    sub[here] = pos[here]
    ep[carried] = sub
    return pl.DataFrame({"cpu": df["cpu"].to_numpy().astype(np.int32), "row": df["row"].to_numpy(),
                         "kind": df["kind"].to_numpy().astype(np.int8),
                         "code": codes(upids, df["pid"].to_numpy().astype(np.int32)),
                         "ep": ep, "first": df["first"].to_numpy().astype(np.int64)}, schema=ur.MARK_SCHEMA)


def _as_carried(m: pl.DataFrame, upids: np.ndarray, exit_row: np.ndarray) -> pl.DataFrame:
    """This view's marks (codes, local episode indices) as carried marks (pids, references)."""
    code = m["code"].to_numpy()
    ep = m["ep"].to_numpy().astype(np.int64)
    # A first entry's mark stays one (first -2) however many views it is carried through.
    first = np.where(m["first"].to_numpy() != -1, -2, -1)
    local = ep >= 0
    ep = np.where(local, ref(exit_row[np.maximum(ep, 0)]) if exit_row.size else -1, ep)
    return pl.DataFrame({"cpu": m["cpu"].to_numpy(), "row": m["row"].to_numpy(), "kind": m["kind"].to_numpy(),
                         "pid": np.where(code >= 0, upids[np.maximum(code, 0)] if upids.size else -1, -1),
                         "ep": ep, "first": first.astype(np.int64)}, schema=MARKS)


def hand_on(trace, eps, p, en: pa.Table, first: dict, returns: dict, carry: Carry | None, cut: int) -> Carry:
    ep = eps.table
    exit_row = ep["exit_row"].to_numpy().astype(np.int64)
    upids = p.upids
    m = returns["marks"]
    e = m["ep"].to_numpy()
    owned_ep = np.zeros(e.size, bool)
    owned_ep[e >= 0] = exit_row[e[e >= 0]] < cut
    kind = m["kind"].to_numpy()
    is_first = m["first"].to_numpy() != -1
    future = (m["row"].to_numpy() >= cut) & (
        ((kind == ur.PUT) | (kind == ur.LOAD)) & (owned_ep | (e <= -2) | is_first)
        | ((kind == ur.ARM) & ((e >= 0) | (e <= -2) | is_first)))
    ent_row = ep["entry_row"].to_numpy()
    consumed = ep.filter((pl.col("exit_row") < cut) & (pl.col("entry_row") >= cut))["entry_row"].to_numpy()
    # First entries at or after the cut are this view's too: the next one must not see them again.
    consumed = np.concatenate([consumed.astype(np.int64), first["row"][first["row"] >= cut].astype(np.int64)])
    old = carry.consumed[carry.consumed >= cut] if carry is not None else np.zeros(0, np.int64)
    del ent_row
    rc, rk = returns["run"].last_kind(cut)
    th = eps.threads.filter(pl.col("first_row") < cut).select(
        pl.col("pid").cast(pl.Int64), pl.col("first_row").cast(pl.Int64), pl.col("comm"),
        pl.col("vcpu").cast(pl.Int64).alias("vid"))
    started = np.unique(np.concatenate([
        carry.started if carry is not None else np.zeros(0, np.int64),
        upids[first["code"]].astype(np.int64), np.unique(ep["pid"].to_numpy()).astype(np.int64)]))
    return Carry(
        start=cut,
        user_return=_as_carried(returns["final"], upids, exit_row),
        future=_as_carried(m.filter(pl.Series(future)), upids, exit_row),
        consumed=np.unique(np.concatenate([consumed.astype(np.int64), old])),
        run_pids=upids[rc].astype(np.int64), run_kinds=rk.astype(np.int8),
        threads=th, started=started,
        seen=frozenset(trace.event_names) | (carry.seen if carry is not None else frozenset()),
        pre_fpu=_before(trace, "kvm_fpu", "pid", cut, carry.pre_fpu if carry else None, started,
                        lambda t: column(t, "load", np.int64) != 0),
        pre_sched_in=_before(trace, "sched_switch", "next_pid", cut, carry.pre_sched_in if carry else None, started))


def _before(trace, name: str, pid_col: str, cut: int, prev, started: np.ndarray, select=None) -> np.ndarray:
    """Pids (not yet started) with such an event before the cut."""
    out = [prev] if prev is not None else []
    if trace.has(name):
        t = trace.table(name)
        keep = column(t, "row", np.int64) < cut
        if select is not None and t.num_rows:
            keep &= select(t)
        out.append(np.unique(column(t, pid_col, np.int64)[keep]))
    if not out:
        return np.zeros(0, np.int64)
    pids = np.unique(np.concatenate(out))
    return pids[~np.isin(pids, started)]


def owned_counts(ep: pl.DataFrame, trace, en_all: pa.Table, first: dict, carry: Carry | None,
                 rows: tuple[int, int], counts: dict) -> dict:
    """The pairing counts of what this view owns: its exits in rows [lo, hi) (before the cut),
    and the entries by row (each row belongs to exactly one view's [start, cut))."""
    lo, cut = rows
    own = ep.filter((pl.col("exit_row") >= lo) & (pl.col("exit_row") < cut))
    paired = own["entry_row"].is_not_null()
    lost = own["entry_lost"]
    en_row = column(en_all, "row", np.int64) if en_all.num_rows else np.zeros(0, np.int64)
    entries = int(((en_row >= lo) & (en_row < cut)).sum())
    er = ep["entry_row"].drop_nulls().to_numpy()  # entries paired with any exit, owned or not
    paired_here = int(((er >= lo) & (er < cut)).sum())
    consumed_here = int(((carry.consumed >= lo) & (carry.consumed < cut)).sum()) if carry is not None else 0
    first_here = int(((first["row"] >= lo) & (first["row"] < cut)).sum())
    out = dict(exits=own.height, entries=entries,
               exits_without_entry=int((~paired & lost).sum()),
               exits_open_at_end=int((~paired & ~lost).sum()),
               entries_without_exit=entries - paired_here - consumed_here - first_here,
               out_of_order=int((own["latency_ns"].drop_nulls() < 0).sum()),
               episodes_crossing_dropped_events=int(own["crosses_drop"].sum()))
    if "cpu_changes_without_sched_switch" in counts:
        out["cpu_changes_without_sched_switch"] = int(own["moved"].sum())
    return out
