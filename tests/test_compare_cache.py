"""The results cache: a second run is served from it; editing the trace, a policy file or a cost
file misses; the same content elsewhere hits; a damaged entry is recomputed."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from test_compare_metrics import A, B, write_ftrace

import exitreplay.compare as compare_mod
from exitreplay import cache
from exitreplay.compare import compare
from exitreplay.replay.policy import OPERATIONS

POLICY = """name = "mine"
isa = "svm"
summary = "test policy: {n} VMLOAD per exit"
sources = ["tests/test_compare_cache.py"]

[ops.exit]
vmload = {n}
"""
VMLOAD_TYPICAL = 200


def cost_text(vmload_typical: float) -> str:
    out = ['name = "test-costs"', 'summary = "for the cache tests"', "cpu_mhz = 2000", ""]
    for op in OPERATIONS:
        ty = vmload_typical if op == "vmload" else 100
        out += [f"[ops.{op}]", f"low = {ty / 2}", f"typical = {ty}", f"high = {ty * 2}", 'source = "assumption: test"',
                ""]
    return "\n".join(out)


@pytest.fixture()
def setup(tmp_path):
    write_ftrace(tmp_path / "a.txt", A)
    write_ftrace(tmp_path / "b.txt", B)
    (tmp_path / "mine.toml").write_text(POLICY.format(n=1))
    (tmp_path / "costs.toml").write_text(cost_text(VMLOAD_TYPICAL))
    return tmp_path


def run(d, **kw):
    kw.setdefault("policies", [str(d / "mine.toml")])
    kw.setdefault("costs", str(d / "costs.toml"))
    return compare([("a", str(d / "a.txt")), ("b", str(d / "b.txt"))], cache_dir=d / "cache", **kw)


def _no_analysis(*args, **kwargs):
    raise AssertionError("analyzed again: the cache should have served this")


def test_second_run_is_served_from_the_cache(setup, monkeypatch):
    first = run(setup, jobs=2)  # through the spawn pool, as the CLI does
    assert not any(r.cached for r in first.results)
    monkeypatch.setattr(compare_mod, "_summarize", _no_analysis)
    second = run(setup, jobs=2)
    assert all(r.cached for r in second.results)
    assert second.table.drop("cached").equals(first.table.drop("cached"))
    assert second.deltas.equals(first.deltas)  # the latency samples came back too


def test_editing_the_policy_file_misses(setup):
    first = run(setup, jobs=1)
    (setup / "mine.toml").write_text(POLICY.format(n=2))
    second = run(setup, jobs=1)
    assert not any(r.cached for r in second.results)
    # One more VMLOAD per exit: each exit saves one VMLOAD's typical cost less.
    for lab, n_exits in (("a", len(A)), ("b", len(B))):
        f = {r.label: r for r in first.results}[lab].metrics["mine:saved_cycles"]
        s = {r.label: r for r in second.results}[lab].metrics["mine:saved_cycles"]
        assert f - s == pytest.approx(n_exits * VMLOAD_TYPICAL)
    assert all(r.cached for r in run(setup, jobs=1).results)


def test_editing_the_cost_file_misses(setup):
    first = run(setup, jobs=1)
    (setup / "costs.toml").write_text(cost_text(VMLOAD_TYPICAL + 50))
    second = run(setup, jobs=1)
    assert not any(r.cached for r in second.results)
    a1 = {r.label: r for r in first.results}["a"].metrics["mine:saved_cycles"]
    a2 = {r.label: r for r in second.results}["a"].metrics["mine:saved_cycles"]
    assert a1 != a2


def test_the_key_is_the_content_not_the_path(setup):
    run(setup, jobs=1)
    moved = setup / "elsewhere"
    moved.mkdir()
    shutil.copy(setup / "a.txt", moved / "renamed.txt")
    shutil.copy(setup / "mine.toml", moved / "policy-copy.toml")
    again = compare([("x", str(moved / "renamed.txt"))], policies=[str(moved / "policy-copy.toml")],
                    costs=str(setup / "costs.toml"), cache_dir=setup / "cache", jobs=1)
    assert again.results[0].cached and again.results[0].label == "x"


def test_editing_the_trace_misses(setup):
    run(setup, jobs=1)
    write_ftrace(setup / "a.txt", A[:-1])  # one HLT exit fewer
    again = run(setup, jobs=1)
    ra = {r.label: r for r in again.results}
    assert not ra["a"].cached and ra["b"].cached
    assert ra["a"].metrics["exits"] == len(A) - 1


def test_other_options_and_code_are_part_of_the_key(setup, monkeypatch):
    run(setup, jobs=1)
    assert not any(r.cached for r in run(setup, jobs=1, cpu_mhz=3000).results)
    monkeypatch.setattr(cache, "code_digest", lambda: "another version of exitreplay")
    assert not any(r.cached for r in run(setup, jobs=1).results)


def test_a_damaged_entry_is_recomputed(setup):
    run(setup, jobs=1)
    for p in (setup / "cache").glob("*.arrow"):
        p.write_bytes(b"not an Arrow file")
    again = run(setup, jobs=1)
    assert not any(r.cached for r in again.results) and again.errors == []


def test_no_cache_analyzes_again(setup):
    run(setup, jobs=1)
    assert not any(r.cached for r in run(setup, jobs=1, use_cache=False).results)


def test_cache_location(monkeypatch, tmp_path):
    monkeypatch.setenv("EXITREPLAY_CACHE", str(tmp_path / "here"))
    assert cache.default_dir() == tmp_path / "here"
    monkeypatch.delenv("EXITREPLAY_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache.default_dir() == tmp_path / "xdg" / "exitreplay"


def test_cli_second_run_reports_cached(setup):
    env = {"EXITREPLAY_CACHE": str(setup / "cli-cache"), "PATH": "/usr/bin:/bin"}
    cmd = [sys.executable, "-m", "exitreplay", "compare", str(setup / "a.txt"), str(setup / "b.txt"), "-f", "json"]
    runs = [subprocess.run(cmd, capture_output=True, text=True, env=env) for _ in range(2)]
    assert all(r.returncode == 0 for r in runs), runs[0].stderr
    cached = [[t["cached"] for t in json.loads(r.stdout)["traces"]] for r in runs]
    assert cached == [[False, False], [True, True]]
