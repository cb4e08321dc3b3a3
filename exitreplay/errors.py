"""Errors and warnings users see.

Every problem with an input file becomes a `TraceError` naming the file, so the CLI can print one
line and exit with status 2 instead of a traceback.
"""
from __future__ import annotations

import os


class ExitReplayError(Exception):
    """Base of the errors the CLI reports as one line (exit status 2)."""


class TraceError(ExitReplayError):
    """A trace file that cannot be read: empty, not a trace, truncated, corrupted, unknown version."""

    def __init__(self, path: str | os.PathLike | None, problem: str):
        self.path = None if path is None else os.fspath(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path else problem)


class UsageError(ExitReplayError):
    """Bad options or data given by the user (policy file, cost profile, filter)."""


class TraceWarning(UserWarning):
    """Something was lost or is unknown but reading went on (truncated data, dropped events)."""
