"""Render a Report as terminal tables, JSON, CSV or Markdown (no analysis here)."""
from __future__ import annotations

import io
import json
from typing import Any

import polars as pl
from rich.console import Console
from rich.table import Table

from .analysis import Report

FORMATS = ("table", "json", "csv", "markdown")
# Rows of the per-vCPU/per-VM-and-reason tables shown on a terminal; json/csv/markdown hold them all.
TABLE_ROWS = 30

OPS_COLUMNS = [
    ("vmload", "VMLOAD"), ("vmsave", "VMSAVE"), ("ltr", "LTR"), ("wrmsr", "WRMSR"), ("rdmsr", "RDMSR"),
    ("seg_reload", "seg"), ("ist_toggle", "IST tog"), ("gsbase", "GS base"),
    ("vmload_vmsave_avoided", "VMLOAD+VMSAVE avoided"),
    ("ops_avoided", "all avoided"),
]
SAVINGS_COLUMNS = [
    ("saved_cycles_low", "saved cyc low"), ("saved_cycles_typical", "typical"), ("saved_cycles_high", "high"),
    ("saved_per_exit_cycles", "per exit"), ("gsbase_cycles_per_exit", "GS switch/exit"),
    ("share_of_exit_time_pct", "% exit time"), ("syncs", "syncs"),
    ("mean_exits_between_syncs", "exits/sync"), ("ist_off_ns", "IST off ms"),
    ("guest_state_live_ns", "guest state live ms"),
]
LATENCY_COLUMNS = [("exits", "exits"), ("exits_pct", "% exits"), ("total_ns", "total ms"), ("time_pct", "% time"),
                   ("mean_ns", "mean µs"), ("p50_ns", "p50 µs"), ("p90_ns", "p90 µs"), ("p99_ns", "p99 µs"),
                   ("max_ns", "max µs")]


def _num(v: Any, col: str) -> str:
    if v is None:
        return "-"
    if col.endswith("_pct"):
        return f"{v:.3g}%" if abs(v) < 0.01 and v != 0 else f"{v:.2f}%"
    if col in ("ist_off_ns", "guest_state_live_ns", "total_ns"):
        return f"{v / 1e6:,.3f}"
    if col.endswith("_ns"):
        return f"{v / 1e3:,.2f}"
    if isinstance(v, float):
        return f"{v:,.0f}" if abs(v) >= 100 or v == int(v) else f"{v:,.2f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def _table(df: pl.DataFrame, cols: list[tuple[str, str]], title: str, keys: list[str] = ()) -> Table:
    t = Table(title=title, title_justify="left")
    cols = [(k, k) for k in keys] + [c for c in cols if c[0] in df.columns]
    for i, (_, head) in enumerate(cols):
        t.add_column(head, justify="left" if i < max(len(keys), 1) else "right")
    for row in df.iter_rows(named=True):
        t.add_row(*[_num(row[k], k) for k, _ in cols])
    return t


def render_table(r: Report, console: Console) -> None:
    s = r.summary
    head = Table(title="capture", show_header=False, title_justify="left")
    head.add_column(style="bold")
    head.add_column()
    for k, v in [("trace", s["path"]), ("format", f"{s['format']}" + (f" v{s['version']}" if s["version"] else "")),
                 ("ISA", (s["isa"] or "unknown").upper()), ("events", f"{s['events']:,}"),
                 ("span", f"{s['span_ns'] / 1e9:.3f} s"), ("exits", f"{s['exits']:,} ({s['timed_exits']:,} timed)"),
                 ("exits/s", _num(s["exits_per_s"], "x")), ("vCPUs / VMs", f"{s['vcpus']} / {s['vms']}"),
                 ("episodes", ", ".join(f"{k} {v:,}" for k, v in s["classes"].items()) or "-"),
                 ("pairing", ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in s["pairing"].items() if v) or "-"),
                 ("sync-point events", ", ".join(f"{k} {v:,}" for k, v in s["sync_events"].items()) or "-"),
                 ("dropped events", ", ".join(f"CPU {k}: {v if v is not None else '?'}"
                                              for k, v in s["dropped_events"].items()) or "none reported"),
                 ("baseline / costs", f"{s['baseline']} / {s['cost_profile']} at {s['cpu_mhz']:g} MHz")]:
        head.add_row(k, str(v))
    console.print(head)
    for w in r.warnings:
        if not w.startswith("fields kept as text"):  # an ingest detail; `exitreplay info` shows it
            console.print(f"[yellow]warning:[/yellow] {w}")
    if r.latency.height:
        console.print(_table(r.latency, LATENCY_COLUMNS, "exit handling time per reason (exit -> entry)", ["reason"]))
    if r.latency_vcpu.height and r.latency_vcpu.height > 1:
        console.print(_table(r.latency_vcpu, LATENCY_COLUMNS, "per vCPU", ["vm", "vcpu"]))
    for df, keys, title in ((r.latency_reason_vm, ["vm", "reason"], "per VM and reason"),
                            (r.latency_reason_vcpu, ["vm", "vcpu", "reason"], "per vCPU and reason")):
        groups = df.select(keys[:-1]).n_unique() if df.height else 0
        if groups > 1:
            shown = df.sort([*keys[:-1], "exits"], descending=[False] * (len(keys) - 1) + [True]).head(TABLE_ROWS)
            more = f" (first {TABLE_ROWS} of {df.height} rows; --format json/csv/markdown for all)" \
                if df.height > TABLE_ROWS else ""
            console.print(_table(shown, LATENCY_COLUMNS, title + more, keys))
    if r.policies.height:
        console.print(_table(r.policies, OPS_COLUMNS, "operations executed per policy", ["policy"]))
        console.print(_table(r.policies, SAVINGS_COLUMNS,
                             f"savings against {s['baseline']} and exposure", ["policy"]))
        if r.sync_causes.height:
            wide = r.sync_causes.pivot(on="cause", index="policy", values="count", aggregate_function="sum")
            console.print(_table(wide.fill_null(0), [(c, c) for c in wide.columns if c != "policy"],
                                 "sync points by cause", ["policy"]))
        console.print(ranking_text(r.sensitivity))
    if r.nested.height:
        console.print(_table(r.nested, [(c, c) for c in r.nested.columns if c != "policy"],
                             "nested: L1 VMLOAD/VMSAVE exits", ["policy"]))


def ranking_text(sens: dict[str, Any]) -> str:
    text = "ranking by cycles saved: " + " > ".join(sens.get("ranking_typical", []))
    if not sens.get("ranking_stable"):
        text += f"  (changes with costs: low {sens.get('ranking_low')}, high {sens.get('ranking_high')})"
    elif sens.get("ranking_robust"):
        text += "  (holds for every cost between the profile's low and high values)"
    else:
        text += "  (the same at all-low and all-high costs"
    swaps = sens.get("pairs_that_can_swap") or []
    if swaps:
        pairs = ", ".join(f"{s['above']}/{s['below']} (driven by {s['driver']})" for s in swaps)
        text += ("; " if sens.get("ranking_stable") else "  ") + f"can swap within the cost ranges: {pairs}"
        if sens.get("ranking_stable"):
            text += ")"
    return text


CSV_TABLES = ("policies", "latency", "latency_vcpu", "latency_vm", "latency_reason_vcpu", "latency_reason_vm",
              "ops", "sync_causes", "savings_by_reason", "savings_by_vcpu", "nested", "costs")


def render(r: Report, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(r.to_dict(), indent=2, default=str)
    if fmt == "csv":
        # One CSV block per table, each after a "# <table>" line and separated by a blank line.
        blocks = [f"# {name}\n" + getattr(r, name).write_csv() for name in CSV_TABLES if getattr(r, name).height]
        return "\n".join(blocks)
    if fmt == "markdown":
        out = [f"# exitreplay: {r.summary['path']}", ""]
        out += [f"- **{k}**: {v}" for k, v in r.summary.items() if k not in ("pairing", "sync_events", "filters")]
        out += ["", "## Warnings", ""] + [f"- {w}" for w in r.warnings] if r.warnings else []
        for name, title in (("policies", "Policies"), ("latency", "Exit handling time per reason"),
                            ("latency_vcpu", "Exit handling time per vCPU"),
                            ("latency_reason_vm", "Exit handling time per VM and reason"),
                            ("latency_reason_vcpu", "Exit handling time per vCPU and reason"),
                            ("sync_causes", "Sync points by cause"), ("nested", "Nested"), ("costs", "Cost model")):
            df = getattr(r, name)
            if df.height:
                out += ["", f"## {title}", "", _markdown(df)]
        if r.sensitivity:
            out += ["", "## Sensitivity to costs", "", ranking_text(r.sensitivity)]
        return "\n".join(out) + "\n"
    if fmt == "table":
        buf = io.StringIO()
        render_table(r, Console(file=buf, width=200, force_terminal=False))
        return buf.getvalue()
    raise ValueError(f"unknown format {fmt!r}")


def _cell(v: Any) -> str:
    """Markdown cells hold the Report's values in the columns' own units (ns, cycles), unrounded
    beyond 10 significant digits, so a reader can take the numbers as they are."""
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.10g}"
    return str(v).replace("|", "\\|")


def _markdown(df: pl.DataFrame) -> str:
    cols = df.columns
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in df.iter_rows():
        lines.append("| " + " | ".join(_cell(v) for v in row) + " |")
    return "\n".join(lines)
