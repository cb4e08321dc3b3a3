"""The analysis as a fold over windows: read -> episodes -> replay -> tables.

`StreamAnalysis` takes the windows of one trace in row order (`feed`) and gives the Report of
what it has seen (`report`, callable at any time: the live view calls it every interval).
`own_ts=(lo, hi)` counts only the exits (and time-attributed events) with lo <= ts < hi (trace
clock units): a worker given one time range of a huge trace feeds a warm-up window before lo,
then windows until `done` (every exit it owns is complete), and the workers' `partial()`s merge
(`merge(partials)`, `finish(merged) -> Report`) into the Report of the whole trace.
"""
from __future__ import annotations

from .partial import merge
from .stream import StreamAnalysis, analyze_windows, finish

__all__ = ["StreamAnalysis", "analyze_windows", "finish", "merge"]
