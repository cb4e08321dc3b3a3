"""Recording on a KVM host: tracefs instance, per-CPU raw pages, trace.dat out (`exitreplay record`).

Modules: tracefs (mount, instance), events (what is enabled), hostformats (the kernel's layouts
as the writer's Template), pipes (per-CPU trace_pipe_raw readers, and their pages live), stats
(per_cpu stats: recorded and lost), stop (duration, command, signals), recorder (all of it).
"""
from __future__ import annotations

from .events import DEFAULT_EVENTS
from .pipes import Chunk, PageStream
from .recorder import Progress, Recorder, RecordResult, record
from .tracefs import RecordError

__all__ = ["DEFAULT_EVENTS", "Chunk", "PageStream", "Progress", "RecordError", "RecordResult", "Recorder",
           "record"]
