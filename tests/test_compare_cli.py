"""`exitreplay compare` from the command line: inputs (files, directories, globs, --label), every
output format, CI gates' exit status, and bad input as one line with exit status 2."""
from __future__ import annotations

import json
import subprocess
import sys

import polars as pl
import pytest
from cli_helpers import run_main
from test_compare_metrics import A, B, write_ftrace

from exitreplay.compare import compare, expand
from exitreplay.errors import UsageError
from exitreplay.gate import parse_gate


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    write_ftrace(d / "a.txt", A)
    write_ftrace(d / "b.txt", B)
    return d


@pytest.fixture()
def cli(capsys, monkeypatch):
    """Run `exitreplay compare ARGS` in this process (the real entry point, minus interpreter
    start-up); the subprocess tests below check the installed command itself."""
    def run(*args, cache):
        jobs = [] if "-j" in args else ["-j", "1"]  # the pool is tested elsewhere; starting it costs seconds
        return run_main(capsys, monkeypatch, ["compare", *args, *jobs], cache)
    return run


def subprocess_cli(*args, cache):
    env = {"EXITREPLAY_CACHE": str(cache), "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-m", "exitreplay", "compare", *map(str, args)], capture_output=True,
                          text=True, env=env)


def one_line_error(proc) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr
    errs = [line for line in proc.stderr.splitlines() if line.startswith("exitreplay: error:")]
    assert errs, proc.stderr
    return errs[0]


def test_directory_glob_and_labels(d, tmp_path):
    assert [lab for lab, _ in expand([str(d)])] == ["a.txt", "b.txt"]
    assert [lab for lab, _ in expand([str(d / "b*.txt")])] == ["b.txt"]
    pairs = expand([str(d / "a.txt")], [f"after={d / 'b.txt'}"])
    assert pairs == [("a.txt", str(d / "a.txt")), ("after", str(d / "b.txt"))]
    # A file named twice (a glob and a --label) is one trace, under its label.
    assert expand([str(d / "*.txt")], [f"before={d / 'a.txt'}"]) == [
        ("b.txt", str(d / "b.txt")), ("before", str(d / "a.txt"))]
    # Equal base names in two directories are told apart by their directory.
    (tmp_path / "x").mkdir(), (tmp_path / "y").mkdir()
    for sub in ("x", "y"):
        write_ftrace(tmp_path / sub / "t.txt", A)
    assert [lab for lab, _ in expand([str(tmp_path / "x/t.txt"), str(tmp_path / "y/t.txt")])] == ["x/t.txt", "y/t.txt"]


def test_labels_reference_and_json(cli, d, tmp_path):
    p = cli("--label", f"before={d / 'a.txt'}", "--label", f"after={d / 'b.txt'}", "--reference", "before",
            "-f", "json", cache=tmp_path)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["reference"] == "before" and [t["label"] for t in out["traces"]] == ["before", "after"]
    assert {r["label"] for r in out["deltas"]} == {"after"}
    assert out["errors"] == [] and out["gate_failures"] == []


def test_csv_and_parquet_carry_every_metric(cli, d, tmp_path):
    lib = compare(expand([str(d)]), jobs=1, cache_dir=tmp_path / "c")
    p = cli(d, "-f", "csv", "-o", tmp_path / "out.csv", cache=tmp_path / "c")
    assert p.returncode == 0, p.stderr
    table = pl.read_csv(tmp_path / "out.csv")
    assert table["label"].to_list() == ["a.txt", "b.txt"] and table.columns == lib.table.columns
    assert pl.read_csv(tmp_path / "out.deltas.csv").height == lib.deltas.height
    p = cli(d, "-f", "parquet", "-o", tmp_path / "out.parquet", cache=tmp_path / "c")
    assert p.returncode == 0, p.stderr
    t = pl.read_parquet(tmp_path / "out.parquet")
    assert t["exits"].to_list() == [len(A), len(B)] and t["p50_ns:hlt"].to_list() == [60_000, 1_050_000]
    assert pl.read_parquet(tmp_path / "out.deltas.parquet").height == lib.deltas.height
    assert "needs -o" in one_line_error(cli(d, "-f", "parquet", cache=tmp_path / "c"))


def test_markdown_has_the_tables_headline_and_savings(cli, d, tmp_path):
    p = cli(d, "-f", "markdown", cache=tmp_path)
    assert p.returncode == 0, p.stderr
    md = p.stdout
    lines = md.splitlines()
    head = next(line for line in lines if line.startswith("| trace | exits | exits/s"))
    assert "p50 µs" in head and "p99 µs" in head
    row_a = next(line for line in lines if line.startswith("| a.txt (reference) |"))
    assert "| 21 |" in row_a and "| 10 |" in row_a and "| 110 |" in row_a  # exits, p50, p99 in µs
    for title in ("## what each policy saves against", "## b.txt against a.txt"):
        assert title in md
    # Per second of trace, not totals: a's saving is its cycles / MHz over a's span.
    lib = compare(expand([str(d)]), jobs=1, cache_dir=tmp_path)
    a = lib.results[0]
    pol = next(p["policy"] for p in a.policies if not p["baseline"])
    span_s = a.metrics["exits"] / a.metrics["exits_per_s"]
    us = a.metrics[f"{pol}:saved_cycles"] / 2500 / span_s
    row = next(line for line in lines if line.startswith(f"| {pol} | a.txt |"))
    assert float(row.split("|")[3].strip().replace(",", "")) == pytest.approx(us, rel=5e-3)
    assert "| hlt p50 (µs) |" in md and "p50_ns" not in md


def test_terminal_table(cli, d, tmp_path):
    p = cli(d, cache=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "traces (reference: a.txt)" in p.stdout and "b.txt against a.txt" in p.stdout
    assert "what each policy saves against" in p.stdout and "hlt p50 (us)" in p.stdout  # piped: ASCII


def test_gates_set_the_exit_status(cli, d, tmp_path):
    # b's HLT exits take 1050 µs at the median against 60: +1650%.
    trip = cli(d, "--fail-if", "p50_ns:hlt.rel > 100%", "-f", "json", cache=tmp_path)
    assert trip.returncode == 1 and "gate failed: b.txt: p50_ns:hlt.rel > 100%" in trip.stderr
    ok = cli(d, "--fail-if", "p50_ns:hlt.rel > 2000%", "--fail-if", "exits.abs > 0", "-f", "json", cache=tmp_path)
    assert ok.returncode == 0, ok.stderr
    # A value gate holds every trace to it, the reference too.
    both = cli(d, "--fail-if", "p99_ns > 100000", "-f", "json", cache=tmp_path)
    assert both.returncode == 1
    assert "a.txt: p99_ns > 100000" in both.stderr and "b.txt: p99_ns > 100000" in both.stderr
    assert json.loads(both.stdout)["gate_failures"]


def test_gate_parsing():
    assert parse_gate("exits_per_s.rel > 5%").threshold == pytest.approx(0.05)
    g = parse_gate("ist-off:saved_cycles.abs <= -1.5e3")
    assert (g.metric, g.mode, g.op, g.threshold) == ("ist-off:saved_cycles", "abs", "<=", -1500)
    assert parse_gate("kvm-5.12:syncs == 3").metric == "kvm-5.12:syncs"
    assert g.check(-2000, 0) is True and g.check(-1000, 0) is False and g.check(None, 0) is None
    rel = parse_gate("exits.rel >= 10%")
    assert rel.check(110, 100) is True and rel.check(109, 100) is False and rel.check(5, 0) is None
    for bad in ("exits up a lot", "exits > 5%", "exits >> 5", "> 5"):
        with pytest.raises(UsageError):
            parse_gate(bad)


def test_bad_inputs_are_one_line_and_status_2(cli, d, tmp_path):
    assert "missing.txt: no such file" in one_line_error(cli(d / "missing.txt", cache=tmp_path))
    assert "no file matches" in one_line_error(cli(d / "nothing-*.dat", cache=tmp_path))
    assert "--reference 'nope'" in one_line_error(cli(d, "--reference", "nope", cache=tmp_path))
    assert "NAME=PATH" in one_line_error(cli("--label", "oops", cache=tmp_path))
    assert "no metric 'exits_per_hour'" in one_line_error(cli(d, "--fail-if", "exits_per_hour > 1", cache=tmp_path))
    assert "unknown policy" in one_line_error(cli(d, "--policy", "no-such-policy", cache=tmp_path))
    assert "cannot read --fail-if" in one_line_error(cli(d, "--fail-if", "nonsense", cache=tmp_path))
    empty = tmp_path / "empty-dir"
    empty.mkdir()
    assert "no trace files" in one_line_error(cli(empty, cache=tmp_path))


def test_a_non_trace_in_a_directory(d, tmp_path):
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    (mixed / "good.txt").write_text((d / "a.txt").read_text())
    (mixed / "a-notes.txt").write_text("these are my notes, not a trace\n")
    (mixed / "README.md").write_text("not looked at: not a trace suffix\n")
    p = subprocess_cli(mixed, "-f", "json", cache=tmp_path)
    err = one_line_error(p)
    assert "a-notes.txt" in err and "not a trace" in err
    out = json.loads(p.stdout)  # the good trace is still reported
    assert [t["label"] for t in out["traces"] if not t["error"]] == ["good.txt"]
    assert out["reference"] == "good.txt"  # never a trace that failed


def test_every_trace_failing(tmp_path):
    (tmp_path / "x.dat").write_bytes(b"\x00garbage" * 100)
    (tmp_path / "y.dat").write_bytes(b"")
    err = one_line_error(subprocess_cli(tmp_path / "x.dat", tmp_path / "y.dat", cache=tmp_path))
    assert "no trace could be analyzed" in err and "x.dat" in err and "y.dat" in err


def test_progress_counts_every_trace(d, tmp_path):
    seen = []
    compare(expand([str(d)]), jobs=2, cache_dir=tmp_path, progress=lambda done, total: seen.append((done, total)))
    assert seen[0] == (0, 2) and seen[-1] == (2, 2)
    assert [s[0] for s in seen] == sorted(s[0] for s in seen)
