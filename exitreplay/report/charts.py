"""One function per chart kind. Each takes Reports (and labels), aggregates in Polars first so no
chart embeds more than a few thousand rows, and returns an Altair chart with a title, axis titles
with units and a caption saying what it shows and from which trace."""
from __future__ import annotations

import math
import os

import altair as alt
import numpy as np
import polars as pl

from ..analysis import Report
from ..replay.engine import boundary_frame, lazy_columns
from ..replay.policy import load_policy

KINDS = ("reasons", "latency", "ops", "timeline", "window", "deltas")
MAX_BINS = 400
TOP_REASONS = 12
WIDTH = 640


def _label(r: Report) -> str:
    return os.path.basename(r.summary.get("path") or "trace")


def _title(text: str, caption: str) -> alt.TitleParams:
    return alt.TitleParams(text=text, subtitle=caption, anchor="start", subtitleColor="#555")


def _top_reasons(ep: pl.DataFrame) -> pl.DataFrame:
    top = ep.group_by("reason").len().sort("len", descending=True).head(TOP_REASONS)["reason"]
    return ep.with_columns(pl.when(pl.col("reason").is_in(top.implode())).then(pl.col("reason"))
                           .otherwise(pl.lit("other")).alias("reason"))


def reasons(reports: list[Report], labels: list[str] | None = None, by: str = "trace") -> alt.Chart:
    """Exit-reason mix: stacked bars per trace, or per vCPU of a single trace."""
    labels = labels or [_label(r) for r in reports]
    frames = []
    for lab, r in zip(labels, reports):
        ep = r.episodes
        if ep.height == 0:
            continue
        ep = _top_reasons(ep)
        key = pl.format("vm {} vcpu {}", "vm", "vcpu") if by == "vcpu" else pl.lit(lab)
        frames.append(ep.group_by(key.alias("group"), "reason").len().rename({"len": "exits"}))
    data = pl.concat(frames) if frames else pl.DataFrame({"group": [], "reason": [], "exits": []})
    sel = alt.selection_point(fields=["reason"], bind="legend")
    what = "per vCPU" if by == "vcpu" else "per trace"
    return alt.Chart(data.to_pandas() if False else data).mark_bar().encode(
        x=alt.X("group:N", title="vCPU" if by == "vcpu" else "trace"),
        y=alt.Y("exits:Q", title="exits (count)", stack="zero"),
        color=alt.Color("reason:N", title="exit reason"),
        opacity=alt.condition(sel, alt.value(1), alt.value(0.15)),
        tooltip=["group:N", "reason:N", alt.Tooltip("exits:Q", format=",")],
    ).add_params(sel).properties(width=WIDTH, height=320, title=_title(
        f"Exit-reason mix {what}", f"kvm_exit count by reason; top {TOP_REASONS} reasons, the rest as 'other'. "
        f"Source: {', '.join(labels)}"))


def latency(report: Report, label: str | None = None) -> alt.Chart:
    """Exit handling time (kvm_exit -> kvm_entry) per reason: log-binned histogram."""
    label = label or _label(report)
    ep = _top_reasons(report.episodes.filter(pl.col("latency_ns") > 0)) if report.episodes.height else \
        pl.DataFrame({"reason": [], "latency_ns": []}, schema={"reason": pl.Utf8, "latency_ns": pl.Int64})
    if ep.height:
        lo = math.log10(max(1, ep["latency_ns"].min()))
        hi = math.log10(max(2, ep["latency_ns"].max()))
        nb = 60
        w = max((hi - lo) / nb, 1e-3)
        data = ep.with_columns(((pl.col("latency_ns").log10() - lo) / w).floor().clip(0, nb - 1).alias("b")) \
            .group_by("reason", "b").len().with_columns(
                (10 ** (lo + pl.col("b") * w) / 1000).alias("from_us"),
                (10 ** (lo + (pl.col("b") + 1) * w) / 1000).alias("to_us")).rename({"len": "exits"})
    else:
        data = pl.DataFrame({"reason": [], "from_us": [], "to_us": [], "exits": []})
    sel = alt.selection_point(fields=["reason"], bind="legend")
    if data.height:
        data = data.with_columns(((pl.col("from_us") * pl.col("to_us")).sqrt()).alias("mid_us"))
    else:
        data = data.with_columns(pl.lit(None, pl.Float64).alias("mid_us"))
    return alt.Chart(data).mark_line(interpolate="step", point=True, strokeWidth=1.5).encode(
        x=alt.X("mid_us:Q", scale=alt.Scale(type="log"), title="exit handling time (µs, log scale)"),
        y=alt.Y("exits:Q", title="exits per bin (count)", scale=alt.Scale(zero=True)),
        color=alt.Color("reason:N", title="exit reason"),
        opacity=alt.condition(sel, alt.value(0.9), alt.value(0.05)),
        tooltip=["reason:N", alt.Tooltip("from_us:Q", format=".2f"), alt.Tooltip("to_us:Q", format=".2f"),
                 alt.Tooltip("exits:Q", format=",")],
    ).add_params(sel).properties(width=WIDTH, height=320, title=_title(
        "Exit handling time per reason", f"Histogram of kvm_exit -> kvm_entry time, 60 log-spaced bins. "
        f"Source: {label}"))


def ops(report: Report, label: str | None = None) -> alt.Chart:
    """Operations per policy, executed vs avoided, and cycles saved with the cost range as error bars."""
    label = label or _label(report)
    base = report.summary.get("baseline")
    o = report.ops if report.ops.height else pl.DataFrame(
        {"policy": [], "op": [], "executed": [], "avoided": []})
    long = pl.concat([
        o.select("policy", "op", pl.col("executed").alias("count"), pl.lit("executed").alias("kind")),
        o.select("policy", "op", pl.col("avoided").alias("count"), pl.lit(f"avoided vs {base}").alias("kind")),
    ]).filter(pl.col("count") != 0) if o.height else o
    bars = alt.Chart(long).mark_bar().encode(
        x=alt.X("policy:N", title="policy"), xOffset="kind:N",
        y=alt.Y("sum(count):Q", title="operations (count; negative: more than the baseline)"),
        color=alt.Color("op:N", title="operation"),
        tooltip=["policy:N", "kind:N", "op:N", alt.Tooltip("sum(count):Q", format=",")],
    ).properties(width=WIDTH, height=280, title=_title(
        "State operations per policy", f"Left bar of each pair: executed; right: avoided against {base}. "
        f"Source: {label}"))
    p = report.policies if report.policies.height else pl.DataFrame(
        {"policy": [], "saved_cycles_low": [], "saved_cycles_typical": [], "saved_cycles_high": []})
    p = p.select("policy", (pl.col("saved_cycles_low") / 1e6).alias("low"),
                 (pl.col("saved_cycles_typical") / 1e6).alias("typical"),
                 (pl.col("saved_cycles_high") / 1e6).alias("high"))
    pt = alt.Chart(p).mark_bar().encode(
        x=alt.X("policy:N", title="policy"), y=alt.Y("typical:Q", title="cycles saved (millions)"),
        tooltip=["policy:N", alt.Tooltip("low:Q", format=".3f"), alt.Tooltip("typical:Q", format=".3f"),
                 alt.Tooltip("high:Q", format=".3f")])
    err = alt.Chart(p).mark_errorbar(ticks=True).encode(x="policy:N", y=alt.Y("low:Q", title=""), y2="high:Q")
    saved = (pt + err).properties(width=WIDTH, height=240, title=_title(
        f"Cycles saved against {base}", "Bars: typical costs; whiskers: the low..high range of the cost "
        f"profile ({report.summary.get('cost_profile')}). Source: {label}"))
    return alt.vconcat(bars, saved)


def timeline(report: Report, label: str | None = None) -> alt.Chart:
    """Exits per millisecond per vCPU, with vcpu_put sync points marked."""
    label = label or _label(report)
    ep = report.episodes
    if ep.height == 0:
        data = pl.DataFrame({"t_ms": [], "vcpu": [], "exits": []})
        syncs = pl.DataFrame({"t_ms": [], "vcpu": [], "syncs": []})
    else:
        t0 = ep["ts"].min()
        span_ms = max(1.0, (ep["ts"].max() - t0) / 1e6)
        bin_ms = max(1.0, math.ceil(span_ms / MAX_BINS))
        e = ep.with_columns(((pl.col("ts") - t0) / 1e6 // bin_ms * bin_ms).alias("t_ms"),
                            pl.format("vm {} vcpu {}", "vm", "vcpu").alias("vcpu"))
        data = e.group_by("t_ms", "vcpu").len().rename({"len": "exits"}).with_columns(
            (pl.col("exits") / bin_ms).alias("exits"))
        syncs = e.filter(pl.col("userspace") | pl.col("sched_out")).group_by("t_ms", "vcpu").len() \
            .rename({"len": "syncs"})
    sel = alt.selection_point(fields=["vcpu"], bind="legend")
    line = alt.Chart(data).mark_line(interpolate="step-after").encode(
        x=alt.X("t_ms:Q", title="time from the first exit (ms)"),
        y=alt.Y("exits:Q", title="exits per ms"), color=alt.Color("vcpu:N", title="vCPU"),
        opacity=alt.condition(sel, alt.value(1), alt.value(0.1)),
        tooltip=["vcpu:N", alt.Tooltip("t_ms:Q", format=".1f"), alt.Tooltip("exits:Q", format=".2f")])
    marks = alt.Chart(syncs).mark_tick(thickness=1, size=8, color="#c00").encode(
        x="t_ms:Q", y=alt.value(296), tooltip=["vcpu:N", "t_ms:Q", "syncs:Q"])  # pixels: the x axis
    return (line + marks).add_params(sel).properties(width=WIDTH, height=300, title=_title(
        "Exits over time per vCPU", "Line: exit rate per vCPU; red ticks: vcpu_put sync points (userspace "
        f"return, preemption, blocking). Source: {label}"))


def window(report: Report, label: str | None = None, policy: str = "ist-off") -> alt.Chart:
    """Deferral window: how many exits pass between two sync points of a deferring policy."""
    label = label or _label(report)
    ep = report.episodes
    if ep.height == 0:
        data = pl.DataFrame({"exits_between": [], "windows": []})
    else:
        pol = load_policy(policy)
        b = boundary_frame(ep)
        any_lazy, _w, _c = lazy_columns(b, pol.lazy, "n_msr" in b.columns and b["n_msr"].sum() > 0)
        b = b.with_columns((pl.col("userspace") | pl.col("sched_out") | any_lazy).alias("_sync"))
        # Run lengths per thread: a window closes at each sync.
        b = b.sort("pid", "exit_row").with_columns(
            pl.col("_sync").cast(pl.Int32).cum_sum().over("pid").alias("_w"))
        b = b.with_columns(pl.when(pl.col("_sync")).then(pl.col("_w") - 1).otherwise(pl.col("_w")).alias("_w"))
        runs = b.group_by("pid", "_w").len().rename({"len": "exits_between"})
        data = runs.group_by("exits_between").len().rename({"len": "windows"}).sort("exits_between")
        if data.height > MAX_BINS:
            data = data.with_columns(pl.col("exits_between").clip(upper_bound=MAX_BINS)).group_by(
                "exits_between").agg(pl.col("windows").sum())
    return alt.Chart(data).mark_bar().encode(
        x=alt.X("exits_between:Q", title="exits in one deferral window (count)", bin=alt.Bin(maxbins=60)),
        y=alt.Y("sum(windows):Q", title="windows (count)"),
        tooltip=[alt.Tooltip("exits_between:Q", bin=alt.Bin(maxbins=60)), alt.Tooltip("sum(windows):Q")],
    ).properties(width=WIDTH, height=280, title=_title(
        f"Deferral window under {policy}", "Exits handled between two sync points (vcpu_put or a lazy-state "
        f"access) per vCPU thread. Source: {label}"))


def deltas(table: pl.DataFrame, reference: str) -> alt.Chart:
    """compare: relative change of each metric against the reference trace."""
    data = table.filter(pl.col("rel").is_not_null() & pl.col("rel").is_finite()).with_columns(
        (pl.col("rel") * 100).alias("pct")) if table.height else pl.DataFrame({"label": [], "metric": [], "pct": []})
    return alt.Chart(data).mark_bar().encode(
        y=alt.Y("metric:N", title="metric"), x=alt.X("pct:Q", title=f"change against {reference} (%)"),
        color=alt.Color("label:N", title="trace"), yOffset="label:N",
        tooltip=["label:N", "metric:N", alt.Tooltip("pct:Q", format="+.2f"), "value:Q", "ref:Q"],
    ).properties(width=WIDTH, title=_title("Changes against the reference",
                                           f"Relative change of each metric; reference: {reference}"))


def chart(kind: str, reports: list[Report], labels: list[str] | None = None, **kw) -> alt.TopLevelMixin:
    if kind not in KINDS:
        raise ValueError(f"unknown chart kind {kind!r} (kinds: {', '.join(KINDS)})")
    if kind == "reasons":
        return reasons(reports, labels, by="vcpu" if len(reports) == 1 else "trace")
    if kind == "deltas":
        raise ValueError("the deltas chart comes from `exitreplay compare --charts DIR`")
    fn = {"latency": latency, "ops": ops, "timeline": timeline, "window": window}[kind]
    if len(reports) == 1:
        return fn(reports[0], (labels or [None])[0], **kw)
    return alt.vconcat(*[fn(r, lab, **kw) for r, lab in zip(reports, labels or [_label(r) for r in reports])])


def data_rows(spec: dict) -> int:
    """Rows a spec embeds (to check charts stay small)."""
    return sum(len(v) for v in spec.get("datasets", {}).values())


__all__ = ["KINDS", "chart", "data_rows", "deltas", "latency", "ops", "reasons", "timeline", "window", "np"]
