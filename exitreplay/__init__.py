"""exitreplay: replay recorded KVM exit traces under state-deferral policies.

Library first: every CLI command is a thin layer over a function here.
"""
from __future__ import annotations

from .errors import ExitReplayError, TraceError, TraceWarning, UsageError
from .reader import read_trace
from .trace import Dropped, Trace, TraceMeta

__version__ = "0.1.0"

__all__ = [
    "Dropped",
    "ExitReplayError",
    "Trace",
    "TraceError",
    "TraceMeta",
    "TraceWarning",
    "UsageError",
    "read_trace",
]
