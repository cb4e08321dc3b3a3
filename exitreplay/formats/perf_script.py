"""`perf script` output of tracepoints (`perf record -e 'kvm:*' ...`)."""
from __future__ import annotations

import os
from collections.abc import Callable

import polars as pl

from ..trace import Trace
from .textcommon import build_trace, check_exists, read_lines, ts_to_ns

# comm  pid[/tid] [cpu] ts: [period] system:event: rest
PREFIX = (r"^\s*(?P<comm>.*?)\s+(?P<pid>-?\d+)(?:/(?P<tid>\d+))?\s+\[(?P<cpu>\d+)\]\s+(?P<ts>\d+\.\d+):\s+"
          r"(?:\d+\s+)?(?P<system>[\w-]+):(?P<event>[\w-]+):\s*(?P<rest>.*)$")


def read(path: str | os.PathLike, progress: Callable[[int, int], None] | None = None) -> Trace:
    path = check_exists(path)
    lines = read_lines(path)
    frame = pl.DataFrame({"line": lines}).select(pl.col("line").str.extract_groups(PREFIX)).unnest("line")
    is_event = frame["ts"].is_not_null()
    ev = frame.filter(is_event).with_columns(
        ts_to_ns(pl.col("ts")).alias("ts"),
        pl.col("cpu").cast(pl.Int32),
        # perf shows the thread id after a slash when asked (-F tid); the task is the thread.
        pl.coalesce(pl.col("tid"), pl.col("pid")).cast(pl.Int32).alias("pid"),
        pl.when(pl.col("comm").str.strip_chars() == ":-1").then(None)
        .otherwise(pl.col("comm").str.strip_chars()).alias("comm"),
        pl.lit(None, pl.UInt8).alias("flags"),
        pl.lit(None, pl.UInt8).alias("preempt_count"),
        pl.col("rest").str.strip_chars_end(),
    )
    lost = lines.filter(lines.str.contains(r"PERF_RECORD_LOST|LOST \d+ events"))
    warnings = [f"perf reported lost events: {ln.strip()}" for ln in lost.head(5).to_list()]
    tr = build_trace(path, ev, "perf-script", cpus=None, dropped_rows=[], warnings=warnings)
    if progress:
        progress(1, 1)
    return tr
