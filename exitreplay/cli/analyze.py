"""`exitreplay analyze` and `exitreplay policies`."""
from __future__ import annotations

import math
from pathlib import Path

import typer
from rich.table import Table

from ..analysis import PROGRESS_STEPS
from ..analysis import analyze as run_analysis
from ..errors import UsageError
from ..render import FORMATS, render, render_table
from ..replay.policy import builtin_policies
from . import app
from .common import console, emit, load, progress_bar


def parse_time(text: str | None) -> int | None:
    """'1.5' or '1.5s' seconds, '200ms', '30us', '100ns' -> ns from the first event."""
    if text is None:
        return None
    t = text.strip().lower()
    for suffix, mult in (("ns", 1), ("us", 1_000), ("µs", 1_000), ("ms", 1_000_000), ("s", 1_000_000_000)):
        if t.endswith(suffix):
            num, scale = t[: -len(suffix)], mult
            break
    else:
        num, scale = t, 1_000_000_000
    try:
        value = float(num)
        if not math.isfinite(value):
            raise ValueError(num)
        return int(value * scale)
    except ValueError:
        raise UsageError(f"cannot read time {text!r} (examples: 1.5, 1.5s, 200ms, 30us)") from None


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


@app.command()
def analyze(
    trace: Path = typer.Argument(..., help="Trace file: trace.dat, trace-cmd report, ftrace or perf script text."),
    policy: list[str] = typer.Option(None, "--policy", "-p",
                                     help="Built-in policy name or a policy .toml file (repeat). "
                                          "Default: every built-in that fits the trace's ISA."),
    baseline: str = typer.Option(None, "--baseline", help="Policy to compare against "
                                 "(default: kvm-today on SVM, vmx-uret on VMX)."),
    cost_profile: str = typer.Option("auto", "--cost-profile", help="Built-in cost profile (zen, intel) or a .toml file; auto: by the trace's CPU model or ISA."),
    cpu_mhz: str = typer.Option(None, "--cpu-mhz", help="CPU frequency in MHz for cycles<->time "
                                "(default: the cost profile's)."),
    tsc_mhz: str = typer.Option(None, "--tsc-mhz", help="TSC frequency in MHz for x86-tsc traces without "
                                "TSC2NSEC (default: --cpu-mhz)."),
    vcpu: str = typer.Option(None, "--vcpu", help="Only this vCPU id."),
    vm: str = typer.Option(None, "--vm", help="Only this VM (its lowest vCPU thread pid) or thread pid."),
    start: str = typer.Option(None, "--from", help="Start, from the first event (e.g. 1.5s, 200ms)."),
    end: str = typer.Option(None, "--to", help="End, from the first event."),
    fmt: str = typer.Option("table", "--format", "-f", help=f"Output: {', '.join(FORMATS)}."),
    output: Path = typer.Option(None, "-o", "--output", help="Write the output to a file."),
    charts_dir: Path = typer.Option(None, "--charts", help="Also write every chart (PNG and HTML) here."),
) -> None:
    """Replay state-deferral policies on the trace's exits: operations run and avoided, cycles saved, exposure.

    Example: exitreplay analyze sample_traces/svm-syscall-heavy.v7.dat --policy ist-off --format markdown
    """
    if fmt not in FORMATS:
        raise UsageError(f"unknown --format {fmt!r} (choose from {', '.join(FORMATS)})")
    if output is not None and output.is_dir():
        raise UsageError(f"-o {output}: is a directory")
    if output is not None and not output.resolve().parent.is_dir():
        raise UsageError(f"-o {output}: folder {output.parent} does not exist")
    numbers = {"cpu_mhz": parse_number(cpu_mhz, "--cpu-mhz"), "tsc_mhz": parse_number(tsc_mhz, "--tsc-mhz"),
               "vcpu": parse_number(vcpu, "--vcpu", int), "vm": parse_number(vm, "--vm", int),
               "start_ns": parse_time(start), "end_ns": parse_time(end)}
    tr = load(str(trace))
    with progress_bar("replaying", PROGRESS_STEPS, len(tr) > PROGRESS_MIN_EVENTS) as cb:
        report = run_analysis(tr, policy or None, cost_profile, baseline, progress=cb, **numbers)
    if fmt == "table" and output is None:
        render_table(report, console)
    else:
        try:
            emit(render(report, fmt), str(output) if output else None)
        except OSError as exc:
            raise UsageError(f"-o {output}: cannot write it: {exc.strerror}") from None
    if charts_dir is not None:
        from .report import write_charts

        if report.episodes.height == 0:
            raise UsageError("no exits in this trace: nothing to chart")
        write_charts(report, charts_dir, trace.name)


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
