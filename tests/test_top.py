"""`exitreplay top --replay`: the live pipeline fed a recorded file, checked against `analyze`.

The oracle is `analyze` of the whole file (and the file's own event counts): every --batch line
holds one interval's counts, so summed over the lines they must give analyze's totals, exits per
reason and per vCPU, each policy's saved cycles and syncs, the sync-point events. Files: the
committed SVM/VMX samples, generated traces (trace.dat and perf.data) and the real kvm_pvm
recording (no kvm_exit).
"""
from __future__ import annotations

import collections
import csv
import io
import json
import subprocess
import sys

import pytest
from conftest import ROOT, SAMPLES

import exitreplay
from exitreplay.analysis import analyze
from exitreplay.live.frames import SYNC_EVENTS
from exitreplay.synth import synthesize


def top(*args, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "exitreplay", "top", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def json_lines(path, interval="5ms", *extra) -> list[dict]:
    r = top("--replay", path, "--interval", interval, "--speed", "0", "--batch", "json", *extra)
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in r.stdout.splitlines()]


def summed(lines: list[dict], key: str) -> dict:
    out: collections.Counter = collections.Counter()
    for d in lines:
        out.update(d[key])
    return dict(out)


def nonzero(d: dict) -> dict:
    return {k: v for k, v in d.items() if v}


def check_totals(path, lines: list[dict]) -> None:
    a = analyze(str(path))
    assert sum(d["exits"] for d in lines) == a.summary["exits"]
    assert nonzero(summed(lines, "exits_by_reason")) == nonzero(dict(zip(a.latency["reason"], a.latency["exits"])))
    vc = a.latency_vcpu
    assert nonzero(summed(lines, "exits_by_vcpu")) == nonzero(
        {f"{vm}/{v}": n for vm, v, n in zip(vc["vm"], vc["vcpu"], vc["exits"])})
    saved = summed(lines, "saved_cycles")
    want = dict(zip(a.policies["policy"], a.policies["saved_cycles_typical"]))
    assert saved.keys() == want.keys()
    for p, v in want.items():
        assert saved[p] == pytest.approx(v, rel=1e-9, abs=1e-6), p
    assert summed(lines, "syncs") == dict(zip(a.policies["policy"], a.policies["syncs"]))
    for key in ("guest_state_live_ns", "ist_off_ns"):
        assert summed(lines, key) == dict(zip(a.policies["policy"], a.policies[key])), key
    assert nonzero(summed(lines, "sync_events")) == nonzero(a.summary["sync_events"])
    causes = collections.Counter()
    for d in lines:
        for p, c in d["sync_causes"].items():
            causes.update({(p, k): v for k, v in c.items()})
    assert nonzero(dict(causes)) == nonzero({(p, c): n for p, c, n in a.sync_causes.iter_rows()})
    counts = exitreplay.read_trace(path).meta.event_counts
    assert summed(lines, "events") == {k: counts[k] for k in SYNC_EVENTS if k in counts}
    # The intervals tile the trace: each starts where the one before ended.
    ts = [d["t_s"] for d in lines]
    assert all(b > a for a, b in zip(ts, ts[1:]))
    assert all(d["t_s"] - d["span_s"] == pytest.approx(p, abs=1e-9) for p, d in zip([0.0, *ts], lines))


@pytest.mark.parametrize("name", ["svm-mixed.v7zstd.dat", "vmx-mixed.v6.dat", "svm-syscall-heavy.v7.dat"])
def test_replay_batch_json_sums_to_analyze(name):
    path = SAMPLES / name
    lines = json_lines(path)
    assert len(lines) >= 4  # the trace spans several intervals
    check_totals(path, lines)


@pytest.mark.parametrize("isa,fmt", [("svm", "trace.dat"), ("vmx", "trace.dat"), ("vmx", "perf")])
def test_replay_of_generated_traces_sums_to_analyze(tmp_path, isa, fmt):
    path = tmp_path / ("gen.data" if fmt == "perf" else "gen.dat")
    synthesize("mixed", path, vcpus=2, seconds=0.03, isa=isa, seed=7, output_format=fmt)
    lines = json_lines(path, "4ms")
    assert len(lines) >= 6
    check_totals(path, lines)


def test_replay_with_a_policy_and_a_vm(tmp_path):
    path = SAMPLES / "svm-mixed.v7zstd.dat"
    a = analyze(str(path))
    vm = int(a.latency_vcpu["vm"][0])
    lines = json_lines(path, "10ms", "--policy", "ist-off", "--pid", vm)
    from exitreplay.filters import Filters

    want = analyze(str(path), ["ist-off"], filters=Filters(vm=vm))
    assert sum(d["exits"] for d in lines) == want.summary["exits"] < a.summary["exits"]
    assert set(summed(lines, "saved_cycles")) == {"ist-off", "kvm-today"}
    assert summed(lines, "saved_cycles")["ist-off"] == pytest.approx(
        want.policies.filter(want.policies["policy"] == "ist-off")["saved_cycles_typical"][0])


def test_replay_batch_csv_sums_to_analyze():
    path = SAMPLES / "vmx-mixed.v6.dat"
    r = top("--replay", path, "--interval", "3ms", "--speed", "0", "--batch", "csv")
    assert r.returncode == 0, r.stderr
    rows, header = [], None
    for line in r.stdout.splitlines():
        rec = next(csv.reader(io.StringIO(line)))
        if rec[0] == "t_s":
            assert header is None or rec[: len(header)] == header  # columns only ever grow
            header = rec
        else:
            assert len(rec) == len(header)
            rows.append(dict(zip(header, rec)))
    assert len(rows) >= 5
    a = analyze(str(path))
    tot = collections.Counter()
    for row in rows:
        tot.update({k: float(v) for k, v in row.items() if k not in ("t_s", "span_s")})
    assert tot["exits"] == a.summary["exits"]
    for reason, n in zip(a.latency["reason"], a.latency["exits"]):
        assert tot[f"exits:{reason}"] == n
    for p, v, s in a.policies.select("policy", "saved_cycles_typical", "syncs").iter_rows():
        assert tot[f"saved_cycles:{p}"] == pytest.approx(v, rel=1e-9, abs=1e-6)
        assert tot[f"syncs:{p}"] == s


def test_replay_without_kvm_exit_counts_the_sync_point_events():
    """The real kvm_pvm recording: no kvm_exit, but its userspace exits, pio and sched events."""
    path = SAMPLES / "pvm-pio-small.v7zstd.dat"
    trace = exitreplay.read_trace(path)
    span = trace.meta.duration_ns / 1e9
    lines = json_lines(path, f"{span / 6 * 1e3:.3f}ms")
    assert len(lines) >= 6
    assert sum(d["exits"] for d in lines) == 0
    ev = summed(lines, "events")
    counts = trace.meta.event_counts
    assert ev["kvm_userspace_exit"] == counts["kvm_userspace_exit"] > 0
    assert ev["kvm_pio"] == counts["kvm_pio"] > 0 and ev["sched_switch"] == counts["sched_switch"]
    assert nonzero(summed(lines, "sync_events")) == nonzero(analyze(str(path)).summary["sync_events"])


def test_paced_replay_takes_the_recorded_time():
    """--speed 1: a 50 ms trace in frames of 10 ms takes about 50 ms, not as long as the analysis."""
    import time

    path = SAMPLES / "svm-mixed.v7zstd.dat"
    t0 = time.monotonic()
    fast = json_lines(path, "10ms")
    t_fast = time.monotonic() - t0
    t0 = time.monotonic()
    r = top("--replay", path, "--interval", "0.3s", "--speed", "0.05", "--batch", "json")
    t_slow = time.monotonic() - t0
    assert r.returncode == 0, r.stderr
    slow = [json.loads(x) for x in r.stdout.splitlines()]
    # 0.3 s of wall time per frame at 1/20 speed: frames of 15 ms of trace, 4 of them for 50 ms.
    assert [d["span_s"] for d in slow[:-1]] == [pytest.approx(0.015)] * (len(slow) - 1)
    assert len(slow) == 4 and t_slow >= 4 * 0.3 > t_fast / 10
    assert sum(d["exits"] for d in slow) == sum(d["exits"] for d in fast)


@pytest.mark.parametrize("args,message", [
    (["--replay", "/nonexistent.dat", "--batch", "json"], "/nonexistent.dat: no such file"),
    (["--replay", SAMPLES / "svm-mixed.v7zstd.dat", "--batch", "xml"], "unknown --batch 'xml'"),
    (["--replay", SAMPLES / "svm-mixed.v7zstd.dat", "--batch", "json", "--speed", "-1"], "--speed must be"),
    (["--replay", SAMPLES / "svm-mixed.v7zstd.dat", "--batch", "json", "--interval", "0"], "--interval"),
    (["--replay", SAMPLES / "svm-mixed.v7zstd.dat"], "use --batch csv or --batch json"),
    (["--replay", ROOT / "README.md", "--batch", "json"], "README.md"),
    (["--replay", SAMPLES / "svm-mixed.v7zstd.dat", "--batch", "json", "--interval", "10ns", "--speed", "0"],
     "give a longer --interval"),
    (["--replay", SAMPLES / "svm-mixed.v7zstd.dat", "--batch", "json", "--pid", "1"], "--pid 1: no VM"),
])
def test_bad_input_is_one_line_and_status_2(args, message):
    r = top(*args)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert r.stderr.count("\n") == 1 and message in r.stderr and "Traceback" not in r.stderr


def test_p50_p99_are_the_intervals_own():
    """Each line's p50/p99 by reason are the nearest-rank quantiles of the exits that began in its
    interval and had ended by its end (an exit still open then is not timed yet): numpy's
    inverted_cdf over the episodes analyze finds in the trace cut at the interval's end."""
    import numpy as np
    import polars as pl

    path = SAMPLES / "svm-mixed.v7zstd.dat"
    lines = json_lines(path, "10ms")
    trace = exitreplay.read_trace(path)
    first = int(trace.meta.first_ts)
    checked = 0
    for d in lines:
        assert d["latency_scope"] == "frame"
        lo = first + round((d["t_s"] - d["span_s"]) * 1e9)
        hi = first + round(d["t_s"] * 1e9)
        ep = analyze(trace.slice_time(None, hi)).episodes
        part = ep.filter((pl.col("ts") >= lo) & (pl.col("ts") < hi) & pl.col("latency_ns").is_not_null())
        want = {}
        for reason in set(part["reason"].to_list()):
            v = part.filter(pl.col("reason") == reason)["latency_ns"].to_numpy()
            want[reason] = [int(np.quantile(v, q, method="inverted_cdf")) for q in (0.5, 0.99)]
        assert {k: [d["p50_ns"][k], d["p99_ns"][k]] for k in d["p50_ns"] if d["p50_ns"][k] is not None} == want
        checked += len(want)
    assert checked > 20
