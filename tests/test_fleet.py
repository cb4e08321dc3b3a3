"""compare over many traces: the same results on Ray as in one process, per-trace rows as Parquet
(read back with Polars), and an interrupted run resumed doing only the traces it had not done."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from conftest import ROOT, SAMPLES
from ray_helpers import ray_cluster  # noqa: F401 - the session fixture

import exitreplay.compare as compare_mod
from exitreplay.compare import compare

# Both ISAs, v6, v7 and zstd, with and without nesting: six traces, each its own content.
FLEET = ["svm-idle.v7.dat", "svm-netio.v7zstd.dat", "vmx-idle.v6.dat", "vmx-syscall-heavy.v7zstd.dat",
         "svm-nested-linux4.19.v7zstd.dat", "svm-syscall-heavy-linux4.19.v6.dat"]


@pytest.fixture()
def fleet_dir(tmp_path) -> Path:
    d = tmp_path / "fleet"
    d.mkdir()
    for name in FLEET:
        (d / name).symlink_to(SAMPLES / name)
    return d


def _same(a, b) -> None:
    """Two comparisons agree in every row, metric and delta (the cached flag aside)."""
    assert a.reference == b.reference
    assert a.table.drop("cached").equals(b.table.drop("cached"), null_equal=True)
    assert a.deltas.equals(b.deltas, null_equal=True)
    assert a.errors == b.errors


@pytest.mark.usefixtures("ray_cluster")
def test_compare_on_ray_equals_in_process(fleet_dir, tmp_path):
    here = compare([str(fleet_dir)], jobs=1, use_cache=False)
    on_ray = compare([str(fleet_dir)], engine="ray", use_cache=False)
    pool = compare([str(fleet_dir)], jobs=2, use_cache=False)
    assert here.table.height == len(FLEET) and not here.errors
    _same(here, on_ray)
    _same(here, pool)


@pytest.mark.usefixtures("ray_cluster")
def test_ray_results_are_cached_as_local_ones(fleet_dir, tmp_path, monkeypatch):
    first = compare([str(fleet_dir)], engine="ray", cache_dir=tmp_path / "c")
    monkeypatch.setattr(compare_mod, "_summarize", lambda *a: pytest.fail("analyzed again"))
    again = compare([str(fleet_dir)], jobs=1, cache_dir=tmp_path / "c")
    assert again.table["cached"].all()
    _same(first, again)


class Stop(Exception):
    pass


@pytest.mark.parametrize("jobs", [1, 2])
def test_an_interrupted_compare_resumes_with_only_the_missing_traces(fleet_dir, tmp_path, monkeypatch, jobs):
    cache_dir = tmp_path / "cache"
    finished: list[int] = []

    def stop_after_two(done: int, total: int) -> None:
        finished.append(done)
        if done >= 2:
            raise Stop  # the user's ^C, between two results

    with pytest.raises(Stop):
        compare([str(fleet_dir)], jobs=jobs, cache_dir=cache_dir, progress=stop_after_two)
    stored = len(list(cache_dir.glob("*.arrow")))
    assert 2 <= stored < len(FLEET)  # what finished is kept (a pool may finish one more in flight)

    analyzed: list[str] = []
    real = compare_mod._summarize

    def counting(label, path, options):
        analyzed.append(label)
        return real(label, path, options)

    monkeypatch.setattr(compare_mod, "_summarize", counting)
    resumed = compare([str(fleet_dir)], jobs=1, cache_dir=cache_dir)
    assert len(analyzed) == len(FLEET) - stored
    assert sorted(resumed.table.filter(~pl.col("cached"))["label"].to_list()) == sorted(analyzed)
    _same(resumed, compare([str(fleet_dir)], jobs=1, use_cache=False))


def test_rows_parquet_reads_back_in_polars(fleet_dir, tmp_path):
    out = tmp_path / "rows.parquet"
    env = {**os.environ, "EXITREPLAY_CACHE": str(tmp_path / "cache")}
    p = subprocess.run([sys.executable, "-m", "exitreplay", "compare", str(fleet_dir), "--rows-parquet", str(out),
                        "-f", "json", "-j", "1"], capture_output=True, text=True, cwd=ROOT, env=env)
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    rows = pl.read_parquet(out)
    assert rows["label"].to_list() == [t["label"] for t in doc["traces"]] == sorted(FLEET)
    metrics = [c for c in rows.columns if c not in ("label", "path", "cached", "error")]
    assert {rows.schema[c] for c in metrics} == {pl.Float64}
    assert rows.schema["cached"] == pl.Boolean and rows.schema["error"] == pl.Utf8
    for got, want in zip(rows.to_dicts(), doc["traces"]):
        for m in metrics:
            assert got[m] == (None if want.get(m) is None else pytest.approx(float(want[m]), rel=1e-12)), m
    # A query over the fleet, as a user would run it.
    busiest = pl.scan_parquet(out).sort("exits_per_s", descending=True).select("label").first().collect().item()
    assert busiest == max(doc["traces"], key=lambda t: t["exits_per_s"])["label"]


def test_a_large_fleet_keeps_latency_samples_in_the_cache(fleet_dir, tmp_path, monkeypatch):
    """Above SPILL_ABOVE traces the samples are read back from the cache for the deltas: the same
    comparison as with every sample held in memory."""
    held = compare([str(fleet_dir)], jobs=1, cache_dir=tmp_path / "a")
    assert held.deltas["p_value"].drop_nulls().len() > 20  # the tests did use the samples
    monkeypatch.setattr(compare_mod, "SPILL_ABOVE", 2)
    fresh = compare([str(fleet_dir)], jobs=1, cache_dir=tmp_path / "b")
    served = compare([str(fleet_dir)], jobs=1, cache_dir=tmp_path / "b")
    for cmp in (fresh, served):
        assert all(isinstance(r.latencies, compare_mod._Spilled) for r in cmp.results)
        _same(held, cmp)
    assert served.table["cached"].all()


def test_a_killed_compare_command_resumes(fleet_dir, tmp_path):
    """The command killed outright (SIGKILL: no clean-up at all) after two results: what it
    finished is in the cache, whole, and the next run analyzes only the rest."""
    import signal
    import time

    cache_dir = tmp_path / "cache"
    env = {**os.environ, "EXITREPLAY_CACHE": str(cache_dir)}
    cmd = [sys.executable, "-m", "exitreplay", "compare", str(fleet_dir), "-f", "json", "-j", "1"]
    p = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while len(list(cache_dir.glob("*.arrow"))) < 2 and p.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    p.send_signal(signal.SIGKILL)
    p.wait()
    stored = len(list(cache_dir.glob("*.arrow")))
    assert 2 <= stored < len(FLEET)
    again = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    cached = [t["cached"] for t in json.loads(again.stdout)["traces"]]
    assert sum(cached) == stored and len(cached) == len(FLEET)
