"""Helpers shared by the CLI commands: progress bars and output to file or terminal."""
from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

from ..reader import read_trace
from ..trace import Trace

# Piped output has no terminal width to honour: keep wide tables whole.
console = Console() if sys.stdout.isatty() else Console(width=220)
err_console = Console(stderr=True)

# Files smaller than this read in well under a second: no bar.
PROGRESS_MIN_BYTES = 32 << 20


@contextlib.contextmanager
def progress_bar(description: str, total: int | None, enabled: bool = True) -> Iterator:
    """A rich progress bar on stderr (only on a terminal); yields an update(done, total) callback."""
    if not enabled or not sys.stderr.isatty():
        yield None
        return
    with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TimeRemainingColumn(),
                  console=err_console, transient=True) as prog:
        task = prog.add_task(description, total=total)

        def update(done: int, tot: int) -> None:
            prog.update(task, completed=done, total=tot)

        yield update


def load(path: str) -> Trace:
    size = os.path.getsize(path) if os.path.exists(path) else 0
    with progress_bar(f"reading {os.path.basename(path)}", size, size >= PROGRESS_MIN_BYTES) as cb:
        return read_trace(path, progress=cb)


def emit(text: str, output: str | None) -> None:
    if output:
        with open(output, "w") as fh:
            fh.write(text if text.endswith("\n") else text + "\n")
    else:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
