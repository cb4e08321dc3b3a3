"""The self-contained HTML report: summary, warnings, tables and interactive charts in one file.

Vega, Vega-Lite and vega-embed are inlined (vl-convert's bundle), so the file opens with no
network. Each chart is also inlined as a static SVG inside <noscript>, for readers that block
scripts (mail clients, some bug trackers).
"""
from __future__ import annotations

import html
import json
import os

import polars as pl

from .. import __version__
from ..analysis import Report
from . import charts, compare_tables
from .export import spec_of, svg_of

STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:1200px;color:#222;padding:0 16px}
h1{font-size:22px}h2{font-size:18px;margin-top:36px;border-bottom:1px solid #ddd}h3{font-size:15px;margin-top:22px}
table{border-collapse:collapse;margin:8px 0;font-size:12.5px;display:block;max-width:100%;overflow-x:auto}
td,th{border:1px solid #ddd;padding:3px 7px;text-align:right}td:first-child,th:first-child{text-align:left}
th{background:#f6f6f6}.warn{color:#8a5a00}.chart{margin:18px 0}.meta{color:#666}
.chart-error{color:#b00;font-weight:bold}
"""
LIMIT = 40  # table rows shown; the JSON output has them all
MS_COLUMNS = {"total_ns", "exit_ns", "ist_off_ns", "guest_state_live_ns", "saved_ns_typical", "exit_time_ns",
              "measured_ns_removed", "measured_ns_total"}


def _cell(col: str, v) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else ""
    if isinstance(v, (int, float)) and col.endswith("_ns"):
        return f"{v / 1e6:,.3f}" if col in MS_COLUMNS else f"{v / 1e3:,.2f}"
    if isinstance(v, float):
        return f"{v:,.2f}" if abs(v) < 1e6 else f"{v:,.0f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def _head(col: str) -> str:
    if col.endswith("_ns"):
        return col[:-3] + (" (ms)" if col in MS_COLUMNS else " (µs)")
    return col.replace("_pct", " (%)")


def table(df: pl.DataFrame, cols: list[str] | None = None) -> str:
    if df.height == 0:
        return "<p>(none)</p>"
    cols = [c for c in (cols or df.columns) if c in df.columns]
    head = "".join(f"<th>{html.escape(_head(c))}</th>" for c in cols)
    rows = ["<tr>" + "".join(f"<td>{html.escape(_cell(c, v))}</td>" for c, v in zip(cols, row)) + "</tr>"
            for row in df.select(cols).head(LIMIT).iter_rows()]
    more = f"<p>{df.height - LIMIT} more rows not shown (see --format json)</p>" if df.height > LIMIT else ""
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>{more}"


def _rows(head: list[str], rows: list[list[str]]) -> str:
    if not rows:
        return "<p>(none)</p>"
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{th}</tr>{body}</table>"


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


def _capture(r: Report) -> str:
    s = r.summary
    facts = [("trace", s["path"]), ("format", f"{s['format']}" + (f" v{s['version']}" if s["version"] else "")),
             ("compression", s["compression"] or "none"), ("clock", s["clock"] or "-"), ("CPUs", s["cpus"]),
             ("ISA", (s["isa"] or "unknown").upper()), ("events", f"{s['events']:,}"),
             ("span", f"{s['span_ns'] / 1e9:.3f} s"), ("exits", f"{s['exits']:,} ({s['timed_exits']:,} timed)"),
             ("exits/s", _cell("x", s["exits_per_s"])), ("vCPUs / VMs", f"{s['vcpus']} / {s['vms']}"),
             ("episodes", ", ".join(f"{k} {v:,}" for k, v in s["classes"].items()) or "-"),
             ("pairing", ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in s["pairing"].items() if v) or "-"),
             ("sync-point events", ", ".join(f"{k} {v:,}" for k, v in s["sync_events"].items()) or "-"),
             ("dropped events", ", ".join(f"CPU {k}: {v if v is not None else '?'}"
                                          for k, v in s["dropped_events"].items()) or "none reported"),
             ("baseline / costs", f"{s['baseline']} / {s['cost_profile']} at {s['cpu_mhz']:g} MHz")]
    return _rows(["item", "value"], [[k, str(v)] for k, v in facts])


def _trace_section(lab: str, r: Report, ch: _Charts) -> list[str]:
    out = [f"<h2>{html.escape(lab)}</h2>", "<h3>capture</h3>", _capture(r), "<h3>warnings</h3>"]
    out.append("<ul>" + "".join(f"<li class=warn>{html.escape(w)}</li>" for w in r.warnings) + "</ul>"
               if r.warnings else "<p>none</p>")
    out += ["<h3>exit handling time per reason (kvm_exit -> kvm_entry)</h3>", table(r.latency, [
        "reason", "exits", "exits_pct", "total_ns", "time_pct", "mean_ns", "p50_ns", "p90_ns", "p99_ns", "max_ns"])]
    if r.policies.height:
        base = r.summary["baseline"]
        out += ["<h3>operations executed per policy</h3>", table(r.policies, [
            "policy", "vmload", "vmsave", "ltr", "wrmsr", "rdmsr", "seg_reload", "ist_toggle",
            "vmload_vmsave_avoided", "ops_avoided"]),
            f"<h3>savings against {html.escape(base)} and exposure</h3>", table(r.policies, [
                "policy", "saved_cycles_low", "saved_cycles_typical", "saved_cycles_high", "saved_per_exit_cycles",
                "share_of_exit_time_pct", "syncs", "mean_exits_between_syncs", "ist_off_ns", "guest_state_live_ns"])]
        sens = r.sensitivity
        out.append("<p>ranking by cycles saved: " + html.escape(" > ".join(sens.get("ranking_typical", []))) +
                   (" (the same at low and high costs)</p>" if sens.get("ranking_stable") else
                    f" (changes with costs: low {html.escape(str(sens.get('ranking_low')))}, high "
                    f"{html.escape(str(sens.get('ranking_high')))})</p>"))
    if r.sync_causes.height:
        wide = r.sync_causes.pivot(on="cause", index="policy", values="count", aggregate_function="sum").fill_null(0)
        out += ["<h3>sync points by cause</h3>", table(wide)]
    if r.nested.height:
        out += ["<h3>nested: L1 VMLOAD/VMSAVE exits</h3>", table(r.nested)]
    if r.episodes.height:
        out.append("<h3>charts</h3>")
        out += [ch.add(charts.chart(kind, [r], [lab]), kind) for kind in charts.TRACE_KINDS]
    return out


def _comparison_section(reports: list[Report], labels: list[str], ch: _Charts) -> list[str]:
    from ..compare import summarize, tabulate

    cmp = tabulate([summarize(r, lab, r.summary.get("path") or lab) for lab, r in zip(labels, reports)])
    out = [f"<h2>comparison (reference: {html.escape(cmp.reference)})</h2>"]
    for title, (head, rows) in compare_tables.sections(cmp):
        out += [f"<h3>{html.escape(title)}</h3>", _rows(head, rows)]
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
    body += ["<h2>cost model (cycles per operation)</h2>", table(reports[0].costs)]
    return (f"<!doctype html><html><head><meta charset=utf-8><title>exitreplay report: "
            f"{html.escape(', '.join(labels))}</title><style>{STYLE}</style></head><body>{''.join(body)}"
            f"{ch.script()}</body></html>")


def write_report(reports: list[Report], path: str | os.PathLike, labels: list[str] | None = None) -> None:
    with open(path, "w") as fh:
        fh.write(build_html(reports, labels))
