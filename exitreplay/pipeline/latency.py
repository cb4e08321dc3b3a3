"""Exit-handling time tables from merged value counts.

Each window adds, per (reason, pid, vCPU), how many exits took each exact latency (ns). Counts
add up across windows, so every statistic of stats.latency_tables (count, total, mean, the
nearest-rank p50/p90/p99, max, min) comes out exact, in memory bounded by the number of distinct
(group, latency) pairs. Past `limit` pairs, latencies are rounded to a log grid of relative step
0.2%: a percentile is then within 0.2% of the exact one (half a step, plus the rounding to whole
ns), and totals and means stay exact (they are kept as sums); the Report says so.

The counts are keyed by a small integer per (reason, pid, vCPU) (`keys`): merging and the final
tables group and sort integers only, the strings joined back at the end."""
from __future__ import annotations

import math

import polars as pl

from ..stats import QUANTILES

KEYS = ["reason", "pid", "vcpu"]
KEY_SCHEMA = {"reason": pl.Utf8, "pid": pl.Int32, "vcpu": pl.Int32}
GRID = math.log1p(0.002)
LIMIT = 1_000_000


class LatencyCounts:
    def __init__(self, limit: int | None = None):
        self.keys = pl.DataFrame(schema={**KEY_SCHEMA, "gid": pl.Int32})
        self.map = pl.DataFrame(schema={"gid": pl.Int32, "latency_ns": pl.Int64, "n": pl.Int64})
        self.sums = pl.DataFrame(schema={"gid": pl.Int32, "total": pl.Int64})
        self.limit = LIMIT if limit is None else limit
        self.rounded = False
        self.parts: list[pl.DataFrame] = []  # added since the last compaction
        self.pending = 0

    def add(self, ep: pl.DataFrame) -> None:
        if not ep.height:
            return
        lat = pl.col("latency_ns")
        key = self._round(lat) if self.rounded else lat
        part = ep.select(*[pl.col(k).cast(t) for k, t in KEY_SCHEMA.items()], key.cast(pl.Int64).alias("latency_ns"),
                         lat.fill_null(0).cast(pl.Int64).alias("total")).group_by(KEYS + ["latency_ns"]).agg(
            pl.len().cast(pl.Int64).alias("n"), pl.col("total").sum())
        part = self._with_gids(part)
        self._push(part.select("gid", "latency_ns", "n"),
                   part.group_by("gid").agg(pl.col("total").sum()))

    def _with_gids(self, frame: pl.DataFrame) -> pl.DataFrame:
        """frame with the gid of its (reason, pid, vcpu), new keys numbered after the known ones."""
        new = frame.select(KEYS).unique().join(self.keys, on=KEYS, how="anti", nulls_equal=True)
        if new.height:
            start = self.keys.height
            self.keys = pl.concat([self.keys, new.with_columns(
                (pl.int_range(pl.len()) + start).cast(pl.Int32).alias("gid"))])
        return frame.join(self.keys, on=KEYS, how="left", nulls_equal=True).drop(KEYS)

    def _push(self, counts: pl.DataFrame, sums: pl.DataFrame) -> None:
        self.parts.append(counts)
        self.pending += counts.height
        self.sums = pl.concat([self.sums, sums]).group_by("gid").agg(pl.col("total").sum())
        # Merging costs the map's size: do it once the new parts are as large as the map.
        if self.pending > max(self.map.height, 1 << 16):
            self.compact()

    def merge(self, other: LatencyCounts) -> None:
        """Add another fold's counts (its keys numbered again in this one's)."""
        other.compact()
        remap = self._with_gids(other.keys.rename({"gid": "old"})).rename({"gid": "new"})
        for frame, sums in ((other.map, other.sums),):
            frame = frame.join(remap, left_on="gid", right_on="old").drop("gid").rename({"new": "gid"})
            sums = sums.join(remap, left_on="gid", right_on="old").drop("gid").rename({"new": "gid"})
            self._push(frame.select("gid", "latency_ns", "n"), sums.select("gid", "total"))
        self.rounded |= other.rounded

    def compact(self) -> None:
        if not self.parts:
            return
        self.map = pl.concat([self.map, *self.parts]).group_by("gid", "latency_ns").agg(pl.col("n").sum())
        self.parts, self.pending = [], 0
        if self.map.height > self.limit and not self.rounded:
            self.rounded = True
            self.map = self.map.with_columns(self._round(pl.col("latency_ns")).cast(pl.Int64)).group_by(
                "gid", "latency_ns").agg(pl.col("n").sum())

    @staticmethod
    def _round(lat: pl.Expr) -> pl.Expr:
        return pl.when(lat > 0).then(((lat.cast(pl.Float64).log() / GRID).round(0) * GRID).exp().round(0)
                                     ).otherwise(lat)

    def tables(self, vm_of_pid: pl.DataFrame, groupings: dict[str, list[str]]) -> dict[str, pl.DataFrame]:
        self.compact()
        # rid: the reason's rank, so that integer order is the strings' order.
        kt = self.keys.join(vm_of_pid, on="pid", how="left").with_columns(
            pl.col("reason").rank("dense").fill_null(0).cast(pl.Int32).alias("rid"))
        names = kt.select("rid", "reason").unique("rid")
        m = self.map.join(kt.drop("reason"), on="gid")
        s = self.sums.join(kt.drop("reason"), on="gid")
        exits_all = int(m["n"].sum()) if m.height else 0
        time_all = int(s["total"].sum()) if s.height else 0
        out = {}
        for name, keys in groupings.items():
            inner = ["rid" if k == "reason" else k for k in keys]
            f = _table(m, s, inner, exits_all, time_all)
            if "rid" in inner:
                f = f.join(names, on="rid", how="left", maintain_order="left").drop("rid")
            out[name] = f.select(*keys, pl.exclude(keys))
        return out


def _table(m: pl.DataFrame, s: pl.DataFrame, keys: list[str], exits_all: int, time_all: int) -> pl.DataFrame:
    lat = pl.col("latency_ns")
    counts = m.group_by(keys).agg(pl.col("n").sum().alias("exits"),
                                  pl.col("n").filter(lat.is_not_null()).sum().alias("timed"))
    total = s.group_by(keys).agg(pl.col("total").sum().alias("total_ns"))
    timed = m.filter(lat.is_not_null()).group_by(keys + ["latency_ns"]).agg(pl.col("n").sum()) \
        .sort(keys + ["latency_ns"]).with_columns(pl.col("n").cum_sum().over(keys).alias("_cum"),
                                                  pl.col("n").sum().over(keys).alias("_cnt"))

    def rank(q: float) -> pl.Expr:  # the nearest-rank percentile: the first latency past rank ceil(q*n)
        target = pl.max_horizontal((pl.lit(q) * pl.col("_cnt")).ceil() - 1, pl.lit(0.0))
        return lat.filter(pl.col("_cum") > target).min()

    stats = timed.group_by(keys).agg(lat.max().alias("max_ns"), lat.min().alias("min_ns"),
                                     *[rank(q).alias(col) for col, q in QUANTILES])
    f = counts.join(total, on=keys, how="left", nulls_equal=True).join(stats, on=keys, how="left", nulls_equal=True)
    f = f.with_columns(
        pl.col("exits").cast(pl.UInt32), pl.col("timed").cast(pl.UInt32),
        pl.when(pl.col("timed") > 0).then(pl.col("total_ns") / pl.col("timed")).otherwise(None).alias("mean_ns"))
    f = f.select(*keys, "exits", "timed", "total_ns", "mean_ns", *[c for c, _ in QUANTILES], "max_ns", "min_ns")
    f = f.with_columns((pl.col("exits") / max(exits_all, 1) * 100).alias("exits_pct"),
                       (pl.col("total_ns") / (time_all or 1) * 100).alias("time_pct"))
    return f.sort(["exits", *keys], descending=[True] + [False] * len(keys))
