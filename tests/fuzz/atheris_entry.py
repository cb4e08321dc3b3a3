"""Coverage-guided fuzzing with atheris (`pip install -e ".[fuzz]"`), from the project root:

    python tests/fuzz/atheris_entry.py fuzz-corpus/ -max_total_time=3600 -rss_limit_mb=3072

The first byte of an input picks what it is (trace.dat, text, policy, cost profile, perf.data); the rest is
the file. An empty corpus directory is filled with the harness's seeds first. Only the project's
own error (ExitReplayError) is an expected outcome: anything else propagates, and libFuzzer
records the input as a crash; `-rss_limit_mb` catches memory blow-ups, `-timeout` hangs.
"""
from __future__ import annotations

import os
import sys
import tempfile
import warnings
from pathlib import Path

KINDS = ("dat", "text", "policy", "costs", "perf")
_WORK = Path(tempfile.mkdtemp(prefix="exitreplay-atheris-"))


def _setup_path() -> None:
    root = Path(__file__).resolve().parents[2]
    for p in (str(root), str(root / "tests")):
        if p not in sys.path:
            sys.path.insert(0, p)


def test_one_input(data: bytes) -> None:
    """One input: read, every table decoded (or the TOML loaded); the project's error is fine."""
    from exitreplay import read_trace
    from exitreplay.errors import ExitReplayError
    from exitreplay.replay.costs import load_costs
    from exitreplay.replay.policy import load_policy

    if not data:
        return
    kind = KINDS[data[0] % len(KINDS)]
    path = _WORK / ("input.toml" if kind in ("policy", "costs") else "input.perf.data" if kind == "perf" else f"input.{kind}")
    path.write_bytes(data[1:])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            if kind == "policy":
                load_policy(str(path))
            elif kind == "costs":
                load_costs(str(path))
            else:
                with read_trace(path) as tr:
                    for name in tr.event_names:
                        tr.raw_table(name)
        except ExitReplayError:
            pass


def write_seeds(corpus: Path) -> int:
    """The harness's seeds as atheris inputs (kind byte + file); returns how many."""
    from fuzz.corpus import build_seeds

    seeds_dir = _WORK / "seeds"
    seeds_dir.mkdir(exist_ok=True)
    seeds = build_seeds(seeds_dir)
    for i, s in enumerate(seeds):
        (corpus / f"seed-{i:03d}").write_bytes(bytes([KINDS.index(s.kind)]) + s.data)
    return len(seeds)


def main(argv: list[str]) -> None:
    import atheris

    _setup_path()
    with atheris.instrument_imports(include=["exitreplay"]):  # before anything imports exitreplay
        import exitreplay  # noqa: F401  (instrumented for coverage)
        import exitreplay.formats.ftrace_text  # noqa: F401
        import exitreplay.formats.perf_script  # noqa: F401
        import exitreplay.formats.perfdata  # noqa: F401
        import exitreplay.formats.report_text  # noqa: F401
        import exitreplay.formats.tracedat  # noqa: F401
        import exitreplay.replay.costs  # noqa: F401
    dirs = [Path(a) for a in argv[1:] if not a.startswith("-")]
    if dirs and dirs[0].is_dir() and not any(dirs[0].iterdir()):
        write_seeds(dirs[0])
    atheris.Setup(argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    os.environ.setdefault("POLARS_MAX_THREADS", "1")
    main(sys.argv)
