"""Every chart kind is valid Vega-Lite, renders to SVG and PNG offline, stays small on big inputs;
the HTML report is self-contained and renders its charts in headless Chromium."""
from __future__ import annotations

import re
import shutil
import subprocess

import pytest

import exitreplay
from exitreplay.analysis import analyze
from exitreplay.compare import compare, expand
from exitreplay.report import charts
from exitreplay.report.export import save
from exitreplay.report.html import build_html
from exitreplay.synth.generator import generate
from conftest import SAMPLES

KINDS = [k for k in charts.KINDS if k != "deltas"]


@pytest.fixture(scope="module")
def report():
    return analyze(exitreplay.read_trace(SAMPLES / "svm-mixed.v7zstd.dat"))


@pytest.mark.parametrize("kind", KINDS)
def test_chart_kinds_render(report, kind, tmp_path):
    c = charts.chart(kind, [report], ["mixed"])
    spec = c.to_dict(validate=True)  # raises on invalid Vega-Lite
    text = str(spec)
    assert "mixed" in text  # the caption names the trace
    assert re.search(r"\((count|µs|ms|%|millions)", text) or "per ms" in text  # units on an axis
    for ext in (".svg", ".png", ".json", ".html"):
        save(c, tmp_path / f"c{ext}")
    svg = (tmp_path / "c.svg").read_text()
    assert svg.startswith("<svg") and "<path" in svg
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "cdn.jsdelivr" not in (tmp_path / "c.html").read_text()  # bundled, offline


def test_charts_aggregate_big_inputs():
    big = analyze(generate("netio", vcpus=4, seconds=0.3, seed=2))
    assert big.summary["exits"] > 20_000
    for kind in KINDS:
        assert charts.data_rows(charts.chart(kind, [big]).to_dict()) < 5_000, kind


def test_deltas_chart(tmp_path):
    cmp = compare(expand([str(SAMPLES / "svm-idle.v7.dat"), str(SAMPLES / "svm-netio.v7zstd.dat")]), jobs=1,
                  cache_dir=tmp_path)
    c = charts.deltas(cmp.deltas.filter(cmp.deltas["metric"].is_in(["exits_per_s", "p99_ns"])), cmp.reference)
    c.to_dict(validate=True)
    save(c, tmp_path / "d.svg")
    assert "<svg" in (tmp_path / "d.svg").read_text()


def test_report_renders_in_headless_chromium(report, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    html = build_html([report], ["mixed"])
    assert "<script src=" not in html and "https://" not in html.split("<script")[0]
    path = tmp_path / "report.html"
    path.write_text(html)
    if chromium is None:
        pytest.skip("chromium not installed (apt-get install chromium)")
    proc = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'ud'}",
         "--virtual-time-budget=8000", "--enable-logging=stderr", "--v=0", "--dump-dom", path.as_uri()],
        capture_output=True, text=True, timeout=120)
    dom = proc.stdout
    assert "CONSOLE" not in proc.stderr or "Uncaught" not in proc.stderr, proc.stderr[-2000:]
    for i in range(5):  # each chart container got an SVG drawn by vega-embed
        start = dom.find(f'id="chart{i}"')
        nxt = dom.find('id="chart', start + 10)
        seg = dom[start: nxt if nxt > 0 else len(dom)]
        assert start >= 0 and "<svg" in seg and "<path" in seg, f"chart {i} did not render"
