"""`read_trace`: open any supported trace file, whatever its format, as a `Trace`."""
from __future__ import annotations

import contextlib
import gc
import importlib
import os
from collections.abc import Callable, Iterator

from .errors import TraceError
from .trace import Trace

# format name (schema.SOURCE_FORMATS) -> module in exitreplay.formats with `read(path, progress)`
_READERS = {
    "trace.dat": "tracedat",
    "perf.data": "perfdata",
    "trace-cmd-report": "report_text",
    "ftrace-text": "ftrace_text",
    "perf-script": "perf_script",
}

Progress = Callable[[int, int], None]  # (done, total) in bytes of input


def read_trace(path: str | os.PathLike, progress: Progress | None = None) -> Trace:
    """Read a trace.dat (v6/v7), perf.data, `trace-cmd report` text, ftrace text or `perf script` output.

    The format is recognised from the content, not the file name. Problems with the file raise
    `TraceError` naming it; recoverable losses (truncation, dropped events) are warnings kept in
    `Trace.meta.warnings` and `Trace.meta.dropped`.
    """
    from .formats.detect import sniff

    path = os.fspath(path)
    if not os.path.exists(path):
        raise TraceError(path, "no such file")
    if os.path.isdir(path):
        raise TraceError(path, "is a directory, not a trace file")
    fmt = sniff(path)
    module = importlib.import_module(f".formats.{_READERS[fmt]}", __package__)
    with _gc_paused():
        return module.read(path, progress=progress)


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """A reader makes tens of thousands of small acyclic objects (a host's event format texts,
    their fields): each few hundred start a collection of the whole heap, 5-10 % of reading a
    small file. Cycles made meanwhile are collected when it ends."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()
