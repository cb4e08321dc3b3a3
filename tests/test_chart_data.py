"""What the charts plot is right: the rows each chart embeds, against counts taken from the raw
trace, from the analysis tables, or worked out by hand."""
from __future__ import annotations

import polars as pl
import pytest
from conftest import SAMPLES
from tracebuilder import build, kentry, kexit, uexit

import exitreplay
from exitreplay.analysis import analyze
from exitreplay.compare import compare, expand
from exitreplay.replay.policy import load_policy
from exitreplay.report import charts
from exitreplay.report.timecharts import window_sizes

TRACE = SAMPLES / "svm-mixed.v7zstd.dat"


@pytest.fixture(scope="module")
def trace():
    return exitreplay.read_trace(TRACE)


@pytest.fixture(scope="module")
def report(trace):
    return analyze(trace)


def rows(chart, *needed: str) -> pl.DataFrame:
    """The embedded dataset that has these columns."""
    spec = chart.to_dict()
    found = [pl.DataFrame(v) for v in spec.get("datasets", {}).values() if v and all(c in v[0] for c in needed)]
    assert len(found) == 1, f"{len(found)} datasets with {needed}"
    return found[0]


def raw_timed_exits(trace) -> pl.DataFrame:
    """(pid, latency_ns) of every kvm_exit whose thread's next kvm event is a kvm_entry: the test's
    own pairing, from the raw event tables."""
    ex = trace.df("kvm_exit").select("ts", "pid", pl.lit("exit").alias("kind"))
    en = trace.df("kvm_entry").select("ts", "pid", pl.lit("entry").alias("kind"))
    ev = pl.concat([ex, en]).sort("pid", "ts")
    ev = ev.with_columns(pl.col("kind").shift(-1).over("pid").alias("next"),
                         pl.col("ts").shift(-1).over("pid").alias("next_ts"))
    return ev.filter((pl.col("kind") == "exit") & (pl.col("next") == "entry")).select(
        "pid", (pl.col("next_ts") - pl.col("ts")).alias("latency_ns"))


def test_reason_mix_per_vcpu_counts_every_exit(trace, report):
    data = rows(charts.chart("reasons", [report], ["m"]), "group", "exits")
    per_group = sorted(data.group_by("group").agg(pl.col("exits").sum())["exits"].to_list())
    per_thread = sorted(trace.df("kvm_exit").group_by("pid").len()["len"].to_list())
    assert per_group == per_thread
    assert data.group_by("group").agg(pl.col("share").sum())["share"].to_list() == pytest.approx(
        [100.0] * data["group"].n_unique())


def test_latency_histogram_and_ecdf(trace, report):
    c = charts.chart("latency", [report], ["m"])
    hist = rows(c, "from_us", "exits")
    timed = raw_timed_exits(trace).filter(pl.col("latency_ns") > 0)
    assert hist["exits"].sum() == timed.height
    lo, hi = hist["from_us"].min(), hist["to_us"].max()
    assert lo == pytest.approx(timed["latency_ns"].min() / 1e3)
    assert lo < timed["latency_ns"].max() / 1e3 <= hi
    ecdf = rows(c, "us", "pct")
    top = ecdf.filter(pl.col("pct") == 100)
    maxima = {r["reason"]: r["max_ns"] / 1e3 for r in report.latency.to_dicts()}
    for r in top.to_dicts():
        if r["reason"] != "other":
            assert r["us"] == pytest.approx(maxima[r["reason"]])
    for _, g in ecdf.group_by("reason"):
        g = g.sort("pct")
        assert g["us"].is_sorted() and g["pct"].min() == 0 and g["pct"].max() == 100


def test_ops_bars_are_the_policy_tables(report):
    c = charts.chart("ops", [report], ["m"])
    cyc = rows(c, "typical", "kind")
    base = report.summary["baseline"]
    for p in report.policies.to_dicts():
        mine = {r["kind"]: r for r in cyc.filter(pl.col("policy") == p["policy"]).to_dicts()}
        assert mine["executed"]["typical"] == pytest.approx(p["cycles_typical"] / 1e6)
        avoided = mine[f"avoided vs {base}"]
        for lvl in ("low", "typical", "high"):
            assert avoided[lvl] == pytest.approx(p[f"saved_cycles_{lvl}"] / 1e6)
        assert mine["executed"]["low"] <= mine["executed"]["typical"] <= mine["executed"]["high"]
    counts = rows(c, "op", "count")
    for p in report.policies.to_dicts():
        got = {r["op"]: r["count"] for r in counts.filter((pl.col("policy") == p["policy"]) &
                                                          (pl.col("kind") == "executed")).to_dicts()}
        for op, n in got.items():
            assert n == p[op]


def test_timeline_counts_every_exit(trace, report):
    data = rows(charts.chart("timeline", [report], ["m"]), "t_ms", "per_ms")
    steps = sorted(data["t_ms"].unique().to_list())
    bin_ms = steps[1] - steps[0]
    exits = data.filter(pl.col("series") == "exits")
    assert (exits["per_ms"] * bin_ms).sum() == pytest.approx(trace.df("kvm_exit").height)
    puts = report.episodes.filter((pl.col("userspace") | pl.col("sched_out")) & pl.col("put_ts").is_not_null()).height
    syncs = data.filter(pl.col("series") != "exits")
    assert (syncs["per_ms"] * bin_ms).sum() == pytest.approx(puts)
    # A full grid: every vCPU row has every bin (so gaps are drawn at 0, not bridged).
    assert data.group_by("name", "series").len()["len"].n_unique() == 1


def test_window_counts_agree_with_the_replay(report):
    """The engine counts syncs its own way; the windows the chart draws are exactly that many."""
    syncs = {r["policy"]: r["syncs"] for r in report.policies.to_dicts()}
    for name in ("ist-off", "no-ist"):
        sizes, open_tail = window_sizes(report, load_policy(name))
        assert sizes.len() == syncs[name]
        assert sizes.sum() + open_tail == report.summary["exits"]
    data = rows(charts.chart("window", [report], ["m"]), "bin", "windows")
    for _, g in data.group_by("policy"):
        assert g["windows"].sum() == syncs["ist-off"]


def test_window_by_hand():
    """One vCPU thread, seven HLT exits, KVM_RUN returns after the 3rd and the 5th: under ist-off the
    windows are 3 and 2 exits; the last two exits are still open when the trace ends."""
    p, ev, t = 7, [kentry(0, 0, 7)], 1_000
    for i in range(1, 8):
        ev.append(kexit(t, 0, p, 0x78))
        if i in (3, 5):
            ev.append(uexit(t + 100, 0, p))
        ev.append(kentry(t + 500, 0, p))
        t += 1_000
    r = analyze(build(ev), policies=["kvm-today", "ist-off"])
    sizes, open_tail = window_sizes(r, load_policy("ist-off"))
    assert sorted(sizes.to_list()) == [2, 3] and open_tail == 2
    data = rows(charts.chart("window", [r], ["hand"]), "bin", "windows")
    got = {b: n for b, n in zip(data["bin"], data["windows"]) if n}
    assert got == {"2": 1, "3": 1}
    assert data["bin"].to_list() == ["1", "2", "3"]  # the empty bin 1 stays on the axis


def test_deltas_mix_and_savings_data(tmp_path):
    cmp = compare(expand([str(SAMPLES / "svm-idle.v7.dat"), str(SAMPLES / "svm-netio.v7zstd.dat")]), jobs=1,
                  cache_dir=tmp_path)
    d = rows(charts.deltas(cmp.deltas, cmp.reference), "pct", "metric")
    expected = {(r["label"], r["metric"]): r["rel"] * 100 for r in cmp.deltas.to_dicts() if r["rel"] is not None}
    assert set(d["metric"]) >= {"exits_per_s", "p50_ns", "p99_ns"}
    for r in d.to_dicts():
        assert r["pct"] == pytest.approx(expected[(r["label"], r["metric"])])
    mix = rows(charts.mix(cmp), "group", "share")
    for res in cmp.results:
        mine = mix.filter(pl.col("group") == res.label)
        assert mine["exits"].sum() == res.metrics["exits"] and mine["share"].sum() == pytest.approx(100)
    sav = rows(charts.savings(cmp), "typical", "policy")
    for res in cmp.results:
        for p in res.policies:
            if p["baseline"]:
                assert sav.filter((pl.col("label") == res.label) & (pl.col("policy") == p["policy"])).height == 0
                continue
            got = sav.filter((pl.col("label") == res.label) & (pl.col("policy") == p["policy"]))["typical"].item()
            assert got == pytest.approx(p["saved_cycles_typical"] / res.metrics["exits"])
