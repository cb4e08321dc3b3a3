"""A Comparison as tables: the terminal and Markdown show the same rows (headline metrics, savings
per policy, exposure, deltas); JSON, CSV and Parquet carry every metric."""
from __future__ import annotations

import polars as pl

from ..compare import REASON_METRICS, Comparison, TraceResult
from ..render import num  # noqa: E402 - render imports no compare module

TOP_REASONS = 3  # reasons named in the headline table
DELTA_REASONS = 5  # reasons whose deltas the tables show (every one is in JSON/CSV/Parquet)
HEADLINE = [("exits", "exits"), ("exits_per_s", "exits/s"), ("p50_ns", "p50 µs"), ("p90_ns", "p90 µs"),
            ("p99_ns", "p99 µs"), ("mean_ns", "mean µs")]
TEXT_COLUMNS = ("trace", "metric", "commonest reasons", "test")
DELTA_HEAD = ("exits_per_s", "p50_ns", "p90_ns", "p99_ns", "mean_ns")
# Display name and unit of each metric kind (the part after the policy or before the reason).
METRIC_TEXT = {"exits": ("exits", ""), "exits_per_s": ("exits/s", ""), "share": ("share", "%"),
               "p50_ns": ("p50", "µs"), "p90_ns": ("p90", "µs"), "p99_ns": ("p99", "µs"), "mean_ns": ("mean", "µs"),
               "events": ("events", ""), "exit_time_ns": ("exit time", "ms"),
               "saved_us_per_s": ("saved", "µs/s"), "saved_us_per_s_low": ("saved low", "µs/s"),
               "saved_us_per_s_high": ("saved high", "µs/s"), "saved_cpu_pct": ("saved", "% of a CPU"),
               "saved_cycles_per_exit": ("saved", "cycles/exit"), "saved_cycles": ("saved", "cycles"),
               "saved_cycles_low": ("saved low", "cycles"), "saved_cycles_high": ("saved high", "cycles"),
               "syncs_per_s": ("syncs", "/s"), "ist_off_pct": ("IST off", "% host"),
               "guest_state_live_pct": ("guest live", "% host"), "ist_off_ns": ("IST off", "ms"),
               "guest_state_live_ns": ("guest live", "ms"), "share_of_exit_time_pct": ("share of exit time", "%")}
PCT_UNITS = ("%", "% host", "% of a CPU")


def _unit_key(metric: str) -> str:
    """`p99_ns:hlt` -> p99_ns, `ist-off:ist_off_ns` -> ist_off_ns, `exits_per_s` -> exits_per_s."""
    head, _, tail = metric.partition(":")
    return head if not tail or head in REASON_METRICS else tail


def unit_of(metric: str) -> str:
    return METRIC_TEXT.get(_unit_key(metric), ("", ""))[1]


def label(metric: str) -> str:
    """A metric as people read it, its unit once: `p50_ns:hlt` -> "hlt p50 (µs)"."""
    head, _, tail = metric.partition(":")
    key = _unit_key(metric)
    name, unit = METRIC_TEXT.get(key, (key.replace("_", " "), ""))
    who = tail if head in REASON_METRICS and tail else head if tail else ""
    return " ".join(filter(None, [who, name])) + (f" ({unit})" if unit else "")


def fmt(metric: str, v) -> str:
    """A metric's value in its display unit: latencies in µs, exposure in ms, shares in %."""
    if v is None:
        return "-"
    unit = unit_of(metric)
    if unit == "µs":
        return num(v / 1e3)
    if unit == "ms":
        return num(v / 1e6)
    if unit in PCT_UNITS:
        return f"{num(v)}%"
    if isinstance(v, float) and v != int(v):
        return num(v)
    return f"{int(v):,}"


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


def policies(cmp: Comparison) -> tuple[list[str], list[list[str]]]:
    """Per trace and policy, in analyze's units: the saving per second of trace (and its range),
    % of a CPU, cycles per exit, the exposure as shares of host time, syncs per second."""
    pols, _ = _policies(cmp)
    head = ["policy", "trace", "saved µs/s", "low..high µs/s", "% of a CPU", "cycles /exit", "IST off % host",
            "guest live % host", "syncs /s"]
    rows = []
    for p in pols:
        for r in _ok(cmp):
            m = {k: r.metrics.get(f"{p}:{k}") for k in ("saved_us_per_s", "saved_us_per_s_low", "saved_us_per_s_high",
                                                        "saved_cpu_pct", "saved_cycles_per_exit", "ist_off_pct",
                                                        "guest_state_live_pct", "syncs_per_s")}
            if m["saved_us_per_s"] is None:
                continue
            rows.append([p, r.label, num(m["saved_us_per_s"]), f"{num(m['saved_us_per_s_low'])}..{num(m['saved_us_per_s_high'])}",
                         f"{num(m['saved_cpu_pct'])}%", num(m["saved_cycles_per_exit"]), f"{num(m['ist_off_pct'])}%",
                         f"{num(m['guest_state_live_pct'])}%", num(m["syncs_per_s"])])
    return head, rows


def delta_metrics(cmp: Comparison) -> list[str]:
    ref = next(r for r in cmp.results if r.label == cmp.reference)
    reasons: list[str] = []
    for r in [ref, *_ok(cmp)]:
        for k, _ in sorted(r.reasons.items(), key=lambda kv: -kv[1])[:DELTA_REASONS]:
            if k not in reasons:
                reasons.append(k)
    pols, _ = _policies(cmp)
    return [*DELTA_HEAD, *[f"{m}:{k}" for k in reasons for m in ("exits_per_s", "share", "p50_ns", "p99_ns")],
            *[f"{p}:{m}" for p in pols for m in ("saved_us_per_s", "saved_cycles_per_exit")]]


def deltas(cmp: Comparison, label_: str | None = None) -> tuple[list[str], list[list[str]]]:
    """The deltas of one trace (or of all, with a trace column) against the reference."""
    head = ["metric", "value", "reference", "change", "change %", "test", "p", "P(slower)"]
    wanted = delta_metrics(cmp)
    d = cmp.deltas.filter(pl.col("metric").is_in(wanted))
    if label_ is not None:
        d = d.filter(pl.col("label") == label_)
    else:
        head = ["trace", *head]
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
        elif u in PCT_UNITS:  # a difference of two shares is in percentage points, not percent
            change = f"{row['abs']:+.2f} pp"
        else:
            change = ("+" if row["abs"] > 0 else "") + fmt(m, row["abs"])
        rows.append(([row["label"]] if label_ is None else []) + [
            label(m), fmt(m, row["value"]), fmt(m, row["ref"]), change,
            "-" if row["rel"] is None else f"{row['rel'] * 100:+.1f}%", row.get("test") or "-",
            "-" if row["p_value"] is None else f"{row['p_value']:.3g}",
            "-" if row["p_slower"] is None else f"{row['p_slower']:.2f}"])
    return head, rows


def sections(cmp: Comparison) -> list[tuple[str, tuple[list[str], list[list[str]]]]]:
    _, bases = _policies(cmp)
    against = ", ".join(bases) or "the baseline"
    out = [(f"traces (reference: {cmp.reference})", headline(cmp)),
           (f"what each policy saves against {against}, per second of trace", policies(cmp))]
    for r in _ok(cmp):
        if r.label != cmp.reference:
            out.append((f"{r.label} against {cmp.reference}", deltas(cmp, r.label)))
    return out


KEYS = {"traces": 1, "what each": 2}


def render_sections(cmp: Comparison):
    """The sections as render.Section items, with the errors and gate failures."""
    from ..render import Para, Section

    items = []
    for title, (head, rows) in sections(cmp):
        if rows:
            items.append(Section(title, head, rows, keys=next((k for t, k in KEYS.items() if title.startswith(t)), 1)))
    items += [Para(f"error: {e}", "warning") for e in cmp.errors]
    items += [Para(f"gate failed: {g}", "warning") for g in cmp.gate_failures]
    if any(r.label != cmp.reference for r in _ok(cmp)):
        items.append(Para("test: quantile(q) = Fisher's exact test on the exits above the pooled q-quantile "
                          "(Mood's median test at 0.5); welch-t = Welch's t-test; P(slower) = Mann-Whitney U/(n1 n2)"))
    return items


def markdown(cmp: Comparison) -> str:
    from ..render import markdown as md

    return md(render_sections(cmp), f"exitreplay compare: {len(_ok(cmp))} traces, reference {cmp.reference}")


def print_tables(cmp: Comparison, console) -> None:
    from ..render import print_items

    print_items(console, render_sections(cmp))
