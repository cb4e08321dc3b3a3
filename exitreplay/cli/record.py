"""`exitreplay record`: record kvm and sched events on this host into a trace.dat."""
from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

import typer

from ..filters import parse_duration
from ..record import DEFAULT_EVENTS, Progress, RecordResult, record
from . import app
from .analyze import parse_number
from .common import console, err_console, say


def _si(x: float) -> str:
    for unit, div in (("M", 1e6), ("k", 1e3)):
        if x >= div:
            return f"{x / div:.1f}{unit}"
    return f"{x:.0f}"


def progress_text(p: Progress, width: int = 80) -> str:
    """One line: time, bytes, lost, then events/s per CPU busiest first, cut to `width`."""
    total = sum(p.rates.values())
    head = f"recording {p.elapsed:5.1f} s {p.bytes / 1e6:6.1f} MB  lost {p.lost:,}  {_si(total)} ev/s"
    busy = sorted(p.rates.items(), key=lambda kv: -kv[1])
    tail = "".join(f" cpu{c} {_si(r)}" for c, r in busy)
    line = head + (" |" + tail if len(p.rates) > 1 else "")
    return line if len(line) <= width else line[: width - 1] + "…"


def summary_lines(r: RecordResult) -> list[str]:
    events, lost = sum(r.events.values()), sum(r.lost.values())
    ncpu = len(r.events)
    out = [f"recorded {r.seconds:.1f} s ({r.stop_reason}): {events:,} events on {ncpu} CPU"
           f"{'s' if ncpu != 1 else ''}, {r.bytes / 1e6:.1f} MB of ring-buffer pages"]
    if lost:
        per = ", ".join(f"cpu{c} {n:,}" for c, n in sorted(r.lost.items()) if n)
        out.append(f"lost {lost:,} events in the ring buffer ({per}); a larger --buffer-kb keeps them")
    else:
        out.append("no events lost")
    size = os.path.getsize(r.output) if r.output.exists() else 0
    out.append(f"wrote {r.output} (trace.dat v7 zstd, {size / 1e6:.1f} MB)")
    return out


@app.command("record", context_settings={"allow_interspersed_args": False})
def record_command(
    output: Path = typer.Option(..., "-o", "--output", help="trace.dat to write (v7, zstd)."),
    events: list[str] = typer.Option([], "-e", "--event", help=(
        f"Extra event or system to record, as system/event, system:event or system (repeat). "
        f"Always recorded: {', '.join(DEFAULT_EVENTS)}.")),
    duration: str | None = typer.Option(None, "--duration", help=(
        "Stop after this long: 10, 10s, 500ms. Default: when COMMAND exits, else on Ctrl-C.")),
    buffer_kb: str | None = typer.Option(None, "--buffer-kb", help=(
        "Ring-buffer size per CPU in KiB (default: the kernel's, about 1.4 MB). Raise it if events "
        "are lost.")),
    command: list[str] | None = typer.Argument(None, metavar="[-- COMMAND ARGS...]", help=(
        "Run COMMAND once tracing is on; recording stops when it exits.")),
) -> None:
    """Record KVM events on this host (root) into a trace.dat.

    Uses its own tracefs instance (instances/exitreplay-PID): the top-level
    buffer and other tracers are left alone. Mounts tracefs if needed, reads
    every CPU's raw ring-buffer pages into temporary files beside OUTPUT, then
    writes trace.dat v7 (zstd) with this kernel's own event formats, which
    analyze and trace-cmd read. Stops after --duration, when COMMAND exits, or
    on Ctrl-C/SIGTERM; always turns its events off and removes its instance.
    Prints how many events the ring buffer lost.

    Example: exitreplay record -o vm.dat -- python3 tests/kvm_guest.py
    """
    secs = None if duration is None else parse_duration(duration) / 1e9
    kb = parse_number(buffer_kb, "--buffer-kb", int)
    show = sys.stderr.isatty()
    status = err_console.status("starting") if show else contextlib.nullcontext()
    with status as st:
        def progress(p: Progress) -> None:
            st.update(progress_text(p, err_console.width - 3))

        def stopping(reason: str) -> None:
            if st is not None:
                st.update(f"stopped ({reason}); writing {output}")

        result = record(output, events, duration=secs, command=command or None, buffer_kb=kb,
                        progress=progress if show else None, on_stop=stopping)
    for name in result.stale_removed:
        say(f"note: removed the tracefs instance {name} a killed recording left behind", err=True)
    for line in summary_lines(result):
        console.print(line, highlight=False)

