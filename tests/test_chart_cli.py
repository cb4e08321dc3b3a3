"""`exitreplay chart`, `analyze --charts DIR` and `compare --charts DIR` write the files they say,
offline, and bad arguments are one line with exit status 2."""
from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest
from cli_helpers import run_main
from conftest import SAMPLES

TRACE = SAMPLES / "svm-mixed.v7zstd.dat"
OTHER = SAMPLES / "svm-idle.v7.dat"


@pytest.fixture()
def run(capsys, monkeypatch):
    """`exitreplay ARGS` in this process, through the real entry point (exit status and all)."""
    def go(*args, tmp_path):
        return run_main(capsys, monkeypatch, args, tmp_path / "cache")
    return go


@pytest.mark.parametrize("kind,ext", [("reasons", "svg"), ("latency", "png"), ("ops", "json"), ("timeline", "html"),
                                      ("window", "png")])
def test_chart_command_writes_each_file_type(run, kind, ext, tmp_path):
    out = tmp_path / f"c.{ext}"
    p = run("chart", TRACE, "--kind", kind, "-o", out, tmp_path=tmp_path)
    assert p.returncode == 0, p.stderr
    data = out.read_bytes()
    if ext == "png":
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
    elif ext == "svg":
        assert ET.fromstring(data).tag.endswith("svg")
    elif ext == "json":
        spec = json.loads(data)
        assert spec["$schema"].startswith("https://vega.github.io/schema/vega-lite/")
    else:
        text = data.decode()
        assert "<script src=" not in text and "vegaEmbed" in text and TRACE.name in text


def test_deltas_kind_compares_the_traces(run, tmp_path):
    p = run("chart", OTHER, TRACE, "--kind", "deltas", "-o", tmp_path / "d.json", tmp_path=tmp_path)
    assert p.returncode == 0, p.stderr
    spec = json.loads((tmp_path / "d.json").read_text())
    assert spec["title"]["text"] == f"Changes against {OTHER.name}"


def test_window_kind_takes_the_policies_given(run, tmp_path):
    p = run("chart", TRACE, "--kind", "window", "--policy", "kvm-today", "--policy", "ist-off", "-o",
            tmp_path / "w.json", tmp_path=tmp_path)
    assert p.returncode == 0, p.stderr
    data = next(iter(json.loads((tmp_path / "w.json").read_text())["datasets"].values()))
    assert {r["policy"] for r in data} == {"ist-off"}


def test_analyze_charts_dir(run, tmp_path):
    p = run("analyze", TRACE, "--charts", tmp_path / "ch", "-f", "json", "-o", tmp_path / "a.json", tmp_path=tmp_path)
    assert p.returncode == 0, p.stderr
    for kind in ("reasons", "latency", "ops", "timeline", "window"):
        for ext in ("png", "html"):
            assert (tmp_path / "ch" / f"{kind}.{ext}").stat().st_size > 1000, (kind, ext)


def test_compare_charts_dir(run, tmp_path):
    p = run("compare", OTHER, TRACE, "--charts", tmp_path / "ch", "-f", "json", "-j", "1", tmp_path=tmp_path)
    assert p.returncode == 0, p.stderr
    for name in ("deltas", "reasons", "savings"):
        for ext in ("png", "html"):
            assert (tmp_path / "ch" / f"{name}.{ext}").stat().st_size > 1000, (name, ext)


@pytest.mark.parametrize("args,message", [
    (["--kind", "pie", "-o", "x.png"], "unknown --kind 'pie'"),
    (["--kind", "latency", "-o", "x.gif"], "unknown chart file type"),
    (["--kind", "deltas", "-o", "x.png"], "two or more"),
])
def test_bad_chart_arguments(run, args, message, tmp_path):
    p = run("chart", TRACE, *args, tmp_path=tmp_path)
    assert p.returncode == 2 and message in p.stderr and "Traceback" not in p.stderr, p.stderr


def test_chart_of_a_missing_trace(tmp_path):
    """The installed command, in its own process: one line, status 2, no traceback."""
    p = subprocess.run([sys.executable, "-m", "exitreplay", "chart", str(tmp_path / "nope.dat"), "--kind", "latency",
                        "-o", str(tmp_path / "x.png")], capture_output=True, text=True,
                       env={"PATH": "/usr/bin:/bin", "EXITREPLAY_CACHE": str(tmp_path / "c")})
    assert p.returncode == 2 and "nope.dat" in p.stderr and "Traceback" not in p.stderr
