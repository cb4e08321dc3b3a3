"""Array primitives of the episode builder: thread codes, (thread, row) order, and finding the
episode an event belongs to, all without a Python loop per event.

The per-event tables are in row (= time) order, so a stable sort by thread code alone puts them
in (thread, row) order; with fewer than 65535 threads that is a radix sort, O(n).
"""
from __future__ import annotations

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

SHIFT = 39  # key = thread code << 39 | row: rows below 2**39, thread codes below 2**24
BIG = np.int64(2**62)
ROW_MASK = np.int64((1 << SHIFT) - 1)


def column(tbl: pa.Table, name: str, dtype, fill=0) -> np.ndarray:
    """A column as NumPy (zero-copy when the type already matches and there are no nulls)."""
    col = tbl.column(name)
    if col.null_count:
        col = pc.fill_null(col, fill)
    return np.asarray(col.to_numpy()).astype(dtype, copy=False)


def unique(arrays: list[np.ndarray]) -> np.ndarray:
    """Sorted distinct values (hash-based: much faster than a sort on tens of millions)."""
    vals = [pl.Series(a).unique() for a in arrays if len(a)]
    if not vals:
        return np.zeros(0, np.int64)
    return pl.concat([v.cast(pl.Int64) for v in vals]).unique().sort().to_numpy()


def codes(upids: np.ndarray, pid: np.ndarray) -> np.ndarray:
    """Index (int32) of each pid in the sorted array `upids`, -1 where absent."""
    if upids.size == 0:
        return np.full(pid.shape, -1, np.int32)
    if upids[0] >= 0 and upids[-1] < 2**23:
        # A lookup table indexed by pid (pids are below 2**22 on Linux): one gather, no search.
        lut = np.full(int(upids[-1]) + 2, -1, np.int32)
        lut[upids] = np.arange(upids.size, dtype=np.int32)
        return lut[np.clip(pid, -1, upids[-1] + 1)]
    pos = np.minimum(np.searchsorted(upids, pid), upids.size - 1)
    return np.where(upids[pos] == pid, pos, -1).astype(np.int32)


def thread_order(code: np.ndarray) -> np.ndarray:
    """Permutation into (thread, row) order of a table already in row order."""
    if code.size == 0:
        return np.zeros(0, np.int64)
    if code.max() < 65535:
        return np.argsort((code + 1).astype(np.uint16), kind="stable")
    return np.argsort(code, kind="stable")


def keys(code: np.ndarray, row: np.ndarray) -> np.ndarray:
    return (np.maximum(code, 0).astype(np.int64) << SHIFT) | row


def runs(sorted_keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per thread of keys in thread order: (thread code, index of its first key, how many)."""
    code = sorted_keys >> SHIFT
    starts = np.flatnonzero(np.concatenate([[True], code[1:] != code[:-1]])) if code.size else np.zeros(0, np.int64)
    return code[starts], starts, np.diff(np.append(starts, code.size))


class Located:
    """Where each event of one table lies: its episode (kvm_exit table index, -1 outside every
    episode), for the events in table order (`loc`) and in thread order (`order`, `sorted_loc`)."""

    def __init__(self, loc: np.ndarray, order: np.ndarray, sorted_loc: np.ndarray):
        self.loc, self.order, self.sorted_loc = loc, order, sorted_loc

    def count(self, n: int, mask: np.ndarray | None = None, dtype=np.uint8) -> np.ndarray:
        """Events per episode; beyond the type's range the count saturates (the replay only asks
        whether there were any, and for sched-outs how many, up to 65535). In thread order an
        episode's events are one run: its count is the run's length."""
        ls = self.sorted_loc if mask is None else np.where(mask[self.order], self.sorted_loc, -1)
        v = ls[ls >= 0]
        out = np.zeros(n, dtype)
        if v.size:
            starts = np.flatnonzero(np.concatenate([[True], v[1:] != v[:-1]]))
            out[v[starts]] = np.minimum(np.diff(np.append(starts, v.size)), np.iinfo(dtype).max)
        return out

    def any(self, n: int, mask: np.ndarray | None = None) -> np.ndarray:
        out = np.zeros(n, bool)
        out[self.loc[(self.loc >= 0) if mask is None else (self.loc >= 0) & mask]] = True
        return out

    def bits(self, n: int, values: np.ndarray) -> np.ndarray:
        """OR of the events' bit flags per episode."""
        out = np.zeros(n, values.dtype)
        sel = self.loc >= 0
        np.bitwise_or.at(out, self.loc[sel], values[sel])
        return out

    def _starts(self) -> np.ndarray:
        # In thread order an episode's events are adjacent: its first is where the episode changes.
        ls = self.sorted_loc
        start = ls >= 0
        start[1:] &= ls[1:] != ls[:-1]
        return start

    def first(self, values: np.ndarray, n: int, fill) -> np.ndarray:
        """The value of each episode's first attached event (fill where it has none)."""
        out = np.full(n, fill, dtype=values.dtype)
        start = self._starts()
        out[self.sorted_loc[start]] = values[self.order[start]]
        return out

    def first_into(self, values: np.ndarray, out: np.ndarray, combine) -> None:
        """out[e] = combine(out[e], value of episode e's first event), in place."""
        start = self._starts()
        idx = self.sorted_loc[start]
        out[idx] = combine(out[idx], values[self.order[start]])


class Locator:
    """Finds the episode (its index in the kvm_exit table) of any event of a vCPU thread.

    keys and end_row describe the exits in thread order; to_table maps that order back."""

    def __init__(self, keys: np.ndarray, end_row: np.ndarray, to_table: np.ndarray):
        self.keys, self.end_row, self.to_table = keys, end_row, to_table

    def __call__(self, code: np.ndarray, row: np.ndarray) -> Located:
        # Search in thread order: sorted queries keep the binary searches in cache.
        o = thread_order(code)
        c = code[o]
        k = keys(c, row[o])
        if self.keys.size == 0 or code.size == 0:
            ls = np.full(code.shape, -1, np.int64)
        else:
            p = np.searchsorted(self.keys, k, "right") - 1
            pcl = np.maximum(p, 0)
            # Same thread (the key's high bits) and before the episode's end (its entry or next exit).
            ok = (c >= 0) & (p >= 0) & ((self.keys[pcl] >> SHIFT) == c) & ((k & ROW_MASK) < self.end_row[pcl])
            ls = np.where(ok, self.to_table[pcl], -1)
        loc = np.empty_like(ls)
        loc[o] = ls
        return Located(loc, o, ls)
