"""The `exitreplay` command: options in, rendering out; the work is in the library.

Each command group lives in its own module and registers itself on `app`.
"""
from __future__ import annotations

import importlib
import sys

import typer

app = typer.Typer(
    name="exitreplay",
    help=(
        "Replay recorded KVM exit traces (trace.dat, trace-cmd report, ftrace, perf script) and "
        "measure how much VMLOAD/VMSAVE and MSR switching each state-deferral policy avoids."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Modules that add commands to `app` when imported.
COMMAND_MODULES = ["ingest", "analyze", "synth", "report", "record"]


def _load_commands() -> None:
    for name in COMMAND_MODULES:
        importlib.import_module(f".{name}", __name__)


def main() -> None:
    """Entry point: one-line errors with exit status 2, never a traceback, for bad input."""
    from ..errors import ExitReplayError

    _load_commands()
    try:
        rv = app(standalone_mode=False)
        if isinstance(rv, int) and rv:
            sys.exit(rv)
    except ExitReplayError as exc:
        typer.echo(f"exitreplay: error: {exc}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("exitreplay: interrupted", err=True)
        sys.exit(130)
    except (typer.Exit, SystemExit) as exc:
        code = getattr(exc, "exit_code", getattr(exc, "code", 0))
        sys.exit(code or 0)
    except Exception as exc:  # click usage errors arrive here in non-standalone mode
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        if isinstance(exc, click.exceptions.Abort):
            sys.exit(1)
        raise
