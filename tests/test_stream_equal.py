"""The streamed analysis (windows folded with carried state) gives the in-memory Report, at any
window size: every count, sum, latency statistic and ranking, on every sample trace and the real
recordings."""
from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from stream_helpers import assert_same_report

from exitreplay.analysis import analyze
from exitreplay.pipeline import analyze_windows
from exitreplay.pipeline.view import slices
from exitreplay.reader import read_trace

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = sorted((ROOT / "sample_traces").glob("*.dat"))
REAL = [p for p in sorted((ROOT / "tests" / "data" / "real").glob("*.dat")) if p.name not in {s.name for s in SAMPLES}]


@pytest.fixture(scope="module")
def reports():
    cache = {}

    def get(path):
        if path not in cache:
            t = read_trace(path)
            cache[path] = (t, analyze(t))
        return cache[path]
    return get


@pytest.mark.parametrize("path", SAMPLES + REAL, ids=lambda p: f"{p.parent.name}/{p.name}")
@pytest.mark.parametrize("window", [1500])
def test_streamed_equals_in_memory(reports, path, window):
    trace, whole = reports(path)
    assert_same_report(whole, analyze_windows(slices(trace, window)), f"{path.name} @{window}")


@pytest.mark.parametrize("name", ["svm-mixed.v7zstd.dat", "vmx-mixed.v6.dat", "svm-nested.v7.dat"])
def test_tiny_windows(reports, name):
    """Windows of a few dozen events: every episode crosses windows, threads appear one at a time (the
    VM of a load's previous owner is known only at the end)."""
    trace, whole = reports(ROOT / "sample_traces" / name)
    assert_same_report(whole, analyze_windows(slices(trace, 60)), name)


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(window=st.integers(min_value=2, max_value=5000))
def test_any_window_size(reports, window):
    trace, whole = reports(ROOT / "sample_traces" / "svm-idle.v7.dat")
    assert_same_report(whole, analyze_windows(slices(trace, window)), f"@{window}")


def test_cli_window_events_gives_the_same_json(tmp_path):
    """`analyze --window-events N` (the streamed path) prints the JSON of the in-memory one."""
    import json
    import subprocess
    import sys

    path = ROOT / "sample_traces" / "vmx-mixed.v6.dat"

    def run(n: str) -> dict:
        r = subprocess.run([sys.executable, "-m", "exitreplay", "analyze", str(path), "--format", "json",
                            "--window-events", n], capture_output=True, text=True, check=True)
        return json.loads(r.stdout)
    a, b = run("0"), run("400")
    # the exits by port, address, MSR and fault region included, from the fold's value counts
    assert {k for k in a if k.startswith("exits_by_")} == {"exits_by_ioport", "exits_by_mmio", "exits_by_msr",
                                                          "exits_by_npf"}
    assert a == b


@pytest.mark.parametrize("args", [[], ["--detail"], ["--event", "ioport"], ["--event", "mmio"],
                                  ["--event", "msr"], ["--event", "npf"]])
def test_cli_text_streams(args):
    """The streamed text output is the in-memory one, line for line: the exit table, the episode
    classes in their order, and the --event tables (by port, address, MSR, fault region)."""
    import os
    import subprocess
    import sys

    path = ROOT / "sample_traces" / "svm-netio.v7zstd.dat"

    def run(n: str) -> str:
        return subprocess.run([sys.executable, "-m", "exitreplay", "analyze", str(path), *args,
                               "--window-events", n], capture_output=True, text=True, check=True,
                              env={**os.environ, "COLUMNS": "80"}).stdout
    whole = run("0")
    assert "exit handling time" in whole
    assert run("300") == whole


@pytest.mark.parametrize("args, message", [
    (["--window-events", "-3"], "--window-events -3: a number of events, 0 or auto"),
    (["--window-events", "100", "--table", "episodes", "--format", "csv"], "need every exit in memory"),
])
def test_cli_window_events_usage(args, message):
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "exitreplay", "analyze", str(ROOT / "sample_traces" / "svm-idle.v7.dat"),
                        *args], capture_output=True, text=True)
    assert r.returncode == 2 and message in r.stderr and r.stderr.count("\n") == 1, r.stderr


def test_rounded_percentiles_stay_within_their_bound(reports, monkeypatch):
    """Past its limit of distinct latencies the fold rounds them to a 0.2% log grid: counts and
    totals stay exact, every percentile lies within 0.2% of the exact one, and the Report says so."""
    import polars as pl

    from exitreplay.pipeline import latency

    monkeypatch.setattr(latency, "LIMIT", 50)
    trace, whole = reports(ROOT / "sample_traces" / "svm-mixed.v7zstd.dat")
    got = analyze_windows(slices(trace, 2000))
    assert got.summary["percentiles"] != "exact" and whole.summary["percentiles"] == "exact"
    for name in ("latency", "latency_vcpu", "latency_reason_vm"):
        keys = [c for c in ("vm", "vcpu", "reason") if c in whole.latency_reason_vm.columns and c in
                getattr(whole, name).columns]
        a, b = getattr(whole, name).sort(keys), getattr(got, name).sort(keys)
        assert a.select(*keys, "exits", "timed", "total_ns").equals(b.select(*keys, "exits", "timed", "total_ns"))
        for col in ("p50_ns", "p90_ns", "p99_ns", "max_ns", "min_ns"):
            rel = ((b[col].cast(pl.Float64) - a[col]) / a[col]).abs().drop_nulls()
            assert rel.max() <= 0.002, (name, col, rel.max())


@pytest.mark.parametrize("name", ["svm-nested.v7.dat", "svm-netio.v7zstd.dat", "vmx-mixed.v6.dat",
                                  "svm-syscall-heavy-linux4.19.v6.dat"])
def test_analyze_file_reads_only_what_it_needs(reports, name):
    """analyze_file decodes only the event types the episodes read, and gives the same Report."""
    from exitreplay.pipeline.stream import analyze_file

    trace, whole = reports(ROOT / "sample_traces" / name)
    assert_same_report(whole, analyze_file(ROOT / "sample_traces" / name, window_events=999), name)
