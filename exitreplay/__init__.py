"""exitreplay: replay recorded KVM exit traces under state-deferral policies.

Library first: every CLI command is a thin layer over a function here.

    import exitreplay
    report = exitreplay.analyze("trace.dat", policies=["kvm-today", "ist-off"], costs="epyc")
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import ExitReplayError, TraceError, TraceWarning, UsageError
from .reader import read_trace
from .trace import Dropped, Trace, TraceMeta

if TYPE_CHECKING:
    from .analysis import Report, analyze

__version__ = "0.1.0"

__all__ = [
    "Dropped",
    "ExitReplayError",
    "Report",
    "Trace",
    "TraceError",
    "TraceMeta",
    "TraceWarning",
    "UsageError",
    "analyze",
    "read_trace",
]

# The analysis pulls in the replay engine and its tables: load it on first use, so `import
# exitreplay` (and commands that only read traces) stay quick.
_LAZY = {"analyze": "analysis", "Report": "analysis"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
