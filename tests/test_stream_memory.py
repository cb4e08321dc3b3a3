"""The streamed analysis holds a window, not the trace: peak RSS of `exitreplay analyze
--window-events` on a generated trace does not grow when the trace is four times longer, while
the in-memory analysis of the longer one needs far more."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from memory_helpers import PEAK_KB, trace_pair

WINDOW = 100_000
CHILD = r"""
import json, sys
from exitreplay.pipeline.stream import analyze_file
from exitreplay.analysis import analyze
w = int(sys.argv[2])
r = analyze_file(sys.argv[1], window_events=w) if w else analyze(sys.argv[1])
print(json.dumps({"exits": r.summary["exits"], "events": r.summary["events"], "rss_kb": PEAK}))
""".replace("PEAK", PEAK_KB)


@pytest.fixture(scope="module")
def traces(tmp_path_factory):
    return trace_pair(tmp_path_factory, "netio", (0.5, 2.0), 8, WINDOW)


def run(path, window: int) -> dict:
    r = subprocess.run([sys.executable, "-c", CHILD, str(path), str(window)], capture_output=True, text=True,
                       env=dict(os.environ), check=True)
    return json.loads(r.stdout)


def test_peak_rss_follows_the_window_not_the_trace(traces):
    (small, n_small), (big, n_big) = traces[0.5], traces[2.0]
    assert n_big > 3.5 * n_small > 1_000_000
    a, b = run(small, WINDOW), run(big, WINDOW)
    whole = run(big, 0)
    assert (a["events"], b["events"], whole["events"]) == (n_small, n_big, n_big)
    assert b["exits"] == whole["exits"] > 0
    # Four times the events: the in-memory analysis grows by ~200 bytes per event; the windows
    # by allocator noise and the latency value counts (bounded by distinct latencies).
    assert b["rss_kb"] < a["rss_kb"] * 1.25 + 40_000, (a, b)
    assert whole["rss_kb"] > b["rss_kb"] + 100 * (n_big - n_small) / 1024, (b, whole)
