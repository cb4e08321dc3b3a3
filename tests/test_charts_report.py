"""The HTML report: one self-contained file (no network needed) with the capture summary, warnings,
tables and charts; opened in headless Chromium, every chart renders with no console error. The
Chromium check is itself tested: it fails on a report whose Vega does not load or whose spec is bad."""
from __future__ import annotations

import html as htmlmod
import json
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
from conftest import SAMPLES
from test_compare_metrics import A, write_ftrace

import exitreplay
from exitreplay.analysis import analyze
from exitreplay.report.html import build_html

TRACES = ["svm-idle.v7.dat", "svm-mixed.v7zstd.dat"]
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  # Any network request fails (and so shows up as an error) instead of going out.
                  "--host-resolver-rules=MAP * ~NOTFOUND"]
# Injected first into <head>: records page errors, failed loads, console errors and warnings, then
# (once every chart div holds an SVG or an error, or after 20 s of virtual time) writes what each
# chart div contains into <pre id="probe">. Queries run on the live DOM, where the <noscript>
# fallback SVGs are text, so only charts vega-embed drew count.
PROBE = r"""<script>
window.__problems = [];
window.addEventListener('error', (e) => __problems.push('error: ' +
  (e.message || (e.target && (e.target.src || e.target.href)) || String(e))), true);
window.addEventListener('unhandledrejection', (e) => __problems.push('unhandled rejection: ' + e.reason));
for (const level of ['error', 'warn']) {
  const orig = console[level];
  console[level] = (...args) => { __problems.push(level + ': ' + args.join(' ')); orig.apply(console, args); };
}
function __report() {
  const charts = [...document.querySelectorAll('div.chart')].map((d) => ({
    id: d.id, svg: d.querySelectorAll(':scope > svg').length,
    marks: d.querySelectorAll(':scope > svg g.role-mark > *').length,
    failed: d.querySelectorAll('.chart-error').length}));
  const out = document.createElement('pre');
  out.id = 'probe';
  out.textContent = JSON.stringify({problems: __problems, charts: charts});
  document.body.appendChild(out);
}
window.addEventListener('load', () => {
  let waited = 0;
  const tick = () => {
    const divs = [...document.querySelectorAll('div.chart')];
    if (divs.every((d) => d.querySelector(':scope > svg, .chart-error')) || waited >= 20000) { __report(); return; }
    waited += 100;
    setTimeout(tick, 100);
  };
  tick();
});
</script>"""


def chromium_failures(page: str, tmp: Path) -> tuple[list[str], dict]:
    """Open the page in headless Chromium; return (what went wrong, the probe's findings)."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium not installed (apt-get install chromium)")
    tmp.mkdir(parents=True, exist_ok=True)
    path = tmp / "page.html"
    path.write_text(page.replace("<head>", "<head>" + PROBE, 1))
    proc = subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp / 'profile'}",
                           "--virtual-time-budget=30000", "--enable-logging=stderr", "--v=0", "--dump-dom",
                           path.as_uri()], capture_output=True, text=True, timeout=180)
    m = re.search(r'<pre id="probe">(.*?)</pre>', proc.stdout, re.S)
    if m is None:
        return [f"the page never finished (chromium exit {proc.returncode})"], {}
    found = json.loads(htmlmod.unescape(m.group(1)))
    failures = list(found["problems"])
    failures += [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]
    if not found["charts"]:
        failures.append("no chart containers")
    for c in found["charts"]:
        if c["failed"] or not c["svg"] or c["marks"] == 0:
            failures.append(f"{c['id']} did not render: {c}")
    return failures, found


@pytest.fixture(scope="module")
def reports():
    return [analyze(exitreplay.read_trace(SAMPLES / n)) for n in TRACES]


@pytest.fixture(scope="module")
def page(reports):
    return build_html(reports, TRACES)


class Refs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[tuple[str, str, str]] = []
        self.tags: list[str] = []
        self.styles: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self._in_style = tag == "style"
        for k, v in attrs:
            if k in ("src", "href", "xlink:href", "data", "action", "poster", "srcset") and v:
                self.refs.append((tag, k, v))

    def handle_data(self, data):
        if self._in_style:
            self.styles.append(data)

    def handle_endtag(self, tag):
        self._in_style = False


def test_report_is_self_contained(page):
    p = Refs()
    p.feed(page)
    external = [r for r in p.refs if re.match(r"(?i)\s*(https?:|ftp:|//)", r[2])]
    assert not external, external[:5]
    assert "link" not in p.tags and "iframe" not in p.tags
    assert not re.search(r"<script[^>]*\bsrc=", page)
    assert not any(re.search(r"@import|url\(", s) for s in p.styles)
    module = re.search(r'<script type="module">(.*?)</script>', page, re.S).group(1)
    assert len(module) > 300_000  # Vega, Vega-Lite and vega-embed themselves, inline


def test_report_content(page, reports):
    for lab, r in zip(TRACES, reports):
        assert f"<h2>{lab}</h2>" in page
        assert f"{r.summary['events']:,}" in page  # capture summary
        for reason in r.latency["reason"].to_list():
            assert f"<td class=key>{reason}</td>" in page
        for pol in r.policies["policy"].to_list():
            assert f"<td class=key>{pol}</td>" in page or f"<td class=key>{pol}<br>" in page
    assert "comparison (reference: svm-idle.v7.dat)" in page and "svm-mixed.v7zstd.dat against svm-idle.v7.dat" in page
    assert "cost profile zen" in page and "Xen" in page  # the SVM default profile and the costs' sources
    # One container per chart and one spec for each: 5 per trace, 3 comparing them.
    assert page.count('<div class="chart" id="chart') == 2 * 5 + 3
    assert len(re.findall(r'<script type="application/json" id="spec\d+">', page)) == 2 * 5 + 3


def test_report_lists_warnings(tmp_path):
    write_ftrace(tmp_path / "hand.txt", A)
    r = analyze(str(tmp_path / "hand.txt"))
    assert r.warnings
    page = build_html([r], ["hand"])
    for w in r.warnings:
        assert f"<p class=warn>warning: {htmlmod.escape(w)}</p>" in page


def test_report_command(tmp_path):
    out = tmp_path / "r.html"
    env = {"PATH": "/usr/bin:/bin", "EXITREPLAY_CACHE": str(tmp_path / "c")}
    p = subprocess.run([sys.executable, "-m", "exitreplay", "report", str(SAMPLES / TRACES[0]), "-o", str(out)],
                       capture_output=True, text=True, env=env)
    assert p.returncode == 0, p.stderr
    assert out.read_text().startswith("<!doctype html>") and "wrote" in p.stdout
    bad = subprocess.run([sys.executable, "-m", "exitreplay", "report", str(tmp_path / "nope.dat"), "-o", str(out)],
                         capture_output=True, text=True, env=env)
    assert bad.returncode == 2 and "nope.dat" in bad.stderr and "Traceback" not in bad.stderr


def test_report_renders_in_headless_chromium(page, tmp_path):
    failures, found = chromium_failures(page, tmp_path)
    assert not failures, failures[:10]
    assert len(found["charts"]) == 2 * 5 + 3


def test_the_chromium_check_catches_a_broken_report(reports, tmp_path):
    """Without this, a check that passes whatever happens would look the same as a working report."""
    page = build_html(reports[:1], TRACES[:1])
    start = page.index('<script type="module">') + len('<script type="module">')
    no_vega = page[:start] + "throw new Error('vega failed to load');" + page[start:]
    failures, _ = chromium_failures(no_vega, tmp_path / "no-vega")
    assert any("vega failed to load" in f for f in failures)
    assert any("did not render" in f for f in failures)
    no_script = re.sub(r'<script type="module">.*?</script>', "", page, flags=re.S)
    failures, _ = chromium_failures(no_script, tmp_path / "no-script")
    assert sum("did not render" in f for f in failures) == 5
    bad_spec = page.replace('"mark": {"type": "bar"', '"mark": {"type": "no-such-mark"', 1)
    assert bad_spec != page
    failures, _ = chromium_failures(bad_spec, tmp_path / "bad-spec")
    assert any("failed" in f for f in failures)
