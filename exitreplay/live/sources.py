"""Where the windows come from: a recorded file replayed in time, or this host's tracefs live.

Both give frames in row order, each the Windows of one interval (the pieces of the source's
windows that fall in it), and end with a Window whose `last` is set. `stop()` ends a source early (from any thread): the live one then stops tracing,
drains its readers and gives what they held.
"""
from __future__ import annotations

import contextlib
import os
import re
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from ..errors import UsageError
from .holes import punch
from .window import Window, time_frames

# Events per window read from a replayed file (exitreplay.windows): memory is bounded by it.
REPLAY_WINDOW_EVENTS = 1 << 18


def replay_frames(path: str, span: int) -> Iterator[list[Window]]:
    """The file's frames of `span` clock units. Read a window at a time where the library can
    (`exitreplay.windows.iter_windows`), else whole (`read_trace`), and cut by time."""
    try:
        from ..windows import iter_windows
    except ImportError:
        iter_windows = None
    if iter_windows is not None:
        yield from time_frames(iter_windows(path, window_events=REPLAY_WINDOW_EVENTS), span, path)
        return
    from ..reader import read_trace

    with read_trace(path) as trace:
        yield from time_frames([trace], span, path)


class ReplaySource:
    """A recorded trace fed at `speed` times its own pace (0: as fast as the analysis goes).

    Each window is `interval` seconds of the wall clock, so `speed * interval` of trace time
    (`interval` of trace time at speed 0)."""

    def __init__(self, path: str, interval: float, speed: float):
        if speed < 0:
            raise UsageError(f"--speed must be 0 (as fast as possible) or positive, not {speed:g}")
        self.path, self.interval, self.speed = path, interval, speed
        self.span = max(1, int(round(interval * (speed or 1.0) * 1e9)))
        self._stop = threading.Event()
        self.label = f"replay {os.path.basename(path)} ×{speed:g}" if speed else f"replay {os.path.basename(path)}"

    def __enter__(self) -> ReplaySource:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()

    def frames(self) -> Iterator[list[Window]]:
        start = time.monotonic()
        for k, frame in enumerate(replay_frames(self.path, self.span)):
            if self.speed:
                self._stop.wait(max(0.0, start + (k + 1) * self.interval - time.monotonic()))
            if self._stop.is_set():
                return
            yield frame


class TracefsSource:
    """This host, live: a Recorder's tracefs instance (record.Recorder: its own instance, events,
    per-CPU trace_pipe_raw readers, everything put back on the way out) read every interval."""

    def __init__(self, interval: float, extra_events: Sequence[str] = (), buffer_kb: int | None = None):
        self.interval, self.extra_events, self.buffer_kb = interval, list(extra_events), buffer_kb
        self._stack = contextlib.ExitStack()
        self._stopped = False
        self._lock = threading.Lock()
        self.label = "live"

    def __enter__(self) -> TracefsSource:
        from ..record import Recorder

        try:
            tmp = self._stack.enter_context(tempfile.TemporaryDirectory(prefix="exitreplay-top-"))
            self.rec = self._stack.enter_context(Recorder(self.extra_events, self.buffer_kb, workdir=tmp))
            self.decoder = self._decoder(Path(tmp))
            self._stack.callback(self.decoder.close)
            self.stream = self.rec.subscribe()
            self.rec.start()
            self.label = f"live ({self.rec.instance.name})"
        except BaseException:
            self._stack.close()
            raise
        return self

    def _decoder(self, tmp: Path):
        from ..record.hostformats import uname_text
        from ..synth.writer import write_tracedat
        from .pages import PageDecoder

        rec = self.rec
        formats = tmp / "formats.dat"
        cpus = rec.cpus
        write_tracedat(formats, [np.empty(0, np.uint8)] * (max(cpus) + 1), rec.template, version=7,
                       compression="none", clock=rec.instance.clock(), uname=uname_text(),
                       page_size=rec.template.info["page_size"], writer="exitreplay top")
        return PageDecoder(str(formats), cpus, str(rec.tracefs.root / "saved_cmdlines"), self.label)

    def __exit__(self, *exc) -> None:
        try:
            self.stop()
        finally:
            self._stack.close()

    def stop(self) -> None:
        """Tracing off and the readers drained (their last pages end the stream), the instance removed."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        self.rec.stop()

    def frames(self) -> Iterator[list[Window]]:
        dec = self.decoder
        lo = None
        read: dict[int, int] = {}  # bytes of each CPU's file read so far
        for pages in self.stream.windows(self.interval):
            for cpu, data in pages.items():
                if data.size:
                    dec.add(cpu, data)
                    read[cpu] = read.get(cpu, 0) + data.size
                    punch(self.rec.readers.files[cpu], read[cpu])
            bound = dec.ready_bound()
            if bound is None:
                continue
            trace = dec.take(bound)
            if trace is not None or lo is not None:
                first = int(trace.events.column("ts")[0].as_py()) if trace is not None else bound
                lo = first if lo is None else lo
                yield [Window(trace, lo, max(bound, lo))]
                lo = max(bound, lo)
        trace = dec.take(None)  # stopped: every event the readers drained, held back or not
        if lo is None:
            lo = int(trace.events.column("ts")[0].as_py()) if trace is not None else 0
        yield [Window(trace, lo, dec.max_key + 1 if dec.max_key is not None else lo, last=True)]


def vcpu_thread_of(pid: int, proc: Path = Path("/proc")) -> int:
    """Live --pid: a QEMU process's first vCPU thread ("CPU N/KVM"), which the analysis's VM
    filter knows (its traces carry no tgid: sched_switch has none); the pid itself otherwise."""
    best = None
    try:
        tasks = sorted((proc / str(pid) / "task").iterdir(), key=lambda p: int(p.name))
    except (OSError, ValueError):
        return pid
    for t in tasks:
        try:
            comm = (t / "comm").read_text().strip()
        except OSError:
            continue
        if re.fullmatch(r"CPU \d+/KVM", comm):
            best = int(t.name)
            break
    return best if best is not None else pid
