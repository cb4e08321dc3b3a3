"""Exit-handling time tables from merged value counts.

Each window adds, per (reason, pid, vCPU), how many exits took each exact latency (ns). Counts
add up across windows, so every statistic of stats.latency_tables (count, total, mean, the
nearest-rank p50/p90/p99, max, min) comes out exact, in memory bounded by the number of distinct
(group, latency) pairs. Past `limit` pairs, latencies are rounded to a log grid of relative step
0.2%: a percentile is then within 0.2% of the exact one (half a step, plus the rounding to whole
ns), and totals and means stay exact (they are kept as sums); the Report says so."""
from __future__ import annotations

import math

import polars as pl

from ..stats import QUANTILES

KEYS = ["reason", "pid", "vcpu"]
GRID = math.log1p(0.002)
LIMIT = 1_000_000


class LatencyCounts:
    def __init__(self, limit: int | None = None):
        self.map = pl.DataFrame(schema={"reason": pl.Utf8, "pid": pl.Int32, "vcpu": pl.Int32,
                                        "latency_ns": pl.Int64, "n": pl.Int64})
        self.sums = pl.DataFrame(schema={"reason": pl.Utf8, "pid": pl.Int32, "vcpu": pl.Int32,
                                         "total": pl.Int64})
        self.limit = LIMIT if limit is None else limit
        self.rounded = False
        self.parts: list[pl.DataFrame] = []  # added since the last compaction
        self.pending = 0

    def add(self, ep: pl.DataFrame) -> None:
        if not ep.height:
            return
        lat = pl.col("latency_ns")
        key = self._round(lat) if self.rounded else lat
        part = ep.select(pl.col("reason").cast(pl.Utf8), pl.col("pid").cast(pl.Int32), pl.col("vcpu").cast(pl.Int32),
                         key.cast(pl.Int64).alias("latency_ns")).group_by(KEYS + ["latency_ns"]).agg(
            pl.len().cast(pl.Int64).alias("n"))
        self.parts.append(part)
        self.pending += part.height
        tot = ep.select(pl.col("reason").cast(pl.Utf8), pl.col("pid").cast(pl.Int32), pl.col("vcpu").cast(pl.Int32),
                        lat.fill_null(0).cast(pl.Int64).alias("total")).group_by(KEYS).agg(pl.col("total").sum())
        self.sums = pl.concat([self.sums, tot]).group_by(KEYS).agg(pl.col("total").sum())
        # Merging costs the map's size: do it once the new parts are as large as the map.
        if self.pending > max(self.map.height, 1 << 16):
            self.compact()

    def compact(self) -> None:
        if not self.parts:
            return
        self.map = pl.concat([self.map, *self.parts]).group_by(KEYS + ["latency_ns"]).agg(pl.col("n").sum())
        self.parts, self.pending = [], 0
        if self.map.height > self.limit and not self.rounded:
            self.rounded = True
            self.map = self.map.with_columns(self._round(pl.col("latency_ns")).cast(pl.Int64)).group_by(
                KEYS + ["latency_ns"]).agg(pl.col("n").sum())

    @staticmethod
    def _round(lat: pl.Expr) -> pl.Expr:
        return pl.when(lat > 0).then(((lat.cast(pl.Float64).log() / GRID).round(0) * GRID).exp().round(0)
                                     ).otherwise(lat)

    def tables(self, vm_of_pid: pl.DataFrame, groupings: dict[str, list[str]]) -> dict[str, pl.DataFrame]:
        self.compact()
        m = self.map.join(vm_of_pid, on="pid", how="left")
        s = self.sums.join(vm_of_pid, on="pid", how="left")
        exits_all = int(m["n"].sum()) if m.height else 0
        time_all = int(s["total"].sum()) if s.height else 0
        out = {}
        for name, keys in groupings.items():
            out[name] = _table(m, s, keys, exits_all, time_all)
        return out


def _table(m: pl.DataFrame, s: pl.DataFrame, keys: list[str], exits_all: int, time_all: int) -> pl.DataFrame:
    counts = m.group_by(keys).agg(pl.col("n").sum().alias("exits"),
                                  pl.col("n").filter(pl.col("latency_ns").is_not_null()).sum().alias("timed"))
    total = s.group_by(keys).agg(pl.col("total").sum().alias("total_ns"))
    timed = m.filter(pl.col("latency_ns").is_not_null()).group_by(keys + ["latency_ns"]).agg(pl.col("n").sum()) \
        .sort(keys + ["latency_ns"]).with_columns(pl.col("n").cum_sum().over(keys).alias("_cum"),
                                                  pl.col("n").sum().over(keys).alias("_cnt"))
    stats = timed.group_by(keys).agg(pl.col("latency_ns").max().alias("max_ns"),
                                     pl.col("latency_ns").min().alias("min_ns"))
    for col, q in QUANTILES:
        target = pl.max_horizontal((pl.lit(q) * pl.col("_cnt")).ceil() - 1, pl.lit(0.0))
        stats = stats.join(timed.filter(pl.col("_cum") > target).group_by(keys).agg(
            pl.col("latency_ns").first().alias(col)), on=keys, how="left")
    f = counts.join(total, on=keys, how="left").join(stats, on=keys, how="left")
    f = f.with_columns(
        pl.col("exits").cast(pl.UInt32), pl.col("timed").cast(pl.UInt32),
        pl.when(pl.col("timed") > 0).then(pl.col("total_ns") / pl.col("timed")).otherwise(None).alias("mean_ns"))
    f = f.select(*keys, "exits", "timed", "total_ns", "mean_ns", *[c for c, _ in QUANTILES], "max_ns", "min_ns")
    f = f.with_columns((pl.col("exits") / max(exits_all, 1) * 100).alias("exits_pct"),
                       (pl.col("total_ns") / (time_all or 1) * 100).alias("time_pct"))
    return f.sort(["exits", *keys], descending=[True] + [False] * len(keys))
