"""`exitreplay compare`, `exitreplay chart` and `exitreplay report`."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import polars as pl
import typer
from rich.table import Table

from ..analysis import analyze as run_analysis
from ..compare import compare as run_compare
from ..compare import expand
from ..errors import UsageError
from ..gate import parse_gate
from ..report import charts
from ..report.export import save
from ..report.html import write_report
from . import app
from .common import console, emit, load, progress_bar

COMPARE_FORMATS = ("table", "json", "csv", "parquet", "markdown")
HEADLINE = ["events", "exits", "exits_per_s", "p50_ns", "p90_ns", "p99_ns"]


def _reports(traces: list[str], policy, baseline, cost_profile):
    pairs = expand(traces)
    return [lab for lab, _ in pairs], [run_analysis(load(p), policy or None, cost_profile, baseline)
                                       for _, p in pairs]


@app.command()
def compare(
    traces: list[str] = typer.Argument(None, help="Trace files, directories or globs."),
    label: list[str] = typer.Option(None, "--label", help="NAME=PATH (repeat)."),
    policy: list[str] = typer.Option(None, "--policy", "-p", help="Policies (default: the built-ins fitting each trace)."),
    baseline: str = typer.Option(None, "--baseline", help="Baseline policy."),
    cost_profile: str = typer.Option("epyc", "--cost-profile", help="Cost profile name or .toml."),
    reference: str = typer.Option(None, "--reference", help="Label of the reference trace (default: the first)."),
    fail_if: list[str] = typer.Option(None, "--fail-if", help="CI gate, e.g. 'exits_per_s.rel > 5%' (repeat)."),
    jobs: int = typer.Option(None, "--jobs", "-j", help="Parallel processes (default: CPU count)."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Analyze again even if cached."),
    fmt: str = typer.Option("table", "--format", "-f", help=f"Output: {', '.join(COMPARE_FORMATS)}."),
    output: Path = typer.Option(None, "-o", "--output", help="Output file (required for parquet)."),
    charts_dir: Path = typer.Option(None, "--charts", help="Also write charts (PNG, HTML) into this directory."),
) -> None:
    """Compare traces: exits/s, reason mix, latency percentiles, savings per policy; deltas vs a reference.

    Example: exitreplay compare sample_traces/svm-*.dat --reference svm-idle.v7.dat --fail-if 'exits_per_s.rel > 5%'
    """
    if fmt not in COMPARE_FORMATS:
        raise UsageError(f"unknown --format {fmt!r} (choose from {', '.join(COMPARE_FORMATS)})")
    gates = [parse_gate(g) for g in (fail_if or [])]
    pairs = expand(traces or [], label or [])
    with progress_bar("analyzing traces", len(pairs)) as cb:
        cmp = run_compare(pairs, policies=policy, baseline=baseline, costs=cost_profile, reference=reference,
                          gates=gates, jobs=jobs, use_cache=not no_cache, progress=cb)
    wide = cmp.table
    if fmt == "table" and output is None:
        t = Table(title=f"traces (reference: {cmp.reference})", title_justify="left")
        cols = ["label"] + [c for c in HEADLINE if c in wide.columns] + sorted(
            c for c in wide.columns if c.endswith(":saved_cycles"))
        for c in cols:
            t.add_column(c, justify="left" if c == "label" else "right")
        for row in wide.iter_rows(named=True):
            t.add_row(*[("-" if row[c] is None else f"{row[c]:,.0f}" if isinstance(row[c], float) else str(row[c]))
                        for c in cols])
        console.print(t)
        d = cmp.deltas.filter(pl.col("metric").is_in(HEADLINE) | pl.col("metric").str.starts_with("exits:"))
        if d.height:
            dt = Table(title="deltas against the reference", title_justify="left")
            for c in ("label", "metric", "value", "ref", "abs", "rel", "p_value"):
                dt.add_column(c, justify="left" if c in ("label", "metric") else "right")
            for row in d.iter_rows(named=True):
                dt.add_row(row["label"], row["metric"], *[
                    "-" if row[c] is None else (f"{row[c] * 100:+.1f}%" if c == "rel" else
                                                f"{row[c]:.3g}" if c == "p_value" else f"{row[c]:,.0f}")
                    for c in ("value", "ref", "abs", "rel", "p_value")])
            console.print(dt)
        for r in cmp.results:
            if r.error:
                console.print(f"[red]error:[/red] {r.error}")
    elif fmt == "parquet":
        if output is None:
            raise UsageError("--format parquet needs -o FILE")
        wide.write_parquet(output)
        cmp.deltas.write_parquet(str(output).replace(".parquet", "") + ".deltas.parquet")
    elif fmt == "json":
        emit(json.dumps(cmp.to_dict(), indent=2, default=str), str(output) if output else None)
    elif fmt == "csv":
        emit(wide.write_csv(), str(output) if output else None)
    else:
        cols = ["label"] + [c for c in HEADLINE if c in wide.columns]
        lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        lines += ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in wide.iter_rows(named=True)]
        emit("\n".join(lines), str(output) if output else None)
    if charts_dir:
        charts_dir.mkdir(parents=True, exist_ok=True)
        save(charts.deltas(cmp.deltas.filter(pl.col("metric").is_in(HEADLINE)), cmp.reference),
             charts_dir / "deltas.html")
        save(charts.deltas(cmp.deltas.filter(pl.col("metric").is_in(HEADLINE)), cmp.reference),
             charts_dir / "deltas.png")
    if cmp.gate_failures:
        for f in cmp.gate_failures:
            typer.echo(f"exitreplay: gate failed: {f}", err=True)
        sys.exit(1)


@app.command()
def chart(
    traces: list[str] = typer.Argument(..., help="Trace files."),
    kind: str = typer.Option(..., "--kind", "-k", help=f"One of: {', '.join(k for k in charts.KINDS if k != 'deltas')}."),
    output: Path = typer.Option(..., "-o", "--output", help="FILE.html (interactive), .svg, .png or .json (Vega-Lite)."),
    policy: list[str] = typer.Option(None, "--policy", "-p", help="Policies for the ops chart."),
    baseline: str = typer.Option(None, "--baseline"),
    cost_profile: str = typer.Option("epyc", "--cost-profile"),
) -> None:
    """Draw one chart of one or more traces (rendered offline).

    Example: exitreplay chart sample_traces/svm-mixed.v7zstd.dat --kind latency -o latency.png
    """
    if kind not in charts.KINDS or kind == "deltas":
        raise UsageError(f"unknown --kind {kind!r} (kinds: {', '.join(k for k in charts.KINDS if k != 'deltas')}; "
                         "deltas come from compare --charts)")
    labels, reports = _reports(traces, policy, baseline, cost_profile)
    try:
        c = charts.chart(kind, reports, labels)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    save(c, output)
    console.print(f"wrote {output}")


@app.command()
def report(
    traces: list[str] = typer.Argument(..., help="Trace files."),
    output: Path = typer.Option(..., "-o", "--output", help="report.html to write."),
    policy: list[str] = typer.Option(None, "--policy", "-p"),
    baseline: str = typer.Option(None, "--baseline"),
    cost_profile: str = typer.Option("epyc", "--cost-profile"),
) -> None:
    """One self-contained HTML file (tables, warnings, interactive charts; opens with no network).

    Example: exitreplay report sample_traces/svm-syscall-heavy.v7.dat -o report.html
    """
    labels, reports = _reports(traces, policy, baseline, cost_profile)
    write_report(reports, output, labels)
    console.print(f"wrote {output} ({os.path.getsize(output) / 1e6:.1f} MB)")


def write_charts(report_obj, out_dir: Path, label: str) -> list[Path]:
    """analyze --charts DIR: every chart kind as PNG and HTML."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for kind in ("reasons", "latency", "ops", "timeline", "window"):
        c = charts.chart(kind, [report_obj], [label])
        for ext in (".png", ".html"):
            p = out_dir / f"{kind}{ext}"
            save(c, p)
            written.append(p)
    return written
