"""The timings the profiles take from real traces, measured the same way on any trace.

    python -m exitreplay.synth.measure ../shared/public-traces/vmx-host-3.2-report.txt

prints, per exit reason, the in-kernel handling time (kvm_exit -> the thread's next kvm_entry) and
the guest time before the exit (kvm_entry -> kvm_exit), and the scheduling and QEMU round-trip
intervals of vCPU threads. docs/profiles.md quotes this output for the public VMX trace and the
real recordings in tests/data/real; running it on a generated trace shows what a profile makes.
"""
from __future__ import annotations

import sys

import polars as pl

from ..kvm.reasons import exit_reason_name
from ..trace import Trace


def _q(expr: pl.Expr, name: str) -> list[pl.Expr]:
    return [pl.len().alias("n"), *(expr.quantile(q).alias(f"{name}_p{int(q * 100)}") for q in (0.1, 0.5, 0.9))]


def _next_on_thread(ev: pl.DataFrame, first: str, then: str, where: pl.Expr | None = None) -> pl.DataFrame:
    """For each `first` event, the time to the same thread's next `then` event (if nothing else of
    interest comes between: the next event among first/then must be `then`)."""
    sub = ev.filter(pl.col("event").is_in([first, then])).sort("pid", "row")
    sub = sub.with_columns(pl.col("event").shift(-1).over("pid").alias("nxt_ev"),
                           pl.col("ts").shift(-1).over("pid").alias("nxt_ts"))
    sub = sub.filter((pl.col("event") == first) & (pl.col("nxt_ev") == then))
    if where is not None:
        sub = sub.filter(where)
    return sub.with_columns(((pl.col("nxt_ts") - pl.col("ts")) / 1000).alias("us"))


def measure(trace: Trace) -> dict[str, pl.DataFrame]:
    """Tables of interval quantiles (µs) on the trace's vCPU threads."""
    ev = trace.df().with_row_index("row").with_columns(pl.col("event").cast(pl.Utf8))
    if trace.has("kvm_fpu"):  # tell the two kvm_fpu events apart
        fpu = trace.df("kvm_fpu").select(pl.col("row").cast(ev["row"].dtype), "load")
        ev = ev.join(fpu, on="row", how="left").with_columns(
            pl.when(pl.col("event") == "kvm_fpu").then(pl.when(pl.col("load") == 1).then(pl.lit("kvm_fpu load"))
                                                       .otherwise(pl.lit("kvm_fpu unload")))
            .otherwise(pl.col("event")).alias("event")).drop("load").sort("row")
    out: dict[str, pl.DataFrame] = {}
    if trace.has("kvm_exit"):
        ex = trace.df("kvm_exit").select("row", "exit_reason", "isa")
        base = ev.join(ex, on="row", how="left")
        handling = _next_on_thread(base, "kvm_exit", "kvm_entry")
        en = base.filter(pl.col("event").is_in(["kvm_entry", "kvm_exit"])).sort("pid", "row").with_columns(
            pl.col("event").shift(1).over("pid").alias("prev_ev"), pl.col("ts").shift(1).over("pid").alias("prev_ts"))
        run = en.filter((pl.col("event") == "kvm_exit") & (pl.col("prev_ev") == "kvm_entry")).with_columns(
            ((pl.col("ts") - pl.col("prev_ts")) / 1000).alias("us"))
        h = handling.group_by("exit_reason", "isa").agg(_q(pl.col("us"), "handling_us"))
        r = run.group_by("exit_reason", "isa").agg(
            pl.col("us").quantile(0.5).alias("run_before_us_p50"), pl.col("us").quantile(0.9).alias("run_before_us_p90"))
        counts = ex.group_by("exit_reason", "isa").agg(pl.len().alias("exits"))
        t = counts.join(h.drop("n"), on=["exit_reason", "isa"], how="left").join(r, on=["exit_reason", "isa"], how="left")
        t = t.with_columns(pl.struct("isa", "exit_reason").map_elements(
            lambda s: exit_reason_name(int(s["isa"] or 0), int(s["exit_reason"])), return_dtype=pl.Utf8).alias("reason"))
        out["exits"] = t.with_columns((pl.col("exits") / pl.col("exits").sum()).alias("share")).sort(
            "exits", descending=True).select("reason", "exits", "share", pl.exclude("reason", "exits", "share", "isa",
                                                                                     "exit_reason"))
    rows = []
    pairs = [("kvm_userspace_exit", "kvm_fpu load", "QEMU: kvm_userspace_exit -> kvm_fpu load"),
             ("kvm_pio", "kvm_fpu unload", "kvm_pio -> kvm_fpu unload"),
             ("kvm_fpu unload", "kvm_userspace_exit", "kvm_fpu unload -> kvm_userspace_exit")]
    names = set(ev["event"].unique().to_list())
    for first, then, label in pairs:
        if first in names and then in names:
            d = _next_on_thread(ev, first, then)
            if d.height:
                rows.append(d.select(pl.lit(label).alias("interval"), *_q(pl.col("us"), "us")))
    if trace.has("sched_switch"):
        ss = trace.df("sched_switch").select("row", "prev_state", "next_pid")
        sev = ev.join(ss, on="row", how="left")
        vcpu_pids = ev.filter(pl.col("event") == "kvm_exit")["pid"].unique() if trace.has("kvm_exit") else None
        if vcpu_pids is not None:
            # HLT exit -> the thread switched away (blocked): the exit's handling before schedule().
            hl = sev.filter(pl.col("event").is_in(["kvm_exit", "sched_switch", "kvm_entry"])).sort("pid", "row")
            hl = hl.with_columns(pl.col("event").shift(-1).over("pid").alias("nxt"),
                                 pl.col("ts").shift(-1).over("pid").alias("nts"),
                                 pl.col("prev_state").shift(-1).over("pid").alias("nstate"))
            blk = hl.filter((pl.col("event") == "kvm_exit") & (pl.col("nxt") == "sched_switch") & (pl.col("nstate") == 1))
            if blk.height:
                rows.append(blk.select(pl.lit("exit -> sched_switch away (blocking)").alias("interval"),
                                       *_q((pl.col("nts") - pl.col("ts")) / 1000, "us")))
            ins = sev.filter((pl.col("event") == "sched_switch") & pl.col("next_pid").is_in(vcpu_pids.implode()))
            ins = ins.select("row", "ts", pl.col("next_pid").alias("pid").cast(pl.Int32))
            ent = ev.filter(pl.col("event") == "kvm_entry").select("row", "ts", pl.col("pid").cast(pl.Int32))
            j = ins.sort("row").join_asof(ent.sort("row").rename({"ts": "ets", "row": "erow"}), left_on="row",
                                          right_on="erow", by="pid", strategy="forward",
                                          check_sortedness=False)
            j = j.filter(pl.col("ets").is_not_null())
            if j.height:
                rows.append(j.select(pl.lit("sched_switch in -> kvm_entry").alias("interval"),
                                     *_q((pl.col("ets") - pl.col("ts")) / 1000, "us")))
            if trace.has("sched_waking"):
                wk = trace.df("sched_waking").select("row", "ts", pl.col("pid").cast(pl.Int32))
                j = wk.sort("row").join_asof(ins.sort("row").rename({"ts": "its", "row": "irow"}), left_on="row",
                                             right_on="irow", by="pid", strategy="forward",
                                             check_sortedness=False).filter(pl.col("its").is_not_null())
                if j.height:
                    rows.append(j.select(pl.lit("sched_waking -> sched_switch in").alias("interval"),
                                         *_q((pl.col("its") - pl.col("ts")) / 1000, "us")))
    if trace.has("kvm_vcpu_wakeup"):
        w = trace.df("kvm_vcpu_wakeup")
        for waited, label in ((True, "kvm_vcpu_wakeup wait (slept)"), (False, "kvm_vcpu_wakeup poll")):
            d = w.filter(pl.col("waited") == waited)
            if d.height:
                rows.append(d.select(pl.lit(label).alias("interval"), *_q(pl.col("ns") / 1000, "us")))
    if rows:
        out["intervals"] = pl.concat([r.with_columns(pl.col("n").cast(pl.UInt32)) for r in rows])
    return out


def main(argv: list[str] | None = None) -> None:
    from ..reader import read_trace

    for path in argv if argv is not None else sys.argv[1:]:
        print(f"# {path}")
        with pl.Config(tbl_rows=60, tbl_cols=12, float_precision=2, tbl_width_chars=160):
            for name, t in measure(read_trace(path)).items():
                print(name)
                print(t)


if __name__ == "__main__":
    main()
