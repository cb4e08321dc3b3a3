"""Every usage error of every command is one line on stderr and exit status 2, never a traceback;
`-h` and `--version` work; a bug of ours is one line with exit status 70 (EX_SOFTWARE).

Run in a subprocess, the way a user runs it, with whatever typer (and click, or none) is installed:
typer >= 0.26 vendors its own click and raises that copy's exceptions.
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import ROOT, SAMPLES

TRACE = str(SAMPLES / "svm-idle.v7.dat")
# Each command with arguments that are otherwise complete, so the mistyped option is the only fault.
COMMANDS = {
    "info": [TRACE],
    "convert": [TRACE, "-o", "out"],
    "analyze": [TRACE],
    "policies": [],
    "synth": ["idle", "-o", "x.dat"],
    "compare": [TRACE],
    "chart": [TRACE, "--kind", "latency", "-o", "x.png"],
    "report": [TRACE, "-o", "x.html"],
}
# What each command needs that is left out for the "missing argument" case.
MISSING = {
    "info": [],
    "convert": [TRACE],
    "analyze": [],
    "synth": [],
    "chart": [TRACE, "-o", "x.png"],
    "report": [TRACE],
}


# This checkout's package, whatever the working directory.
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}


def run(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "exitreplay", *args], capture_output=True, text=True,
                          env=ENV, cwd=cwd, timeout=120)


def assert_one_usage_line(proc: subprocess.CompletedProcess, *expect: str) -> None:
    lines = proc.stderr.splitlines()
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for text in expect:
        assert text in lines[0], lines[0]
    assert proc.stdout == ""


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_mistyped_option(command, tmp_path):
    proc = run(command, *COMMANDS[command], "--polcy", "x", cwd=tmp_path)
    assert_one_usage_line(proc, f"exitreplay {command}", "--polcy")


@pytest.mark.parametrize("command", sorted(MISSING))
def test_missing_argument(command, tmp_path):
    proc = run(command, *MISSING[command], cwd=tmp_path)
    assert_one_usage_line(proc, f"exitreplay {command}", "Missing")


def test_unknown_command_suggests_the_right_one():
    assert_one_usage_line(run("anlyze", "x"), "No such command 'anlyze'", "Did you mean 'analyze'?")


def test_mistyped_option_suggests_the_right_one():
    assert_one_usage_line(run("analyze", TRACE, "--polcy", "ist-off"), "Did you mean --policy?")


def test_compare_without_traces_is_a_usage_error():
    assert_one_usage_line(run("compare"), "no traces")


@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_help(flag):
    proc = run(flag)
    assert proc.returncode == 0 and "analyze" in proc.stdout and proc.stderr == ""
    sub = run("analyze", flag)
    assert sub.returncode == 0 and "--policy" in sub.stdout


def test_help_keeps_square_brackets():
    """Help text is rich markup: an unescaped "[ray]" would vanish from the install hint."""
    proc = subprocess.run([sys.executable, "-m", "exitreplay", "analyze", "--help"], capture_output=True,
                          text=True, env={**ENV, "COLUMNS": "200"}, timeout=120)
    assert "pip install 'exitreplay[ray]'" in proc.stdout


def test_help_shows_no_type_for_flags():
    """A flag takes no value: its row must not read `--summary <bool>` (typer 0.29 prints that)."""
    proc = subprocess.run([sys.executable, "-m", "exitreplay", "analyze", "--help"], capture_output=True,
                          text=True, env={**ENV, "COLUMNS": "200"}, timeout=120)
    rows = [ln for ln in proc.stdout.splitlines() if "--summary" in ln or "--help" in ln]
    assert len(rows) == 2 and not any("<bool>" in r for r in rows), rows
    assert "<int>" in proc.stdout  # options that take a value keep their type


def test_version():
    import exitreplay

    proc = run("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"exitreplay {exitreplay.__version__}"


def test_bare_command_shows_help():
    proc = run()
    assert proc.returncode == 2 and "Commands" in proc.stdout and "Traceback" not in proc.stderr


def _crash(*_a, **_k):
    raise RuntimeError("boom\nsecond line")


def test_internal_error_is_one_line_with_status_70(monkeypatch, capsys):
    from cli_helpers import run_main

    import exitreplay.cli.analyze as mod

    monkeypatch.setattr(mod, "run_analysis", _crash)
    monkeypatch.delenv("EXITREPLAY_DEBUG", raising=False)
    res = run_main(capsys, monkeypatch, ["analyze", TRACE], "/tmp/unused-cache")
    assert res.returncode == 70
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and "internal error: RuntimeError: boom second line" in lines[0]
    assert "EXITREPLAY_DEBUG=1" in lines[0]
    monkeypatch.setenv("EXITREPLAY_DEBUG", "1")
    with pytest.raises(RuntimeError, match="boom"):
        run_main(capsys, monkeypatch, ["analyze", TRACE], "/tmp/unused-cache")


@pytest.mark.parametrize("args", [["analyze", TRACE], ["analyze", TRACE, "--detail"], ["compare", TRACE, TRACE]])
def test_a_reader_that_leaves_early_is_no_failure(args):
    """`exitreplay ... | head -1`: the reader closes the pipe after one line; the command stops
    quietly with status 0 (so `set -o pipefail` does not call it a failure). These commands print
    table after table, so the later ones meet the closed pipe."""
    p = subprocess.Popen([sys.executable, "-m", "exitreplay", *args], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, cwd=ROOT, env={**os.environ, "COLUMNS": "80"})
    first = p.stdout.readline()
    p.stdout.close()  # before the command has written the rest
    err = p.stderr.read().decode()
    assert p.wait(timeout=120) == 0, err
    assert first.strip() and err == ""


def test_a_readers_warnings_are_one_line_each(tmp_path):
    """A truncated trace is analysed with what it holds; its warnings reach stderr one line each,
    in the CLI's own words, without Python's source file and line."""
    whole = (SAMPLES / "svm-mixed.v7zstd.dat").read_bytes()
    cut = tmp_path / "cut.dat"
    cut.write_bytes(whole[: len(whole) // 3])
    r = subprocess.run([sys.executable, "-m", "exitreplay", "analyze", str(cut)], capture_output=True, text=True,
                       cwd=ROOT)
    assert r.returncode == 0, r.stderr
    lines = r.stderr.splitlines()
    assert lines and all(ln.startswith("exitreplay: warning: ") and "truncated" in r.stderr for ln in lines), lines
    assert ".py:" not in r.stderr
