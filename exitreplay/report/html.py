"""The self-contained HTML report: summary, warnings, tables and interactive charts in one file.

Vega, Vega-Lite and vega-embed are inlined (vl-convert's bundle), so the file opens with no
network. Each chart is also inlined as a static SVG inside <noscript>, for readers that block
scripts (mail clients, some bug trackers).
"""
from __future__ import annotations

import html
import json
import os

from .. import __version__
from ..analysis import Report
from . import charts, compare_tables
from .export import spec_of, svg_of

STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1200px;color:#222;padding:0 16px}
h1{font-size:22px}h2{font-size:18px;margin-top:36px;border-bottom:1px solid #ddd}h3{font-size:15px;margin-top:22px}
table{border-collapse:collapse;margin:8px 0;font-size:12.5px;max-width:100%}
td,th{border:1px solid #ddd;padding:3px 7px;text-align:right;overflow-wrap:anywhere;vertical-align:top}
td.key,th.key{text-align:left}th{font-weight:600}
th{background:#f6f6f6}.warn{color:#8a5a00}.chart{margin:18px 0}.meta{color:#666}
.chart-error{color:#b00;font-weight:bold}
"""
LIMIT = 40  # table rows shown; the JSON output has them all
def _json_in_html(obj) -> str:
    return json.dumps(obj).replace("<", "\\u003c")


class _Charts:
    """Collects chart specs; each becomes a div that vega-embed fills, with an SVG <noscript> fallback."""

    def __init__(self) -> None:
        self.specs: list[dict] = []

    def add(self, chart, what: str = "chart") -> str:
        spec = spec_of(chart)
        if charts.data_rows(spec) == 0:  # e.g. the window chart when no policy defers
            return f"<p>(no data for the {html.escape(what)} chart)</p>"
        i = len(self.specs)
        self.specs.append(spec)
        return f'<div class="chart" id="chart{i}"><noscript>{svg_of(spec)}</noscript></div>'

    def script(self) -> str:
        if not self.specs:
            return ""
        import vl_convert as vlc

        # Specs sit in JSON script blocks ("<" escaped, so no label can close the tag early).
        blocks = "".join(f'<script type="application/json" id="spec{i}">{_json_in_html(s)}</script>'
                         for i, s in enumerate(self.specs))
        snippet = (
            f"for (let i = 0; i < {len(self.specs)}; i++) {{\n"
            "  const el = document.getElementById('chart' + i);\n"
            "  const spec = JSON.parse(document.getElementById('spec' + i).textContent);\n"
            "  vegaEmbed(el, spec, {actions: false, renderer: 'svg'}).catch((err) => {\n"
            "    console.error('chart ' + i + ' failed: ' + err);\n"
            "    el.insertAdjacentHTML('beforeend', '<p class=\"chart-error\">chart failed to render</p>');\n"
            "  });\n"
            "}\n")
        return f'{blocks}<script type="module">{vlc.javascript_bundle(snippet)}</script>'


def section_html(it) -> str:
    """A render.Section or Para as HTML: the terminal's headings, units and formatted numbers."""
    from ..render import Para

    if isinstance(it, Para):
        cls = " class=warn" if it.kind == "warning" else ""
        return f"<p{cls}>{'warning: ' if it.kind == 'warning' else ''}{html.escape(it.text)}</p>"
    kv = it.head == ["", ""]
    head = "" if kv else "<tr>" + "".join(
        f"<th{' class=key' if i < it.keys else ''}>{'<br>'.join(map(html.escape, h.split(chr(10))))}</th>"
        for i, h in enumerate(it.head)) + "</tr>"
    body = "".join("<tr>" + "".join(
        f"<td{' class=key' if kv or i < it.keys else ''}>{'<br>'.join(map(html.escape, c.split(chr(10))))}</td>"
        for i, c in enumerate(row)) + "</tr>" for row in it.rows[:LIMIT])
    more = f"<p class=meta>{len(it.rows) - LIMIT} more rows: see --format json</p>" if len(it.rows) > LIMIT else ""
    note = f"<p class=meta>{html.escape(it.note)}</p>" if it.note else ""
    return f"<h3>{html.escape(it.title)}</h3><table>{head}{body}</table>{note}{more}"


def _trace_section(lab: str, r: Report, ch: _Charts) -> list[str]:
    from ..render import sections

    out = [f"<h2>{html.escape(lab)}</h2>"]
    out += [section_html(it) for it in sections(r, mode="detail")]
    if r.episodes.height:
        out.append("<h3>charts</h3>")
        out += [ch.add(charts.chart(kind, [r], [lab]), kind) for kind in charts.TRACE_KINDS]
    return out


def _comparison_section(reports: list[Report], labels: list[str], ch: _Charts) -> list[str]:
    from ..compare import summarize, tabulate

    cmp = tabulate([summarize(r, lab, r.summary.get("path") or lab) for lab, r in zip(labels, reports)])
    out = [f"<h2>comparison (reference: {html.escape(cmp.reference)})</h2>"]
    out += [section_html(it) for it in compare_tables.render_sections(cmp)]
    out += [ch.add(charts.mix(cmp)), ch.add(charts.savings(cmp))]
    if cmp.deltas.height:
        out.append(ch.add(charts.deltas(cmp.deltas, cmp.reference)))
    return out


def build_html(reports: list[Report], labels: list[str] | None = None) -> str:
    labels = labels or [os.path.basename(r.summary.get("path") or "trace") for r in reports]
    ch = _Charts()
    body = [f"<h1>exitreplay report: {html.escape(', '.join(labels))}</h1>",
            (f"<p class=meta>exitreplay {__version__}. Every chart is interactive: hover for values, click a "
             "legend entry to show only it (shift-click for several, double-click to reset).</p>")]
    if len(reports) > 1 and sum(1 for r in reports if r.episodes.height) > 1:
        body += _comparison_section([r for r in reports if r.episodes.height],
                                    [lab for lab, r in zip(labels, reports) if r.episodes.height], ch)
    for lab, r in zip(labels, reports):
        body += _trace_section(lab, r, ch)
    return (f"<!doctype html><html><head><meta charset=utf-8><title>exitreplay report: "
            f"{html.escape(', '.join(labels))}</title><style>{STYLE}</style></head><body>{''.join(body)}"
            f"{ch.script()}</body></html>")


def write_report(reports: list[Report], path: str | os.PathLike, labels: list[str] | None = None) -> None:
    with open(path, "w") as fh:
        fh.write(build_html(reports, labels))
