"""A fuzz harness for exitreplay's readers, converter, analysis and CLI.

- `corpus`: small seeds made from the real recordings (their pages, formats and command lines),
  the sample traces, the real and generated perf.data files (`perfseed`), the first lines of the
  real text traces and the built-in TOML files.
- `layout`: where the fields of a trace.dat are (header values, section and option sizes and
  offsets, CPU tables, chunk tables, page headers, record headers), found by its own walker.
- `perflayout`: the same for a perf.data (header, attrs, feature table, tracing data, records).
- `mutate`, `perfmutate`: structure-aware mutations of a seed (model edits before the file is
  written, field edits, truncation, splicing and insertion after), deterministic per (campaign
  seed, input).
- `harness`: runs inputs in a worker process under a memory limit and a time limit, and sorts
  each outcome: read, the project's clean error, crash, memory blow-up, hang, broken property.

`python -m tests.fuzz --inputs 200000` runs a long campaign; `tests/test_fuzz.py` a short one;
`tests/fuzz/atheris_entry.py` is the coverage-guided entry point.
"""
