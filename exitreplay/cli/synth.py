"""`exitreplay synth`: write a generated trace.dat for a workload profile."""
from __future__ import annotations

from pathlib import Path

import typer

from ..synth.generator import generate, profile_names
from ..synth.templates import template_names
from ..synth.writer import write_trace
from . import app
from .common import console


@app.command()
def synth(
    profile: str = typer.Argument(..., help=f"Workload profile: {', '.join(profile_names())}, or a .toml file."),
    output: Path = typer.Option(..., "-o", "--output", help="trace.dat to write."),
    vcpus: int = typer.Option(2, "--vcpus", help="vCPUs (per VM for the mixed profile)."),
    seconds: float = typer.Option(0.05, "--seconds", help="Traced time."),
    seed: int = typer.Option(1, "--seed", help="Random seed: the same seed gives the same bytes."),
    isa: str = typer.Option("svm", "--isa", help="svm or vmx."),
    version: int = typer.Option(7, "--version", help="trace.dat version: 6 or 7."),
    compression: str = typer.Option("none", "--compression", help="none or zstd (version 7)."),
    cpus: int = typer.Option(None, "--cpus", help="Host CPUs (default: one per vCPU; mixed: oversubscribed)."),
    vls: bool = typer.Option(False, "--vls", help="nested: virtual VMLOAD/VMSAVE (no L1 vmload/vmsave exits)."),
    template: str = typer.Option("linux-6.18", "--template",
                                 help=f"Event layouts from: {', '.join(template_names())}, or a directory."),
) -> None:
    """Generate a trace.dat with realistic KVM exit sequences for a workload profile.

    Example: exitreplay synth syscall-heavy -o syscall.dat --vcpus 4 --seconds 0.2 --isa svm
    """
    tr = generate(profile, vcpus=vcpus, seconds=seconds, seed=seed, isa=isa, cpus=cpus, vls=vls)
    write_trace(tr, output, template=template, version=version, compression=compression)
    console.print(f"wrote {output}: {len(tr):,} events, {tr.meta.event_counts.get('kvm_exit', 0):,} exits, "
                  f"{tr.meta.cpus} CPUs, trace.dat v{version} ({compression})")
