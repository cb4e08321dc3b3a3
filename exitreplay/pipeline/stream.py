"""Placeholder fold (interface first): keeps the fed windows and analyses them together.

Replaced by the carried-state fold; the interface stays."""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pyarrow as pa

from ..trace import Trace


class StreamAnalysis:
    def __init__(self, policies=None, costs=None, baseline=None, *, filters=None, cpu_mhz=None,
                 tsc_mhz=None, gsbase_method=None, own_ts: tuple[int, int] | None = None):
        self.kw: dict[str, Any] = dict(policies=policies, costs=costs, baseline=baseline, filters=filters,
                                       cpu_mhz=cpu_mhz, tsc_mhz=tsc_mhz, gsbase_method=gsbase_method)
        self.own_ts = own_ts
        self.windows: list[Trace] = []

    @property
    def done(self) -> bool:
        return False

    def feed(self, window: Trace) -> None:
        self.windows.append(window)

    def report(self):
        from ..analysis import analyze

        return analyze(concat_windows(self.windows), **self.kw)

    def partial(self):
        raise NotImplementedError("partial(): comes with the carried-state fold")


def merge(partials):
    raise NotImplementedError("merge(): comes with the carried-state fold")


def finish(partial):
    raise NotImplementedError("finish(): comes with the carried-state fold")


def analyze_windows(windows: Iterable[Trace], **kw):
    sa = StreamAnalysis(**kw)
    for w in windows:
        sa.feed(w)
    return sa.report()


def concat_windows(windows: list[Trace]) -> Trace:
    """Windows with global rows back into one Trace (rows renumbered from 0)."""
    import dataclasses

    first = windows[0]
    base = int(first.events.column("row")[0].as_py()) if "row" in first.events.column_names and len(first) else 0
    events = pa.concat_tables([w.events for w in windows])
    names = sorted({n for w in windows for n in w.event_names})
    tables = {}
    for n in names:
        parts = [w.table(n) for w in windows if w.has(n)]
        tables[n] = pa.concat_tables(parts, promote_options="permissive")
    meta = dataclasses.replace(first.meta, event_counts={}, first_ts=None, last_ts=None,
                               dropped=[d for w in windows for d in w.meta.dropped])
    del base
    return Trace(events, tables, meta)
