"""A Report as data files: JSON (one document), CSV or Parquet (one file per table), and the
episode table (one row per exit: reason, vCPU, VM, boundaries, latency) for DuckDB/Polars users.

Counts are integers (operation counts are sums of a policy's per-boundary counts, kept as floats
while replaying); times keep their unit in the column name (`_ns`, `_us_per_s`, `_pct`).
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import polars as pl

from .errors import UsageError
from .rates import policy_rates
from .replay.policy import OPERATIONS
from .views import KINDS, event_view

COUNT_COLUMNS = frozenset({*OPERATIONS, "vmload_vmsave_avoided", "ops_avoided", "executed", "baseline", "avoided",
                           "syncs", "count", "exits", "timed"})
EXPORT_SCHEMA_VERSION = 1


def integral(df: pl.DataFrame) -> pl.DataFrame:
    """Count columns held as floats become Int64 when every value is whole (a policy with fractional
    counts keeps its floats)."""
    casts = []
    for name, dtype in df.schema.items():
        if name in COUNT_COLUMNS and dtype in (pl.Float32, pl.Float64):
            col = df[name].drop_nulls()
            if col.len() == 0 or bool((col == col.round(0)).all()):
                casts.append(pl.col(name).cast(pl.Int64))
    return df.with_columns(casts) if casts else df


def tables(report, episodes: bool = False) -> dict[str, pl.DataFrame]:
    """Every table of the report by name (policies with their per-second rates; the event views
    that have events), plus `episodes` if asked."""
    out: dict[str, pl.DataFrame] = {}
    for name in report.TABLES:
        out[name] = policy_rates(report) if name == "policies" else getattr(report, name)
    for kind in KINDS[1:]:
        v = event_view(report, kind) if report.episodes.height or kind in report.event_views else pl.DataFrame()
        if v.height:
            out[f"exits_by_{kind}"] = v
    if episodes:
        out["episodes"] = episode_table(report)
    return {k: integral(v) for k, v in out.items()}


def episode_table(report) -> pl.DataFrame:
    """The report's episodes with the policy-independent boundary columns (b_put, b_load, ...)."""
    from .replay.engine import boundary_frame

    ep = report.episodes
    return boundary_frame(ep) if ep.height else ep


def table_names(report) -> list[str]:
    return [*report.TABLES, *(f"exits_by_{k}" for k in KINDS[1:]), "episodes"]


def one(report, name: str) -> pl.DataFrame:
    names = table_names(report)
    if name not in names:
        raise UsageError(f"unknown --table {name!r} (tables: {', '.join(names)})")
    if name == "episodes":
        return episode_table(report)
    if name.startswith("exits_by_"):
        return integral(event_view(report, name.removeprefix("exits_by_")))
    return tables(report)[name] if name == "policies" else integral(getattr(report, name))


def _jsonable(df: pl.DataFrame) -> list[dict[str, Any]]:
    # Enum/categorical columns and unsigned ints serialize as they read.
    return df.to_dicts()


def to_json(report, table: str | None = None) -> str:
    if table is not None:
        return json.dumps(_jsonable(one(report, table)), indent=2, default=str)
    out: dict[str, Any] = {"schema_version": EXPORT_SCHEMA_VERSION, "summary": report.summary,
                           "warnings": report.warnings, "sensitivity": report.sensitivity}
    out.update({k: _jsonable(v) for k, v in tables(report).items()})
    return json.dumps(out, indent=2, default=str)


def table_csv(report, name: str) -> str:
    df = one(report, name)
    return _csv_ready(df).write_csv()


def _csv_ready(df: pl.DataFrame) -> pl.DataFrame:
    """CSV holds flat values: nested columns become JSON text."""
    nested = [c for c, t in df.schema.items() if isinstance(t, (pl.List, pl.Struct, pl.Array))]
    return df.with_columns(pl.col(c).map_elements(lambda v: json.dumps(v if not hasattr(v, "to_list") else
                                                                       v.to_list()), return_dtype=pl.Utf8)
                           for c in nested) if nested else df


def write_dir(report, out_dir: str | os.PathLike, fmt: str) -> list[Path]:
    """Every table as OUT_DIR/<table>.csv or .parquet (Parquet adds episodes.parquet), and
    summary.json with the summary, warnings and sensitivity."""
    d = Path(out_dir)
    if d.exists() and not d.is_dir():
        raise UsageError(f"-o {d}: exists and is not a directory (--format {fmt} writes one file per table)")
    d.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, df in tables(report, episodes=fmt == "parquet").items():
        p = d / f"{name}.{fmt}"
        if fmt == "csv":
            _csv_ready(df).write_csv(p)
        else:
            df.write_parquet(p)
        paths.append(p)
    meta = d / "summary.json"
    meta.write_text(json.dumps({"schema_version": EXPORT_SCHEMA_VERSION, "summary": report.summary,
                                "warnings": report.warnings, "sensitivity": report.sensitivity},
                               indent=2, default=str) + "\n")
    return [*paths, meta]
