"""`exitreplay info` and `exitreplay convert`."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from ..convert import convert_file
from ..errors import TraceWarning
from . import app
from .common import console, err_console, load, progress_bar, say


def _fmt_ns(ns: int | None) -> str:
    return "-" if ns is None else f"{ns / 1e9:.9f} s"


@app.command()
def info(
    trace: Path = typer.Argument(..., help="trace.dat (v6/v7), perf.data, trace-cmd report, ftrace or perf script text"),
    as_json: bool = typer.Option(False, "--json", help="Print the metadata as JSON."),
) -> None:
    """Summarise a trace: format, version, compression, CPUs, clock, span, events per type, losses.

    Example: exitreplay info sample_traces/pvm-longmode-msr.v7zstd.dat
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TraceWarning)  # they are listed in the summary
        tr = load(str(trace))
    m = tr.meta
    if as_json:
        typer.echo(json.dumps(m.to_dict(), indent=2, default=str))
        return
    t = Table(title=f"{trace}", show_header=False, title_justify="left")
    t.add_column(style="bold")
    t.add_column()
    rows = [
        ("format", m.source_format + (f" v{m.version}" if m.version else "")),
        ("compression", m.compression or "-"),
        ("CPUs", str(m.cpus)),
        ("clock", m.clock or "-"),
        ("page size", str(m.page_size or "-")),
        ("byte order / long", f"{m.endian or '-'} / {m.long_size or '-'}"),
        ("uname", m.uname or "-"),
        ("first event", _fmt_ns(m.first_ts)),
        ("last event", _fmt_ns(m.last_ts)),
        ("span", f"{m.duration_ns / 1e9:.6f} s"),
        ("events", f"{len(tr):,}"),
    ]
    for k, v in rows:
        t.add_row(k, v)
    console.print(t)
    et = Table(title="events per type", title_justify="left")
    et.add_column("event")
    et.add_column("count", justify="right")
    for name, cnt in sorted(m.event_counts.items(), key=lambda kv: -kv[1]):
        et.add_row(name, f"{cnt:,}")
    console.print(et)
    if m.dropped:
        dt = Table(title="events lost by the recorder", title_justify="left")
        dt.add_column("CPU", justify="right")
        dt.add_column("lost", justify="right")
        dt.add_column("before ts")
        for d in m.dropped[:50]:
            dt.add_row(str(d.cpu), "?" if d.count is None else f"{d.count:,}", _fmt_ns(d.ts))
        if len(m.dropped) > 50:
            dt.add_row("...", f"{len(m.dropped) - 50} more", "")
        console.print(dt)
    else:
        say("events lost by the recorder: none reported")
    for w in m.warnings:
        err_console.print(f"[yellow]warning:[/yellow] {escape(w)}")


@app.command()
def convert(
    trace: Path = typer.Argument(..., help="Trace file in any supported format."),
    output: Path = typer.Option(..., "-o", "--output", help="Output directory (created if needed)."),
    fmt: str = typer.Option("parquet", "--format", help="parquet or arrow (Arrow IPC file)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="A progress bar on a terminal "
                                  "(default; never when stderr is not a terminal)."),
) -> None:
    """Write the trace as Parquet/Arrow: events, one file per event type, and meta.json.

    A trace.dat is converted as it is read, a window of events at a time, so memory stays bounded
    whatever the trace's size; other formats are read whole first.

    Example: exitreplay convert sample_traces/pvm-longmode-msr.v7zstd.dat -o out/
    """
    size = trace.stat().st_size if trace.is_file() else None
    with progress_bar(f"converting {trace.name}", size, progress) as cb:
        paths, n = convert_file(trace, output, fmt, progress=cb)
    say(f"wrote {len(paths)} files to {output} ({n:,} events)")
