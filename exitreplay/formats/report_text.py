"""`trace-cmd report` text (default plugin output, `-R` raw fields, `-t` ns timestamps)."""
from __future__ import annotations

import os
from collections.abc import Callable

import polars as pl

from ..trace import Trace
from .textcommon import build_trace, check_exists, dropped_markers, read_lines, ts_to_ns

# task-pid [cpu] (optional latency flags) ts: event: rest
PREFIX = (r"^\s*(?P<comm>.*?)-(?P<pid>-?\d+)\s+(?:\(\s*(?P<tgid>[\d-]+)\)\s+)?\[(?P<cpu>\d+)\]\s+"
          r"(?:(?P<lat>[a-zA-Z.][a-zA-Z0-9.]{3,4})\s+)?(?P<ts>\d+\.\d+):\s+(?P<event>[\w:.-]+):\s*(?P<rest>.*)$")

LATENCY_FLAGS = {"irqs_off": 0x01, "need_resched": 0x08, "hardirq": 0x10, "softirq": 0x20}


def parse_prefixed(path: str, lines: pl.Series, source_format: str, cpus: int | None, warnings: list[str],
                   extra: dict | None = None) -> Trace:
    frame = pl.DataFrame({"line": lines}).select(pl.col("line").str.extract_groups(PREFIX)).unnest("line")
    is_event = frame["ts"].is_not_null()
    ev = frame.filter(is_event)
    # "sys:event" names (trace-cmd prints some with their system) keep the system apart.
    ev = ev.with_columns(
        pl.when(pl.col("event").str.contains(":")).then(pl.col("event").str.extract(r"^([^:]+):", 1))
        .otherwise(None).alias("system"),
        pl.col("event").str.replace(r"^[^:]+:", "").alias("event"),
        pl.when(pl.col("comm").str.strip_chars() == "<...>").then(None)
        .otherwise(pl.col("comm").str.strip_chars()).alias("comm"),
    )
    ev = ev.with_columns(
        ts_to_ns(pl.col("ts")).alias("ts"),
        pl.col("cpu").cast(pl.Int32),
        pl.col("pid").cast(pl.Int32),
        _lat_flags(pl.col("lat")).alias("flags"),
        pl.col("lat").str.slice(3, 1).str.to_integer(base=16, strict=False).alias("preempt_count"),
        pl.col("rest").str.strip_chars_end(),
    )
    drops = dropped_markers(lines, is_event)
    return build_trace(path, ev, source_format, cpus=cpus, dropped_rows=drops, warnings=warnings, extra=extra)


def _lat_flags(lat: pl.Expr) -> pl.Expr:
    """The latency column ("d..2.") back to common_flags bits where the letters say them."""
    irq = pl.when(lat.str.slice(0, 1).is_in(["d", "D"])).then(0x01).otherwise(0)
    nr = pl.when(lat.str.slice(1, 1).is_in(["N", "n", "p"])).then(0x08).otherwise(0)
    hs = (pl.when(lat.str.slice(2, 1).is_in(["h", "H"])).then(0x10).otherwise(0)
          + pl.when(lat.str.slice(2, 1).is_in(["s", "H"])).then(0x20).otherwise(0))
    return pl.when(lat.is_null()).then(None).otherwise(irq + nr + hs)


def read(path: str | os.PathLike, progress: Callable[[int, int], None] | None = None) -> Trace:
    path = check_exists(path)
    lines = read_lines(path)
    head = lines.head(5).to_list()
    cpus = None
    for ln in head:
        if ln.startswith("cpus="):
            cpus = int(ln[5:].strip())
    tr = parse_prefixed(path, lines, "trace-cmd-report", cpus, [])
    if progress:
        progress(1, 1)
    return tr
