"""The sample traces: listed in their README with the command that made them, small, read by
trace-cmd and exitreplay alike, and reproducible from that command."""
from __future__ import annotations

import re
import shlex
import subprocess
import sys

import pytest
from conftest import SAMPLES
from synth_helpers import coherence_problems, trace_cmd_events

import exitreplay

README = (SAMPLES / "README.md").read_text()
COMMANDS = {shlex.split(line)[4]: shlex.split(line)[1:] for line in README.splitlines()
            if line.startswith("exitreplay synth ")}
FILES = sorted(p.name for p in SAMPLES.glob("*.dat"))


def test_every_sample_is_listed_with_its_command():
    listed = set(re.findall(r"^\| `([^`]+\.dat)` \|", README, re.MULTILINE))
    assert listed == set(FILES)
    generated = {f for f in FILES if not f.startswith("pvm-")}
    assert set(COMMANDS) == generated


@pytest.mark.parametrize("name", FILES)
def test_sample_reads_alike_in_trace_cmd_and_exitreplay(trace_cmd, name):
    path = SAMPLES / name
    assert path.stat().st_size < 2_000_000
    tr = exitreplay.read_trace(path)
    got = trace_cmd_events(path)
    assert len(got) == len(tr) > 1000
    assert [g[0] for g in got] == tr.events.column("ts").to_pylist()
    if not name.startswith("pvm-"):
        assert coherence_problems(tr) == []


@pytest.mark.parametrize("name", ["svm-nested.v7.dat", "svm-syscall-heavy-linux4.19.v6.dat"])
def test_sample_is_what_its_command_makes(tmp_path, name):
    args = COMMANDS[name]
    args[args.index("-o") + 1] = str(tmp_path / name)
    p = subprocess.run([sys.executable, "-m", "exitreplay", *args], capture_output=True, text=True, check=False)
    assert p.returncode == 0, p.stderr
    assert (tmp_path / name).read_bytes() == (SAMPLES / name).read_bytes(), \
        "regenerate the samples (sample_traces/regenerate.sh) after changing the generator"
