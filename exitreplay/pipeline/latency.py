"""Exit-handling time tables from merged value counts.

Each window adds, per (reason, pid, vCPU), how many exits took each exact latency (ns). Counts
add up across windows, so every statistic of stats.latency_tables (count, total, mean, the
nearest-rank p50/p90/p99, max, min) comes out exact, in memory bounded by the number of distinct
(group, latency) pairs. Past `limit` pairs, latencies are rounded to a log grid of relative step
0.2%: a percentile is then within 0.2% of the exact one (half a step, plus the rounding to whole
ns), and totals and means stay exact (they are kept as sums); the Report says so.

The counts are NumPy arrays of one int64 code per (group, latency): the group's number (`keys`,
one per (reason, pid, vCPU)) in the top bits, the latency offset by 2**43 in the low 44 bits, so
that sorting codes sorts by group, then latency. Merging is a sort of sorted runs, the tables a
cumulative sum and binary searches. A latency beyond +-2**43 ns (2.4 hours) counts at that bound
in the percentiles and maximum (its total stays exact)."""
from __future__ import annotations

import math

import numpy as np
import polars as pl

from ..errors import UsageError
from ..stats import QUANTILES

KEYS = ["reason", "pid", "vcpu"]
KEY_SCHEMA = {"reason": pl.Utf8, "pid": pl.Int32, "vcpu": pl.Int32}
GRID = math.log1p(0.002)
LIMIT = 1_000_000
LAT_BITS = 44
OFFSET = 1 << (LAT_BITS - 1)
UNTIMED = (1 << LAT_BITS) - 1  # the code of an exit without a latency (open at the end); above every timed one
MAX_GROUPS = 1 << (63 - LAT_BITS)


class LatencyCounts:
    def __init__(self, limit: int | None = None, key_schema: dict[str, pl.DataType] | None = None):
        """key_schema: the columns a group is keyed by (default: reason, pid, vcpu)."""
        self.key_schema = dict(key_schema or KEY_SCHEMA)
        self.key_names = list(self.key_schema)
        self.keys = pl.DataFrame(schema={**self.key_schema, "gid": pl.Int32})
        self.codes = np.empty(0, np.int64)  # sorted, unique
        self.counts = np.empty(0, np.int64)
        self.totals = np.zeros(0, np.int64)  # per gid: the sum of its latencies
        self.limit = LIMIT if limit is None else limit
        self.rounded = False
        self.parts: list[tuple[np.ndarray, np.ndarray]] = []  # sorted runs added since the last compaction
        self.pending = 0

    @property
    def size(self) -> int:
        """Distinct (group, latency) codes held."""
        self.compact()
        return self.codes.size

    def add(self, ep: pl.DataFrame) -> None:
        if not ep.height:
            return
        rows = self._with_gids(ep.select(*[pl.col(k).cast(t) for k, t in self.key_schema.items()],
                                         pl.col("latency_ns").cast(pl.Int64)))
        gid = rows["gid"].to_numpy().astype(np.int64)
        lat = rows["latency_ns"]
        timed = lat.is_not_null().to_numpy()
        values = lat.fill_null(0).to_numpy()
        self._add_totals(gid, values)
        if self.rounded:
            values = _round(values)
        self._push(*_unique(encode(gid, values, timed)))

    def _with_gids(self, frame: pl.DataFrame) -> pl.DataFrame:
        """frame with the gid of its (reason, pid, vcpu), new keys numbered after the known ones."""
        keys = self.key_names
        new = frame.select(keys).unique(maintain_order=True).join(self.keys, on=keys, how="anti", nulls_equal=True)
        if new.height:
            start = self.keys.height
            if start + new.height > MAX_GROUPS:
                raise UsageError(f"more than {MAX_GROUPS:,} groups of ({', '.join(keys)}): too many for the "
                             "windowed analysis; use --window-events 0")
            self.keys = pl.concat([self.keys, new.with_columns(
                (pl.int_range(pl.len()) + start).cast(pl.Int32).alias("gid"))])
        return frame.join(self.keys, on=keys, how="left", nulls_equal=True).drop(keys)

    def _add_totals(self, gids: np.ndarray, totals: np.ndarray) -> None:
        if self.totals.size < self.keys.height:
            self.totals = np.concatenate([self.totals, np.zeros(self.keys.height - self.totals.size, np.int64)])
        np.add.at(self.totals, gids.astype(np.int64), totals.astype(np.int64))

    def _push(self, codes: np.ndarray, counts: np.ndarray) -> None:
        self.parts.append((codes, counts))
        self.pending += codes.size
        # Merging costs the map's size: do it once the new parts are as large as the map.
        if self.pending > max(self.codes.size, 1 << 16):
            self.compact()

    def merge(self, other: LatencyCounts) -> None:
        """Add another fold's counts (its keys numbered again in this one's)."""
        other.compact()
        remap = self._with_gids(other.keys.rename({"gid": "old"})).sort("old")["gid"].to_numpy().astype(np.int64)
        self._add_totals(remap[: other.totals.size], other.totals)
        gid = other.codes >> LAT_BITS
        codes = (remap[gid] << LAT_BITS) | (other.codes & UNTIMED)
        order = np.argsort(codes, kind="stable")  # the old numbers' runs, renumbered: sorted again
        self._push(codes[order], other.counts[order])
        self.rounded |= other.rounded

    def compact(self) -> None:
        if not self.parts:
            return
        codes = np.concatenate([self.codes, *[c for c, _ in self.parts]])
        counts = np.concatenate([self.counts, *[n for _, n in self.parts]])
        order = np.argsort(codes, kind="stable")  # sorted runs: a merge
        self.codes, self.counts = _reduce(codes[order], counts[order])
        self.parts, self.pending = [], 0
        if self.codes.size > self.limit and not self.rounded:
            self.rounded = True
            gid, values, timed = decode(self.codes)
            codes = encode(gid, _round(values), timed)
            order = np.argsort(codes, kind="stable")
            self.codes, self.counts = _reduce(codes[order], self.counts[order])

    def tables(self, vm_of_pid: pl.DataFrame | None, groupings: dict[str, list[str]]) -> dict[str, pl.DataFrame]:
        """Per grouping, the exit table (stats.latency_tables' columns); vm_of_pid adds a `vm` key."""
        self.compact()
        kt = self.keys if vm_of_pid is None else self.keys.join(vm_of_pid, on="pid", how="left", maintain_order="left")
        kt = kt.sort("gid")
        gid, values, timed = decode(self.codes)
        exits_all = int(self.counts.sum())
        time_all = int(self.totals.sum())
        out = {}
        for name, keys in groupings.items():
            groups = kt.select(keys).unique(maintain_order=True).with_row_index("g")
            g_of = kt.join(groups, on=keys, how="left", nulls_equal=True, maintain_order="left")["g"].to_numpy()
            f = _stats(g_of.astype(np.int64), groups.height, gid, values, timed, self.counts, self.totals)
            out[name] = _shape(pl.concat([groups.drop("g"), f], how="horizontal"), keys, exits_all, time_all)
        return out


def encode(gid: np.ndarray, values: np.ndarray, timed: np.ndarray) -> np.ndarray:
    low = np.clip(values.astype(np.int64), -OFFSET, OFFSET - 2) + OFFSET
    return (gid.astype(np.int64) << LAT_BITS) | np.where(timed, low, UNTIMED)


def decode(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    low = codes & UNTIMED
    return codes >> LAT_BITS, low - OFFSET, low != UNTIMED


def _unique(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    codes = np.sort(codes)
    return _reduce(codes, np.ones(codes.size, np.int64))


def _reduce(codes: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted codes with their counts, each code once."""
    if not codes.size:
        return codes, counts
    starts = np.flatnonzero(np.concatenate([[True], codes[1:] != codes[:-1]]))
    return codes[starts], np.add.reduceat(counts, starts)


def _round(values: np.ndarray) -> np.ndarray:
    pos = values > 0
    out = values.copy()
    out[pos] = np.round(np.exp(np.round(np.log(values[pos].astype(np.float64)) / GRID) * GRID)).astype(np.int64)
    return out


def _stats(g_of: np.ndarray, n_groups: int, gid, values, timed, counts, totals) -> pl.DataFrame:
    """Per group: exits, timed exits, total, nearest-rank percentiles, max and min."""
    g = g_of[gid]
    exits = np.bincount(g, weights=counts, minlength=n_groups)
    timed_n = np.bincount(g[timed], weights=counts[timed], minlength=n_groups)
    total = np.zeros(n_groups, np.int64)
    np.add.at(total, g_of[: totals.size], totals)
    # The timed codes by (group, latency): the group's runs of the old order, merged.
    code = (g[timed] << LAT_BITS) | (values[timed] + OFFSET)
    order = np.argsort(code, kind="stable")
    code, n = code[order], counts[timed][order]
    cum = np.cumsum(n)
    at = np.arange(n_groups, dtype=np.int64)
    start = np.searchsorted(code >> LAT_BITS, at, "left")
    end = np.searchsorted(code >> LAT_BITS, at, "right")
    has = end > start
    base = np.where(start > 0, cum[np.maximum(start - 1, 0)] if cum.size else 0, 0)
    cnt = np.where(has, cum[np.maximum(end - 1, 0)] - base if cum.size else 0, 0)
    lat = (code & UNTIMED) - OFFSET

    def pick(idx: np.ndarray) -> pl.Series:
        vals = lat[np.clip(idx, 0, max(lat.size - 1, 0))] if lat.size else np.zeros(n_groups, np.int64)
        return pl.Series(vals, dtype=pl.Int64).scatter(np.flatnonzero(~has), None)

    cols = {"exits": np.rint(exits).astype(np.int64), "timed": np.rint(timed_n).astype(np.int64), "total_ns": total}
    for col, q in QUANTILES:
        target = np.maximum(np.ceil(q * cnt) - 1, 0)
        cols[col] = pick(np.searchsorted(cum, base + target, "right"))
    cols["max_ns"], cols["min_ns"] = pick(end - 1), pick(start)
    return pl.DataFrame(cols)


def _shape(f: pl.DataFrame, keys: list[str], exits_all: int, time_all: int) -> pl.DataFrame:
    f = f.with_columns(
        pl.col("exits").cast(pl.UInt32), pl.col("timed").cast(pl.UInt32),
        pl.when(pl.col("timed") > 0).then(pl.col("total_ns") / pl.col("timed")).otherwise(None).alias("mean_ns"))
    f = f.select(*keys, "exits", "timed", "total_ns", "mean_ns", *[c for c, _ in QUANTILES], "max_ns", "min_ns")
    f = f.with_columns((pl.col("exits") / max(exits_all, 1) * 100).alias("exits_pct"),
                       (pl.col("total_ns") / (time_all or 1) * 100).alias("time_pct"))
    return f.sort(["exits", *keys], descending=[True] + [False] * len(keys))
