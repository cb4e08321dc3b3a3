"""One function per chart kind. Each aggregates in Polars first (no chart embeds more than
style.ROW_BUDGET rows, whatever the trace's size) and returns an Altair chart with a title, axis
titles with units and a caption saying what it shows and from which trace.

Kinds: reasons, latency, ops (here), timeline, window (timecharts), deltas and the per-trace mix
and savings of compare (comparecharts).
"""
from __future__ import annotations

import math
import warnings

import altair as alt
import polars as pl

from ..analysis import Report
from ..replay.policy import OPERATIONS
from . import style
from .comparecharts import deltas, mix, mix_chart, savings
from .style import WIDTH, label_of, title
from .timecharts import timeline, window

KINDS = ("reasons", "latency", "ops", "timeline", "window", "deltas")
TRACE_KINDS = KINDS[:-1]
MAX_GROUPS = 32  # vCPUs in the reason-mix chart; the busiest are shown
HIST_BINS = 40
ECDF_POINTS = 101


def _reason_counts(r: Report, by: str) -> pl.DataFrame:
    ep = r.episodes
    if by == "vcpu":
        return ep.group_by("vm", "vcpu", "reason").len("exits")
    return ep.group_by("reason").len("exits")


def reasons(reports: list[Report], labels: list[str] | None = None, by: str = "trace") -> alt.Chart:
    """Exit-reason mix: stacked bars per trace (share of its exits), or per vCPU of one trace (counts)."""
    labels = labels or [label_of(r) for r in reports]
    frames = []
    for lab, r in zip(labels, reports):
        if r.episodes.height == 0:
            continue
        c = _reason_counts(r, by)
        if by == "vcpu":
            busiest = c.group_by("vm", "vcpu").agg(pl.col("exits").sum()).sort("exits", descending=True)
            c = c.join(busiest.head(MAX_GROUPS).select("vm", "vcpu"), on=["vm", "vcpu"])
            c = c.sort("vm", "vcpu").with_columns(pl.format("VM {} vCPU {}", "vm", "vcpu").alias("group"))
        else:
            c = c.with_columns(pl.lit(lab).alias("group"))
        frames.append(c.select("group", "reason", "exits"))
    data = pl.concat(frames) if frames else style.frame({"group": pl.Utf8, "reason": pl.Utf8, "exits": pl.Int64})
    many = by == "vcpu" and any(r.summary.get("vcpus", 0) > MAX_GROUPS for r in reports)
    caption = ("kvm_exit count by reason per vCPU" + (f" (the {MAX_GROUPS} busiest)" if many else "") if by == "vcpu" else
               "Share of each trace's kvm_exits by reason") + \
        f"; reasons beyond the {style.TOP_REASONS} commonest as 'other'. Source: {', '.join(labels)}"
    return mix_chart(data, "vCPU" if by == "vcpu" else "trace", share=by != "vcpu",
                     heading=f"Exit-reason mix per {'vCPU' if by == 'vcpu' else 'trace'}", caption=caption)


def latency(report: Report, label: str | None = None) -> alt.VConcatChart:
    """Exit handling time (kvm_exit -> kvm_entry) per reason: log-binned histogram and ECDF."""
    label = label or label_of(report)
    ep = report.episodes.filter(pl.col("latency_ns") > 0) if report.episodes.height else \
        style.frame({"reason": pl.Utf8, "latency_ns": pl.Int64})
    order = style.reason_order([ep.group_by("reason").len("exits")]) if ep.height else []
    ep = style.fold_reasons(ep, order) if ep.height else ep
    if ep.height:
        lo, hi = math.log10(ep["latency_ns"].min()), math.log10(max(ep["latency_ns"].max(), 2))
        w = max((hi - lo) / HIST_BINS, 1e-3)
        hist = ep.with_columns(((pl.col("latency_ns").log10() - lo) / w).floor().clip(0, HIST_BINS - 1)
                               .cast(pl.Int32).alias("b")).group_by("reason", "b").len("exits")
        # Every bin of every reason, empty ones at 0, and one past the last so the final step shows.
        grid = pl.DataFrame({"reason": order}).join(
            pl.DataFrame({"b": range(HIST_BINS + 1)}, schema={"b": pl.Int32}), how="cross")
        hist = grid.join(hist, on=["reason", "b"], how="left").with_columns(
            pl.col("exits").fill_null(0),
            (10 ** (lo + pl.col("b") * w) / 1e3).alias("from_us"),
            (10 ** (lo + (pl.col("b") + 1) * w) / 1e3).alias("to_us")).sort("reason", "b")
        qs = [i / (ECDF_POINTS - 1) for i in range(ECDF_POINTS)]
        ecdf = ep.group_by("reason").agg(
            [pl.col("latency_ns").quantile(q, "lower").alias(f"q{i}") for i, q in enumerate(qs)]).unpivot(
            index="reason", variable_name="q", value_name="ns").with_columns(
            (pl.col("q").str.slice(1).cast(pl.Int32) / (ECDF_POINTS - 1) * 100).alias("pct"),
            (pl.col("ns") / 1e3).alias("us"))
        domain = [10 ** lo / 1e3, 10 ** (lo + HIST_BINS * w) / 1e3]
    else:
        hist = style.frame({"reason": pl.Utf8, "from_us": pl.Float64, "to_us": pl.Float64, "exits": pl.Int64})
        ecdf = style.frame({"reason": pl.Utf8, "us": pl.Float64, "pct": pl.Float64})
        domain = [0.1, 1000.0]
    sel = style.legend_filter("reason", "latency_pick")
    xscale = alt.Scale(type="log", domain=domain, nice=False)
    color = style.reason_color(order)
    h = alt.Chart(hist).mark_line(interpolate="step-after", strokeWidth=1.6).encode(
        x=alt.X("from_us:Q", scale=xscale, title="exit handling time (µs, log scale)"),
        y=alt.Y("exits:Q", title="exits per bin (count)"), color=color, opacity=style.faded(sel, 1, 0.06),
        tooltip=["reason:N", alt.Tooltip("from_us:Q", format=".2f", title="from (µs)"),
                 alt.Tooltip("to_us:Q", format=".2f", title="to (µs)"), alt.Tooltip("exits:Q", format=",")],
    ).add_params(sel).properties(width=WIDTH, height=230, title=title(
        "Exit handling time per reason", f"Histogram of kvm_exit -> kvm_entry time in {HIST_BINS} log-spaced "
        f"bins (click a reason in the legend to see it alone). Source: {label}"))
    e = alt.Chart(ecdf).mark_line(interpolate="step-after", strokeWidth=1.8).encode(
        x=alt.X("us:Q", scale=xscale, title="exit handling time (µs, log scale)"),
        y=alt.Y("pct:Q", title="exits at most this long (%)", scale=alt.Scale(domain=[0, 100])),
        color=color, opacity=style.faded(sel, 1, 0.08),
        tooltip=["reason:N", alt.Tooltip("pct:Q", format=".0f", title="percentile"),
                 alt.Tooltip("us:Q", format=".2f", title="µs")],
    ).properties(width=WIDTH, height=200, title=title(
        "Cumulative distribution (ECDF) per reason", f"Share of each reason's exits handled within a time; "
        f"p50 where a line crosses 50%. Source: {label}"))
    return alt.vconcat(h, e).resolve_scale(color="shared")


def _ops_frames(report: Report) -> tuple[pl.DataFrame, pl.DataFrame, list[str]]:
    """(op counts long: policy, op, kind, count), (Mcycles per policy and kind with low/high), policy order."""
    base = report.summary.get("baseline")
    o, p, costs = report.ops, report.policies, report.costs
    order = [base] + p.filter(pl.col("policy") != base).sort("saved_cycles_typical", descending=True)["policy"] \
        .to_list()
    used = o.group_by("op").agg((pl.col("executed").abs() + pl.col("avoided").abs()).sum().alias("n")) \
        .filter(pl.col("n") > 0)["op"]
    o = o.filter(pl.col("op").is_in(used.implode()))
    counts = pl.concat([o.select("policy", "op", pl.lit("executed").alias("kind"), pl.col("executed").alias("count")),
                        o.select("policy", "op", pl.lit(f"avoided vs {base}").alias("kind"),
                                 pl.col("avoided").alias("count"))])
    ex = o.join(costs.select("op", "low", "typical", "high"), on="op").group_by("policy").agg(
        *[(pl.col("executed") * pl.col(lvl)).sum().alias(lvl) for lvl in ("low", "typical", "high")])
    sv = p.select("policy", pl.col("saved_cycles_low").alias("low"), pl.col("saved_cycles_typical").alias("typical"),
                  pl.col("saved_cycles_high").alias("high"))
    cyc = pl.concat([ex.with_columns(pl.lit("executed").alias("kind")),
                     sv.with_columns(pl.lit(f"avoided vs {base}").alias("kind"))], how="diagonal_relaxed")
    cyc = cyc.with_columns([(pl.col(c) / 1e6).alias(c) for c in ("low", "typical", "high")])
    return counts, cyc, order


def ops(report: Report, label: str | None = None) -> alt.VConcatChart:
    """Per policy: state-switching cycles executed and avoided (bars at typical costs, error bars
    over the cost profile's low..high range), then the operation counts behind them."""
    label = label or label_of(report)
    base = report.summary.get("baseline")
    if report.ops.height == 0 or report.policies.height == 0:
        counts = style.frame({"policy": pl.Utf8, "op": pl.Utf8, "kind": pl.Utf8, "count": pl.Float64})
        cyc = style.frame({"policy": pl.Utf8, "kind": pl.Utf8, "low": pl.Float64, "typical": pl.Float64,
                           "high": pl.Float64})
        order = []
    else:
        counts, cyc, order = _ops_frames(report)
    kinds = ["executed", f"avoided vs {base}"]
    ksel = style.legend_filter("kind", "kind_pick")
    kcolor = alt.Color("kind:N", title="cycles", scale=alt.Scale(domain=kinds, range=["#9d9d9d", "#54a24b"]),
                       sort=kinds)
    x = alt.X("policy:N", title="policy", sort=order, axis=alt.Axis(labelAngle=0))
    cb = alt.Chart(cyc).encode(x=x, xOffset=alt.XOffset("kind:N", sort=kinds))
    ytitle = "cycles (millions)"
    bars = cb.mark_bar().encode(
        y=alt.Y("typical:Q", title=ytitle), color=kcolor, opacity=style.faded(ksel),
        tooltip=["policy:N", "kind:N", alt.Tooltip("low:Q", format=".3f", title="low (M cycles)"),
                 alt.Tooltip("typical:Q", format=".3f", title="typical (M cycles)"),
                 alt.Tooltip("high:Q", format=".3f", title="high (M cycles)")]).add_params(ksel)
    # Rules and ticks, not mark_errorbar: that composite mark ignores xOffset's sort.
    whisk = cb.mark_rule(color="#222", strokeWidth=1.2).encode(y=alt.Y("low:Q", title=ytitle), y2="high:Q")
    ends = [cb.mark_tick(color="#222", thickness=1.2, size=10).encode(y=alt.Y(f"{lvl}:Q", title=ytitle))
            for lvl in ("low", "high")]
    cycles = alt.layer(bars, whisk, *ends).properties(width=WIDTH, height=230, title=title(
        f"State-switching cycles per policy: executed and avoided against {base}",
        f"Bars at typical costs; error bars: the low..high range of the cost profile "
        f"({report.summary.get('cost_profile')}). Negative avoided: the policy runs more than {base}. "
        f"Source: {label}"))
    osel = style.legend_filter("op", "op_pick")
    op_order = [op for op in OPERATIONS if op in set(counts["op"].to_list())]
    ob = alt.Chart(counts).mark_bar().encode(
        x=x, xOffset=alt.XOffset("op:N", sort=op_order), y=alt.Y("count:Q", title="operations (count)"),
        color=alt.Color("op:N", title="operation", sort=op_order, scale=alt.Scale(scheme="set2")),
        opacity=style.faded(osel),
        tooltip=["policy:N", "kind:N", "op:N", alt.Tooltip("count:Q", format=",.0f")],
    ).add_params(osel).properties(width=WIDTH, height=150)
    header = alt.Header(labelAngle=0, labelAlign="left", labelFontWeight="bold")
    panels = ob.facet(row=alt.Row("kind:N", title=None, sort=kinds, header=header),
                      title=title("Operations per policy", "Top: operations executed; bottom: avoided against "
                                  f"{base} (negative: run more often). Each on its own scale. Source: {label}")
                      ).resolve_scale(y="independent")
    return alt.vconcat(cycles, panels).resolve_scale(color="independent", xOffset="independent")


def chart(kind: str, reports: list[Report], labels: list[str] | None = None, **kw) -> alt.TopLevelMixin:
    """The chart of one kind for one or more analyzed traces (deltas: see comparecharts)."""
    if kind not in KINDS:
        raise ValueError(f"unknown chart kind {kind!r} (kinds: {', '.join(KINDS)})")
    if kind == "deltas":
        raise ValueError("the deltas chart needs a comparison: `exitreplay chart A B --kind deltas` "
                         "or `exitreplay compare ... --charts DIR`")
    labels = labels or [label_of(r) for r in reports]
    if kind == "reasons":
        return reasons(reports, labels, by="vcpu" if len(reports) == 1 else "trace")
    fn = {"latency": latency, "ops": ops, "timeline": timeline, "window": window}[kind]
    if len(reports) == 1:
        return fn(reports[0], labels[0], **kw)
    with warnings.catch_warnings():
        # Each trace's panel brings the same legend selection; Altair merges them into one, which
        # is what we want (a reason picked in one legend is picked in every panel), and says so.
        warnings.filterwarnings("ignore", "Automatically deduplicated selection parameter")
        return alt.vconcat(*[fn(r, lab, **kw) for r, lab in zip(reports, labels)])


def data_rows(spec: dict) -> int:
    """Rows a spec embeds (to check charts stay small)."""
    n = sum(len(v) for v in spec.get("datasets", {}).values())

    def walk(node) -> int:
        if isinstance(node, dict):
            own = len(node["values"]) if isinstance(node.get("values"), list) else 0
            return own + sum(walk(v) for k, v in node.items() if k != "values")
        if isinstance(node, list):
            return sum(walk(v) for v in node)
        return 0
    return n + walk({k: v for k, v in spec.items() if k != "datasets"})


__all__ = ["KINDS", "TRACE_KINDS", "chart", "data_rows", "deltas", "latency", "mix", "mix_chart", "ops",
           "reasons", "savings", "timeline", "window"]
