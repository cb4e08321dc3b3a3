"""The library API of issue 4: `exitreplay.analyze(trace, policies, costs) -> Report`, its progress
callback, the per-vCPU/per-VM latency by reason, and the sensitivity of the ranking to costs."""
from __future__ import annotations

import math
import subprocess
import sys

import pytest
from conftest import ROOT
from tracebuilder import build, kentry, kexit

import exitreplay
from exitreplay.replay.costs import load_costs
from exitreplay.replay.policy import parse_policy


def test_top_level_analyze_is_lazy_and_works_on_a_path():
    code = ("import sys, exitreplay; assert 'exitreplay.analysis' not in sys.modules, 'eager import'; "
            "r = exitreplay.analyze(sys.argv[1], ['kvm-today', 'ist-off'], 'epyc'); "
            "assert isinstance(r, exitreplay.Report); print(r.summary['exits'], len(r.policies))")
    out = subprocess.run([sys.executable, "-c", code, "sample_traces/svm-idle.v7.dat"], capture_output=True,
                         text=True, cwd=str(ROOT), check=False)
    assert out.returncode == 0, out.stderr
    exits, pols = map(int, out.stdout.split())
    assert exits > 0 and pols == 2
    assert "analyze" in exitreplay.__all__ and "Report" in exitreplay.__all__


def two_vm_trace():
    """VM A: threads 100 (vCPU 0) and 101 (vCPU 1); VM B: thread 200 (vCPU 0). Latencies chosen so
    that every group has a distinct answer."""
    ev = []
    lat = {100: [("hlt", 0x78, 1_000), ("hlt", 0x78, 3_000), ("npf", 0x400, 200)],
           101: [("npf", 0x400, 100), ("npf", 0x400, 300), ("npf", 0x400, 500), ("io", 0x7B, 50)],
           200: [("hlt", 0x78, 7_000), ("npf", 0x400, 900)]}
    vcpu = {100: 0, 101: 1, 200: 0}
    for pid, exits in lat.items():
        t = 1_000 + pid
        for _, code, ns in exits:
            ev += [kexit(t, 0, pid, code, vcpu=vcpu[pid]), kentry(t + ns, 0, pid, vcpu=vcpu[pid])]
            t += ns + 10_000
    return build(ev), lat, vcpu


def nearest_rank(v, q):
    s = sorted(v)
    return s[max(math.ceil(q * len(s)) - 1, 0)]


def test_latency_per_reason_per_vcpu_and_per_vm():
    tr, lat, vcpu = two_vm_trace()
    r = exitreplay.analyze(tr, ["kvm-today"])
    vm_of = {100: 100, 101: 100, 200: 200}  # a VM is named by its lowest vCPU thread pid
    want_vcpu, want_vm = {}, {}
    for pid, exits in lat.items():
        for name, _, ns in exits:
            want_vcpu.setdefault((vm_of[pid], vcpu[pid], name), []).append(ns)
            want_vm.setdefault((vm_of[pid], name), []).append(ns)
    for table, want, keys in ((r.latency_reason_vcpu, want_vcpu, ("vm", "vcpu", "reason")),
                              (r.latency_reason_vm, want_vm, ("vm", "reason"))):
        got = {tuple(row[k] for k in keys): row for row in table.to_dicts()}
        assert set(got) == set(want)
        for k, v in want.items():
            row = got[k]
            assert (row["exits"], row["total_ns"], row["max_ns"], row["min_ns"]) == (len(v), sum(v), max(v), min(v))
            assert row["mean_ns"] == pytest.approx(sum(v) / len(v))
            assert [row["p50_ns"], row["p90_ns"], row["p99_ns"]] == [nearest_rank(v, q) for q in (0.5, 0.9, 0.99)]
    assert r.summary["vms"] == 2 and r.summary["vcpus"] == 3


def test_progress_callback_reaches_the_end():
    tr, _, _ = two_vm_trace()
    calls = []
    exitreplay.analyze(tr, ["kvm-today"], progress=lambda done, total: calls.append((done, total)))
    assert [d for d, _ in calls] == sorted(d for d, _ in calls) and calls[-1][0] == calls[-1][1] == len(calls)


def test_ranking_can_swap_within_the_cost_ranges():
    # A avoids one VMLOAD per exit, B one WRMSR per exit (both against a baseline doing both).
    # zen: VMLOAD 60/100/200, WRMSR 60/90/140. At all-low, all-typical and all-high costs A stays
    # ahead or level (60 = 60, 100 > 90, 200 > 140), but with VMLOAD at its low and WRMSR at its
    # high cost B saves more (140 > 60): the ranking is not robust, and VMLOAD's wider range drives it.
    # (Re-derived when the epyc profile, VMLOAD 100/160/250 and WRMSR 60/140/250, became zen.)
    base = parse_policy({"name": "both", "ops": {"exit": {"vmload": 1, "wrmsr": 1}}}, "test")
    a = parse_policy({"name": "a", "ops": {"exit": {"wrmsr": 1}}}, "test")
    b = parse_policy({"name": "b", "ops": {"exit": {"vmload": 1}}}, "test")
    tr, _, _ = two_vm_trace()
    r = exitreplay.analyze(tr, [a, b], load_costs("zen"), baseline=base)
    s = r.sensitivity
    assert s["ranking_typical"] == ["a", "b", "both"]
    assert s["ranking_low"] == ["a", "b", "both"]
    swap = [p for p in s["pairs_that_can_swap"] if {p["above"], p["below"]} == {"a", "b"}]
    assert len(swap) == 1 and swap[0]["driver"] == "vmload"
    n = 9  # exits
    assert swap[0]["margin_min_cycles"] == pytest.approx(n * (60 - 140))
    assert swap[0]["margin_max_cycles"] == pytest.approx(n * (200 - 60))
    assert s["ranking_robust"] is False


def test_robust_ranking_is_reported_as_such():
    # kvm-5.12 is kvm-today plus an LTR per exit: no cost can put it ahead.
    tr, _, _ = two_vm_trace()
    s = exitreplay.analyze(tr, ["kvm-today", "kvm-5.12"]).sensitivity
    assert s["ranking_typical"] == ["kvm-today", "kvm-5.12"]
    assert s["ranking_robust"] is True and s["pairs_that_can_swap"] == []


def test_from_to_on_a_raw_tsc_trace_are_nanoseconds():
    # Timestamps in TSC counts at 2000 MHz (2 counts per ns): --from/--to given in ns select by time.
    ev = []
    for i in range(10):
        t = 1_000_000 + i * 2_000_000  # every 1 ms of real time
        ev += [kexit(t, 0, 100, 0x400), kentry(t + 2_000, 0, 100)]  # 1 us exit time
    tr = build(ev)
    tr.meta.clock = "x86-tsc"
    tr.meta.warnings.append("clock x86-tsc: timestamps are raw counter values, not nanoseconds")
    r = exitreplay.analyze(tr, ["kvm-today"], tsc_mhz=2000, start_ns=2_000_000, end_ns=5_000_000)
    assert r.summary["exits"] == 3  # the exits at 2, 3 and 4 ms
    assert r.latency["max_ns"].to_list() == [1_000]
    # The span is the slice's: from the exit at 2 ms (5e6 counts) to the entry after 4 ms.
    assert r.summary["span_ns"] == (9_002_000 - 5_000_000) // 2
