"""Charts over time and between sync points: the exit timeline and the deferral window."""
from __future__ import annotations

import altair as alt
import polars as pl

from ..analysis import Report
from ..errors import UsageError
from ..replay.engine import boundary_frame, lazy_columns
from ..replay.policy import Policy, load_policy
from . import style
from .style import WIDTH, label_of, title

MAX_VCPUS = 16  # timeline rows; the busiest vCPUs are shown
TARGET_BINS = 150
MIN_BIN_MS = 0.1
SERIES = ["exits", "sync points (vcpu_put)"]
EXACT = 8  # window histogram: one bin per length up to this
LOG_FROM = 4  # the first shared bin is 2**3+1 .. 2**4


def _vcpu_names(ep: pl.DataFrame) -> pl.DataFrame:
    return ep.group_by("vm", "vcpu").len("exits").sort("exits", descending=True).head(MAX_VCPUS) \
        .sort("vm", "vcpu").with_columns(pl.format("VM {} vCPU {}", "vm", "vcpu").alias("name"))


def timeline_frame(report: Report) -> tuple[pl.DataFrame, float, int]:
    """(t_ms, name, series, per_ms) on a full grid, the bin width in ms, and the vCPUs in the trace."""
    ep = report.episodes
    names = _vcpu_names(ep)
    n_vcpus = ep.select(pl.struct("vm", "vcpu").n_unique()).item()
    t0 = ep["ts"].min()
    span_ms = max((ep["ts"].max() - t0) / 1e6, MIN_BIN_MS)
    per_series = style.ROW_BUDGET // (len(SERIES) * names.height)
    bin_ms = style.nice_step(max(span_ms / min(TARGET_BINS, per_series - 1), MIN_BIN_MS))
    nb = int(span_ms // bin_ms) + 1
    e = ep.join(names.select("vm", "vcpu", "name"), on=["vm", "vcpu"])

    def binned(ts: str, keep: pl.Expr, series: str) -> pl.DataFrame:
        return e.filter(keep).with_columns(((pl.col(ts) - t0) / 1e6 / bin_ms).floor().clip(0, nb - 1)
                                           .cast(pl.Int32).alias("b")).group_by("name", "b").len("n") \
            .with_columns(pl.lit(series).alias("series"))

    # A sync point happens at the vcpu_put, which can be well after its exit.
    counts = pl.concat([binned("ts", pl.lit(True), SERIES[0]),
                        binned("put_ts", (pl.col("userspace") | pl.col("sched_out")) & pl.col("put_ts").is_not_null(),
                               SERIES[1])])
    grid = names.select("name").join(pl.DataFrame({"b": range(nb)}, schema={"b": pl.Int32}), how="cross") \
        .join(pl.DataFrame({"series": SERIES}), how="cross")
    data = grid.join(counts, on=["name", "b", "series"], how="left").with_columns(
        (pl.col("b") * bin_ms).alias("t_ms"), (pl.col("n").fill_null(0) / bin_ms).alias("per_ms"))
    return data.select("t_ms", "name", "series", "per_ms"), bin_ms, n_vcpus


def timeline(report: Report, label: str | None = None) -> alt.FacetChart:
    """Exits per millisecond per vCPU (one row each), with the sync points (vcpu_put) per ms."""
    label = label or label_of(report)
    if report.episodes.height == 0:
        data, bin_ms, n_vcpus = style.frame({"t_ms": pl.Float64, "name": pl.Utf8, "series": pl.Utf8,
                                             "per_ms": pl.Float64}), 1.0, 0
    else:
        data, bin_ms, n_vcpus = timeline_frame(report)
    shown = data["name"].n_unique()
    sel = style.legend_filter("series", "series_pick")
    rows = "" if shown >= n_vcpus else f" (the {shown} busiest of {n_vcpus} vCPUs)"
    base = alt.Chart(data).mark_line(interpolate="step-after", strokeWidth=1.3).encode(
        x=alt.X("t_ms:Q", title="time since the first exit (ms)"),
        y=alt.Y("per_ms:Q", title="(per ms)", axis=alt.Axis(tickCount=3, titleFontSize=10, titleFontWeight="normal")),
        color=alt.Color("series:N", title=None, scale=alt.Scale(domain=SERIES, range=["#4c78a8", "#e45756"]),
                        legend=alt.Legend(orient="top")),
        opacity=style.faded(sel, 1, 0.1),
        tooltip=["name:N", "series:N", alt.Tooltip("t_ms:Q", format=".1f", title="bin start (ms)"),
                 alt.Tooltip("per_ms:Q", format=".2f", title="per ms")],
    ).add_params(sel).properties(width=WIDTH, height=48)
    order = data["name"].unique(maintain_order=True).to_list()  # VM, then vCPU number (not as text)
    return base.facet(
        row=alt.Row("name:N", title=None, sort=order,
                    header=alt.Header(labelAngle=0, labelAlign="left", labelFontSize=11)),
        spacing=4, title=title("Exits over time per vCPU", f"Exits per ms and sync points (vcpu_put: return to "
                               f"userspace, preemption, blocking) per ms, each averaged over {bin_ms:g} ms bins"
                               f"{rows}. Source: {label}"))


def window_sizes(report: Report, policy: Policy) -> tuple[pl.Series, int]:
    """Exits per closed deferral window (the sync exit closes its window), per vCPU thread, and the
    number of exits after each thread's last sync (an open window, left out)."""
    b = boundary_frame(report.episodes)
    msr_traced = report.summary.get("msr_traced", True)
    any_lazy, _w, _c = lazy_columns(b, policy.lazy, msr_traced)
    b = b.with_columns((pl.col("userspace") | pl.col("sched_out") | any_lazy).alias("_sync")) \
        .sort("pid", "exit_row")
    # Windows are numbered by the syncs before them on the thread; the sync itself ends its own.
    b = b.with_columns((pl.col("_sync").cast(pl.Int32).cum_sum().over("pid") - pl.col("_sync").cast(pl.Int32))
                       .alias("_w"))
    runs = b.group_by("pid", "_w").agg(pl.len().alias("n"), pl.col("_sync").last().alias("closed"))
    return runs.filter(pl.col("closed"))["n"], int(runs.filter(~pl.col("closed"))["n"].sum())


def _policies(report: Report, policies) -> list[Policy]:
    if policies:
        return [p if isinstance(p, Policy) else load_policy(p) for p in policies]
    out = []
    for name in report.policies["policy"].to_list() if report.policies.height else []:
        try:
            out.append(load_policy(name))
        except UsageError:  # a user's policy file, known here by name only: pass it as policies=
            pass
    return out


def window_frame(report: Report, policies=None) -> tuple[pl.DataFrame, list[str]]:
    """(policy group, k, bin, windows, share) in log2 bins, and the policies left out (they switch on
    every exit, so each window is one exit). Policies with identical windows share a group."""
    dists, skipped = {}, []
    for p in _policies(report, policies) if report.episodes.height else []:
        if p.syncs_every_exit:
            skipped.append(p.name)
            continue
        sizes, _open = window_sizes(report, p)
        d = pl.DataFrame({"n": sizes}).with_columns(_bin_index(pl.col("n")).alias("k")).group_by("k").agg(
            pl.len().alias("windows"), pl.col("n").sum().alias("exits")).sort("k")
        dists.setdefault(tuple(d.rows()), []).append(p.name)
    frames = []
    for rows, names in dists.items():
        d = pl.DataFrame(list(rows), schema=["k", "windows", "exits"], orient="row")
        frames.append(d.with_columns(pl.lit(" = ".join(names)).alias("policy"),
                                     (pl.col("windows") / pl.col("windows").sum() * 100).alias("share")))
    if not frames:
        return style.frame({"policy": pl.Utf8, "k": pl.Int32, "bin": pl.Utf8, "windows": pl.Int64,
                            "exits": pl.Int64, "share": pl.Float64}), skipped
    data = pl.concat(frames)
    # Empty bins between the shortest and the longest window stay on the axis, at 0.
    grid = data.select("policy").unique(maintain_order=True).join(
        pl.DataFrame({"k": range(int(data["k"].max()) + 1)}, schema={"k": pl.Int32}), how="cross")
    data = grid.join(data, on=["policy", "k"], how="left").with_columns(
        pl.col("windows", "exits", "share").fill_null(0))
    return data.with_columns(_bin_label(pl.col("k")).alias("bin")), skipped


def _bin_index(n: pl.Expr) -> pl.Expr:
    """Windows of 1..EXACT exits get a bin each; longer ones share power-of-two bins (9-16, 17-32, ...)."""
    j = n.cast(pl.Float64).log(2).ceil().cast(pl.Int32)
    return pl.when(n <= EXACT).then(n - 1).otherwise(EXACT + j - LOG_FROM).cast(pl.Int32)


def _bin_label(k: pl.Expr) -> pl.Expr:
    j = (k - EXACT + LOG_FROM).cast(pl.Int64)
    return pl.when(k < EXACT).then((k + 1).cast(pl.Utf8)).otherwise(
        pl.format("{}-{}", (2 ** (j - 1) + 1).cast(pl.Int64), (2 ** j).cast(pl.Int64)))


def window(report: Report, label: str | None = None, policies=None) -> alt.Chart:
    """Deferral window: how many exits pass between two sync points of each deferring policy."""
    label = label or label_of(report)
    data, skipped = window_frame(report, policies)
    bins = data.sort("k")["bin"].unique(maintain_order=True).to_list()
    groups = data["policy"].unique(maintain_order=True).to_list()
    sel = style.legend_filter("policy", "policy_pick")
    left_out = f" Not shown (they switch on every exit): {', '.join(skipped)}." if skipped else ""
    return alt.Chart(data).mark_bar().encode(
        x=alt.X("bin:O", title="exits in one deferral window (count)", sort=bins,
                axis=alt.Axis(labelAngle=0)),
        xOffset=alt.XOffset("policy:N", sort=groups),
        y=alt.Y("windows:Q", title="windows (count)"),
        color=alt.Color("policy:N", title="policy", sort=groups,
                        scale=alt.Scale(range=style.PALETTE), legend=alt.Legend(orient="top", columns=1)),
        opacity=style.faded(sel),
        tooltip=["policy:N", alt.Tooltip("bin:O", title="exits per window"), alt.Tooltip("windows:Q", format=","),
                 alt.Tooltip("share:Q", format=".1f", title="share of windows (%)"),
                 alt.Tooltip("exits:Q", format=",", title="exits in them")],
    ).add_params(sel).properties(width=WIDTH, height=260, title=title(
        "Deferral window: exits between two sync points",
        "Exits per vCPU thread from one sync point to the next (a vcpu_put, or an exit that touches the deferred "
        "state, which closes its window) for each deferring policy; policies with the same windows share a bar."
        f"{left_out} Source: {label}"))
