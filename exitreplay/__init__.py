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
    from .compare import Comparison
    from .filters import Filters

__version__ = "0.1.0"

__all__ = [
    "Comparison",
    "Dropped",
    "ExitReplayError",
    "Filters",
    "Report",
    "Trace",
    "TraceError",
    "TraceMeta",
    "TraceWarning",
    "UsageError",
    "analyze",
    "compare",
    "convert",
    "read_trace",
]

# The analysis pulls in the replay engine and its tables: load it on first use, so `import
# exitreplay` (and commands that only read traces) stay quick.
_LAZY = {"analyze": "analysis", "Report": "analysis", "Comparison": "compare", "Filters": "filters"}
# Modules that are also library calls (callmodule.py): `exitreplay.compare(...)`, `exitreplay.convert(...)`.
_CALLS = ("compare", "convert")


def __getattr__(name: str) -> Any:
    import importlib

    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    if name in _CALLS:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
