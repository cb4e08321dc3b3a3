"""Terminal output at 80 and 120 columns (fixed-width consoles): no line wider than the terminal,
no cell of any table cut (every cell's text appears whole), long policy names and numbers intact;
piped output takes COLUMNS or 80, not 220."""
from __future__ import annotations

import io
import os
import subprocess
import sys

import pytest
from conftest import ROOT, SAMPLES
from rich.console import Console

import exitreplay
from exitreplay import render

TRACES = ["svm-syscall-heavy.v7.dat", "svm-nested.v7.dat", "vmx-mixed.v6.dat"]


@pytest.fixture(scope="module", params=TRACES)
def report(request):
    return exitreplay.analyze(SAMPLES / request.param)


def printed(items, width: int) -> str:
    buf = io.StringIO()
    render.print_items(Console(file=buf, width=width, force_terminal=False, color_system=None), items)
    return buf.getvalue()


def assert_cells_whole(out: str, sec: render.Section) -> None:
    flat = " ".join(out.split())  # a wrapped cell of a record may break at spaces, never inside words
    for row in sec.rows:
        for cell in row:
            for part in cell.split("\n"):
                assert part in out or part in flat, (sec.title, part)


@pytest.mark.parametrize("width", [80, 120])
def test_no_cell_is_cut(report, width):
    items = render.sections(report, mode="detail")
    out = printed(items, width)
    assert max(len(line) for line in out.splitlines()) <= width
    assert "…" not in out
    for it in items:
        if isinstance(it, render.Section):
            sec = it
            if sec.narrower and "low..high" not in out.split(sec.title)[1][:400]:
                sec = sec.narrower()  # the range column gives way at 80 columns
            assert_cells_whole(out, sec)


def test_long_policy_names_and_numbers_at_80(report):
    out = printed(render.sections(report), 80)
    for name in report.policies["policy"].to_list():
        assert any(line.startswith(name) for line in out.splitlines()), name


def test_the_policy_table_comes_first_sorted_by_saving(report):
    out = printed(render.sections(report), 80)
    assert out.startswith("what each policy saves against")
    order = report.policies.sort("saved_cycles_typical", descending=True)["policy"].to_list()
    lines = out.splitlines()
    pos = [next(i for i, line in enumerate(lines) if line.startswith(p)) for p in order]
    assert pos == sorted(pos)


def test_a_table_too_wide_for_any_split_becomes_records():
    sec = render.Section("wide", ["k", "a very long header", "b"], [["x", "1" * 70, "2" * 70]])
    out = printed([sec], 60)
    assert "1" * 50 in out.replace("\n", "") and max(len(line) for line in out.splitlines()) <= 60


def test_vm_ids_print_as_pids():
    r = exitreplay.analyze(SAMPLES / "svm-mixed.v7zstd.dat")
    out = printed(render.sections(r, mode="detail"), 100)
    assert "4,003" not in out and "4003" in out


@pytest.mark.parametrize("columns,width", [("100", 100), (None, 80)])
def test_piped_output_width(columns, width):
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    env["PYTHONPATH"] = str(ROOT)
    if columns:
        env["COLUMNS"] = columns
    out = subprocess.run([sys.executable, "-m", "exitreplay", "analyze", str(SAMPLES / "svm-mixed.v7zstd.dat"),
                          "--detail"], capture_output=True, text=True, env=env, check=True).stdout
    assert max(len(line) for line in out.splitlines()) <= width
    assert max(len(line) for line in out.splitlines()) > width - 10  # it uses the width it has


@pytest.mark.parametrize("args", [["--detail"], ["--event", "msr"], ["--summary"]])
def test_piped_tables_are_ascii_bytes_that_fit(args):
    """Piped, the tables are plain ASCII: an 80-column line is 80 bytes for awk, cut or a log."""
    env = {**os.environ, "COLUMNS": "80"}
    r = subprocess.run([sys.executable, "-m", "exitreplay", "analyze", str(SAMPLES / "svm-mixed.v7zstd.dat"), *args],
                       capture_output=True, env=env, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert r.stdout.isascii()
    assert args != ["--summary"] or b" us/s" in r.stdout  # the micro sign became a u
    assert max(len(line) for line in r.stdout.splitlines()) <= 80
