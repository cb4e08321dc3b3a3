"""The self-contained HTML report: summary, warnings, tables and interactive charts in one file.

Vega, Vega-Lite and vega-embed are inlined (vl-convert's bundle), so the file opens with no
network. Each chart is also inlined as a static SVG fallback inside <noscript>.
"""
from __future__ import annotations

import html
import json
import os

import polars as pl
import vl_convert as vlc

from ..analysis import Report
from . import charts

STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1150px;color:#222}
h1{font-size:22px}h2{font-size:18px;margin-top:32px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:8px 0;font-size:12.5px}td,th{border:1px solid #ddd;padding:3px 7px;text-align:right}
td:first-child,th:first-child{text-align:left}.warn{color:#8a5a00}.chart{margin:16px 0}
"""
CHART_KINDS = ("reasons", "latency", "ops", "timeline", "window")


def _table(df: pl.DataFrame, cols: list[str] | None = None, limit: int = 40) -> str:
    if df.height == 0:
        return "<p>(none)</p>"
    cols = [c for c in (cols or df.columns) if c in df.columns]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    rows = []
    for row in df.select(cols).head(limit).iter_rows():
        cells = []
        for v in row:
            if isinstance(v, float):
                v = f"{v:,.2f}" if abs(v) < 1e6 else f"{v:,.0f}"
            elif isinstance(v, int):
                v = f"{v:,}"
            cells.append(f"<td>{html.escape(str(v))}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    more = f"<p>{df.height - limit} more rows not shown</p>" if df.height > limit else ""
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>{more}"


def build_html(reports: list[Report], labels: list[str] | None = None) -> str:
    labels = labels or [os.path.basename(r.summary.get("path") or "trace") for r in reports]
    specs: list[dict] = []
    body = [f"<h1>exitreplay report: {html.escape(', '.join(labels))}</h1>"]
    for lab, r in zip(labels, reports):
        s = r.summary
        body.append(f"<h2>{html.escape(lab)}</h2>")
        facts = {k: s[k] for k in ("path", "format", "version", "compression", "clock", "cpus", "isa", "events",
                                   "exits", "timed_exits", "exits_per_s", "vcpus", "vms", "baseline",
                                   "cost_profile", "cpu_mhz")}
        facts["span (s)"] = s["span_ns"] / 1e9
        body.append(_table(pl.DataFrame({"item": list(facts), "value": [str(v) for v in facts.values()]})))
        body.append("<h3>pairing and sync-point events</h3>" + _table(pl.DataFrame(
            {"count": list(s["pairing"]) + list(s["sync_events"]),
             "value": list(s["pairing"].values()) + list(s["sync_events"].values())})))
        if r.warnings:
            body.append("<ul>" + "".join(f"<li class=warn>{html.escape(w)}</li>" for w in r.warnings) + "</ul>")
        body.append("<h3>exit handling time per reason</h3>" + _table(r.latency))
        body.append("<h3>policies</h3>" + _table(r.policies, [
            "policy", "vmload", "vmsave", "ltr", "wrmsr", "rdmsr", "vmload_vmsave_avoided", "saved_cycles_low",
            "saved_cycles_typical", "saved_cycles_high", "share_of_exit_time_pct", "syncs",
            "mean_exits_between_syncs", "ist_off_ns", "guest_state_live_ns"]))
        if r.nested.height:
            body.append("<h3>nested</h3>" + _table(r.nested))
        for kind in CHART_KINDS:
            if r.episodes.height == 0:
                break
            spec = charts.chart(kind, [r], [lab]).to_dict(validate=True)
            i = len(specs)
            specs.append(spec)
            svg = vlc.vegalite_to_svg(spec)
            body.append(f'<div class="chart" id="chart{i}"><noscript>{svg}</noscript></div>')
    body.append("<h2>cost model</h2>" + _table(reports[0].costs))
    snippet = "".join(f"vegaEmbed('#chart{i}', {json.dumps(spec)}, {{actions: false, renderer: 'svg'}});\n"
                      for i, spec in enumerate(specs))
    bundle = vlc.javascript_bundle(snippet) if specs else ""
    script = f'<script type="module">{bundle}</script>' if specs else ""
    return (f"<!doctype html><html><head><meta charset=utf-8><title>exitreplay report</title>"
            f"<style>{STYLE}</style></head><body>{''.join(body)}{script}</body></html>")


def write_report(reports: list[Report], path: str | os.PathLike, labels: list[str] | None = None) -> None:
    with open(path, "w") as fh:
        fh.write(build_html(reports, labels))
