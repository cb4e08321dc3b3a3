"""`exitreplay synth`: write a generated trace.dat for a workload profile."""
from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import (
    BarColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from ..errors import UsageError
from ..synth.profiles import profile_names
from ..synth.synthesize import synthesize
from ..synth.templates import DEFAULT_TEMPLATE, template_names
from . import app
from .common import err_console, say


@app.command()
def synth(
    profile: Annotated[str, typer.Argument(
        help=f"Workload profile: {', '.join(profile_names())}, or a profile .toml.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="File to write (a trace.dat, or a perf.data).")],
    vcpus: Annotated[int, typer.Option("--vcpus", help="vCPUs (per VM for the mixed profile).")] = 2,
    seconds: Annotated[float, typer.Option("--seconds", help="Traced time in seconds.")] = 0.05,
    seed: Annotated[int, typer.Option("--seed", help="Random seed: the same command gives the same bytes.")] = 1,
    isa: Annotated[str, typer.Option("--isa", help="svm (AMD) or vmx (Intel) exit reasons.")] = "svm",
    version: Annotated[int, typer.Option("--version", help="trace.dat version: 6 or 7.")] = 7,
    compression: Annotated[str, typer.Option("--compression", help="none, zstd or zlib (version 7).")] = "none",
    cpus: Annotated[int | None, typer.Option(
        "--cpus", help="Host CPUs (default: one per vCPU; mixed: half as many).")] = None,
    vls: Annotated[bool, typer.Option(
        "--vls", help="nested: virtual VMLOAD/VMSAVE, so L1's VMLOAD/VMSAVE do not exit.")] = False,
    template: Annotated[str, typer.Option(
        "--template", help=f"Kernel generation of the event formats: {', '.join(template_names())}, "
                           "or a template directory.")] = DEFAULT_TEMPLATE,
    output_format: Annotated[str, typer.Option(
        "--output-format", help="trace.dat, or perf: a perf.data that perf script and perf kvm stat "
                                "report read (--version and --compression apply to trace.dat).")] = "trace.dat",
) -> None:
    """Generate a trace.dat with the KVM exit sequences a host running PROFILE records.

    Each vCPU is a host thread ("CPU n/KVM") looping kvm_entry -> guest -> kvm_exit -> handler
    events -> (QEMU round trip, blocking HLT, preemption) -> kvm_entry, scheduled on host CPUs.
    Profiles and their sources: docs/profiles.md. trace-cmd report reads the file; with
    --output-format perf, perf script and perf kvm stat report read it.
    Any length: made and written a time window at a time, in about 400 MB of memory.

    Example: exitreplay synth syscall-heavy -o syscall.dat --vcpus 4 --seconds 0.2 --isa vmx
    Example: exitreplay synth netio -o netio.perf.data --output-format perf --isa vmx
    """
    if output_format not in ("trace.dat", "perf"):
        raise UsageError(f"--output-format must be trace.dat or perf, not {output_format!r}")
    t0 = time.perf_counter()
    with _progress(f"generating {profile}") as cb:
        try:
            w = synthesize(profile, output, vcpus=vcpus, seconds=seconds, seed=seed, isa=isa, cpus=cpus, vls=vls,
                           template=template, version=version, compression=compression,
                           output_format=output_format, cmdline=["exitreplay", *sys.argv[1:]], progress=cb)
        except OSError as exc:
            raise UsageError(f"cannot write {output}: {exc.strerror}") from None
    dt = time.perf_counter() - t0
    kind = "perf.data" if output_format == "perf" else f"trace.dat v{version} {compression}"
    say(f"wrote {output}: {w.events:,} events ({w.event_counts.get('kvm_exit', 0):,} kvm_exit), "
                  f"{w.cpus} host CPU{'s' if w.cpus != 1 else ''}, {kind}")
    say(f"{seconds:g} s traced; took {dt:.1f} s ({w.events / max(dt, 1e-9):,.0f} events/s)")


@contextlib.contextmanager
def _progress(description: str) -> Iterator:
    """A bar on stderr over the traced time (only on a terminal); yields its update(fraction, events)."""
    if not sys.stderr.isatty():
        yield None
        return
    with Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
                  TextColumn("{task.fields[events]} events"), TimeElapsedColumn(), TimeRemainingColumn(),
                  console=err_console, transient=True) as prog:
        task = prog.add_task(description, total=1.0, events="0")
        yield lambda done, events: prog.update(task, completed=done, events=f"{events:,}")
