"""The streamed analysis (windows folded with carried state) gives the in-memory Report, at any
window size: every count, sum, latency statistic and ranking, on every sample trace and the real
recordings."""
from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exitreplay.analysis import analyze
from exitreplay.pipeline import analyze_windows
from exitreplay.pipeline.view import slices
from exitreplay.reader import read_trace

from stream_helpers import assert_same_report

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
