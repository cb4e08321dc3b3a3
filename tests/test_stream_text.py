"""The streamed analysis of a text trace (analyze_file: iter_windows over the text, two passes)
gives the in-memory Report (analyze of read_trace), for trace-cmd report of exit traces, default
and raw, read in small chunks and windows; and `analyze --window-events` prints the same JSON."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import trace_cmd_report
from stream_helpers import assert_same_report

from exitreplay import windows
from exitreplay.analysis import analyze
from exitreplay.formats import textsurvey
from exitreplay.pipeline.stream import analyze_file
from exitreplay.reader import read_trace

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ["svm-mixed.v7zstd.dat", "vmx-mixed.v6.dat", "svm-nested.v7.dat", "svm-netio.v7zstd.dat",
           "vmx-syscall-heavy.v7zstd.dat"]


@pytest.fixture(scope="module")
def reports(trace_cmd, tmp_path_factory):
    d = tmp_path_factory.mktemp("streamtext")
    cache = {}

    def get(name, opts):
        if (name, opts) not in cache:
            p = d / f"{name}{''.join(opts)}.txt"
            p.write_text(trace_cmd_report(ROOT / "sample_traces" / name, *opts))
            cache[name, opts] = p, analyze(read_trace(p))
        return cache[name, opts]
    return get


@pytest.mark.parametrize("opts", [(), ("-R", "-t")], ids=["default", "raw"])
@pytest.mark.parametrize("name", SAMPLES)
def test_streamed_text_equals_in_memory(reports, name, opts, monkeypatch):
    def whole(*a, **k):
        raise AssertionError("read whole, not streamed")
    monkeypatch.setattr(windows, "_read_and_slice", whole)
    monkeypatch.setattr(textsurvey, "MIN_CHUNK", 65536)
    monkeypatch.setattr(textsurvey, "BYTES_PER_EVENT", 0)
    path, whole_report = reports(name, opts)
    for window in (1500, 10**9):
        assert_same_report(whole_report, analyze_file(path, window_events=window), f"{name} {opts} @{window}")


def test_cli_window_events_on_text_gives_the_same_json(reports):
    path, _ = reports("vmx-mixed.v6.dat", ())

    def run(n: str) -> dict:
        r = subprocess.run([sys.executable, "-m", "exitreplay", "analyze", str(path), "--format", "json",
                            "--window-events", n], capture_output=True, text=True, check=True)
        return json.loads(r.stdout)
    a, b = run("0"), run("400")
    assert a["summary"]["format"] == "trace-cmd-report" and a["summary"]["exits"] > 1000
    assert a == b
