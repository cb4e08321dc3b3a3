"""Charts across traces: per-metric deltas against the reference, the reason mix per trace and the
savings per policy per trace (from a compare.Comparison or its tables)."""
from __future__ import annotations

import altair as alt
import polars as pl

from . import style
from .style import WIDTH, title

DEFAULT_METRICS = ("exits_per_s", "mean_ns", "p50_ns", "p99_ns")
NAMES = {"events": "events", "exits": "exits", "exits_per_s": "exits per second", "exit_time_ns": "exit handling time",
         "p50_ns": "p50 exit handling time", "p90_ns": "p90 exit handling time", "p99_ns": "p99 exit handling time",
         "mean_ns": "mean exit handling time"}
POLICY_NAMES = {"saved_cycles": "cycles saved", "ops_avoided": "operations avoided",
                "vmload_vmsave_avoided": "VMLOAD+VMSAVE avoided", "exits_per_sync": "exits per sync",
                "ist_off_ns": "IST-off time", "guest_state_live_ns": "guest-state-live time"}
SIGNIFICANT = 0.05


def metric_name(m: str) -> str:
    if m in NAMES:
        return NAMES[m]
    head, _, tail = m.partition(":")
    if head == "exits":
        return f"{tail} exits"
    if head == "share":
        return f"{tail} share of exits"
    if head in NAMES:
        return f"{tail} {head.removesuffix('_ns')}"
    return f"{head}: {POLICY_NAMES.get(tail, tail)}"


def default_metrics(deltas: pl.DataFrame, top_policies: int = 2) -> list[str]:
    """The headline metrics and the cycles saved by the policies that save most in the reference
    (a policy whose savings equal an earlier one's in every trace is not shown twice)."""
    have = set(deltas["metric"].to_list()) if deltas.height else set()
    saved = deltas.filter(pl.col("metric").str.ends_with(":saved_cycles") & (pl.col("ref") > 0)) \
        .group_by("metric").agg(pl.col("ref").first()).sort(["ref", "metric"], descending=[True, False])["metric"]
    picked, seen = [], set()
    for m in saved.to_list():
        values = tuple(deltas.filter(pl.col("metric") == m).sort("label").select("value", "ref").rows())
        if values not in seen:
            seen.add(values)
            picked.append(m)
    return [m for m in DEFAULT_METRICS if m in have] + picked[:top_policies]


def deltas(table: pl.DataFrame, reference: str, metrics: list[str] | None = None) -> alt.FacetChart:
    """Per metric (one panel each, its own scale), each trace's % change against the reference."""
    metrics = metrics or default_metrics(table)
    data = table.filter(pl.col("metric").is_in(metrics) & pl.col("rel").is_not_null() & pl.col("rel").is_finite()) \
        if table.height else table
    if data.height:
        data = data.with_columns(
            (pl.col("rel") * 100).alias("pct"),
            pl.col("metric").map_elements(metric_name, return_dtype=pl.Utf8).alias("name"),
            (pl.col("p_value").is_null() | (pl.col("p_value") < SIGNIFICANT)).alias("significant"),
            pl.format("{}%", (pl.col("rel") * 100).round(1)).alias("text"))
        data = data.with_columns(pl.when(pl.col("pct") > 0).then("+" + pl.col("text")).otherwise("text")
                                 .alias("text"))
    else:
        data = style.frame({"label": pl.Utf8, "metric": pl.Utf8, "name": pl.Utf8, "pct": pl.Float64,
                            "value": pl.Float64, "ref": pl.Float64, "p_value": pl.Float64,
                            "significant": pl.Boolean, "text": pl.Utf8})
    order = [metric_name(m) for m in metrics if m in set(data["metric"].to_list())]
    labels = data["label"].unique(maintain_order=True).to_list()
    sel = style.legend_filter("label", "trace_pick")
    base = alt.Chart().encode(y=alt.Y("label:N", title=None, sort=labels, axis=alt.Axis(labels=False, ticks=False)))
    bars = base.mark_bar().encode(
        x=alt.X("pct:Q", title="change against the reference (%)", scale=alt.Scale(padding=48)),
        color=alt.Color("label:N", title="trace", sort=labels, scale=alt.Scale(range=style.PALETTE),
                        legend=alt.Legend(orient="top", columns=2)),
        opacity=alt.condition(sel, alt.value(1), alt.value(0.1)),
        fillOpacity=alt.condition("datum.significant", alt.value(1), alt.value(0.35)),
        tooltip=["label:N", "name:N", alt.Tooltip("pct:Q", format="+.2f", title="change (%)"),
                 alt.Tooltip("value:Q", format=",.4~g"), alt.Tooltip("ref:Q", format=",.4~g", title="reference"),
                 alt.Tooltip("p_value:Q", format=".3g", title="Mann-Whitney p")]).add_params(sel)
    # One text layer, aligned by sign (two filtered layers leave an empty one, which Vega warns about).
    text = base.mark_text(fontSize=10, align=alt.ExprRef("datum.pct < 0 ? 'right' : 'left'"),
                          dx=alt.ExprRef("datum.pct < 0 ? -3 : 3")).encode(
        x=alt.X("pct:Q", title="change against the reference (%)"), text="text:N")
    zero = alt.Chart().mark_rule(color="#444").encode(x=alt.datum(0))
    panel = alt.layer(bars, text, zero, data=data).properties(width=260, height=max(60, 16 * len(labels)))
    return panel.facet(
        facet=alt.Facet("name:N", title=None, sort=order, header=alt.Header(labelFontWeight="bold", labelFontSize=12)),
        columns=2, spacing={"row": 18, "column": 90},
        title=title(f"Changes against {reference}", "Each panel: one metric's change per trace, in % of the "
                    f"reference's value, on its own scale. Faded bars: the latency change is not significant "
                    f"(Mann-Whitney p >= {SIGNIFICANT}). Reference: {reference}; traces: {', '.join(labels)}",
                    width=2 * 260 + 90),
    ).resolve_scale(x="independent")


def mix_chart(data: pl.DataFrame, group_title: str, share: bool, heading: str, caption: str) -> alt.Chart:
    """Horizontal stacked bars of (group, reason, exits); groups keep their order."""
    order = style.reason_order([data])
    data = style.fold_reasons(data, order).group_by("group", "reason", maintain_order=True).agg(
        pl.col("exits").sum())
    data = data.with_columns((pl.col("exits") / pl.col("exits").sum().over("group") * 100).alias("share"),
                             pl.col("reason").replace_strict({r: i for i, r in enumerate(order)}, default=99)
                             .alias("stack"))
    groups = data["group"].unique(maintain_order=True).to_list()
    sel = style.legend_filter("reason", "reason_pick")
    x = alt.X("share:Q", title="share of exits (%)", scale=alt.Scale(domain=[0, 100])) if share else \
        alt.X("exits:Q", title="exits (count)")
    return alt.Chart(data).mark_bar().encode(
        y=alt.Y("group:N", title=group_title, sort=groups), x=x,
        color=style.reason_color(order), order=alt.Order("stack:Q"), opacity=style.faded(sel),
        tooltip=[alt.Tooltip("group:N", title=group_title), "reason:N", alt.Tooltip("exits:Q", format=","),
                 alt.Tooltip("share:Q", format=".1f", title="share (%)")],
    ).add_params(sel).properties(width=WIDTH, height=max(120, 24 * len(groups)), title=title(heading, caption))


def mix(cmp) -> alt.Chart:
    """The reason mix of every trace of a comparison."""
    rows = [(r.label, reason, n) for r in cmp.results if not r.error for reason, n in r.reasons.items()]
    data = pl.DataFrame(rows, schema={"group": pl.Utf8, "reason": pl.Utf8, "exits": pl.Int64}, orient="row")
    labels = [r.label for r in cmp.results if not r.error]
    return mix_chart(data, "trace", True, "Exit-reason mix per trace",
                     f"Share of each trace's kvm_exits by reason; reasons beyond the {style.TOP_REASONS} commonest as "
                     f"'other'. Source: {', '.join(labels)}")


def savings(cmp) -> alt.LayerChart:
    """Cycles saved per exit by each policy in each trace, with the cost range as error bars."""
    rows = []
    for r in cmp.results:
        if r.error:
            continue
        exits = r.metrics.get("exits") or 0
        for p in r.policies:
            if p.get("baseline") or not exits:
                continue
            rows.append({"label": r.label, "policy": p["policy"], "typical": p["saved_cycles_typical"] / exits,
                         "low": p["saved_cycles_low"] / exits, "high": p["saved_cycles_high"] / exits,
                         "share": p.get("share_of_exit_time_pct")})
    data = pl.DataFrame(rows, schema={"label": pl.Utf8, "policy": pl.Utf8, "typical": pl.Float64, "low": pl.Float64,
                                      "high": pl.Float64, "share": pl.Float64})
    labels = data["label"].unique(maintain_order=True).to_list()
    pols = data.group_by("policy").agg(pl.col("typical").mean()).sort("typical", descending=True)["policy"].to_list()
    baselines = sorted({p["policy"] for r in cmp.results if not r.error for p in r.policies if p.get("baseline")})
    sel = style.legend_filter("policy", "saving_pick")
    xtitle = "cycles saved per exit (cycles; bars: typical costs, error bars: low..high)"
    base = alt.Chart(data).encode(y=alt.Y("label:N", title="trace", sort=labels),
                                  yOffset=alt.YOffset("policy:N", sort=pols))
    bars = base.mark_bar().encode(
        x=alt.X("typical:Q", title=xtitle),
        color=alt.Color("policy:N", sort=pols, scale=alt.Scale(range=style.PALETTE), title="policy"),
        opacity=style.faded(sel),
        tooltip=["label:N", "policy:N", alt.Tooltip("typical:Q", format=",.1f", title="typical (cycles/exit)"),
                 alt.Tooltip("low:Q", format=",.1f", title="low"), alt.Tooltip("high:Q", format=",.1f", title="high"),
                 alt.Tooltip("share:Q", format=".2f", title="share of exit time (%)")]).add_params(sel)
    # Rules and ticks, not mark_errorbar: that composite mark ignores yOffset.
    whisk = base.mark_rule(color="#222").encode(x=alt.X("low:Q", title=xtitle), x2="high:Q")
    ends = [base.mark_tick(color="#222", size=9, thickness=1.5).encode(x=alt.X(f"{lvl}:Q", title=xtitle))
            for lvl in ("low", "high")]
    # A band of 22 px per bar: the bar (14 px) and its whisker ticks (9 px) stay apart from the next.
    bars = bars.mark_bar(size=14)
    return alt.layer(bars, whisk, *ends).properties(width=WIDTH, height=max(120, 22 * len(pols) * len(labels)), title=title(
        f"Cycles saved per exit against {', '.join(baselines) or 'the baseline'}",
        "Per trace and policy: state-switching cycles saved divided by the trace's exits, so traces of "
        f"different lengths compare. Source: {', '.join(labels)}"))
