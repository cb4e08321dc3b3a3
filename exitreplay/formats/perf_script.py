"""`perf script` output of tracepoints (`perf record -e 'kvm:*' -e sched:sched_switch ...`)."""
from __future__ import annotations

import os
import re

import polars as pl

from ..trace import Trace
from .textcommon import (
    Head,
    Marker,
    Progress,
    Scan,
    checked_cpu,
    in_range,
    not_events,
    read_text,
    small_int,
    ts_to_ns,
)

SOURCE_FORMAT = "perf-script"
# comm  pid[/tid] [cpu] ts: [period] system:event: text   (comm may hold spaces)
PREFIX = (r"^\s*(?P<comm>.*?)\s+(?P<pid>-?[0-9]+)(?:/(?P<tid>-?[0-9]+))?\s+\[(?P<cpu>[0-9]+)\]\s+"
          r"(?P<ts>[0-9]+\.[0-9]+):\s+(?:(?P<period>[0-9]+)\s+)?(?P<system>[\w-]+):(?P<event>[\w-]+):\s?(?P<rest>.*)$")
# `perf script --show-lost-events`: PERF_RECORD_LOST / LOST_SAMPLES lines.
LOST = r"PERF_RECORD_LOST(?:_SAMPLES)?\b"


def read(path: str | os.PathLike, progress: Progress | None = None) -> Trace:
    return read_text(path, progress, head, scan)


def head(lines: list[str]) -> Head:
    return Head(SOURCE_FORMAT)  # perf script prints no header


def scan(lines: pl.Series) -> Scan:
    frame = pl.DataFrame({"l": lines}).with_row_index("line").select(
        pl.col("line"), pl.col("l").str.extract_groups(PREFIX)).unnest("l")
    is_event = frame["ts"].is_not_null()
    comm = pl.col("comm").str.strip_chars()
    ev = frame.filter(is_event).select(
        "line",
        ts_to_ns(pl.col("ts")).alias("ts"),
        "cpu",
        # with -F tid perf shows pid/tid; the task is the thread
        pl.coalesce(pl.col("tid"), pl.col("pid")).alias("pid"),
        pl.when(comm.is_in([":-1", "<...>"])).then(None).otherwise(comm).alias("comm"),
        "system", "event",
        pl.lit(None, pl.UInt8).alias("flags"),
        pl.lit(None, pl.UInt8).alias("preempt_count"),
        "rest",
    )
    ev, bad = in_range(ev)
    markers, warnings = [], []
    lost = pl.DataFrame({"l": lines}).with_row_index("n").filter(pl.col("l").str.contains(LOST))
    for n, ln in zip(lost["n"].to_list(), lost["l"].to_list()):
        cpu = re.search(r"\[([0-9]+)\]", ln)
        count = re.search(r"lost[^0-9]*([0-9]+)", ln, re.IGNORECASE)
        markers.append(Marker(int(n), checked_cpu(small_int(cpu[1])) if cpu else None,
                              small_int(count[1]) if count else None))
        warnings.append(f"perf reported lost events: {ln.strip()}")
    return Scan(ev, markers, not_events(lines, is_event, LOST + r"|^\s*#"), bad, warnings)
