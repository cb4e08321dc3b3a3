"""compare's numbers on hand-written traces whose answers are worked out here, by hand.

Each trace is ftrace text: one vCPU thread, every exit followed by its entry after a chosen
latency. Expected values come from those latencies, not from exitreplay.
"""
from __future__ import annotations

import math
from pathlib import Path

import pytest

from exitreplay.analysis import analyze
from exitreplay.compare import compare

GAP_US = 100  # guest time between an entry and the next exit

# Reference: 9 MSR exits of 1..9 µs, one I/O exit of 9 µs, 11 HLT exits of 10..110 µs.
A = [("msr", us) for us in range(1, 10)] + [("io", 9)] + [("hlt", 10 * k) for k in range(1, 12)]
# Other: the same MSR exits, HLT exits of 1000..1100 µs (every one slower than any of A's), one
# CPUID exit of 3 µs, no I/O exit.
B = [("msr", us) for us in range(1, 10)] + [("cpuid", 3)] + [("hlt", 1000 + 10 * k) for k in range(11)]


def write_ftrace(path: Path, episodes: list[tuple[str, int]], pid: int = 1000) -> dict:
    """Write the episodes as ftrace text; return what the file says by construction."""
    lines = ["# tracer: nop", "#", "#           TASK-PID     CPU#  |||||  TIMESTAMP  FUNCTION",
             "#              | |         |   |||||     |         |"]
    t = 100_000_000  # µs
    first = t

    def line(ts_us: int, text: str) -> str:
        return f" CPU 0/KVM-{pid}    [000] d..1. {ts_us // 1_000_000:6d}.{ts_us % 1_000_000:06d}: {text}"

    entry = "kvm_entry: vcpu 0, rip 0xffffffff81000000"
    lines.append(line(t, entry))
    for reason, lat in episodes:
        t += GAP_US
        lines.append(line(t, f"kvm_exit: vcpu 0 reason {reason} rip 0xffffffff81000000 info1 0x0000000000000000 "
                              "info2 0x0000000000000000 intr_info 0x00000000 error_code 0x00000000"))
        t += lat
        lines.append(line(t, entry))
    path.write_text("\n".join(lines) + "\n")
    return {"events": 1 + 2 * len(episodes), "exits": len(episodes), "span_s": (t - first) / 1e6}


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    d = tmp_path_factory.mktemp("hand")
    facts = {"a": write_ftrace(d / "a.txt", A), "b": write_ftrace(d / "b.txt", B)}
    return d, facts


@pytest.fixture(scope="module")
def cmp(pair, tmp_path_factory):
    d, _ = pair
    return compare([("a", str(d / "a.txt")), ("b", str(d / "b.txt"))], jobs=1,
                   cache_dir=tmp_path_factory.mktemp("cache"))


def test_headline_metrics_match_the_hand_count(cmp, pair):
    _, facts = pair
    a = {r["label"]: r for r in cmp.table.to_dicts()}["a"]
    assert a["events"] == facts["a"]["events"] and a["exits"] == 21
    assert a["exits_per_s"] == pytest.approx(21 / facts["a"]["span_s"])
    # 21 latencies sorted: 1..9, 9, 10, 20, ..., 110 (µs). Nearest-rank p50 is the 11th, p90 the
    # 19th, p99 the 21st.
    assert a["p50_ns"] == 10_000 and a["p90_ns"] == 90_000 and a["p99_ns"] == 110_000
    assert a["mean_ns"] == pytest.approx((45 + 9 + 660) / 21 * 1000)
    assert a["exit_time_ns"] == (45 + 9 + 660) * 1000


def test_per_reason_mix_and_latency(cmp):
    a = {r["label"]: r for r in cmp.table.to_dicts()}["a"]
    assert (a["exits:hlt"], a["exits:msr"], a["exits:io"]) == (11, 9, 1)
    assert a["share:hlt"] == pytest.approx(11 / 21 * 100)
    assert a["p50_ns:hlt"] == 60_000 and a["p50_ns:msr"] == 5_000 and a["mean_ns:hlt"] == pytest.approx(60_000)
    # A reason the trace never exits for counts 0 (not "unknown"), so its change is computable.
    assert a["exits:cpuid"] == 0 and a["share:cpuid"] == 0


def test_deltas_absolute_relative_and_per_reason(cmp):
    d = {r["metric"]: r for r in cmp.deltas.to_dicts() if r["label"] == "b"}
    assert {r["label"] for r in cmp.deltas.to_dicts()} == {"b"}  # the reference has no delta row
    assert d["p50_ns:hlt"]["value"] == 1_050_000 and d["p50_ns:hlt"]["ref"] == 60_000
    assert d["p50_ns:hlt"]["abs"] == 990_000
    assert d["p50_ns:hlt"]["rel"] == pytest.approx(990_000 / 60_000)
    assert d["exits:io"]["value"] == 0 and d["exits:io"]["abs"] == -1 and d["exits:io"]["rel"] == -1.0
    assert d["exits:cpuid"]["abs"] == 1 and d["exits:cpuid"]["rel"] is None  # nothing to divide by
    assert d["p50_ns:msr"]["abs"] == 0


def test_significance_of_latency_changes(cmp):
    d = {r["metric"]: r for r in cmp.deltas.to_dicts() if r["label"] == "b"}
    # Every HLT exit of b is slower than every one of a: U = 11 * 11, P(slower) = 1.
    assert d["p50_ns:hlt"]["p_slower"] == 1.0
    # Each row its own test. p50: the pooled median of the 22 HLT times is a's largest (110 µs), so
    # all 11 of b's lie above it and none of a's: Fisher's exact test on [[11, 0], [0, 11]] gives
    # 2 / C(22, 11) (the two tables as extreme as this one, out of all ways to split the 11).
    assert d["p50_ns:hlt"]["test"] == "quantile(q=0.5)"
    assert d["p50_ns:hlt"]["p_value"] == pytest.approx(2 / math.comb(22, 11), rel=1e-9)
    # p99: the pooled 0.99-quantile is the largest of all 22, so no exit lies above it on either
    # side: [[0, 11], [0, 11]], no evidence at all.
    assert d["p99_ns:hlt"]["p_value"] == pytest.approx(1.0)
    # The mean: Welch's t-test; means 60 and 1050 µs, both samples of sd 33.2 µs: t = 70, p ~ 0.
    assert d["mean_ns:hlt"]["test"] == "welch-t" and d["mean_ns:hlt"]["p_value"] < 1e-12
    assert d["p50_ns:hlt"]["p_value"] != d["p99_ns:hlt"]["p_value"] != d["mean_ns:hlt"]["p_value"]
    # The MSR exits are identical: no evidence of a change.
    assert d["p50_ns:msr"]["p_value"] == pytest.approx(1.0) and d["p50_ns:msr"]["p_slower"] == 0.5
    # One exit is too few to test; counts get no p-value at all.
    assert d["p50_ns:cpuid"]["ref"] is None and d["p50_ns:cpuid"]["p_value"] is None
    assert d["exits:hlt"]["p_value"] is None and d["exits_per_s"]["p_value"] is None


def test_policy_metrics_are_analyzes(cmp, pair):
    """The same per-policy numbers as `analyze` gives for that trace."""
    d, _ = pair
    rep = analyze(str(d / "b.txt"))
    row = {r["label"]: r for r in cmp.table.to_dicts()}["b"]
    assert rep.policies.height >= 2
    for p in rep.policies.to_dicts():
        name = p["policy"]
        assert row[f"{name}:saved_cycles"] == p["saved_cycles_typical"]
        assert row[f"{name}:saved_cycles_low"] == p["saved_cycles_low"]
        assert row[f"{name}:saved_cycles_high"] == p["saved_cycles_high"]
        assert row[f"{name}:ops_avoided"] == p["ops_avoided"]
        assert row[f"{name}:vmload_vmsave_avoided"] == p["vmload_vmsave_avoided"]
        assert row[f"{name}:ist_off_ns"] == p["ist_off_ns"]
        assert row[f"{name}:guest_state_live_ns"] == p["guest_state_live_ns"]
        assert row[f"{name}:syncs"] == p["syncs"]
    assert row["exits_per_s"] == pytest.approx(rep.summary["exits_per_s"])
    # Normalised per second of trace: cycles / MHz = µs, over the trace's span.
    span_s = rep.summary["exits"] / rep.summary["exits_per_s"]
    for p in rep.policies.to_dicts():
        want = p["saved_cycles_typical"] / rep.summary["cpu_mhz"] / span_s
        assert row[f"{p['policy']}:saved_us_per_s"] == pytest.approx(want, rel=1e-3)
        assert row[f"{p['policy']}:saved_cycles_per_exit"] == pytest.approx(p["saved_cycles_typical"] / len(B))
