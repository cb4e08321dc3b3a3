"""The next window decoded while the fold works on this one.

A window's tables are decoded on first use, on the thread that asks. Decoding is a quarter of a
streamed analysis, the fold the rest, and both spend much of their time in NumPy, Arrow and
Polars calls that release the GIL: one thread that reads and decodes ahead lets the two overlap
on a second core. Memory: one more decoded window than the fold holds (`depth`)."""
from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator

from ..trace import Trace

_END = object()


def prefetched(windows: Iterable[Trace], names: Iterable[str] | None = None, depth: int = 1) -> Iterator[Trace]:
    """`windows`, each with its tables (those in `names`, or all) already decoded, read ahead by
    `depth` windows on a thread. An error there is raised here, at the window it happened in;
    closing this generator stops the thread."""
    want = None if names is None else set(names)
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def run() -> None:
        try:
            read(iter(windows))
        except BaseException as e:  # handed to the consumer, raised in its thread
            put(e)
            return
        put(_END)

    def read(source: Iterator[Trace]) -> None:
        try:
            for w in source:
                for name in w.event_names:
                    if want is None or name in want:
                        w.table(name)
                if not put(w):
                    return
        finally:  # the reader's files closed on this thread, which runs it
            close = getattr(source, "close", None)
            if close is not None:
                close()

    t = threading.Thread(target=run, name="exitreplay-prefetch", daemon=True)
    t.start()
    try:
        while True:
            item = q.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        t.join()
