"""What every chart shares: titles with a caption, reason colours, size limits."""
from __future__ import annotations

import os
import textwrap
import zlib

import altair as alt
import polars as pl

WIDTH = 640
ROW_BUDGET = 5_000  # rows one chart may embed, whatever the trace's size
TOP_REASONS = 9  # + "other": ten colours, so no two reasons share one
OTHER = "other"
# tableau10; its last colour is a grey, which goes to "other".
PALETTE = ["#4c78a8", "#f58518", "#e45756", "#72b7b2", "#54a24b", "#eeca3b", "#b279a2", "#ff9da6", "#9d755d",
           "#bab0ac"]


def label_of(report) -> str:
    return os.path.basename(report.summary.get("path") or "trace")


def title(text: str, caption: str, width: int = WIDTH) -> alt.TitleParams:
    """Title plus a caption (what it shows, from which trace), wrapped to the chart's width."""
    lines = textwrap.wrap(caption, max(40, width // 6), break_on_hyphens=False)
    return alt.TitleParams(text=text, subtitle=lines, anchor="start", subtitleColor="#555", fontSize=15,
                           subtitleFontSize=11.5)


def reason_order(frames: list[pl.DataFrame]) -> list[str]:
    """Reasons by total exits over all frames (columns reason, exits); the rest become "other"."""
    if not frames:
        return []
    tot = pl.concat([f.select("reason", pl.col("exits").cast(pl.Int64)) for f in frames]) \
        .group_by("reason").agg(pl.col("exits").sum()).sort(["exits", "reason"], descending=[True, False])
    names = tot["reason"].to_list()
    return names if len(names) <= TOP_REASONS + 1 else names[:TOP_REASONS] + [OTHER]


def fold_reasons(df: pl.DataFrame, order: list[str]) -> pl.DataFrame:
    keep = [r for r in order if r != OTHER]
    return df.with_columns(pl.when(pl.col("reason").is_in(keep)).then(pl.col("reason"))
                           .otherwise(pl.lit(OTHER)).alias("reason"))


# One colour per exit reason in every chart and every trace of a report: the reasons traces
# commonly exit for have a fixed slot of tableau20 (distinct within each ISA); any other reason
# takes a slot by a stable hash of its name; "other" is grey.
PALETTE20 = ["#4c78a8", "#f58518", "#e45756", "#72b7b2", "#54a24b", "#eeca3b", "#b279a2", "#ff9da6", "#9d755d",
             "#9ecae9", "#ffbf79", "#ff9d98", "#88d27a", "#b7e4e0", "#d6a5c9", "#fcbfd2", "#d8b5a5", "#439894",
             "#bcbd22"]
REASON_SLOTS = {
    **{r: i for i, r in enumerate(("msr", "hlt", "io", "npf", "interrupt", "cpuid", "vintr", "pause", "vmrun",
                                   "vmload", "vmsave", "nmi", "rdpmc", "xsetbv", "wbinvd", "stgi", "clgi",
                                   "invlpga", "shutdown"))},
    **{r: i for i, r in enumerate(("MSR_READ", "HLT", "IO_INSTRUCTION", "EPT_VIOLATION", "EXTERNAL_INTERRUPT",
                                   "CPUID", "MSR_WRITE", "PAUSE_INSTRUCTION", "VMCALL", "EPT_MISCONFIG",
                                   "PREEMPTION_TIMER", "EXCEPTION_NMI", "APIC_WRITE", "XSETBV", "EOI_INDUCED",
                                   "INTERRUPT_WINDOW", "CR_ACCESS", "TPR_BELOW_THRESHOLD", "APIC_ACCESS"))},
}


def reason_colour(reason: str) -> str:
    if reason == OTHER:
        return PALETTE[-1]
    slot = REASON_SLOTS.get(reason)
    return PALETTE20[slot if slot is not None else zlib.crc32(reason.encode()) % len(PALETTE20)]


def reason_color(order: list[str], title_: str = "exit reason") -> alt.Color:
    return alt.Color("reason:N", title=title_, scale=alt.Scale(domain=order, range=[reason_colour(r) for r in order]),
                     sort=order)


def legend_filter(field: str, name: str) -> alt.Parameter:
    """A selection bound to the legend: click an entry to show only it (shift-click for more)."""
    return alt.selection_point(fields=[field], bind="legend", name=name)


def faded(sel: alt.Parameter, on: float = 1.0, off: float = 0.12) -> alt.OpacityValue:
    return alt.condition(sel, alt.value(on), alt.value(off))


def nice_step(raw: float, steps=(1, 2, 5)) -> float:
    """The smallest 1/2/5 x 10^k not below raw."""
    if raw <= 0:
        return 1.0
    exp = 10.0 ** int(f"{raw:e}".split("e")[1])
    for s in (*steps, 10):
        if s * exp >= raw * (1 - 1e-12):
            return s * exp
    return 10 * exp


def frame(rows: dict[str, pl.DataType]) -> pl.DataFrame:
    return pl.DataFrame(schema=rows)
