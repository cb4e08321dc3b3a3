"""`perf script` text: a separate run of the same workloads, so its structure is checked against
the file itself (counted here by regex), not against a .dat."""
from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pytest
from conftest import REAL, RECORDINGS

import exitreplay
from exitreplay.formats.detect import sniff

LINE = re.compile(r"^\s*(?P<comm>.+?)\s+(?P<pid>-?\d+)\s+\[(?P<cpu>\d+)\]\s+(?P<ts>\d+\.\d+):\s+"
                  r"(?P<sys>\w+):(?P<event>\w+):\s*(?P<rest>.*?)\s*$")


def parsed_lines(path):
    return [m for m in map(LINE.match, path.read_text().splitlines()) if m]


@pytest.mark.parametrize("name", RECORDINGS)
def test_perf_script_structure(name):
    path = REAL / f"{name}.perf-script.txt"
    assert sniff(path) == "perf-script"
    lines = parsed_lines(path)
    tr = exitreplay.read_trace(path)
    assert tr.meta.source_format == "perf-script"
    assert tr.events.num_rows == len(lines) > 2000
    assert tr.meta.event_counts == dict(Counter(m["event"] for m in lines))
    assert set(tr.events.column("system").to_pylist()) == {m["sys"] for m in lines}
    assert tr.meta.cpus == max(int(m["cpu"]) for m in lines) + 1
    # time order, and per CPU the file's own order
    ts = tr.events.column("ts").to_numpy()
    assert (np.diff(ts) >= 0).all()
    cpu = tr.events.column("cpu").to_numpy()
    for c in np.unique(cpu):
        want = [int(m["ts"].replace(".", "")) * 1000 for m in lines if int(m["cpu"]) == c]
        assert ts[cpu == c].tolist() == sorted(want)
    # the events the replay needs decode to fields, with values as the lines print them
    for ev in ("sched_switch", "kvm_msr", "kvm_userspace_exit", "kvm_pio", "kvm_fpu", "kvm_emulate_insn"):
        if tr.has(ev):
            assert "text" not in tr.table(ev).column_names, ev
    uexit = [m["rest"] for m in lines if m["event"] == "kvm_userspace_exit"]
    want = [int(re.search(r"\((\d+)\)$", r)[1]) for r in uexit]  # "(reason)" when errno is 0
    assert tr.table("kvm_userspace_exit").column("reason").to_pylist() == want
    assert set(want) <= {2, 5}  # KVM_EXIT_IO, KVM_EXIT_HLT
    pio = tr.table("kvm_pio")
    want_ports = [int(re.search(r"at 0x([0-9a-f]+)", m["rest"])[1], 16) for m in lines if m["event"] == "kvm_pio"]
    assert pio.column("port").to_pylist() == want_ports
    ss = tr.table("sched_switch").to_pylist()
    text_states = [re.search(r"prev_state=(\S+)", m["rest"])[1] for m in lines if m["event"] == "sched_switch"]
    for row, st in zip(ss, text_states):
        assert (row["prev_state"] == 0x100) == (st == "R+")
        assert (row["prev_state"] == 0) == (st == "R")
    if name == "pvm-longmode-msr":  # its guests read and write KernelGSBase
        ecx = set(tr.table("kvm_msr").column("ecx").to_pylist())
        assert 0xC0000102 in ecx


def test_perf_lost_events_and_tid(tmp_path):
    src = (REAL / "pvm-pio-small.perf-script.txt").read_text().splitlines()
    first_cpu1 = next(k for k, ln in enumerate(src) if "[001]" in ln)
    src.insert(first_cpu1, "            perf     0 [001]     0.000000: PERF_RECORD_LOST lost 17")
    p = tmp_path / "lost.txt"
    p.write_text("\n".join(src) + "\n")
    tr = exitreplay.read_trace(p)
    (d,) = tr.meta.dropped
    assert (d.cpu, d.count) == (1, 17)
    assert tr.events.column("cpu")[d.row].as_py() == 1
    assert any("lost" in w for w in tr.meta.warnings)
    # perf script -F comm,pid,tid,...: "comm pid/tid"; the task is the thread
    p2 = tmp_path / "tid.txt"
    p2.write_text("       CPU 0/KVM  4000/4001 [002]  10.000001:   kvm:kvm_fpu: load\n")
    t2 = exitreplay.read_trace(p2)
    assert t2.events.to_pylist()[0] | {"flags": None} == {
        "ts": 10_000_001_000, "cpu": 2, "pid": 4001, "comm": "CPU 0/KVM", "system": "kvm",
        "event": "kvm_fpu", "flags": None, "preempt_count": None}
    assert t2.table("kvm_fpu").column("load").to_pylist() == [1]
