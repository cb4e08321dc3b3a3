"""Latency tables of exit episodes: what `perf kvm stat report` shows, and more.

Percentiles are nearest-rank: the smallest recorded value with at least a share q of the values at
or below it (sorted[ceil(q * n) - 1]), always a measured exit time, never an interpolation.

All groupings share one sort of the exit times: a stable pass by group id over the sorted times
leaves each group's times sorted, so every percentile is one gather.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import polars as pl

QUANTILES = (("p50_ns", 0.50), ("p90_ns", 0.90), ("p99_ns", 0.99))
# Grouping by name goes faster through the integer code the episode table carries beside it.
KEY_CODES = {"reason": "reason_code"}


@dataclasses.dataclass
class Groups:
    """Rows grouped by key columns: a dense id per row and one row standing for each group."""

    gid: np.ndarray
    rep: np.ndarray
    size: int


def _codes(values: np.ndarray) -> tuple[np.ndarray, int]:
    """Dense codes (in value order) of integer values, and how many distinct there are."""
    if values.size == 0:
        return values.astype(np.int64), 0
    uniq = pl.Series(values).unique().sort().to_numpy()
    lo, hi = int(uniq[0]), int(uniq[-1])
    if hi - lo < 2**24:
        # A lookup table over the value range: one gather instead of a binary search per row.
        lut = np.zeros(hi - lo + 1, np.int32)
        lut[uniq - lo] = np.arange(uniq.size, dtype=np.int32)
        return lut[values - lo if lo else values], uniq.size
    return np.searchsorted(uniq, values), uniq.size


def group_rows(df: pl.DataFrame, keys: list[str]) -> Groups:
    """Dense group ids (hash-based distinct values, no sort of the rows)."""
    n = df.height
    code = np.zeros(n, np.int64)
    for k in keys:
        col = df[KEY_CODES[k]] if KEY_CODES.get(k) in df.columns else df[k]
        if col.dtype in (pl.Utf8, pl.Categorical) or isinstance(col.dtype, pl.Enum):
            col = col.cast(pl.Categorical).to_physical()
        c, size = _codes(col.fill_null(-1).to_numpy())
        code = code * size + c
    gid, size = _codes(code) if n else (code, 0)
    rep = np.zeros(size, np.int64)
    rep[gid] = np.arange(n)  # any row of a group stands for it: they share its keys
    return Groups(gid, rep, size)


class GroupIndex:
    """One fine grouping of the rows (by every key any table needs), from which coarser ones
    follow with one gather: a coarse group is a set of fine groups."""

    def __init__(self, df: pl.DataFrame, keys: list[str]):
        self.keys = list(keys)
        self.fine = group_rows(df, self.keys)
        self.frame = df.select(self.keys)[self.fine.rep]  # one row per fine group

    def coarse(self, keys: list[str]) -> tuple[np.ndarray, np.ndarray, int]:
        """The group (by `keys`) of each fine group, a row standing for each group, how many."""
        if list(keys) == self.keys:
            return np.arange(self.fine.size), self.fine.rep, self.fine.size
        small = group_rows(self.frame, list(keys))
        return small.gid, self.fine.rep[small.rep], small.size

    def groups(self, keys: list[str]) -> Groups:
        if list(keys) == self.keys:
            return self.fine
        small = group_rows(self.frame, list(keys))
        return Groups(small.gid[self.fine.gid], self.fine.rep[small.rep], small.size)


def _kth(values: np.ndarray, by_time: np.ndarray, perm: np.ndarray, start: np.ndarray, has: np.ndarray,
         k: np.ndarray) -> pl.Series:
    """The k-th smallest time of each group (null for groups without timed exits): position
    start + k of the grouped order, which is by_time[perm]."""
    pos = np.clip(start + k, 0, max(perm.size - 1, 0))
    picked = values[by_time[perm[pos]]] if perm.size else np.zeros(start.size, np.int64)
    return pl.Series(picked).set(pl.Series(~has), None)  # type: ignore[arg-type]


def _stable_by_group(gid: np.ndarray, size: int) -> np.ndarray:
    if size < 65535:
        return np.argsort(gid.astype(np.uint16), kind="stable")  # radix sort: O(n)
    return np.argsort(gid, kind="stable")


def latency_tables(ep: pl.DataFrame, groupings: dict[str, list[str]], index: GroupIndex | None = None
                   ) -> dict[str, pl.DataFrame]:
    """For each grouping: count, timed, total, mean, p50/p90/p99 (nearest rank), max, min of the
    exit->entry time (ns), and the group's share of all exits and of all exit time.

    Episodes without an entry count in `exits` but not in the times (`timed` says how many were).
    """
    out: dict[str, pl.DataFrame] = {}
    if ep.height == 0:
        return {name: pl.DataFrame(schema={**{k: pl.Utf8 for k in keys}, "exits": pl.UInt32})
                for name, keys in groupings.items()}
    lat = ep["latency_ns"]
    values = lat.fill_null(0).to_numpy()  # untimed exits add 0 to the totals
    # Rows of the timed episodes, by exit time; each grouping then needs only a stable pass by
    # group over this order to have every group's times sorted.
    timed_rows = np.flatnonzero(lat.is_not_null().to_numpy()).astype(np.int32 if ep.height < 2**31 else np.int64)
    by_time = timed_rows[pl.Series(values[timed_rows]).arg_sort().to_numpy()]
    del timed_rows
    total_time = int(values.sum())
    fine = index.fine
    fine_t = fine.gid[by_time]  # the fine group of each timed exit, by time
    fine_exits = np.bincount(fine.gid, minlength=fine.size)
    # Sums of int64 ns in float64 are exact below 2**53 ns (104 days) per group.
    fine_total = np.rint(np.bincount(fine.gid, weights=values, minlength=fine.size)).astype(np.int64)
    for name, keys in groupings.items():
        coarse, rep, size = index.coarse(keys)  # fine group -> this grouping's group
        g = Groups(np.zeros(0, np.int64), rep, size)
        g_t = coarse[fine_t]
        cnt = np.bincount(g_t, minlength=g.size)
        start = np.cumsum(cnt) - cnt
        total = np.bincount(coarse, weights=fine_total, minlength=g.size).astype(np.int64)
        exits = np.bincount(coarse, weights=fine_exits, minlength=g.size).astype(np.int64)
        perm = _stable_by_group(g_t, g.size)
        del g_t
        has = cnt > 0

        frame = ep.select(keys)[g.rep].with_columns(
            pl.Series("exits", exits).cast(pl.UInt32),
            pl.Series("timed", cnt).cast(pl.UInt32),
            pl.Series("total_ns", total),
            pl.Series("mean_ns", np.where(has, total / np.maximum(cnt, 1), np.nan)).fill_nan(None),
            *[_kth(values, by_time, perm, start, has, np.maximum(np.ceil(q * cnt).astype(np.int64) - 1, 0))
              .alias(col) for col, q in QUANTILES],
            _kth(values, by_time, perm, start, has, cnt - 1).alias("max_ns"),
            _kth(values, by_time, perm, start, has, np.zeros(g.size, np.int64)).alias("min_ns"),
        )
        del perm
        frame = frame.with_columns(
            (pl.col("exits") / ep.height * 100).alias("exits_pct"),
            (pl.col("total_ns") / (total_time or 1) * 100).alias("time_pct"),
        )
        out[name] = frame.sort(["exits", *keys], descending=[True] + [False] * len(keys))
    return out


def latency_table(ep: pl.DataFrame, by: list[str] | None = None) -> pl.DataFrame:
    """One grouping of latency_tables (default: per exit reason)."""
    return latency_tables(ep, {"t": by or ["reason"]})["t"]
