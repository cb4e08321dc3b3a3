"""Readers: one module per input format, each returning a `Trace`."""
