"""Step 1, pairing: each kvm_exit with its vCPU thread's next kvm_entry, if no other exit of that
thread comes first.

Exits and entries are put in (thread, row) order once (a stable radix sort by thread: the tables
are in row order already); an exit's entry is one binary search of its key among the entry keys.
Within a window of a streamed trace the only state this step needs from the past is the thread's
last exit when it was still open (its entry falls in this window).
"""
from __future__ import annotations

import dataclasses

import numpy as np
import polars as pl
import pyarrow as pa

from .locate import BIG, ROW_MASK, SHIFT, Locator, codes, column, keys, runs, thread_order, unique
from .threads import summary


@dataclasses.dataclass
class Pairing:
    """Exits in thread order with where each episode ends, and what that says per exit."""

    upids: np.ndarray  # sorted pids of the threads with exits or entries (their index is the thread code)
    exit_code: np.ndarray  # thread code of each exit (table order)
    order: np.ndarray  # exits in thread order
    exit_keys: np.ndarray  # thread << 39 | row, in thread order
    end_row: np.ndarray  # per exit in thread order: its entry row, else its thread's next exit row, else BIG
    paired: np.ndarray  # table order: the exit has an entry
    entry: np.ndarray  # table order: index of that entry in kvm_entry (0 where unpaired)
    next_exit: np.ndarray  # table order: index of the thread's next exit, -1 where it has none
    first_entry: np.ndarray  # kvm_entry indices of the entries that precede their thread's first exit
    summaries: list[pl.DataFrame | None]  # per-thread summaries of the two tables (for the thread table)
    counts: dict[str, int]

    @property
    def entry_lost(self) -> np.ndarray:
        """Exits with no entry but a later exit of the thread: the entry happened and was lost."""
        return ~self.paired & (self.next_exit >= 0)

    def locator(self) -> Locator:
        """Finds the episode of any event of a vCPU thread (see locate.Locator)."""
        return Locator(self.exit_keys, self.end_row, self.order)


def empty_entries() -> pa.Table:
    return pa.table({"row": pa.array([], pa.int64()), "ts": pa.array([], pa.int64()),
                     "cpu": pa.array([], pa.int32()), "pid": pa.array([], pa.int32())})


def pair(ex: pa.Table, en: pa.Table, known: np.ndarray | None = None) -> Pairing:
    """known: pids of vCPU threads seen before this window (they get thread codes too)."""
    n = ex.num_rows
    ex_row, ex_pid = column(ex, "row", np.int64), column(ex, "pid", np.int32)
    upids = unique([ex_pid, column(en, "pid", np.int32), *([known.astype(np.int32)] if known is not None else [])])
    exit_code = codes(upids, ex_pid)
    o = thread_order(exit_code)
    exit_keys = keys(exit_code[o], ex_row[o])
    same_next = np.zeros(n, bool)
    same_next[:-1] = (exit_keys[1:] >> SHIFT) == (exit_keys[:-1] >> SHIFT)
    end_row = np.full(n, BIG)
    end_row[:-1] = np.where(same_next[:-1], exit_keys[1:] & ROW_MASK, BIG)  # the next exit of the thread
    paired, ent, first_entry, entry_runs = _match(exit_keys, end_row, upids, en)
    c, start, size = runs(exit_keys)
    vid = ex.column("vcpu_id").take(pa.array(o[start])) if "vcpu_id" in ex.column_names else None
    summaries = [summary(upids[c], exit_keys[start] & ROW_MASK, size, vid, True), entry_runs]
    if en.num_rows:
        end_row[paired] = column(en, "row", np.int64)[ent[paired]]
    n_paired = int(paired.sum())
    counts = dict(exits=n, entries=en.num_rows, exits_without_entry=int((~paired & same_next).sum()),
                  exits_open_at_end=int((~paired & ~same_next).sum()),
                  entries_without_exit=en.num_rows - n_paired - first_entry.size, first_entries=first_entry.size)
    paired_t = np.empty(n, bool)
    paired_t[o] = paired
    ent_t = np.zeros(n, np.int64)
    ent_t[o] = ent
    next_t = np.full(n, -1, np.int64)
    next_t[o[:-1]] = np.where(same_next[:-1], o[1:], -1)
    return Pairing(upids, exit_code, o, exit_keys, end_row, paired_t, ent_t, next_t, first_entry, summaries, counts)


def _match(exit_keys: np.ndarray, next_exit_row: np.ndarray, upids: np.ndarray, en: pa.Table
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray, pl.DataFrame | None]:
    """(paired, index in kvm_entry, the entries that start their thread (before its first exit),
    the entries' per-thread summary), exits in thread order."""
    n, m = exit_keys.size, en.num_rows
    if m == 0:
        return np.zeros(n, bool), np.zeros(n, np.int64), np.zeros(0, np.int64), None
    oe = thread_order(en_code := codes(upids, column(en, "pid", np.int32)))
    entry_keys = keys(en_code[oe], column(en, "row", np.int64)[oe])
    pos = np.minimum(np.searchsorted(entry_keys, exit_keys, "right"), m - 1)
    nxt = entry_keys[pos]  # the first entry key after each exit's (clamped: check it is after)
    paired = ((nxt ^ exit_keys) >> SHIFT == 0) & ((nxt & ROW_MASK) < next_exit_row) & (nxt > exit_keys)
    c, start, size = runs(entry_keys)
    prev = np.searchsorted(exit_keys, entry_keys[start], "left") - 1
    has_prev_exit = (prev >= 0) & ((exit_keys[np.maximum(prev, 0)] >> SHIFT) == c)
    vid = en.column("vcpu_id").take(pa.array(oe[start])) if "vcpu_id" in en.column_names else None
    runs_summary = summary(upids[c], entry_keys[start] & ROW_MASK, size, vid, False,
                           (~has_prev_exit).astype(np.int64))
    return paired, oe[pos], oe[start][~has_prev_exit], runs_summary


def entry_columns(p: Pairing, ex: pa.Table, en: pa.Table) -> dict[str, np.ndarray]:
    """Per exit (table order): its entry's row, CPU and ts, and the exit -> entry time."""
    ts = column(ex, "ts", np.int64)
    if en.num_rows == 0:
        zero = np.zeros(ex.num_rows, np.int64)
        return {"entry_row": zero, "entry_cpu": zero.astype(np.int32), "entry_ts": ts, "latency": zero}
    entry_ts = column(en, "ts", np.int64)[p.entry]
    return {"entry_row": column(en, "row", np.int64)[p.entry], "entry_cpu": column(en, "cpu", np.int32)[p.entry],
            "entry_ts": entry_ts, "latency": entry_ts - ts}
