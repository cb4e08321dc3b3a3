"""The HTML report at 1400 px in headless Chromium: a screenshot is taken (for a person to look at)
and the laid-out page is measured: no table and no chart wider than the page, no horizontal
scrolling, no raw column names in the table headers, counts as integers."""
from __future__ import annotations

import html as htmlmod
import json
import re
import shutil
import subprocess

import pytest
from conftest import SAMPLES
from test_charts_report import CHROMIUM_FLAGS

import exitreplay
from exitreplay.report.html import build_html

WIDTH = 1400
FLAGS = [*CHROMIUM_FLAGS, "--hide-scrollbars"]
# Measures the page once every chart is drawn (or after 20 s of virtual time) into <pre id=layout>.
PROBE = r"""<script>
function __measure() {
  const page = document.documentElement.clientWidth;
  const boxes = [...document.querySelectorAll('table, div.chart > svg')].map((el) => {
    const r = el.getBoundingClientRect();
    return {tag: el.tagName, right: Math.ceil(r.right), width: Math.ceil(r.width),
            scroll: el.scrollWidth, client: el.clientWidth};
  });
  const heads = [...document.querySelectorAll('th')].map((th) => th.textContent);
  // Tables with a header row (key-value tables have none).
  const tables = [...document.querySelectorAll('table')].filter((t) => t.querySelector('th')).map(
    (t) => [...t.rows].map((r) => [...r.cells].map((c) => c.textContent)));
  const out = document.createElement('pre');
  out.id = 'layout';
  out.textContent = JSON.stringify({page: page, scrollWidth: document.scrollingElement.scrollWidth,
                                    boxes: boxes, heads: heads, tables: tables});
  document.body.appendChild(out);
}
window.addEventListener('load', () => {
  let waited = 0;
  const tick = () => {
    const divs = [...document.querySelectorAll('div.chart')];
    if (divs.every((d) => d.querySelector(':scope > svg, .chart-error')) || waited >= 20000) { __measure(); return; }
    waited += 100; setTimeout(tick, 100);
  };
  tick();
});
</script>"""


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.skip("chromium not installed (apt-get install chromium)")
    return path


@pytest.fixture(scope="module")
def laid_out(tmp_path_factory):
    exe = chromium()
    tmp = tmp_path_factory.mktemp("layout")
    reports = [exitreplay.analyze(SAMPLES / n) for n in ("svm-idle.v7.dat", "svm-mixed.v7zstd.dat")]
    page = build_html(reports, ["svm-idle.v7.dat", "svm-mixed.v7zstd.dat"])
    path = tmp / "report.html"
    path.write_text(page.replace("<head>", "<head>" + PROBE, 1))
    common = [exe, *FLAGS, f"--window-size={WIDTH},1000", "--virtual-time-budget=30000"]
    dom = subprocess.run([*common, f"--user-data-dir={tmp / 'p1'}", "--dump-dom", path.as_uri()],
                         capture_output=True, text=True, timeout=240)
    shot = tmp / "report.png"
    subprocess.run([*common, f"--user-data-dir={tmp / 'p2'}", f"--screenshot={shot}", path.as_uri()],
                   capture_output=True, text=True, timeout=240)
    m = re.search(r'<pre id="layout">(.*?)</pre>', dom.stdout, re.S)
    assert m, f"the page never finished (chromium exit {dom.returncode})"
    return json.loads(htmlmod.unescape(m.group(1))), shot


def test_screenshot_is_taken(laid_out):
    _, shot = laid_out
    assert shot.exists() and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_nothing_is_wider_than_the_page(laid_out):
    lay, _ = laid_out
    assert lay["page"] <= WIDTH and lay["page"] > 1000
    assert lay["scrollWidth"] <= lay["page"], "the page scrolls sideways"
    assert len(lay["boxes"]) > 10
    for b in lay["boxes"]:
        assert b["right"] <= lay["page"], b
        assert b["scroll"] <= b["client"] + 1, b  # nothing scrolls inside a table either


def test_headers_are_for_people(laid_out):
    lay, _ = laid_out
    raw = [h for h in lay["heads"] if re.search(r"[a-z]_[a-z]", h)]
    assert not raw, raw  # no saved_cycles_low, p50_ns, ...
    assert any("µs" in h for h in lay["heads"]) and any("saved" in h for h in lay["heads"])


COUNT_HEADS = {"exits", "syncs", "VMLOAD", "VMSAVE", "LTR", "WRMSR", "RDMSR", "all avoided"}


def test_counts_are_integers(laid_out):
    lay, _ = laid_out
    seen = 0
    for rows in lay["tables"]:
        head = rows[0]
        for row in rows[1:]:
            for h, c in zip(head, row):
                if h in COUNT_HEADS:
                    seen += 1
                    assert re.fullmatch(r"-?\d{1,3}(,\d{3})*", c), (h, c)
    assert seen > 50
