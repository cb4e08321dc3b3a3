"""Latency tables of exit episodes: what `perf kvm stat report` shows, and more."""
from __future__ import annotations

import polars as pl


def latency_table(ep: pl.DataFrame, by: list[str] | None = None) -> pl.DataFrame:
    """count, total, mean, p50/p90/p99, max of exit->entry time (ns), grouped; share of all exits.

    Episodes without an entry count in `exits` but not in the times (`timed` says how many were).
    """
    by = by or ["reason"]
    if ep.height == 0:
        return pl.DataFrame(schema={**{k: pl.Utf8 for k in by}, "exits": pl.UInt32})
    lat = pl.col("latency_ns")
    total_exits = ep.height
    total_time = ep["latency_ns"].drop_nulls().sum() or 0
    out = ep.group_by(by).agg(
        pl.len().alias("exits"),
        lat.count().alias("timed"),
        lat.sum().alias("total_ns"),
        lat.mean().alias("mean_ns"),
        lat.quantile(0.5, "nearest").alias("p50_ns"),
        lat.quantile(0.9, "nearest").alias("p90_ns"),
        lat.quantile(0.99, "nearest").alias("p99_ns"),
        lat.max().alias("max_ns"),
        lat.min().alias("min_ns"),
    )
    out = out.with_columns(
        (pl.col("exits") / total_exits * 100).alias("exits_pct"),
        (pl.col("total_ns") / (total_time or 1) * 100).alias("time_pct"),
    )
    return out.sort(["exits", *by], descending=[True] + [False] * len(by))
