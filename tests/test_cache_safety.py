"""The compare cache holds data, never code: a planted pickle or a crafted entry cannot run anything
when `compare` next reads the cache, and is treated as a miss; entries round-trip any dataclass of
exitreplay (new fields flow through); the directory is private to the user."""
from __future__ import annotations

import dataclasses
import json
import os
import pickle
import stat
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.ipc as ipc
import pytest
from test_compare_metrics import A, write_ftrace

from exitreplay import cache
from exitreplay.compare import TraceResult, compare
from exitreplay.trace import Dropped, TraceMeta


class _Touch:
    """Unpickling this creates `path`: the proof that a pickle entry would run code."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


@pytest.fixture()
def setup(tmp_path):
    write_ftrace(tmp_path / "a.txt", A)
    return tmp_path


def run(d):
    return compare([("a", str(d / "a.txt"))], cache_dir=d / "cache", jobs=1)


def the_key(d) -> str:
    options = {"policies": [], "baseline": None, "costs": None, "cpu_mhz": None}
    return cache.key(str(d / "a.txt"), options, d / "cache")


def test_the_hostile_pickle_would_run_code(tmp_path):
    marker = tmp_path / "ran"
    pickle.loads(pickle.dumps(_Touch(marker)))  # what the old cache did with an entry
    assert marker.exists()


def test_a_planted_pickle_is_never_loaded(setup):
    marker = setup / "ran"
    k = the_key(setup)
    (setup / "cache" / f"{k}.pkl").write_bytes(pickle.dumps(_Touch(marker)))
    res = run(setup)
    assert not marker.exists() and not res.results[0].cached
    assert res.results[0].metrics["exits"] == len(A)


def plant(d: Path, k: str, value: object, columns: dict | None = None, key: str | None = None) -> None:
    text = value if isinstance(value, str) else json.dumps(value)
    meta = {b"format": cache.FORMAT.encode(), b"key": (key or k).encode(), b"value": text.encode()}
    table = pa.table(columns or {"_": pa.array([None])}).replace_schema_metadata(meta)
    (d / "cache").mkdir(exist_ok=True)
    with ipc.new_file(str(d / "cache" / f"{k}.arrow"), table.schema) as w:
        w.write_table(table)


def good_fields(d: Path) -> dict:
    return {"label": "a", "path": str(d / "a.txt"), "metrics": {"exits": 999.0}, "reasons": {}, "latencies": {},
            "policies": [], "warnings": [], "cached": False, "error": None}


@pytest.mark.parametrize("cls", ["os:system", "subprocess:Popen", "exitreplay.__main__:main", "builtins:eval",
                                 "exitreplay.compare:Path", "exitreplay.compare:<lambda>"])
def test_a_planted_entry_naming_code_is_a_miss(setup, cls):
    k = the_key(setup)
    plant(setup, k, {"__dataclass__": cls, "fields": {"args": f"touch {setup / 'ran'}"}})
    res = run(setup)
    assert not (setup / "ran").exists() and not res.results[0].cached
    assert "exitreplay.__main__" not in sys.modules


def test_a_crafted_but_well_formed_entry_is_served(setup):
    """The control for the tests around it: an entry of the right shape and key is a hit."""
    k = the_key(setup)
    plant(setup, k, {"__dataclass__": "exitreplay.compare:TraceResult", "fields": good_fields(setup)})
    res = run(setup)
    assert res.results[0].cached and res.results[0].metrics["exits"] == 999.0


@pytest.mark.parametrize("damage", ["wrong key", "wrong types", "missing field", "extra field", "json bomb",
                                    "array out of range", "not json"])
def test_a_damaged_or_foreign_entry_is_a_miss(setup, damage):
    k = the_key(setup)
    fields = good_fields(setup)
    value: object = {"__dataclass__": "exitreplay.compare:TraceResult", "fields": fields}
    if damage == "wrong types":
        fields["metrics"] = "all of them"
    elif damage == "missing field":
        del fields["warnings"]
    elif damage == "extra field":
        fields["command"] = "rm -rf /"
    elif damage == "json bomb":
        value = "[" * 100000 + "]" * 100000
    elif damage == "array out of range":
        fields["latencies"] = {"*": {"__array__": 7, "dtype": "<i8", "shape": [3]}}
    if damage == "not json":
        (setup / "cache" / f"{k}.arrow").write_bytes(b"ARROW1\0\0" + os.urandom(200))
    else:
        plant(setup, k, value, key="0" * 64 if damage == "wrong key" else None)
    res = run(setup)
    assert not res.results[0].cached and res.results[0].metrics["exits"] == len(A)


def test_the_directory_is_private(setup):
    run(setup)
    d = setup / "cache"
    assert stat.S_IMODE(d.stat().st_mode) == 0o700
    assert stat.S_IMODE((d / "hashes").stat().st_mode) == 0o700
    entries = list(d.glob("*.arrow")) + list((d / "hashes").iterdir())
    assert entries and all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in entries)


def test_a_planted_hash_memo_that_is_not_a_hash_is_recomputed(setup):
    run(setup)
    for memo in (setup / "cache" / "hashes").iterdir():
        memo.write_text("../../../etc/passwd")
    assert cache.content_hash(setup / "a.txt", setup / "cache") == cache.file_hash(setup / "a.txt")


def test_any_dataclass_of_exitreplay_round_trips(tmp_path):
    """Fields of every kind a result may gain: nested dataclasses, int-keyed dicts, tuples, NaN,
    NumPy arrays of any shape and dtype, Arrow arrays and tables, Polars frames."""
    meta = TraceMeta(path="x.dat", source_format="trace.dat", cpus=2, event_counts={"kvm_exit": 3},
                     dropped=[Dropped(1, 500, None, 7), Dropped(0, 9, 4)], warnings=["w"],
                     extra={"per_cpu": {0: 1, 1: 2}, "span": (1, 2), "nan": float("nan"),
                            "matrix": np.arange(6, dtype=np.uint16).reshape(2, 3),
                            "arrow": pa.array(["a", None]), "table": pa.table({"x": [1, 2], "y": ["p", "q"]}),
                            "frame": pl.DataFrame({"a": [1.5, None], "b": [[1], [2, 3]]}), "empty": pl.DataFrame()})
    cache.store(tmp_path, "c" * 64, meta)
    got = cache.load(tmp_path, "c" * 64)
    assert isinstance(got, TraceMeta) and got.dropped == meta.dropped and got.cpus == 2
    x, y = got.extra, meta.extra
    assert x["per_cpu"] == {0: 1, 1: 2} and x["span"] == (1, 2) and np.isnan(x["nan"])
    assert x["matrix"].dtype == np.uint16 and (x["matrix"] == y["matrix"]).all()
    assert x["arrow"].equals(y["arrow"]) and x["table"].equals(y["table"])
    assert x["frame"].equals(y["frame"]) and x["empty"].shape == (0, 0)


def test_a_value_that_is_not_data_is_not_cached(tmp_path):
    @dataclasses.dataclass
    class Holder:  # defined outside exitreplay: never loaded back as a class
        f: object

    cache.store(tmp_path, "d" * 64, TraceResult("a", "p", {}, {}, {}, [{"fn": print}], []))
    assert not (tmp_path / f"{'d' * 64}.arrow").exists()
    cache.store(tmp_path, "e" * 64, Holder(1))
    assert cache.load(tmp_path, "e" * 64) is None
