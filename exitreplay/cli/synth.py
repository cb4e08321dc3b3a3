"""`exitreplay synth`: write a generated trace.dat for a workload profile."""
from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from ..errors import UsageError
from ..synth.generator import generate
from ..synth.perfdata_writer import write_perfdata
from ..synth.profiles import profile_names
from ..synth.templates import DEFAULT_TEMPLATE, template_names
from ..synth.writer import write_trace
from . import app
from .common import console, err_console


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
    compression: Annotated[str, typer.Option("--compression", help="none, or zstd (version 7).")] = "none",
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

    Example: exitreplay synth syscall-heavy -o syscall.dat --vcpus 4 --seconds 0.2 --isa vmx
    Example: exitreplay synth netio -o netio.perf.data --output-format perf --isa vmx
    """
    if output_format not in ("trace.dat", "perf"):
        raise UsageError(f"--output-format must be trace.dat or perf, not {output_format!r}")
    if version not in (6, 7):
        raise UsageError(f"--version must be 6 or 7, not {version}")
    if compression not in ("none", "zstd"):
        raise UsageError(f"--compression must be none or zstd, not {compression!r}")
    if version == 6 and compression != "none":
        raise UsageError("--compression zstd needs --version 7 (version 6 files are not compressed)")
    t0 = time.perf_counter()
    status = err_console.status(f"generating {profile}") if sys.stderr.isatty() else contextlib.nullcontext()
    with status:
        tr = generate(profile, vcpus=vcpus, seconds=seconds, seed=seed, isa=isa, cpus=cpus, vls=vls,
                      template=template)
        try:
            if output_format == "perf":
                write_perfdata(tr, output, cmdline=["exitreplay", *sys.argv[1:]])
            else:
                write_trace(tr, output, version=version, compression=compression)
        except OSError as exc:
            raise UsageError(f"cannot write {output}: {exc.strerror}") from None
    dt = time.perf_counter() - t0
    console.print(f"wrote {output}: {len(tr):,} events ({tr.meta.event_counts.get('kvm_exit', 0):,} kvm_exit), "
                  f"{tr.meta.cpus} host CPU{'s' if tr.meta.cpus != 1 else ''}, "
                  f"{'perf.data' if output_format == 'perf' else f'trace.dat v{version} {compression}'}; took {dt:.1f} s")
