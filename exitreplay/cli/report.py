"""`exitreplay compare`, `exitreplay chart` and `exitreplay report`."""
from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ..analysis import analyze as run_analysis
from ..compare import compare as run_compare
from ..compare import expand
from ..errors import UsageError
from ..fleet import check_rows_path, write_rows
from ..gate import parse_gate
from ..report import charts, compare_tables
from ..report.export import EXTENSIONS, save
from ..report.html import write_report
from . import app
from .common import (
    address_option,
    console,
    cpu_option,
    emit,
    engine_option,
    err_console,
    filters,
    from_option,
    load,
    pid_option,
    reason_option,
    say,
    stage,
    to_option,
    vcpu_option,
)

COMPARE_FORMATS = ("table", "json", "csv", "parquet", "markdown")
CHART_KINDS = ", ".join(charts.KINDS)


@contextlib.contextmanager
def trace_progress(total: int, what: str = "analyzing traces") -> Iterator:
    """One bar for the whole batch, counting traces or stages (on a terminal only)."""
    if not err_console.is_terminal:
        yield None
        return
    with Progress(TextColumn(what), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err_console, transient=True) as prog:
        task = prog.add_task("traces", total=total)
        yield lambda done, tot: prog.update(task, completed=done, total=tot)


def _check_output(path: Path) -> None:
    if os.path.splitext(str(path))[1].lower() not in EXTENSIONS:
        raise UsageError(f"{path}: unknown chart file type (use {', '.join(EXTENSIONS)})")


def _reports(traces: list[str], policy, baseline, cost_profile, cpu_mhz=None, flt=None):
    """Each trace read and analyzed, with a bar counting the stages (read, analyze) of every trace."""
    pairs = expand(traces)
    for _, p in pairs:
        if not os.path.exists(p):
            raise UsageError(f"{p}: no such file")
    reports = []
    with trace_progress(2 * len(pairs), "reading and analyzing") as cb:
        for i, (_, p) in enumerate(pairs):
            tr = load(p)
            if cb:
                cb(2 * i + 1, 2 * len(pairs))
            reports.append(run_analysis(tr, policy or None, cost_profile, baseline, cpu_mhz=cpu_mhz, filters=flt))
            if cb:
                cb(2 * i + 2, 2 * len(pairs))
    return [lab for lab, _ in pairs], reports


def _sibling(output: Path, part: str) -> Path:
    """out.parquet -> out.deltas.parquet."""
    return output.with_name(f"{output.stem}.{part}{output.suffix}")


def write_compare_charts(cmp, out_dir: Path) -> list[Path]:
    """compare --charts DIR: the reason mix, savings per policy and (two traces or more) the deltas."""
    out_dir.mkdir(parents=True, exist_ok=True)
    made = {"reasons": charts.mix(cmp), "savings": charts.savings(cmp)}
    if cmp.deltas.height:
        made["deltas"] = charts.deltas(cmp.deltas, cmp.reference)
    written = []
    for name, c in made.items():
        for ext in (".png", ".html"):
            save(c, out_dir / f"{name}{ext}")
            written.append(out_dir / f"{name}{ext}")
    return written


@app.command()
def compare(
    traces: list[str] = typer.Argument(None, help="Trace files, directories or globs."),
    label: list[str] = typer.Option(None, "--label", help="NAME=PATH: a trace under a name of your choice (repeat)."),
    policy: list[str] = typer.Option(None, "--policy", help="Policies (default: the built-ins fitting each trace)."),
    baseline: str = typer.Option(None, "--baseline", help="Baseline policy."),
    pid: str = pid_option(), vcpu: str = vcpu_option(), cpu: list[str] = cpu_option(),
    reason: list[str] = reason_option(), start: str = from_option(), end: str = to_option(),
    cost_profile: str = typer.Option("auto", "--cost-profile", help="Cost profile (zen, intel) or .toml; auto: by the trace's ISA."),
    cpu_mhz: float = typer.Option(None, "--cpu-mhz", help="CPU frequency for cycles<->time."),
    reference: str = typer.Option(None, "--reference", help="Label of the reference trace (default: the first)."),
    fail_if: list[str] = typer.Option(None, "--fail-if", help="CI gate 'METRIC[.rel|.abs] OP VALUE[%]', e.g. "
                                      "'exits_per_s.rel > 5%' (repeat); exit status 1 when one trips."),
    jobs: int = typer.Option(None, "--jobs", "-j", help="Parallel processes (default: CPU count)."),
    engine: str = engine_option(), address: str = address_option(),
    rows_parquet: Path = typer.Option(None, "--rows-parquet", help="Also write one row per trace (every "
                                      "metric) to this Parquet file, for DuckDB or Polars over a fleet."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Analyze again even if cached."),
    cache_dir: Path = typer.Option(None, "--cache-dir", help="Results cache (default: $EXITREPLAY_CACHE, "
                                   "$XDG_CACHE_HOME/exitreplay or ~/.cache/exitreplay)."),
    fmt: str = typer.Option("table", "--format", "-f", help=f"Output: {', '.join(COMPARE_FORMATS)}."),
    output: Path = typer.Option(None, "-o", "--output", help="Output file (required for parquet; csv and "
                                "parquet also write OUT.deltas.EXT)."),
    charts_dir: Path = typer.Option(None, "--charts", help="Also write charts (PNG, HTML) into this directory."),
) -> None:
    """Compare traces: exits/s, reason mix, latency percentiles, savings and exposure per policy; deltas
    against a reference with Mann-Whitney tests on latencies; CI gates.

    Example: exitreplay compare sample_traces/svm-*.dat --reference svm-idle.v7.dat --fail-if 'exits_per_s.rel > 5%'
    """
    if fmt not in COMPARE_FORMATS:
        raise UsageError(f"unknown --format {fmt!r} (choose from {', '.join(COMPARE_FORMATS)})")
    if fmt == "parquet" and output is None:
        raise UsageError("--format parquet needs -o FILE")
    if rows_parquet is not None:
        check_rows_path(rows_parquet)
    gates = [parse_gate(g) for g in (fail_if or [])]
    flt = filters(pid, vcpu, cpu, reason, start, end)
    pairs = expand(traces or [], label or [])
    with trace_progress(len(pairs)) as cb:
        cmp = run_compare(pairs, policies=policy, baseline=baseline, costs=cost_profile, cpu_mhz=cpu_mhz,
                          reference=reference, gates=gates, jobs=jobs, cache_dir=cache_dir, use_cache=not no_cache,
                          progress=cb, filters=flt, engine=engine, address=address)
    if rows_parquet is not None:
        write_rows(cmp, rows_parquet)
    out = str(output) if output else None
    if fmt == "table" and output is None:
        compare_tables.print_tables(cmp, console)
    elif fmt == "table":
        from rich.console import Console

        with open(output, "w") as fh:
            compare_tables.print_tables(cmp, Console(file=fh, width=console.width, force_terminal=False))
    elif fmt == "parquet":
        cmp.table.write_parquet(output)
        cmp.deltas.write_parquet(_sibling(output, "deltas"))
    elif fmt == "json":
        emit(json.dumps(cmp.to_dict(), indent=2, default=str), out)
    elif fmt == "csv":
        emit(cmp.table.write_csv(), out)
        if output is not None:
            cmp.deltas.write_csv(_sibling(output, "deltas"))
    else:
        emit(compare_tables.markdown(cmp), out)
    if charts_dir:
        with stage("drawing charts"):
            write_compare_charts(cmp, charts_dir)
    for f in cmp.gate_failures:
        typer.echo(f"exitreplay: gate failed: {f}", err=True)
    for e in cmp.errors:
        typer.echo(f"exitreplay: error: {e}", err=True)
    if cmp.errors:
        sys.exit(2)  # an unreadable trace is bad input, whatever the gates said
    if cmp.gate_failures:
        sys.exit(1)


@app.command()
def chart(
    traces: list[str] = typer.Argument(..., help="Trace files (directories and globs too)."),
    kind: str = typer.Option(..., "--kind", "-k", help=f"One of: {CHART_KINDS} (deltas: two traces or more)."),
    output: Path = typer.Option(..., "-o", "--output", help="FILE.html (interactive), .svg, .png or .json (Vega-Lite)."),
    policy: list[str] = typer.Option(None, "--policy", help="Policies to replay (the ops and window charts)."),
    pid: str = pid_option(), vcpu: str = vcpu_option(), cpu: list[str] = cpu_option(),
    reason: list[str] = reason_option(), start: str = from_option(), end: str = to_option(),
    baseline: str = typer.Option(None, "--baseline", help="Policy to compare against (default: kvm-today on SVM, vmx-uret on VMX)."),
    cost_profile: str = typer.Option("auto", "--cost-profile", help="Built-in cost profile (zen, intel) or a .toml file; auto: by the trace's CPU model or ISA."),
    reference: str = typer.Option(None, "--reference", help="deltas: the reference label (default: the first)."),
    png_scale: float = typer.Option(2.0, "--png-scale", help="PNG pixels per CSS pixel (1: smaller files)."),
) -> None:
    """Draw one chart of one or more traces (SVG and PNG are rendered offline).

    Example: exitreplay chart sample_traces/svm-mixed.v7zstd.dat --kind latency -o latency.png
    """
    if kind not in charts.KINDS:
        raise UsageError(f"unknown --kind {kind!r} (kinds: {CHART_KINDS})")
    _check_output(output)
    if not 0.25 <= png_scale <= 8:
        raise UsageError("--png-scale must be between 0.25 and 8")
    flt = filters(pid, vcpu, cpu, reason, start, end)
    if kind == "deltas":
        pairs = expand(traces)
        if len(pairs) < 2:
            raise UsageError("--kind deltas compares traces: give two or more")
        with trace_progress(len(pairs)) as cb:
            cmp = run_compare(pairs, policies=policy, baseline=baseline, costs=cost_profile, reference=reference,
                              progress=cb, filters=flt)
        for e in cmp.errors:
            typer.echo(f"exitreplay: error: {e}", err=True)
        c = charts.deltas(cmp.deltas, cmp.reference)
    else:
        labels, reports = _reports(traces, policy, baseline, cost_profile, flt=flt)
        if not any(r.episodes.height for r in reports):
            raise UsageError(f"{', '.join(labels)}: no kvm_exit events: nothing to chart")
        c = charts.chart(kind, reports, labels, **({"policies": policy} if kind == "window" and policy else {}))
    with stage(f"rendering {output.name}"):
        save(c, output, png_scale=png_scale)
    say(f"wrote {output}")


@app.command()
def report(
    traces: list[str] = typer.Argument(..., help="Trace files (directories and globs too)."),
    output: Path = typer.Option(..., "-o", "--output", help="report.html to write."),
    policy: list[str] = typer.Option(None, "--policy", help="Built-in policy name or .toml file (repeat; default: every built-in that fits)."),
    pid: str = pid_option(), vcpu: str = vcpu_option(), cpu: list[str] = cpu_option(),
    reason: list[str] = reason_option(), start: str = from_option(), end: str = to_option(),
    baseline: str = typer.Option(None, "--baseline", help="Policy to compare against (default: kvm-today on SVM, vmx-uret on VMX)."),
    cost_profile: str = typer.Option("auto", "--cost-profile", help="Built-in cost profile (zen, intel) or a .toml file; auto: by the trace's CPU model or ISA."),
    cpu_mhz: float = typer.Option(None, "--cpu-mhz", help="CPU frequency for cycles<->time (default: the cost profile's)."),
) -> None:
    """One self-contained HTML file (summary, warnings, tables, interactive charts; opens with no network).

    Example: exitreplay report sample_traces/svm-syscall-heavy.v7.dat -o report.html
    """
    labels, reports = _reports(traces, policy, baseline, cost_profile, cpu_mhz, filters(pid, vcpu, cpu, reason, start, end))
    with stage("drawing the charts and writing the report"):
        write_report(reports, output, labels)
    say(f"wrote {output} ({os.path.getsize(output) / 1e6:.1f} MB)")


def write_charts(report_obj, out_dir: Path, label: str) -> list[Path]:
    """analyze --charts DIR: every chart kind of one trace as PNG and HTML."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for kind in charts.TRACE_KINDS:
        c = charts.chart(kind, [report_obj], [label])
        for ext in (".png", ".html"):
            p = out_dir / f"{kind}{ext}"
            save(c, p)
            written.append(p)
    return written
