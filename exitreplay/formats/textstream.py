"""The text formats (trace-cmd report, ftrace text, perf script) as windows, in bounded memory.

Two passes over the file, a chunk of lines at a time (textsurvey.chunk_size: about 64 bytes per
window event, 1-64 MiB). The survey (formats.textsurvey) learns what the whole file decides: the
header, counts and losses (so every window's meta is the file's), each table's columns and types,
the ISA. The parse pass reads the same chunks with the format's own `scan`, numbers the event lines
with the file's rows, cuts them into windows of exactly `window_events` events and types each
window's tables as the survey says (`TablePlan`): the windows, concatenated, are `read_trace`'s.
Loss markers wait for the event line they stand before (textsurvey.MarkerQueue), possibly in a
later chunk, and go to that line's window; those no event follows, to the last window.

`read_trace` sorts a text by time (stably: it is in time order but for equal printed times); a
file that is not in time order cannot be cut as it is read, so it is read whole and sliced.
"""
from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Iterator

import polars as pl
import pyarrow as pa

from ..errors import TraceError
from ..trace import Dropped, Trace, TraceMeta
from .textcommon import (
    IsaContext,
    TablePlan,
    event_table,
    events_table,
    file_meta,
    group_events,
    key_frame,
    text_warning,
)
from .textsurvey import MarkerQueue, chunk_size, chunks, file_markers, file_size, globalize, survey

Progress = Callable[[int, int], None]
MODULES = {"trace-cmd-report": "report_text", "ftrace-text": "ftrace_text", "perf-script": "perf_script"}


def windows(path: str, fmt: str, target: int, only: set[str] | None, progress: Progress | None,
            whole: Callable[[], Iterator[Trace]]) -> Iterator[Trace]:
    """Windows of `target` events of the text file `path` (format `fmt`); `whole()`: the
    windows of the file read whole, for a file not in time order."""
    module = importlib.import_module(f".{MODULES[fmt]}", __package__)
    size, total = chunk_size(target), file_size(path)
    # progress: each pass counts for half the file's bytes
    sv = survey(path, module.head, module.scan, size, progress and (lambda done: progress(done // 2, total)), only)
    if not sv.in_order:
        yield from whole()
        return
    head = sv.head
    meta = file_meta(path, head.source_format, events=sv.events, max_cpu=sv.max_cpu, cpus=head.cpus,
                     losses=sv.losses, warnings=head.warnings + sv.warnings, extra=head.extra,
                     unparsed_lines=sv.unparsed, out_of_range=sv.out_of_range)
    for k, v in head.attrs.items():
        setattr(meta, k, v)
    texts = [text_warning(n, k, rows) for n, (k, rows) in sorted(sv.text_warnings().items())
             if only is None or n in only]
    out = _Windows(meta, sv.plans(), sv.context, only, target, sv.events)
    queue = MarkerQueue()
    rows = 0
    for ch in chunks(path, size):
        sc = module.scan(ch.lines)
        ev = globalize(sc, ch.line_base, rows)
        rows += ev.height
        out.drops += queue.feed(file_markers(sc, ch.line_base), ev)
        yield from out.push(ev)
        if progress:
            progress((total + ch.end) // 2, total)
    out.drops += queue.rest(sv.last_ts)
    yield from out.finish(texts)


class _Windows:
    """Event lines in, windows of exactly `target` events out; the last carries the rest."""

    def __init__(self, meta: TraceMeta, plans: dict[str, TablePlan], ctx: IsaContext, only: set[str] | None,
                 target: int, events: int):
        self.meta, self.plans, self.ctx, self.only = meta, plans, ctx, only
        self.target, self.events = target, events
        self.parts: list[pl.DataFrame] = []
        self.held = 0  # events in parts
        self.done = 0  # events yielded
        self.drops: list[Dropped] = []

    def push(self, ev: pl.DataFrame) -> Iterator[Trace]:
        if ev.height:
            self.parts.append(ev)
            self.held += ev.height
        # The survey counted the events: the last window is the one that reaches them all.
        while self.held >= self.target and self.done + self.target < self.events:
            yield self._cut(self.target, [])

    def finish(self, texts: list[str]) -> Iterator[Trace]:
        if self.done + self.held != self.events:
            raise TraceError(self.meta.path, f"changed while it was read: {self.events} events, then "
                                             f"{self.done + self.held}")
        yield self._cut(self.held, texts)

    def _cut(self, k: int, texts: list[str]) -> Trace:
        frame = pl.concat(self.parts) if len(self.parts) > 1 else self.parts[0]
        win, rest = frame.head(k), frame.slice(k)
        self.parts = [rest] if rest.height else []
        self.held -= k
        base, last = self.done, self.done + k >= self.events
        self.done += k
        mine = [d for d in self.drops if last or (d.row is not None and d.row < self.done)]
        self.drops = [d for d in self.drops if not (last or (d.row is not None and d.row < self.done))]
        mine.sort(key=lambda d: (d.ts, d.cpu))
        meta = dataclasses.replace(self.meta, dropped=mine, event_counts={}, first_ts=None, last_ts=None,
                                   warnings=list(self.meta.warnings) + (texts if last else []),
                                   extra=dict(self.meta.extra))
        by_event = group_events(win)
        tables = {n: self._table(n, g) for n, g in by_event.items() if self.only is None or n in self.only}
        return Trace(events_table(win), tables, meta, row_base=base)

    def _table(self, name: str, grp: pl.DataFrame) -> Callable[[], pa.Table]:
        def build() -> pa.Table:
            return event_table(name, key_frame(grp), grp["rest"], self.ctx, plan=self.plans[name])
        return build
