"""Generated traces: a trace.dat writer that takes its formats from real files, and workload profiles."""
