"""The analysis as a fold over windows: read -> episodes -> replay -> tables.

`StreamAnalysis` takes the windows of one trace in row order (`feed`) and gives the Report of
what it has seen (`report`, callable at any time: the live view calls it every interval).
`own_rows=(lo, hi)` counts only the exits (and row-attributed events) in [lo, hi): a worker
given one range of a huge trace feeds a warm-up window before lo and windows past hi until
`done` (all its exits complete), and the workers' `partial()`s merge (`merge`, `finish`) into
the Report of the whole trace.
"""
from __future__ import annotations

from .stream import StreamAnalysis, analyze_windows, finish, merge

__all__ = ["StreamAnalysis", "analyze_windows", "finish", "merge"]
