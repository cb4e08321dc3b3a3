"""A policy's saving and exposure in the units people compare across traces: per second of trace,
per exit and as a share of CPU time (a Report's totals depend on how long the trace ran).

- saved_us_per_s (and _low/_high): state-switching time saved per second of trace, in µs. A µs
  saved per second is 0.0001% of one CPU, so saved_cpu_pct is the same number in another unit.
- syncs_per_s: sync points (a deferred switch done) per second of trace.
- ist_off_pct / guest_state_live_pct: that exposure's share of the host's CPU time in the trace
  (span x host CPUs; x the selected CPUs with --cpu).
"""
from __future__ import annotations

import polars as pl

RATE_COLUMNS = ("saved_us_per_s", "saved_us_per_s_low", "saved_us_per_s_high", "saved_cpu_pct", "syncs_per_s",
                "ist_off_pct", "guest_state_live_pct")


def host_cpus(summary: dict) -> int:
    chosen = (summary.get("filters") or {}).get("cpus") or []
    return len(chosen) or int(summary.get("cpus") or 1)


def policy_rates(report) -> pl.DataFrame:
    """Report.policies with the rate columns, sorted by saving (largest first), baseline included."""
    p = report.policies
    s = report.summary
    if p.height == 0 or "saved_cycles_typical" not in p.columns:
        return p
    span_ns = float(s.get("span_ns") or 0) or float("nan")
    us_per_cycle = 1.0 / float(s["cpu_mhz"])
    host_ns = span_ns * host_cpus(s)
    out = p.with_columns(
        *[(pl.col(f"saved_cycles_{lvl}") * us_per_cycle / (span_ns / 1e9)).alias(name)
          for lvl, name in (("typical", "saved_us_per_s"), ("low", "saved_us_per_s_low"),
                            ("high", "saved_us_per_s_high"))],
        (pl.col("saved_cycles_typical") * us_per_cycle * 1e3 / span_ns * 100).alias("saved_cpu_pct"),
        (pl.col("syncs") / (span_ns / 1e9)).alias("syncs_per_s"),
        (pl.col("ist_off_ns") / host_ns * 100).alias("ist_off_pct"),
        (pl.col("guest_state_live_ns") / host_ns * 100).alias("guest_state_live_pct"),
    ).with_columns(pl.col(c).fill_nan(None) for c in RATE_COLUMNS)
    return out.sort(["saved_cycles_typical", "policy"], descending=[True, False])
