"""compare: deltas against a reference, CI gates' exit status, the results cache."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from exitreplay.compare import compare, expand
from exitreplay.errors import UsageError
from exitreplay.gate import parse_gate
from exitreplay.synth.generator import generate
from exitreplay.synth.writer import write_trace


@pytest.fixture(scope="module")
def traces(tmp_path_factory):
    d = tmp_path_factory.mktemp("cmp")
    write_trace(generate("idle", vcpus=2, seconds=0.1, seed=1), d / "idle.dat", version=7)
    write_trace(generate("netio", vcpus=2, seconds=0.02, seed=1), d / "netio.dat", version=7)
    write_trace(generate("idle", vcpus=2, seconds=0.1, seed=1), d / "idle-copy.dat", version=7)
    return d


def test_deltas_against_reference(traces, tmp_path):
    cmp = compare(expand([str(traces / "idle.dat"), str(traces / "netio.dat")]), jobs=2, cache_dir=tmp_path)
    t = {r["label"]: r for r in cmp.table.to_dicts()}
    assert cmp.reference == "idle.dat"
    d = {r["metric"]: r for r in cmp.deltas.to_dicts() if r["label"] == "netio.dat"}
    for m in ("exits", "exits_per_s", "p50_ns"):
        assert d[m]["abs"] == pytest.approx(t["netio.dat"][m] - t["idle.dat"][m])
        assert d[m]["rel"] == pytest.approx((t["netio.dat"][m] - t["idle.dat"][m]) / t["idle.dat"][m])
    # HLT latencies of an idle guest and a busy one differ: the test says so.
    assert d["p50_ns:hlt"]["p_value"] is not None and d["p50_ns:hlt"]["p_value"] < 0.01
    assert d["exits:hlt"]["p_value"] is None  # a count, not a distribution


def test_identical_traces_have_zero_delta(traces, tmp_path):
    cmp = compare([("a", str(traces / "idle.dat")), ("b", str(traces / "idle-copy.dat"))], jobs=1,
                  cache_dir=tmp_path)
    d = {r["metric"]: r for r in cmp.deltas.to_dicts()}
    assert d["exits"]["abs"] == 0 and d["p99_ns"]["rel"] == 0


def test_gate(traces, tmp_path):
    g = parse_gate("exits_per_s.rel > 5%")
    assert g.threshold == 0.05 and g.mode == "rel"
    cmp = compare(expand([str(traces / "idle.dat"), str(traces / "netio.dat")]), gates=[g], jobs=1,
                  cache_dir=tmp_path)
    assert len(cmp.gate_failures) == 1 and "netio.dat" in cmp.gate_failures[0]
    ok = compare(expand([str(traces / "idle.dat"), str(traces / "netio.dat")]),
                 gates=[parse_gate("exits_per_s.rel > 100000%")], jobs=1, cache_dir=tmp_path)
    assert ok.gate_failures == []
    with pytest.raises(UsageError):
        parse_gate("exits per second up a lot")


def test_gate_exit_status_through_the_cli(traces, tmp_path):
    env = {"EXITREPLAY_CACHE": str(tmp_path), "PATH": "/usr/bin:/bin"}
    base = [sys.executable, "-m", "exitreplay", "compare", str(traces / "idle.dat"), str(traces / "netio.dat"),
            "-j", "1"]
    bad = subprocess.run(base + ["--fail-if", "exits_per_s.rel > 5%"], capture_output=True, text=True, env=env)
    assert bad.returncode == 1 and "gate failed" in bad.stderr
    good = subprocess.run(base + ["--fail-if", "exits_per_s.rel < -99%", "-f", "json"], capture_output=True,
                          text=True, env=env)
    assert good.returncode == 0, good.stderr
    assert json.loads(good.stdout)["reference"] == "idle.dat"


def test_cache_makes_the_second_run_free(traces, tmp_path):
    pairs = expand([str(traces / "idle.dat"), str(traces / "netio.dat")])
    first = compare(pairs, jobs=2, cache_dir=tmp_path)
    assert not any(r.cached for r in first.results)
    second = compare(pairs, jobs=2, cache_dir=tmp_path)
    assert all(r.cached for r in second.results)
    assert second.table.drop("cached").equals(first.table.drop("cached"))
    # Different options are a different key.
    third = compare(pairs, jobs=1, cache_dir=tmp_path, policies=["kvm-today", "ist-off"])
    assert not any(r.cached for r in third.results)


def test_bad_inputs(traces, tmp_path):
    with pytest.raises(UsageError):
        expand([str(tmp_path / "nothing-*.dat")])
    with pytest.raises(UsageError):
        compare([("x", str(tmp_path / "missing.dat"))], cache_dir=tmp_path)
    with pytest.raises(UsageError):
        compare(expand([str(traces / "idle.dat")]), reference="nope", cache_dir=tmp_path)
