"""A Comparison as tables: the terminal and Markdown show the same rows (headline metrics, savings
per policy, exposure, deltas); JSON, CSV and Parquet carry every metric."""
from __future__ import annotations

import polars as pl

from ..compare import REASON_METRICS, Comparison, TraceResult

TOP_REASONS = 3  # reasons named in the headline table
DELTA_REASONS = 5  # reasons whose deltas the tables show (every one is in JSON/CSV/Parquet)
HEADLINE = [("exits", "exits"), ("exits_per_s", "exits/s"), ("p50_ns", "p50 µs"), ("p90_ns", "p90 µs"),
            ("p99_ns", "p99 µs"), ("mean_ns", "mean µs")]
TEXT_COLUMNS = ("trace", "metric", "commonest reasons")
DELTA_HEAD = ("exits", "exits_per_s", "p50_ns", "p90_ns", "p99_ns", "mean_ns")


def fmt(metric: str, v) -> str:
    """A metric's value in its display unit: latencies in µs, exposure in ms, shares in %."""
    if v is None:
        return "-"
    unit = _unit_key(metric)
    if unit in ("p50_ns", "p90_ns", "p99_ns", "mean_ns"):
        return f"{v / 1e3:,.2f}"
    if unit.endswith("_ns"):
        return f"{v / 1e6:,.3f}"
    if unit in ("share", "share_of_exit_time_pct"):
        return f"{v:.2f}%"
    if isinstance(v, float) and v != int(v):
        return f"{v:,.2f}" if abs(v) < 100 else f"{v:,.0f}"
    return f"{int(v):,}"


def _unit_key(metric: str) -> str:
    """`p99_ns:hlt` -> p99_ns, `ist-off:ist_off_ns` -> ist_off_ns, `exits_per_s` -> exits_per_s."""
    head, _, tail = metric.partition(":")
    return head if not tail or head in REASON_METRICS else tail


def unit_of(metric: str) -> str:
    key = _unit_key(metric)
    if key in ("p50_ns", "p90_ns", "p99_ns", "mean_ns"):
        return "µs"
    if key.endswith("_ns"):
        return "ms"
    return "%" if key in ("share", "share_of_exit_time_pct") else ""


def _ok(cmp: Comparison) -> list[TraceResult]:
    return [r for r in cmp.results if not r.error]


def _policies(cmp: Comparison) -> tuple[list[str], list[str]]:
    """(policies other than a baseline, in first-seen order; the baselines)."""
    pols, bases = [], []
    for r in _ok(cmp):
        for p in r.policies:
            target = bases if p.get("baseline") else pols
            if p["policy"] not in target:
                target.append(p["policy"])
    return [p for p in pols if p not in bases], bases


def headline(cmp: Comparison) -> tuple[list[str], list[list[str]]]:
    head = ["trace"] + [h for _, h in HEADLINE] + ["commonest reasons"]
    rows = []
    for r in _ok(cmp):
        total = sum(r.reasons.values()) or 1
        top = sorted(r.reasons.items(), key=lambda kv: -kv[1])[:TOP_REASONS]
        mix = ", ".join(f"{k} {n / total * 100:.0f}%" for k, n in top)
        ref = " (reference)" if r.label == cmp.reference else ""
        rows.append([r.label + ref] + [fmt(m, r.metrics.get(m)) for m, _ in HEADLINE] + [mix])
    return head, rows


def savings(cmp: Comparison) -> tuple[list[str], list[list[str]]]:
    """Cycles saved per policy (typical, with the low..high range), in millions."""
    pols, _ = _policies(cmp)
    rows = []
    for r in _ok(cmp):
        row = [r.label]
        for p in pols:
            t, lo, hi = (r.metrics.get(f"{p}:{k}") for k in ("saved_cycles", "saved_cycles_low", "saved_cycles_high"))
            row.append("-" if t is None else f"{t / 1e6:,.3f} ({lo / 1e6:,.3f}..{hi / 1e6:,.3f})")
        rows.append(row)
    return ["trace"] + pols, rows


def exposure(cmp: Comparison) -> tuple[list[str], list[list[str]]]:
    """IST-off / guest-state-live time per policy (ms) and exits per sync."""
    pols, _ = _policies(cmp)
    rows = []
    for r in _ok(cmp):
        row = [r.label]
        for p in pols:
            ist, live, per = (r.metrics.get(f"{p}:{k}") for k in ("ist_off_ns", "guest_state_live_ns", "exits_per_sync"))
            row.append("-" if ist is None else f"{fmt('ist_off_ns', ist)} / {fmt('ist_off_ns', live)} / "
                       f"{fmt('x', per)}")
        rows.append(row)
    return ["trace"] + pols, rows


def delta_metrics(cmp: Comparison) -> list[str]:
    ref = next(r for r in cmp.results if r.label == cmp.reference)
    reasons: list[str] = []
    for r in [ref, *_ok(cmp)]:
        for k, _ in sorted(r.reasons.items(), key=lambda kv: -kv[1])[:DELTA_REASONS]:
            if k not in reasons:
                reasons.append(k)
    pols, _ = _policies(cmp)
    return [*DELTA_HEAD, *[f"{m}:{k}" for k in reasons for m in ("exits", "share", "p50_ns", "p99_ns")],
            *[f"{p}:saved_cycles" for p in pols]]


def deltas(cmp: Comparison) -> tuple[list[str], list[list[str]]]:
    head = ["trace", "metric", "value", "reference", "change", "change %", "p (Mann-Whitney)", "P(slower)"]
    wanted = delta_metrics(cmp)
    d = cmp.deltas.filter(pl.col("metric").is_in(wanted))
    if d.height == 0:
        return head, []
    rank = {m: i for i, m in enumerate(wanted)}
    d = d.with_columns(pl.col("metric").replace_strict(rank, default=len(rank)).alias("_o"))
    labels = {r.label: i for i, r in enumerate(cmp.results)}
    d = d.with_columns(pl.col("label").replace_strict(labels, default=0).alias("_l")).sort("_l", "_o")
    rows = []
    for row in d.iter_rows(named=True):
        m = row["metric"]
        if row["value"] == 0 and row["ref"] == 0:  # a reason neither trace has: nothing to say
            continue
        u = unit_of(m)
        if row["abs"] is None:
            change = "-"
        elif u == "%":  # a difference of two shares is in percentage points, not percent
            change = f"{row['abs']:+.2f} pp"
        else:
            change = ("+" if row["abs"] > 0 else "") + fmt(m, row["abs"])
        rows.append([row["label"], m + (f" ({u})" if u else ""), fmt(m, row["value"]), fmt(m, row["ref"]), change,
                     "-" if row["rel"] is None else f"{row['rel'] * 100:+.1f}%",
                     "-" if row["p_value"] is None else f"{row['p_value']:.3g}",
                     "-" if row["p_slower"] is None else f"{row['p_slower']:.2f}"])
    return head, rows


def sections(cmp: Comparison) -> list[tuple[str, tuple[list[str], list[list[str]]]]]:
    _, bases = _policies(cmp)
    against = ", ".join(bases) or "the baseline"
    return [
        (f"traces (reference: {cmp.reference})", headline(cmp)),
        (f"cycles saved against {against} (millions, typical (low..high))", savings(cmp)),
        ("exposure: IST off ms / guest state live ms / exits per sync", exposure(cmp)),
        (f"deltas against {cmp.reference}", deltas(cmp)),
    ]


def markdown(cmp: Comparison) -> str:
    out = [f"# exitreplay compare: {len(_ok(cmp))} traces, reference {cmp.reference}", ""]
    for title, (head, rows) in sections(cmp):
        if not rows:
            continue
        out += [f"## {title[0].upper() + title[1:]}", "", "| " + " | ".join(head) + " |",
                "|" + "|".join("---" if h in TEXT_COLUMNS else "---:" for h in head) + "|"]
        out += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
        out.append("")
    if cmp.errors:
        out += ["## Errors", ""] + [f"- {e}" for e in cmp.errors] + [""]
    if cmp.gate_failures:
        out += ["## Gate failures", ""] + [f"- {g}" for g in cmp.gate_failures] + [""]
    return "\n".join(out)


def print_tables(cmp: Comparison, console) -> None:
    from rich.table import Table

    for title, (head, rows) in sections(cmp):
        if not rows:
            continue
        t = Table(title=title, title_justify="left")
        for h in head:
            t.add_column(h, justify="left" if h in TEXT_COLUMNS else "right")
        for row in rows:
            t.add_row(*row)
        console.print(t)
