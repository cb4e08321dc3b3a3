"""The live view (`exitreplay top`): the streaming analysis of a source, a frame per interval.

Modules: window (windows of a trace with the trace's rows, and a file cut by time), sources (a
replayed file, paced; this host's tracefs through record.Recorder), pages (a live recording's
raw pages decoded into windows), comms (pid -> comm as tasks appear), frames (an interval's
numbers: the difference of two reports), view (the screen), batch (csv/json lines), keys (the
terminal in cbreak mode), session (the loop: source thread, analysis, keys, signals).
"""
from __future__ import annotations

from .frames import Frame, Totals
from .session import Watcher, run
from .sources import ReplaySource, TracefsSource
from .window import Window, WindowTrace, time_frames, time_windows

__all__ = ["Frame", "ReplaySource", "Totals", "TracefsSource", "Watcher", "Window", "WindowTrace", "run",
           "time_frames", "time_windows"]
