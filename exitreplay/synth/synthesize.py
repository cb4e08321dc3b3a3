"""Generate and write in one pass: `exitreplay synth` as a library call.

The trace is made and written a time window at a time (generator.generate_windows,
writer.write_windows), so memory is bounded by a window whatever the number of events.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterator

from ..trace import Trace
from .generator import WINDOW_EVENTS, generate_windows
from .perfdata_writer import write_perfdata
from .profiles import Profile
from .templates import DEFAULT_TEMPLATE, Template
from .writer import Written, write_windows


def synthesize(profile: str | Profile, path: str | os.PathLike, *, vcpus: int = 2, seconds: float = 0.05,
               seed: int = 1, isa: str = "svm", cpus: int | None = None, vls: bool = False,
               start_ns: int = 1_000_000_000, template: str | Template = DEFAULT_TEMPLATE, version: int = 7,
               compression: str = "none", output_format: str = "trace.dat", cmdline: list[str] | None = None,
               window_events: int = WINDOW_EVENTS,
               progress: Callable[[float, int], None] | None = None) -> Written:
    """Write the trace `generate(profile, ...)` makes as a trace.dat at path (the same bytes as
    `write_trace(generate(...), path, ...)`), in memory bounded by a window of about
    window_events events. output_format "perf" writes a perf.data instead (cmdline: its CMDLINE
    feature). progress(fraction of the traced time done, events so far) is called
    after each window."""
    windows = generate_windows(profile, vcpus=vcpus, seconds=seconds, seed=seed, isa=isa, cpus=cpus, vls=vls,
                               start_ns=start_ns, template=template, window_events=window_events)
    if progress is not None:
        windows = _reported(windows, progress, start_ns, seconds * 1e9)
    if output_format == "perf":
        written = Written()
        write_perfdata(_tallied(windows, written), path, isa=isa, cmdline=cmdline)
        return written
    return write_windows(windows, path, version=version, compression=compression)


def _tallied(windows: Iterator[Trace], written: Written) -> Iterator[Trace]:
    for tr in windows:
        written.events += len(tr)
        written.event_counts.update(tr.meta.event_counts)
        written.cpus = max(written.cpus, tr.meta.cpus or 0)
        yield tr


def _reported(windows: Iterator[Trace], progress: Callable[[float, int], None], start_ns: int,
              span_ns: float) -> Iterator[Trace]:
    events = 0
    for tr in windows:
        events += len(tr)
        yield tr
        progress(min(1.0, (tr.meta.extra["window"][1] - start_ns) / span_ns), events)
