"""Every CPU's trace_pipe_raw read at once into a temporary file of its own, and offered live.

trace_pipe_raw gives the ring buffer's pages as the kernel holds them (kernel/trace/trace.c
tracing_buffers_read -> ring_buffer_read_page): one sub-buffer per read, a full page swapped out
whole, or, from the page being written, the events so far copied into a page of their own; the
commit word carries the missed-events flags (and the count, where it fits) when the writer
overwrote pages since the last read. The bytes go to the file unchanged: no formatting.

A reader thread per CPU sleeps in poll(), which the kernel wakes when the buffer is
buffer_percent full (ring_buffer_poll_wait), or after POLL_MS; then it reads without blocking
until the buffer is empty. So a busy CPU is drained as fast as it fills and an idle one costs a
wake-up per POLL_MS. os.read and file writes drop the GIL, so the CPUs are read in parallel.

For a live consumer (the streaming analysis) `subscribe()` gives a PageStream: Chunks that name
pages already in a CPU's file, in arrival order; the pages are read back from the file, so a slow
consumer costs disk, not memory.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import queue
import select
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .tracefs import Instance, RecordError

POLL_MS = 200
BATCH_PAGES = 64  # pages gathered per write


@dataclasses.dataclass(frozen=True)
class Chunk:
    """Pages [first, first + count) of one CPU's stream, read at `arrived` (time.monotonic)."""

    cpu: int
    first: int
    count: int
    arrived: float


class CpuPipe:
    """One CPU's reader: trace_pipe_raw -> its file, announcing each batch of pages."""

    def __init__(self, instance: Instance, cpu: int, path: Path, page_size: int, announce):
        self.cpu, self.path, self.page_size, self.announce = cpu, path, page_size, announce
        self.source = instance.path / "per_cpu" / f"cpu{cpu}" / "trace_pipe_raw"
        self.pages = 0
        self.error: BaseException | None = None
        self.fd = os.open(self.source, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        self.out = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)

    def run(self, stop: threading.Event, wake_fd: int) -> None:
        try:
            poller = select.poll()
            poller.register(self.fd, select.POLLIN)
            poller.register(wake_fd, select.POLLIN)
            while True:
                last = stop.is_set()  # set after tracing stopped: this drain empties the buffer
                self.drain()
                if last:
                    return
                ready = dict(poller.poll(POLL_MS))
                if ready.get(self.fd, 0) & (select.POLLERR | select.POLLNVAL):
                    stop.wait(POLL_MS / 1000)  # a CPU without a buffer (offline) polls as an error
        except BaseException as exc:  # noqa: BLE001 (reported by PipeReaders.stop in the caller's thread)
            self.error = exc
        finally:
            os.close(self.fd)
            os.close(self.out)

    def drain(self) -> None:
        batch = bytearray()
        while True:
            try:
                page = os.read(self.fd, self.page_size)
            except BlockingIOError:
                break
            except InterruptedError:
                continue
            if not page:
                break
            batch += page.ljust(self.page_size, b"\0")
            if len(batch) >= BATCH_PAGES * self.page_size:
                self._flush(batch)
                batch = bytearray()
        if batch:
            self._flush(batch)

    def _flush(self, batch: bytearray) -> None:
        view = memoryview(batch)
        while view:
            view = view[os.write(self.out, view):]
        n = len(batch) // self.page_size
        self.announce(Chunk(self.cpu, self.pages, n, time.monotonic()))
        self.pages += n


class PageStream:
    """Pages as they arrive, for a live pipeline; ends (None) when the recording stops."""

    def __init__(self, readers: PipeReaders):
        self.readers = readers
        self.queue: queue.SimpleQueue[Chunk | None] = queue.SimpleQueue()

    def __iter__(self) -> Iterator[Chunk]:
        while (chunk := self.queue.get()) is not None:
            yield chunk

    def read(self, chunk: Chunk) -> np.ndarray:
        """The chunk's pages (uint8, count * page_size), read back from its CPU's file."""
        return self.readers.read_pages(chunk.cpu, chunk.first, chunk.count)

    def windows(self, interval: float) -> Iterator[dict[int, np.ndarray]]:
        """Every `interval` seconds, each CPU's pages that arrived since the last window.

        Each CPU's pages are in that CPU's time order; merging CPUs is the consumer's (as in
        formats.tracedat.Decoder.merge), since a CPU's next page may start before another's last.
        """
        pending: dict[int, list[Chunk]] = {}
        deadline = time.monotonic() + interval
        done = False
        while not done:
            try:
                chunk = self.queue.get(timeout=max(0.0, deadline - time.monotonic()))
                if chunk is None:
                    done = True
                else:
                    pending.setdefault(chunk.cpu, []).append(chunk)
            except queue.Empty:
                pass
            if done or time.monotonic() >= deadline:
                yield {cpu: np.concatenate([self.read(c) for c in cs]) for cpu, cs in sorted(pending.items())}
                pending, deadline = {}, time.monotonic() + interval


class PipeReaders:
    """A CpuPipe thread per CPU, files under tmpdir; start() before tracing on, stop() after off."""

    def __init__(self, instance: Instance, cpus: list[int], tmpdir: Path, page_size: int):
        self.cpus, self.page_size = cpus, page_size
        self.files = {c: tmpdir / f"cpu{c}.raw" for c in cpus}
        self._streams: list[PageStream] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wake_r, self._wake_w = os.pipe()
        self.pipes: list[CpuPipe] = []
        try:
            for c in cpus:
                self.pipes.append(CpuPipe(instance, c, self.files[c], page_size, self._announce))
        except OSError as exc:
            self._close_unstarted()
            raise RecordError(f"cannot open {instance.path}/per_cpu/cpuN/trace_pipe_raw: {exc.strerror}") from None
        self.threads = [threading.Thread(target=p.run, args=(self._stop, self._wake_r), daemon=True,
                                         name=f"trace_pipe_raw cpu{p.cpu}") for p in self.pipes]
        self.state = "ready"  # -> running -> stopped

    def _close_unstarted(self) -> None:
        for p in self.pipes:
            os.close(p.fd)
            os.close(p.out)
        os.close(self._wake_r)
        os.close(self._wake_w)

    def _announce(self, chunk: Chunk) -> None:
        with self._lock:
            for s in self._streams:
                s.queue.put(chunk)

    def subscribe(self) -> PageStream:
        stream = PageStream(self)
        with self._lock:
            self._streams.append(stream)
        return stream

    def start(self) -> None:
        self.state = "running"
        for t in self.threads:
            t.start()

    def close(self) -> None:
        """Release everything, whatever state the readers are in (for the way out after an error)."""
        if self.state == "ready":
            self._close_unstarted()
        elif self.state == "running":
            with contextlib.suppress(RecordError):
                self.stop()
        self.state = "stopped"

    @property
    def bytes(self) -> int:
        return sum(p.pages for p in self.pipes) * self.page_size

    def stop(self) -> None:
        """Drain every CPU one last time (tracing must be off already) and wait for the threads."""
        self.state = "stopped"
        self._stop.set()
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")
        for t in self.threads:
            t.join()
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        with self._lock:
            for s in self._streams:
                s.queue.put(None)
        errors = [p for p in self.pipes if p.error is not None]
        if errors:
            p = errors[0]
            why = p.error.strerror if isinstance(p.error, OSError) else str(p.error)
            raise RecordError(f"reading {p.source} failed: {why}")

    def read_pages(self, cpu: int, first: int, count: int) -> np.ndarray:
        with open(self.files[cpu], "rb") as fh:
            data = os.pread(fh.fileno(), count * self.page_size, first * self.page_size)
        return np.frombuffer(data, dtype=np.uint8)

    def cpu_pages(self) -> list[np.ndarray]:
        """Each CPU's whole stream (index = CPU number), memory-mapped: never all in RAM."""
        out = []
        for c in range(max(self.cpus) + 1 if self.cpus else 0):
            path = self.files.get(c)
            size = path.stat().st_size if path is not None and path.exists() else 0
            out.append(np.memmap(path, dtype=np.uint8, mode="r") if size else np.empty(0, np.uint8))
        return out

