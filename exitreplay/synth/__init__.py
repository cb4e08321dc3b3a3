"""Generated traces: workload profiles, a generator with real exit sequences, and a trace.dat writer
whose layouts come from real kernels (templates). See docs/profiles.md and docs/templates.md."""
from __future__ import annotations

from .generator import generate
from .profiles import load_profile, profile_names
from .templates import extract_template, load_template, template_names
from .writer import write_trace

__all__ = ["extract_template", "generate", "load_profile", "load_template", "profile_names", "template_names",
           "write_trace"]
