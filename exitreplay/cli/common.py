"""Helpers shared by the CLI commands: consoles, progress bars, the filter options, output."""
from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from ..errors import UsageError
from ..filters import Filters, parse_ints, parse_names, parse_time
from ..reader import read_trace
from ..trace import Trace

# Box drawing and the micro sign, one ASCII character each (so every width stays what Rich measured).
_ASCII = str.maketrans({**dict.fromkeys("─┴┬┼┌┐└┘├┤", "-"), **dict.fromkeys("━┳┻╇╈┏┓┗┛┡┩", "="),
                        "│": "|", "┃": "|", "µ": "u"})


class _Stdout:
    """stdout for the tables: as drawn on a terminal; piped, in ASCII, so that a line of 80
    characters is 80 bytes for the tools that count bytes (awk, cut, a log)."""

    encoding = "utf-8"

    def write(self, text: str) -> int:
        out = sys.stdout
        return out.write(text if out.isatty() else text.translate(_ASCII))

    def flush(self) -> None:
        sys.stdout.flush()

    def isatty(self) -> bool:
        return sys.stdout.isatty()

    def fileno(self) -> int:
        return sys.stdout.fileno()


class _Console(Console):
    def on_broken_pipe(self) -> None:
        """`exitreplay analyze ... | head`: the reader has what it wanted. Rich's own handling
        exits with status 1, which `set -o pipefail` reads as a failure; the CLI's is status 0
        (cli.main), and Rich's swap of stdout for /dev/null keeps the exit's flush quiet."""
        self.quiet = True
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        raise BrokenPipeError


# Rich takes the width from the terminal, else from COLUMNS, else 80: piped output fits a terminal.
console = _Console(file=_Stdout())
err_console = Console(stderr=True)

# Files smaller than this read in well under a second: no bar.
PROGRESS_MIN_BYTES = 32 << 20


@contextlib.contextmanager
def progress_bar(description: str, total: int | None, enabled: bool = True, unit: str = "bytes") -> Iterator:
    """A rich progress bar on stderr (only on a terminal); yields an update(done, total) callback.
    unit: "bytes" (sizes and time left) or "steps" (done/total and time elapsed)."""
    if not enabled or not err_console.is_terminal:
        yield None
        return
    cols = (DownloadColumn(), TimeRemainingColumn()) if unit == "bytes" else (MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(TextColumn("{task.description}"), BarColumn(), *cols, console=err_console, transient=True) as prog:
        task = prog.add_task(description, total=total)

        def update(done: int, tot: int) -> None:
            prog.update(task, completed=done, total=tot)

        yield update


@contextlib.contextmanager
def stage(description: str) -> Iterator:
    """A spinner naming the stage under way (on a terminal), for steps without a measurable total."""
    if not err_console.is_terminal:
        yield
        return
    with err_console.status(description):
        yield


def load(path: str) -> Trace:
    size = os.path.getsize(path) if os.path.exists(path) else 0
    with progress_bar(f"reading {os.path.basename(path)}", size, size >= PROGRESS_MIN_BYTES) as cb:
        return read_trace(path, progress=cb)


def say(text: str, err: bool = False) -> None:
    """One message line as written: no markup (paths may hold brackets), no wrapping (so a long
    path does not split the line for grep), whatever the console's width."""
    (err_console if err else console).print(text, markup=False, highlight=False, soft_wrap=True)


def emit(text: str, output: str | None) -> None:
    if output:
        try:
            with open(output, "w") as fh:
                fh.write(text if text.endswith("\n") else text + "\n")
        except OSError as exc:
            raise UsageError(f"-o {output}: cannot write it: {exc.strerror}") from None
    else:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")


# -- the filter options, the same in analyze, chart, report and compare ---------------------------------
def pid_option():
    return typer.Option(None, "--pid", "--vm", help="Only this VM: its QEMU process id, or any of its vCPU "
                        "thread pids (VM ids are shown as pids).")


def vcpu_option():
    return typer.Option(None, "--vcpu", help="Only this vCPU id (of the --pid VM; without --pid, of every VM, "
                        "and the output says so).")


def cpu_option():
    return typer.Option(None, "--cpu", help="Only exits on these host CPUs (repeat or comma-separate: 0,2).")


def reason_option():
    return typer.Option(None, "--reason", help="Only these exit reasons, as the kernel or trace-cmd prints "
                        "them, any case (repeat or comma-separate: hlt,msr).")


def from_option():
    return typer.Option(None, "--from", help="Window start: +5ms from the first event, or a timestamp as "
                        "trace-cmd report prints it (1234.500123 or 1234.5s).")


def to_option():
    return typer.Option(None, "--to", help="Window end (exclusive), the same forms as --from.")


def filters(pid: str | None = None, vcpu: str | None = None, cpu: list[str] | None = None,
            reason: list[str] | None = None, start: str | None = None, end: str | None = None) -> Filters:
    """The Filters the options describe (bad values: one-line errors)."""
    one = {name: parse_ints([v], opt)[0] if v is not None else None for name, v, opt in
           (("vm", pid, "--pid"), ("vcpu", vcpu, "--vcpu"))}
    return Filters(vm=one["vm"], vcpu=one["vcpu"], cpus=parse_ints(cpu, "--cpu"), reasons=parse_names(reason),
                   start=parse_time(start, "--from"), end=parse_time(end, "--to"))


# -- where the work runs (compare, analyze) -----------------------------------------------------------
def engine_option():
    return typer.Option("local", "--engine", help="Where to run: local (a process pool) or ray (a local "
                        "Ray instance, or the cluster at --address; pip install 'exitreplay\\[ray]').")


def address_option():
    return typer.Option(None, "--address", help="--engine ray: the address of an existing Ray cluster "
                        "(host:port, or auto); its workers must see the traces at the same paths.")
