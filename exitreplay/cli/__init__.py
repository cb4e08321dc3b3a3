"""The `exitreplay` command: options in, rendering out; the work is in the library.

Each command group lives in its own module and registers itself on `app`.
"""
from __future__ import annotations

import importlib
import os
import re
import sys

import typer

from .. import __version__

app = typer.Typer(
    name="exitreplay",
    help=(
        "Replay recorded KVM exit traces (trace.dat, trace-cmd report, ftrace, perf script) and "
        "measure how much VMLOAD/VMSAVE and MSR switching each state-deferral policy avoids."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _flags_without_type() -> None:
    """typer 0.29 labels every flag `<bool>` in --help, which reads as if it took a value
    (`--summary <bool>`); a flag's row shows no type, as click and older typers print it."""
    option = getattr(typer.core, "TyperOption", None)
    shown = getattr(option, "display_type_rich", None)
    if shown is None or getattr(shown, "_exitreplay", False):
        return

    def display_type_rich(self, ctx):
        return None if getattr(self, "is_flag", False) and self.metavar is None else shown(self, ctx)

    display_type_rich._exitreplay = True
    option.display_type_rich = display_type_rich


_flags_without_type()

# Modules that add commands to `app` when imported.
COMMAND_MODULES = ["ingest", "analyze", "synth", "report", "record", "top"]
# sysexits.h EX_SOFTWARE: a bug of ours, not the user's input.
EXIT_INTERNAL = 70


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"exitreplay {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", help="Print the version and exit.",
                                       callback=_show_version, is_eager=True)) -> None:
    """Replay recorded KVM exit traces and measure what each state-deferral policy avoids."""


def _load_commands() -> None:
    for name in COMMAND_MODULES:
        importlib.import_module(f".{name}", __name__)


def _click_exceptions() -> list:
    """The modules holding the click exception classes typer raises: its vendored copy (typer >= 0.26
    ships `typer._click` and no longer depends on click) and, for older typer, click itself, which
    such a typer has imported already (so it is looked up, never imported here)."""
    mods = []
    for name in ("typer._click.exceptions", "click.exceptions"):
        mod = sys.modules.get(name)
        if mod is None and name.startswith("typer."):
            try:
                mod = importlib.import_module(name)
            except ImportError:
                mod = None
        if mod is not None:
            mods.append(mod)
    return mods


def _classes(attr: str) -> tuple[type, ...]:
    return tuple(getattr(m, attr) for m in _click_exceptions() if isinstance(getattr(m, attr, None), type))


def _one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def usage_line(exc: BaseException) -> str:
    """A click/typer usage error as one line: the command, the problem (with typer's suggestion),
    and where to look."""
    ctx = getattr(exc, "ctx", None)
    where = getattr(ctx, "command_path", None) or "exitreplay"
    msg = _one_line(exc.format_message())
    possible = getattr(exc, "possibilities", None)
    if possible and "Possible options" in msg:  # click's "(Possible options: --x)" -> a question
        msg = msg[: msg.index("(Possible options")].rstrip() + f". Did you mean {', '.join(sorted(possible))}?"
    return f"{where}: error: {msg} (see '{where} --help')"


def _one_line_warnings() -> None:
    """A reader's warnings (a truncated file, lost events) as one line each on stderr, as the
    errors are: Python's default shows our source file and line, which a user cannot act on."""
    import warnings

    from ..errors import TraceWarning

    default = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, TraceWarning):
            print(f"exitreplay: warning: {_one_line(str(message))}", file=file or sys.stderr)
        else:
            default(message, category, filename, lineno, file, line)

    warnings.showwarning = show


def main() -> None:
    """Entry point: one line on stderr and exit status 2 for any usage error or bad input; a bug
    of ours is one line too (exit status 70) unless EXITREPLAY_DEBUG=1 asks for the traceback."""
    from ..errors import ExitReplayError

    _one_line_warnings()
    _load_commands()
    no_args_help = _classes("NoArgsIsHelpError")
    usage = _classes("UsageError")
    click_exc = _classes("ClickException")
    aborts = (typer.Abort, *_classes("Abort"))
    try:
        rv = app(prog_name="exitreplay", standalone_mode=False)
        if isinstance(rv, int) and rv:
            sys.exit(rv)
    except ExitReplayError as exc:
        typer.echo(f"exitreplay: error: {_one_line(str(exc))}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("exitreplay: interrupted", err=True)
        sys.exit(130)
    except (typer.Exit, SystemExit) as exc:
        code = getattr(exc, "exit_code", getattr(exc, "code", 0))
        sys.exit(code or 0)
    except BrokenPipeError:
        # `exitreplay analyze ... | head`: the reader left; say nothing more.
        sys.stderr.close()
        sys.exit(0)
    except Exception as exc:
        if no_args_help and isinstance(exc, no_args_help):
            typer.echo(exc.ctx.get_help())  # bare `exitreplay`: the help, as typer would show it
            sys.exit(2)
        if usage and isinstance(exc, usage):
            typer.echo(usage_line(exc), err=True)
            sys.exit(2)
        if click_exc and isinstance(exc, click_exc):
            typer.echo(f"exitreplay: error: {_one_line(exc.format_message())}", err=True)
            sys.exit(getattr(exc, "exit_code", 1) or 1)
        if isinstance(exc, aborts):
            typer.echo("exitreplay: aborted", err=True)
            sys.exit(1)
        if os.environ.get("EXITREPLAY_DEBUG") == "1":
            raise
        typer.echo(f"exitreplay: internal error: {type(exc).__name__}: {_one_line(str(exc))} — please report; "
                   "EXITREPLAY_DEBUG=1 shows the traceback", err=True)
        sys.exit(EXIT_INTERNAL)
