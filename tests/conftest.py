"""Shared fixtures: the committed real recordings and the public traces read in place."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
REAL = DATA / "real"
SAMPLES = ROOT / "sample_traces"
# Public traces are read where they lie and never copied into the project (no licence).
PUBLIC = ROOT.parent / "shared" / "public-traces"

RECORDINGS = ["pvm-pio-small", "pvm-longmode-msr"]
DAT_VARIANTS = ["v6", "v7", "v7zstd"]


@pytest.fixture(scope="session")
def real_dir() -> Path:
    return REAL


@pytest.fixture(scope="session")
def public_dir() -> Path:
    if not PUBLIC.is_dir():
        pytest.skip(f"public traces not present at {PUBLIC} (they are never copied into the project)")
    return PUBLIC


def have_trace_cmd() -> bool:
    return shutil.which("trace-cmd") is not None


@pytest.fixture(scope="session")
def trace_cmd() -> str:
    path = shutil.which("trace-cmd")
    if path is None:
        pytest.skip("trace-cmd not installed (apt-get install trace-cmd): oracle unavailable")
    return path


def trace_cmd_report(path: Path, *args: str) -> str:
    """Output of `trace-cmd report ARGS -i PATH` (the independent oracle)."""
    out = subprocess.run(
        ["trace-cmd", "report", *args, "-i", str(path)],
        check=True,
        capture_output=True,
        text=True,
        errors="replace",
    )
    return out.stdout
