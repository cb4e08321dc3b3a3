"""Generated traces: workload profiles, a generator with real exit sequences, and a trace.dat writer
whose layouts come from real kernels (templates). See docs/profiles.md and docs/templates.md.

`generate` gives a whole Trace; `generate_windows` the same trace as consecutive time windows, in
memory bounded by a window; `synthesize` generates and writes a trace.dat a window at a time."""
from __future__ import annotations

from .generator import generate, generate_windows
from .profiles import load_profile, profile_names
from .synthesize import synthesize
from .templates import extract_template, load_template, template_names
from .writer import write_trace, write_windows

__all__ = ["extract_template", "generate", "generate_windows", "load_profile", "load_template", "profile_names",
           "synthesize", "template_names", "write_trace", "write_windows"]
