"""`exitreplay analyze` and `exitreplay policies`."""
from __future__ import annotations

import math
from pathlib import Path

import typer
from rich.table import Table

from .. import export
from ..analysis import PROGRESS_STEPS
from ..analysis import analyze as run_analysis
from ..engines import check_engine
from ..errors import UsageError
from ..render import FORMATS, render, render_table
from ..replay.policy import builtin_policies
from ..views import KINDS, SORT_KEYS
from . import app
from .common import (
    PROGRESS_MIN_BYTES,
    address_option,
    console,
    cpu_option,
    emit,
    engine_option,
    filters,
    from_option,
    load,
    pid_option,
    progress_bar,
    reason_option,
    say,
    stage,
    to_option,
    vcpu_option,
)


def parse_number(text: str | None, option: str, kind: type = float) -> float | int | None:
    """A number option read here, so a bad value is a one-line error (exit status 2)."""
    if text is None:
        return None
    try:
        t = text.strip()
        v = (int(t) if t.lstrip("+-").isdigit() else int(t, 0)) if kind is int else float(t)
    except ValueError:
        what = "an integer" if kind is int else "a number"
        raise UsageError(f"{option} needs {what}, not {text!r}") from None
    if kind is float and not math.isfinite(v):
        raise UsageError(f"{option} needs a finite number, not {text!r}")
    return v


# Traces with more events than this show a progress bar (on a terminal) while they are replayed.
PROGRESS_MIN_EVENTS = 2_000_000
STREAM_BYTES = 256 << 20  # above this a trace is analysed in windows (in memory: ~200 bytes an event)
STREAM_WINDOW = 250_000  # events a window: ~0.5 GB peak


MODES = ("summary", "default", "detail")


@app.command()
def analyze(
    trace: Path = typer.Argument(..., help="Trace file: trace.dat, trace-cmd report, ftrace or perf script text."),
    policy: list[str] = typer.Option(None, "--policy",
                                     help="Built-in policy name or a policy .toml file (repeat). "
                                          "Default: every built-in that fits the trace's ISA."),
    baseline: str = typer.Option(None, "--baseline", help="Policy to compare against "
                                 "(default: kvm-today on SVM, vmx-uret on VMX)."),
    cost_profile: str = typer.Option("auto", "--cost-profile", help="Built-in cost profile (zen, intel) or a .toml file; auto: by the trace's CPU model or ISA."),
    cpu_mhz: str = typer.Option(None, "--cpu-mhz", help="CPU frequency in MHz for cycles<->time "
                                "(default: the cost profile's)."),
    tsc_mhz: str = typer.Option(None, "--tsc-mhz", help="TSC frequency in MHz for x86-tsc traces without "
                                "TSC2NSEC (default: --cpu-mhz)."),
    pid: str = pid_option(),
    vcpu: str = vcpu_option(),
    cpu: list[str] = cpu_option(),
    reason: list[str] = reason_option(),
    start: str = from_option(),
    end: str = to_option(),
    event: str = typer.Option("vmexit", "--event", "-e", help=f"The exit table by: {', '.join(KINDS)} "
                              "(ioport: port and direction; mmio: address; msr: MSR; npf: 2 MiB region)."),
    key: str = typer.Option("sample", "--key", "-k", help=f"Sort the exit tables by: {', '.join(SORT_KEYS)}."),
    limit: int = typer.Option(None, "--limit", help="Rows per exit table (default: all)."),
    summary: bool = typer.Option(False, "--summary", help="One screen: the policy table, ranking and warnings."),
    detail: bool = typer.Option(False, "--detail", help="Everything: per-vCPU/VM tables, operations, cycles, "
                                "sync causes, costs."),
    fmt: str = typer.Option("table", "--format", "-f", help=f"Output: {', '.join(FORMATS)} (csv and parquet "
                            "with -o DIR write one file per table; parquet adds the episode table)."),
    table: str = typer.Option(None, "--table", help="json/csv: only this table (e.g. policies, latency, "
                              "exits_by_msr, episodes); csv to stdout defaults to policies."),
    output: Path = typer.Option(None, "-o", "--output", help="Write to this file (csv/parquet: directory)."),
    charts_dir: Path = typer.Option(None, "--charts", help="Also write every chart (PNG and HTML) here."),
    engine: str = engine_option(), address: str = address_option(),
    split: int = typer.Option(None, "--split", help="trace.dat: analyze it as N time ranges in parallel "
                              "(default with --engine ray: one per worker); the same Report as one process."),
    jobs: int = typer.Option(None, "--jobs", "-j", help="With --split: local processes, or a local Ray "
                             "instance's CPUs (default: the CPU count)."),
    window_events: str = typer.Option("auto", "--window-events", metavar="N|auto|0",
                                      help="Analyse N events at a time, memory bounded by the window (same "
                                           "numbers); 0: the whole trace in memory; auto: windows of "
                                           f"{STREAM_WINDOW:,} for files over {STREAM_BYTES >> 20} MB."),
) -> None:
    """Replay state-deferral policies on the trace's exits: what each saves against the baseline (µs per
    second of trace, % of a CPU, cycles per exit), what it exposes, and the exit-handling times.

    Example: exitreplay analyze sample_traces/svm-syscall-heavy.v7.dat --policy ist-off --format markdown
    """
    _check(fmt, event, key, limit, summary, detail, output, table)
    numbers = {"cpu_mhz": parse_number(cpu_mhz, "--cpu-mhz"), "tsc_mhz": parse_number(tsc_mhz, "--tsc-mhz")}
    flt = filters(pid, vcpu, cpu, reason, start, end)
    check_engine(engine, address)
    needs_exits = charts_dir is not None or fmt == "parquet" or table == "episodes"
    if engine != "local" or split is not None:
        if needs_exits:
            raise UsageError("--engine/--split: --charts, --table episodes and parquet output need every "
                             "exit in one process: analyze without --engine/--split")
        report = _split(trace, engine, address, split, jobs, policy or None, cost_profile, baseline, flt, numbers)
    elif window := stream_window(trace, window_events, needs_exits=needs_exits):
        report = _streamed(trace, window, policy or None, cost_profile, baseline, flt, numbers)
    else:
        tr = load(str(trace))
        with progress_bar("replaying", PROGRESS_STEPS, len(tr) > PROGRESS_MIN_EVENTS, unit="steps") as cb:
            report = run_analysis(tr, policy or None, cost_profile, baseline, progress=cb, filters=flt, **numbers)
    view = {"mode": "summary" if summary else "detail" if detail else "default", "event": event, "key": key,
            "limit": limit}
    if fmt in ("csv", "parquet") and output is not None:
        paths = export.write_dir(report, output, fmt)
        say(f"wrote {len(paths)} files to {output}", err=True)
    elif fmt == "table" and output is None:
        render_table(report, console, **view)
    elif fmt == "table":
        emit(render(report, fmt, width=console.width, **view), str(output))
    else:
        emit(render(report, fmt, table=table, **{k: v for k, v in view.items() if k != "mode"}),
             str(output) if output else None)
    if charts_dir is not None:
        from .report import write_charts

        if report.episodes.height == 0:
            raise UsageError("no exits in this trace: nothing to chart")
        write_charts(report, charts_dir, trace.name)


def _split(trace: Path, engine: str, address: str | None, split: int | None, jobs: int | None, policies, costs,
           baseline, flt, numbers: dict):
    """analyze --engine/--split: the trace's time ranges on the engine, merged (fleet.py)."""
    from ..engines import make_engine
    from ..fleet import analyze_split

    if split is not None and split < 1:
        raise UsageError("--split must be at least 1")
    if not trace.is_file():
        raise UsageError(f"{trace}: no such file" if not trace.exists() else f"{trace}: is not a file")
    with make_engine(engine, jobs, address) as eng, stage(f"analyzing {trace.name} on {eng.name}"):
        return analyze_split(str(trace), eng, split, policies=policies, costs=costs, baseline=baseline,
                             filters=flt, **numbers)


def stream_window(path: Path, option: str, needs_exits: bool) -> int:
    """The window size to analyse `path` with, 0 for the whole trace in memory."""
    if option == "auto":
        size = path.stat().st_size if path.is_file() else 0
        return STREAM_WINDOW if size > STREAM_BYTES and not needs_exits else 0
    n = parse_number(option, "--window-events", int)
    if n is None or n < 0:
        raise UsageError(f"--window-events {option}: a number of events, 0 or auto")
    if n and needs_exits:
        raise UsageError("--window-events: --charts, --table episodes and parquet output need every "
                         "exit in memory: use --window-events 0")
    return int(n)


def _streamed(trace: Path, window: int, policies, cost_profile, baseline, flt, numbers):
    from ..pipeline.stream import analyze_file

    size = trace.stat().st_size if trace.is_file() else 0
    with progress_bar(f"analysing {trace.name}", size, size >= PROGRESS_MIN_BYTES) as cb:
        return analyze_file(str(trace), window_events=window, progress=cb, policies=policies,
                            costs=cost_profile, baseline=baseline, filters=flt, **numbers)


def _check(fmt: str, event: str, key: str, limit: int | None, summary: bool, detail: bool, output: Path | None,
           table: str | None) -> None:
    """Option values checked before the trace is read (one-line errors, exit status 2)."""
    if fmt not in FORMATS:
        raise UsageError(f"unknown --format {fmt!r} (choose from {', '.join(FORMATS)})")
    if event not in KINDS:
        raise UsageError(f"unknown --event {event!r} (choose from {', '.join(KINDS)})")
    if key not in SORT_KEYS:
        raise UsageError(f"unknown --key {key!r} (choose from {', '.join(SORT_KEYS)})")
    if limit is not None and limit < 1:
        raise UsageError("--limit must be at least 1")
    if summary and detail:
        raise UsageError("--summary and --detail exclude each other")
    if fmt == "parquet" and output is None:
        raise UsageError("--format parquet needs -o DIR (one .parquet file per table)")
    if table is not None and fmt not in ("json", "csv"):
        raise UsageError("--table goes with --format json or csv")
    if table is not None and output is not None and fmt == "csv":
        raise UsageError("--table writes one table: give -o FILE.csv without --table for a directory of tables,"
                         " or drop -o to print it")
    if output is not None and fmt not in ("csv", "parquet"):
        if output.is_dir():
            raise UsageError(f"-o {output}: is a directory")
        if not output.resolve().parent.is_dir():
            raise UsageError(f"-o {output}: folder {output.parent} does not exist")


@app.command()
def policies() -> None:
    """List the built-in policies (use a name with --policy, or copy one as a template for your own).

    Example: exitreplay policies
    """
    t = Table(title="built-in policies", title_justify="left")
    t.add_column("name")
    t.add_column("ISA")
    t.add_column("what it models")
    for p in builtin_policies():
        t.add_row(p.name, p.isa + (" (nested)" if p.nested != "none" else ""), p.summary)
    console.print(t)
