"""analyze on the committed real recordings (a KVM that never fires kvm_exit/kvm_entry): no crash
in any form, a clear warning, and the sync-point events counted as the test counts them itself,
from `trace-cmd report -R` of the .dat files and from the text files' own lines."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter

import pytest
from conftest import DAT_VARIANTS, RECORDINGS, trace_cmd_report

import exitreplay

TEXT_FORMS = ["report.txt", "ftrace.txt", "perf-script.txt"]
FORMS = [f"{v}.dat" for v in DAT_VARIANTS] + TEXT_FORMS
# "comm-pid [cpu] ... ts: event: rest" (trace-cmd report, ftrace) or "comm pid [cpu] ts: sys:event: rest" (perf)
HEAD = re.compile(r"^\s*(?P<comm>.+?)[- ]\s*(?P<pid>\d+)\s+\[(?P<cpu>\d+)\]\s+(?:\S+\s+)?\d+\.\d+:\s+"
                  r"(?:\w+:)?(?P<event>\w+):\s*(?P<rest>.*)$")
VCPU_EVENTS = {"kvm_exit", "kvm_entry", "kvm_userspace_exit", "kvm_fpu", "kvm_msr", "kvm_pio", "kvm_mmio",
               "kvm_emulate_insn", "kvm_vcpu_wakeup"}
KGS = 0xC0000102


def _count_text(text: str) -> dict[str, int]:
    """The sync-point events of one trace's text, by the test's own reading of each line form."""
    lines = [m for m in map(HEAD.match, text.splitlines()) if m]
    vcpu = {int(m["pid"]) for m in lines if m["event"] in VCPU_EVENTS}
    c: Counter = Counter()
    for m in lines:
        ev, rest = m["event"], m["rest"]
        if ev == "kvm_msr":
            raw = re.search(r"write=(\d+) ecx=([0-9a-f]+)", rest)
            if raw:
                write, ecx = raw[1] != "0", int(raw[2], 16)
            else:
                fmt = re.match(r"msr_(read|write) ([0-9a-f]+)", rest)
                write, ecx = fmt[1] == "write", int(fmt[2], 16)
            if ecx == KGS:
                c["kgs_writes" if write else "kgs_reads"] += 1
        elif ev == "kvm_userspace_exit":
            c["userspace"] += 1
        elif ev == "sched_switch":
            kv = re.search(r"prev_pid=(\d+) .*prev_state=(\S+) (?:==> )?next_comm=.* next_pid=(\d+)", rest)
            if kv:
                prev, state, nxt = int(kv[1]), kv[2], int(kv[3])
            else:
                p = re.match(r".*:(\d+) \[\d+\] (\S+) ==> .*:(\d+) \[", rest)
                prev, state, nxt = int(p[1]), p[2], int(p[3])
            if prev in vcpu and prev != nxt:
                c["sched_out"] += 1
                if not state.isdigit():
                    c["letters"] += 1
                    c["runnable" if state in ("R", "R+") else "sleeping"] += 1
    c["threads"] = len(vcpu)
    return dict(c)


def _expected(path, trace_cmd) -> dict[str, int]:
    if path.suffix == ".dat":
        return _count_text(trace_cmd_report(path, "-R"))
    return _count_text(path.read_text(errors="replace"))


@pytest.mark.parametrize("recording", RECORDINGS)
@pytest.mark.parametrize("form", FORMS)
def test_sync_points_counted_without_kvm_exit(real_dir, trace_cmd, recording, form):
    path = real_dir / f"{recording}.{form}"
    report = exitreplay.analyze(path)
    assert report.summary["exits"] == 0 and report.policies.height == 0
    warn = [w for w in report.warnings if w.startswith("no kvm_exit events")]
    assert len(warn) == 1 and "exit-level replay impossible" in warn[0] and "kvm_userspace_exit" in warn[0]
    want = _expected(path, trace_cmd)
    got = report.summary["sync_events"]
    assert got["kvm_userspace_exit"] == want["userspace"] > 0
    assert got["sched_out_of_vcpu_threads"] == want["sched_out"] > 0
    assert report.summary["vcpus"] == want["threads"]
    if want.get("letters") == want["sched_out"]:  # text forms spell the state out
        assert got["preemptions"] == want["runnable"] and got["blockings"] == want["sleeping"]
    if recording == "pvm-longmode-msr":
        # The guest's rdmsr/wrmsr of KernelGSBase, 200 of each per VM (README of tests/data/real).
        assert got["kvm_msr_kernel_gs_base_reads"] == want["kgs_reads"] > 0
        assert got["kvm_msr_kernel_gs_base_writes"] == want["kgs_writes"] > 0
        assert got["kvm_msr_kernel_gs_base"] == want["kgs_reads"] + want["kgs_writes"]
    else:
        assert "kvm_msr" not in got


@pytest.mark.parametrize("form", ["v7zstd.dat", "report.txt", "perf-script.txt"])
def test_cli_on_recordings_without_kvm_exit(real_dir, trace_cmd, form):
    path = real_dir / f"pvm-longmode-msr.{form}"
    table = subprocess.run([sys.executable, "-m", "exitreplay", "analyze", str(path)], capture_output=True,
                           text=True, check=False)
    assert table.returncode == 0, table.stderr
    assert "warning: no kvm_exit events: exit-level replay impossible" in " ".join(table.stdout.split())
    out = subprocess.run([sys.executable, "-m", "exitreplay", "analyze", str(path), "--format", "json"],
                         capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    want = _expected(path, trace_cmd)
    assert any(w.startswith("no kvm_exit events") for w in data["warnings"])
    assert data["summary"]["exits"] == 0
    assert data["summary"]["sync_events"]["kvm_userspace_exit"] == want["userspace"]
    assert data["summary"]["sync_events"]["kvm_msr_kernel_gs_base_reads"] == want["kgs_reads"]
    assert data["summary"]["sync_events"]["sched_out_of_vcpu_threads"] == want["sched_out"]


def test_vcpu_filter_on_a_trace_without_exits_is_a_one_line_error(real_dir):
    path = real_dir / "pvm-pio-small.v7.dat"
    r = subprocess.run([sys.executable, "-m", "exitreplay", "analyze", str(path), "--vcpu", "0"],
                       capture_output=True, text=True, check=False)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "no kvm_exit" in r.stderr
