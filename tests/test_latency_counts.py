"""The fold's latency value counts against the in-memory tables (stats.latency_tables): any cut
of the exits into windows, and any split between workers merged back, gives the same tables."""
from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from exitreplay.analysis import LAT_GROUPS
from exitreplay.pipeline.latency import OFFSET, LatencyCounts
from exitreplay.stats import GroupIndex, latency_tables


def _exits(seed: int, n: int) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    lat = np.rint(np.exp(rng.normal(7, 2, n))).astype(np.int64)
    lat[rng.random(n) < 0.01] *= -1  # entries stamped before their exit: still counted as they are
    lat[rng.integers(0, n, 3)] = OFFSET - 2  # the largest latency held exactly
    return pl.DataFrame({
        "reason": rng.choice(["HLT", "IOIO", "MSR", "NPF", "VMMCALL"], n),
        "pid": rng.integers(100, 106, n).astype(np.int32),
        "vcpu": rng.integers(0, 3, n).astype(np.int32),
        "latency_ns": pl.Series(lat).scatter(rng.integers(0, n, n // 50), None),
    })


VMS = pl.DataFrame({"pid": [100, 101, 102, 103, 104], "vm": [0, 0, 1, 1, 2]},
                   schema={"pid": pl.Int32, "vm": pl.Int32})  # pid 105 has no VM: its vm is null


def _expected(ep: pl.DataFrame) -> dict[str, pl.DataFrame]:
    full = ep.join(VMS, on="pid", how="left")
    return latency_tables(full, LAT_GROUPS, GroupIndex(full, ["reason", "vm", "vcpu"]))


def _same(got: dict, want: dict) -> None:
    for name, keys in LAT_GROUPS.items():
        a, b = want[name], got[name]
        assert_frame_equal(a.sort(keys, nulls_last=True), b.select(a.columns).sort(keys, nulls_last=True),
                           check_dtypes=False)
        assert a[keys].equals(b[keys]), f"{name}: the rows are ranked differently"


@pytest.mark.parametrize("seed,windows", [(1, 1), (2, 7), (3, 40)])
def test_windows_in_any_cut_give_the_in_memory_tables(seed, windows):
    ep = _exits(seed, 20_000)
    counts = LatencyCounts()
    for part in np.array_split(np.arange(ep.height), windows):
        counts.add(ep[part])
    assert not counts.rounded
    _same(counts.tables(VMS, LAT_GROUPS), _expected(ep))


def test_workers_merged_give_the_in_memory_tables():
    ep = _exits(4, 30_000)
    workers = [LatencyCounts() for _ in range(3)]
    for w, part in zip(workers, np.array_split(np.arange(ep.height), 3)):
        for sub in np.array_split(part, 4):
            w.add(ep[sub])
    # the later workers meet the keys in another order: their numbers differ and are remapped
    assert not workers[0].keys.equals(workers[2].keys)
    workers[0].merge(workers[1])
    workers[0].merge(workers[2])
    _same(workers[0].tables(VMS, LAT_GROUPS), _expected(ep))


def test_past_the_limit_percentiles_stay_within_the_grid():
    ep = _exits(5, 20_000).filter(pl.col("latency_ns") > 0)
    counts = LatencyCounts(limit=500)
    for part in np.array_split(np.arange(ep.height), 10):
        counts.add(ep[part])
    got, want = counts.tables(VMS, LAT_GROUPS), _expected(ep)
    assert counts.rounded and counts.size < ep.select("reason", "pid", "vcpu", "latency_ns").n_unique()
    for name, keys in LAT_GROUPS.items():
        a, b = want[name].sort(keys, nulls_last=True), got[name].sort(keys, nulls_last=True)
        assert a.select(*keys, "exits", "timed", "total_ns").equals(b.select(*keys, "exits", "timed", "total_ns"))
        for col in ("p50_ns", "p90_ns", "p99_ns", "max_ns", "min_ns"):
            rel = ((b[col].cast(pl.Float64) - a[col]) / a[col]).abs()
            assert rel.max() <= 0.002, (name, col, rel.max())
