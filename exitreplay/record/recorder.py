"""A recording: its own tracefs instance, every CPU read at once, restored and removed at the end.

    with Recorder(["irq"]) as rec:       # root, tracefs (mounted if needed), kvm events checked
        stream = rec.subscribe()          # optional: pages as they arrive (a live pipeline)
        rec.start()                       # readers first, then tracing on
        ...                               # rec.snapshot() for progress
        rec.stop()                        # tracing off, last drain, per-CPU stats
        rec.write("out.dat")              # trace.dat v7 (zstd) with the host's own formats
    # stop() has already removed the instance; leaving the block deletes the temporary files and
    # unmounts tracefs if we mounted it. After an error or a signal it does all of it.

`record()` is the whole of `exitreplay record`: the above with the stop conditions of stop.py.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from .. import __version__
from ..synth.writer import write_tracedat
from .events import EventSel, resolve
from .hostformats import HostFacts, host_facts, host_template
from .pipes import PageStream, PipeReaders
from .stats import CpuStats
from .stop import StopWhen, sigterm_interrupts
from .tracefs import Instance, RecordError, Tracefs, require_root

# A reader wakes when its CPU's buffer is this full (the kernel's default is 50): the rest is the
# room left for its wake-up latency (benchmarks/record.py: fewer losses with a small buffer).
WAKE_PERCENT = 25


@dataclasses.dataclass
class Progress:
    """A moment of a recording, for a progress line."""

    elapsed: float
    rates: dict[int, float]  # events/s per CPU since the previous snapshot
    bytes: int               # page bytes read so far
    lost: int                # events lost so far, every CPU


@dataclasses.dataclass
class RecordResult:
    output: Path
    seconds: float
    stop_reason: str
    events: dict[int, int]  # per CPU: events read (those in the file)
    lost: dict[int, int]    # per CPU: events lost in the ring buffer
    bytes: int
    instance: str
    command_status: int | None = None
    stale_removed: list[str] = dataclasses.field(default_factory=list)


class Recorder:
    """One recording's tracefs instance, readers and files; a context manager that cleans up."""

    def __init__(self, extra_events: Sequence[str] = (), buffer_kb: int | None = None,
                 workdir: str | os.PathLike | None = None):
        if buffer_kb is not None and buffer_kb <= 0:
            raise RecordError(f"--buffer-kb must be positive, not {buffer_kb}")
        self.extra_events, self.buffer_kb = list(extra_events), buffer_kb
        self.workdir = workdir
        self._stack = contextlib.ExitStack()
        self.readers: PipeReaders | None = None
        self.stats: list[CpuStats] = []
        self.facts: HostFacts | None = None
        self.stale_removed: list[str] = []
        self._last: tuple[float, dict[int, int]] | None = None
        self.started = time.monotonic()

    def __enter__(self) -> Recorder:
        try:
            self._setup()
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self._stack.close()

    def _setup(self) -> None:
        require_root()
        self.tracefs = Tracefs.open()
        self._stack.callback(self.tracefs.release)
        self.sels: list[EventSel] = resolve(self.tracefs.root / "events", self.extra_events)
        self.stale_removed = self.tracefs.remove_stale_instances()
        tmp = tempfile.mkdtemp(prefix=".exitreplay-record-", dir=self.workdir)
        self._stack.callback(shutil.rmtree, tmp, ignore_errors=True)
        self.instance = Instance.create(self.tracefs)
        self._stack.callback(self.instance.remove)
        if self.buffer_kb:
            self.instance.write("buffer_size_kb", str(self.buffer_kb))
        self.instance.write("buffer_percent", str(WAKE_PERCENT))
        self.template = host_template(self.instance, self.sels)
        for sel in self.sels:
            self.instance.write(f"events/{sel.rel}/enable", "1")
        self.cpus = self.instance.cpus()
        self.readers = PipeReaders(self.instance, self.cpus, Path(tmp), self.template.info["page_size"])
        self._stack.callback(self._stop_readers)

    def subscribe(self) -> PageStream:
        """Pages as they arrive (subscribe before start() to see them all)."""
        return self.readers.subscribe()

    def start(self) -> None:
        self.readers.start()
        self.instance.set_tracing(True)
        self.started = time.monotonic()

    def _stop_readers(self) -> None:
        """On the way out after an error: tracing off and the readers closed, so rmdir can succeed."""
        with contextlib.suppress(RecordError, OSError):
            self.instance.set_tracing(False)
        if self.readers is not None:
            self.readers.close()

    def cpu_stats(self) -> list[CpuStats]:
        return [CpuStats(c, self.instance.stats(c)) for c in self.cpus]

    def snapshot(self) -> Progress:
        now = time.monotonic()
        stats = self.cpu_stats()
        counts = {s.cpu: s.recorded for s in stats}
        prev_t, prev = self._last or (self.started, dict.fromkeys(counts, 0))
        dt = max(now - prev_t, 1e-9)
        self._last = (now, counts)
        rates = {c: (n - prev.get(c, 0)) / dt for c, n in counts.items()}
        return Progress(now - self.started, rates, self.readers.bytes, sum(s.lost for s in stats))

    def stop(self) -> None:
        """Tracing off, every CPU drained to the end, the final stats and saved_cmdlines read, and
        the instance removed: the host is as it was before writing begins."""
        self.instance.set_tracing(False)
        self.readers.stop()
        self.stats = self.cpu_stats()
        self.facts = host_facts(self.tracefs.root, self.instance, self.template)
        self.instance.remove()

    def write(self, output: str | os.PathLike, compression: str = "zstd", version: int = 7) -> None:
        """The trace.dat, from the per-CPU files (after stop())."""
        f = self.facts
        if f is None:
            raise RecordError("a recording is written after stop()")
        write_tracedat(output, self.readers.cpu_pages(), self.template, version=version,
                       compression=compression, cmdlines=f.cmdlines, clock=f.clock, uname=f.uname,
                       page_size=f.page_size, cpu_stats=[s.option_text() for s in self._all_cpu_stats()],
                       writer=f"exitreplay {__version__} record")

    def _all_cpu_stats(self) -> list[CpuStats]:
        """One per CPU index up to the last (a CPU without a buffer gets an empty text)."""
        by_cpu = {s.cpu: s for s in self.stats}
        return [by_cpu.get(c, CpuStats(c, "")) for c in range(max(self.cpus) + 1 if self.cpus else 0)]


def check_output(output: Path) -> None:
    """Fail before recording, not after, when the output cannot be written."""
    parent = output.parent if str(output.parent) else Path(".")
    if not parent.is_dir():
        raise RecordError(f"cannot write {output}: no directory {parent}")
    if not os.access(parent, os.W_OK):
        raise RecordError(f"cannot write {output}: {parent} is not writable")
    if output.is_dir():
        raise RecordError(f"cannot write {output}: it is a directory")


def record(output: str | os.PathLike, extra_events: Sequence[str] = (), *, duration: float | None = None,
           command: Sequence[str] | None = None, buffer_kb: int | None = None, compression: str = "zstd",
           version: int = 7, progress: Callable[[Progress], None] | None = None,
           on_stop: Callable[[str], None] | None = None) -> RecordResult:
    """Record kvm/*, sched_switch, sched_wakeup and `extra_events` into `output` (trace.dat).

    Stops after `duration` seconds, when `command` (started once tracing is on) exits, or on
    SIGINT/SIGTERM/SIGHUP; with neither duration nor command, only on a signal. `progress` gets a
    Progress about twice a second; `on_stop` the reason, before the file is written.
    """
    output = Path(output)
    check_output(output)
    if duration is not None and duration <= 0:
        raise RecordError(f"--duration must be positive, not {duration:g} s")
    with Recorder(extra_events, buffer_kb, workdir=output.parent) as rec:
        with StopWhen(duration, command) as stop:
            rec.start()
            stop.start()
            if progress:
                progress(rec.snapshot())
            reason = stop.wait(0.5, (lambda: progress(rec.snapshot())) if progress else None)
            seconds = stop.elapsed
            rec.stop()
        if on_stop is not None:
            on_stop(reason)
        with sigterm_interrupts():
            rec.write(output, compression, version)
        return RecordResult(output, seconds, reason, {s.cpu: s.read for s in rec.stats},
                            {s.cpu: s.lost for s in rec.stats}, rec.readers.bytes, rec.instance.name,
                            stop.child_status, rec.stale_removed)
