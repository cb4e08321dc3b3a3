"""When a recording stops: at its duration, when its COMMAND exits, or on SIGINT/SIGTERM/SIGHUP.

The signals only set a flag (no KeyboardInterrupt halfway through a tracefs write), so the
caller always gets to stop tracing and remove its instance; the previous handlers come back on
exit. A COMMAND still running then is sent SIGTERM, and SIGKILL if it has not ended in
CHILD_GRACE seconds.
"""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence

from .tracefs import RecordError

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
CHILD_GRACE = 5.0


@contextlib.contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt meanwhile (as SIGINT does), so `finally` blocks still run."""
    def interrupt(_signum, _frame):
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


class StopWhen:
    def __init__(self, duration: float | None = None, command: Sequence[str] | None = None):
        self.duration, self.command = duration, list(command or [])
        self.event = threading.Event()
        self.reason: str | None = None
        self.child: subprocess.Popen | None = None
        self.started = 0.0
        self._old: dict[int, object] = {}

    def _on_signal(self, signum, _frame) -> None:
        if self.reason is None:
            self.reason = signal.Signals(signum).name
        self.event.set()

    def __enter__(self) -> StopWhen:
        if threading.current_thread() is threading.main_thread():
            for s in SIGNALS:
                self._old[s] = signal.signal(s, self._on_signal)
        return self

    def __exit__(self, *exc) -> None:
        self.end_child()
        for s, old in self._old.items():
            signal.signal(s, old)
        self._old.clear()

    def start(self) -> None:
        """The clock starts, and the command with it (tracing is already on)."""
        self.started = time.monotonic()
        if self.command:
            try:
                self.child = subprocess.Popen(self.command)
            except OSError as exc:
                raise RecordError(f"cannot run {self.command[0]}: {exc.strerror}") from None

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def wait(self, tick: float = 0.5, on_tick: Callable[[], None] | None = None) -> str:
        """Block until a stop condition holds; call on_tick every `tick` seconds meanwhile."""
        while self.reason is None:
            left = tick if self.duration is None else min(tick, self.duration - self.elapsed)
            self.event.wait(max(0.0, left))
            if self.reason is not None:
                break
            if self.child is not None and self.child.poll() is not None:
                self.reason = f"{os.path.basename(self.command[0])} exited with status {self.child.returncode}"
            elif self.duration is not None and self.elapsed >= self.duration:
                self.reason = f"{self.duration:g} s elapsed"
            elif on_tick is not None:
                on_tick()
        return self.reason

    @property
    def child_status(self) -> int | None:
        return None if self.child is None else self.child.returncode

    def end_child(self) -> None:
        if self.child is None or self.child.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.child.terminate()
        try:
            self.child.wait(CHILD_GRACE)
        except subprocess.TimeoutExpired:
            self.child.kill()
            self.child.wait()
