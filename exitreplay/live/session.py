"""`exitreplay top`: windows in, the streaming analysis folded over them, a frame per interval out.

The source runs in a thread of its own (a paced replay sleeps, a live one waits for pages) and
hands its frames (an interval's windows) over a queue; the main thread feeds them to `pipeline.StreamAnalysis`, turns each
report into a Frame and shows it, and reads keys in between. SIGINT, SIGTERM and SIGHUP only set
a flag (as `record` does), so the way out always stops the source, which for a live one puts
the host's tracing back as it was.
"""
from __future__ import annotations

import collections
import contextlib
import queue
import signal
import threading
import time
from collections.abc import Callable, Iterator

from ..pipeline import StreamAnalysis
from .frames import SYNC_EVENTS, Frame, Totals, frame_of, totals_of
from .window import Window

TICK = 0.05  # seconds between looks at the keys and the stop flag


class Watcher:
    """The streaming analysis of one source and the last two reports' totals."""

    def __init__(self, **analysis):
        self.sa = StreamAnalysis(recent_episodes=True, **analysis)
        self.prev = Totals()
        self.events: collections.Counter = collections.Counter()
        self.first_ts: int | None = None
        self.lost = (0, 0)  # events lost where counted, losses not counted: in the windows fed
        self.report = None

    def step(self, *ws: Window) -> Frame | None:
        """Feed consecutive windows; the Frame of the time they cover together (None until the
        first events). One report for all of them: a screen that fell behind catches up."""
        fed = False
        for w in ws:
            if self.first_ts is None and w.trace is not None:
                self.first_ts = w.lo_ts
            if w.trace is not None:
                self.sa.feed(w.trace)
                counts = w.event_counts
                self.events.update({k: counts.get(k, 0) for k in SYNC_EVENTS if k in counts})
                dropped = w.trace.meta.dropped
                self.lost = (self.lost[0] + sum(d.count or 0 for d in dropped),
                             self.lost[1] + sum(d.count is None for d in dropped))
                fed = True
        if fed:
            self.report = self.sa.report()
        if self.report is None:
            return None
        lo, hi = ws[0].lo_ts, ws[-1].hi_ts
        cur = totals_of(self.report, self.events, self.lost) if fed else self.prev
        f = frame_of(self.report, cur, self.prev, (hi - self.first_ts) / 1e9, (hi - lo) / 1e9, lo, hi)
        self.prev = cur
        return f


class StopFlag:
    """SIGINT/SIGTERM/SIGHUP set it (previous handlers back on exit)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self):
        self.event = threading.Event()
        self.reason: str | None = None
        self._old: dict = {}

    def set(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason
        self.event.set()

    def __enter__(self) -> StopFlag:
        if threading.current_thread() is threading.main_thread():
            for s in self.SIGNALS:
                self._old[s] = signal.signal(s, lambda n, _f: self.set(signal.Signals(n).name))
        return self

    def __exit__(self, *exc) -> None:
        for s, old in self._old.items():
            signal.signal(s, old)


_END = object()


def _produce(source, out: queue.Queue) -> None:
    try:
        for frame in source.frames():
            out.put(frame)
    except BaseException as exc:  # noqa: BLE001 (raised again in the main thread)
        out.put(exc)
    out.put(_END)


def run(source, watcher: Watcher, show: Callable[[Frame | None, str], None], keys, stop: StopFlag,
        on_key: Callable[[str], bool] = lambda k: False, wait_at_end: bool = False, drain: bool = False,
        catch_up: bool = False) -> str:
    """Show a frame per interval until the source ends (with wait_at_end: until q or a signal), q
    or a signal; the reason. drain: after a stop, the frames the source still gives (a live
    source's last pages) are shown too, so the totals hold every event recorded. catch_up: the
    frames already waiting are shown as one (a screen shows now, not a backlog; a log keeps one
    line per interval)."""
    q: queue.Queue = queue.Queue(maxsize=4)
    producer = threading.Thread(target=_produce, args=(source, q), daemon=True, name="top source")
    producer.start()
    try:
        return _loop(source, watcher, show, keys, stop, on_key, wait_at_end, drain, catch_up, q)
    finally:
        source.stop()
        _discard(q, producer)


def _discard(q: queue.Queue, producer: threading.Thread, timeout: float = 5.0) -> None:
    """Let the source thread finish (it may wait to hand over a window) before its source closes."""
    deadline = time.monotonic() + timeout
    while producer.is_alive() and time.monotonic() < deadline:
        with contextlib.suppress(queue.Empty):
            while True:
                q.get_nowait()
        producer.join(TICK)


def _loop(source, watcher, show, keys, stop, on_key, wait_at_end, drain, catch_up, q) -> str:
    frame: Frame | None = None
    status = ""
    held = None  # what ended a catch-up run of windows, to handle next
    while True:
        if stop.event.is_set():
            source.stop()
            if not drain or status == "ended":
                return stop.reason or "stopped"
        item, held = held, None
        if item is None:
            with contextlib.suppress(queue.Empty):
                item = q.get(timeout=TICK / 2)
        if item is _END:
            status = "ended"
            if not wait_at_end or stop.event.is_set():
                return stop.reason or "end of the source"
            show(frame, status)
        elif isinstance(item, BaseException):
            raise item
        elif isinstance(item, list):
            run_of, held = _waiting(q, item) if catch_up else (item, None)
            frame = watcher.step(*run_of) or frame
            show(frame, "ended" if run_of[-1].last and wait_at_end else status)
        for k in _pending(keys):
            if k in ("q", "Q"):
                stop.set("q")
            elif on_key(k):
                show(frame, status)


def _waiting(q: queue.Queue, first: list[Window]) -> tuple[list[Window], object]:
    """The Windows of `first` and of the frames queued behind it; and what stopped the run (the
    end, an error)."""
    run_of = list(first)
    while not run_of[-1].last:
        try:
            nxt = q.get_nowait()
        except queue.Empty:
            return run_of, None
        if not isinstance(nxt, list):
            return run_of, nxt
        run_of += nxt
    return run_of, None


def _pending(keys) -> Iterator[str]:
    k = keys.get(TICK / 2)
    while k is not None:
        yield k
        k = keys.get(0)


