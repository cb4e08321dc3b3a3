"""`exitreplay top`: the streaming analysis, live, of this host (tracefs) or of a replayed file."""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import typer

from ..errors import TraceError, UsageError
from ..filters import parse_duration
from ..live import batch, view
from ..live.keys import terminal_keys
from ..live.session import StopFlag, Watcher, run
from ..live.sources import ReplaySource, TracefsSource, vcpu_thread_of
from . import app
from .analyze import parse_number
from .common import console, filters, pid_option, vcpu_option

BATCH = ("csv", "json")


@app.command("top")
def top_command(
    pid: str = pid_option(),
    vcpu: str = vcpu_option(),
    policy: list[str] = typer.Option(None, "--policy", help="Built-in policy name or a policy .toml file "
                                     "(repeat). Default: every built-in that fits the ISA."),
    baseline: str = typer.Option(None, "--baseline", help="Policy to compare against "
                                 "(default: kvm-today on SVM, vmx-uret on VMX)."),
    cost_profile: str = typer.Option("auto", "--cost-profile", help="Cost profile (zen, intel) or a .toml "
                                     "file; auto: by the CPU model or ISA."),
    interval: str = typer.Option("1s", "--interval", "-i", help="Refresh every: 1s, 500ms, 2."),
    batch_fmt: str = typer.Option(None, "--batch", "-b", help="No screen: one line per interval, csv or json "
                                  "(json lines), for logging."),
    replay: Path = typer.Option(None, "--replay", help="Feed this recorded trace.dat or perf.data through "
                                "the live pipeline instead of this host's tracefs."),
    speed: str = typer.Option("1", "--speed", help="--replay at N times its recorded pace (0: as fast as "
                                "possible)."),
    events: list[str] = typer.Option([], "-e", "--event", help="Live: an extra event or system to record "
                                     "(repeat), as for record."),
    buffer_kb: str = typer.Option(None, "--buffer-kb", help="Live: ring-buffer size per CPU in KiB."),
) -> None:
    """Watch exits, what each policy saves and the sync points, live.

    Every interval: exits/s per reason and per VM/vCPU with p50/p99 handling
    time, each policy's saving per second against the baseline with its
    syncs and exposure, sync points by cause and the sync-point events seen.
    Live on this host (root; its own tracefs instance, as record uses, put
    back on the way out) or --replay FILE at --speed N. Keys: s/e/5/9/n sort
    the exit tables, q quits. --batch csv|json prints a line per interval.

    Example: exitreplay top --replay sample_traces/svm-mixed.v7zstd.dat -i 10ms
    """
    secs = parse_duration(interval, "--interval") / 1e9
    if batch_fmt is not None and batch_fmt not in BATCH:
        raise UsageError(f"unknown --batch {batch_fmt!r} (choose from {', '.join(BATCH)})")
    rate = parse_number(speed, "--speed")
    kb = parse_number(buffer_kb, "--buffer-kb", int)
    if replay is not None and (events or kb is not None):
        raise UsageError("-e and --buffer-kb are for the live source: a --replay file has its events")
    if batch_fmt is None and not sys.stdout.isatty():
        raise UsageError("top draws on a terminal: use --batch csv or --batch json for a pipe or a file")
    if replay is not None:
        if not replay.exists():
            raise TraceError(str(replay), "no such file")
        source = ReplaySource(str(replay), secs, rate)
    else:
        source = TracefsSource(secs, events, kb)
    flt = filters(pid, vcpu)
    if replay is None and flt.vm is not None:
        flt = dataclasses.replace(flt, vm=vcpu_thread_of(flt.vm))
    analysis = dict(policies=policy or None, costs=cost_profile, baseline=baseline, filters=flt)
    with StopFlag() as stop, source:
        watcher = Watcher(**analysis)
        if batch_fmt is not None:
            _batch(source, watcher, stop, batch_fmt)
        else:
            _screen(source, watcher, stop, replay is not None)


def _batch(source, watcher: Watcher, stop: StopFlag, fmt: str) -> None:
    lines = batch.CsvLines()
    shown: list = [None]

    def show(frame, _status: str) -> None:
        if frame is None or frame is shown[0]:
            return
        shown[0] = frame
        for line in (lines.lines(frame) if fmt == "csv" else [batch.json_line(frame)]):
            sys.stdout.write(line + "\n")
        sys.stdout.flush()

    with terminal_keys(False) as keys:
        run(source, watcher, show, keys, stop, drain=True)


def _screen(source, watcher: Watcher, stop: StopFlag, is_replay: bool) -> None:
    from rich.live import Live

    st = view.ViewState(source=source.label)

    def screen(frame, status: str):
        st.status = status
        w, h = console.size
        return view.render(frame, st, w, h)

    with terminal_keys() as keys, Live(screen(None, ""), console=console, screen=True, auto_refresh=False,
                                      redirect_stdout=False, redirect_stderr=False) as live:
        def show(frame, status: str) -> None:
            live.update(screen(frame, status), refresh=True)

        run(source, watcher, show, keys, stop, on_key=st.key, wait_at_end=is_replay, catch_up=True)

