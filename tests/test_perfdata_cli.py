"""info, analyze, convert, compare and synth take perf.data like any other trace."""
from __future__ import annotations

import json

import polars as pl
from cli_helpers import run_main
from conftest import REAL
from perf_oracle import PERF, perf_script_lines

import exitreplay
from exitreplay.synth.generator import generate
from exitreplay.synth.perfdata_writer import write_perfdata
from exitreplay.synth.writer import write_trace


def test_info_json(capsys, monkeypatch, tmp_path):
    res = run_main(capsys, monkeypatch, ["info", REAL / "pvm-guest.lost-zstd.perf.data", "--json"], tmp_path)
    assert res.returncode == 0, res.stderr
    meta = json.loads(res.stdout)
    assert (meta["source_format"], meta["compression"], meta["cpus"], meta["clock"]) == ("perf.data", "zstd", 2, "perf")
    assert meta["dropped_per_cpu"] == {"0": 3509, "1": 4912}  # perf report -D: the LOST records per CPU
    assert sum(meta["event_counts"].values()) == 14102


def test_analyze_perf_data_equals_analyze_of_the_same_trace_dat(capsys, monkeypatch, tmp_path):
    """One generated trace written both ways: the same report, but for where it came from."""
    gen = generate("syscall-heavy", vcpus=2, seconds=0.01, seed=4, isa="vmx")
    write_perfdata(gen, tmp_path / "g.perf.data")
    write_trace(gen, tmp_path / "g.dat")
    out = {}
    for name in ("g.perf.data", "g.dat"):
        res = run_main(capsys, monkeypatch, ["analyze", tmp_path / name, "--format", "json"], tmp_path / "c")
        assert res.returncode == 0, res.stderr
        out[name] = json.loads(res.stdout)
    a, b = out["g.perf.data"], out["g.dat"]
    for d in (a, b):
        for key in ("path", "format", "version", "compression", "clock"):
            d["summary"].pop(key, None)
    assert a["summary"]["exits"] > 300
    assert a == b


def test_convert_writes_what_read_trace_gives(capsys, monkeypatch, tmp_path):
    src = REAL / "pvm-guest.pipe-zstd.perf.data"
    res = run_main(capsys, monkeypatch, ["convert", src, "-o", tmp_path / "out"], tmp_path / "c")
    assert res.returncode == 0, res.stderr
    tr = exitreplay.read_trace(src)
    events = pl.read_parquet(tmp_path / "out" / "events.parquet")
    assert events["ts"].to_list() == tr.events.column("ts").to_pylist()
    pio = pl.read_parquet(tmp_path / "out" / "kvm_pio.parquet")
    assert pio.to_dicts() == tr.df("kvm_pio").to_dicts()


def test_compare_takes_perf_data(capsys, monkeypatch, tmp_path):
    for seed in (1, 2):
        write_perfdata(generate("netio", vcpus=2, seconds=0.01, seed=seed, isa="svm"), tmp_path / f"n{seed}.perf.data")
    res = run_main(capsys, monkeypatch, ["compare", tmp_path / "n1.perf.data", tmp_path / "n2.perf.data",
                                         "--format", "json"], tmp_path / "c")
    assert res.returncode == 0, res.stderr
    rows = json.loads(res.stdout)["traces"]
    assert len(rows) == 2 and all(r["exits"] > 100 for r in rows)


def test_synth_output_format_perf(capsys, monkeypatch, tmp_path):
    out = tmp_path / "s.perf.data"
    res = run_main(capsys, monkeypatch, ["synth", "netio", "-o", out, "--output-format", "perf", "--isa", "vmx",
                                         "--seconds", "0.01"], tmp_path / "c")
    assert res.returncode == 0, res.stderr
    assert "perf.data" in res.stdout
    tr = exitreplay.read_trace(out)
    assert tr.meta.extra["cpuid"].startswith("GenuineIntel")
    assert tr.meta.extra["cmdline"][:3] == ["exitreplay", "synth", "netio"]
    if PERF:
        assert len(perf_script_lines(out)) == len(tr)
    bad = run_main(capsys, monkeypatch, ["synth", "netio", "-o", out, "--output-format", "pcap"], tmp_path / "c")
    assert bad.returncode == 2 and "--output-format" in bad.stderr
