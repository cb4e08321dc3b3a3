"""The generator: coherent per-CPU schedules, kernel event order inside an exit, and profiles that
show what their parameters say."""
from __future__ import annotations

import collections
import math
import subprocess
import sys

import numpy as np
import pyarrow.compute as pc
import pytest
from synth_helpers import coherence_problems, table_rows

from exitreplay.errors import UsageError
from exitreplay.kvm import reasons as R
from exitreplay.synth.generator import generate
from exitreplay.synth.profiles import CLASS_REASONS, load_profile, profile_names

ALL = [(p, isa) for p in profile_names() for isa in ("svm", "vmx") if not (p == "nested" and isa == "vmx")]


def by_thread(trace):
    """pid -> [(row, event, fields)] of every event a thread emitted, in order."""
    out = collections.defaultdict(list)
    pids = trace.events.column("pid").to_pylist()
    for row, (name, fields) in enumerate(table_rows(trace)):
        out[pids[row]].append((row, name, fields))
    return out


@pytest.mark.parametrize("profile,isa", ALL)
def test_schedules_are_coherent(profile, isa):
    """Per CPU only the task switched in emits events, no task runs on two CPUs, time never goes
    back, and each vCPU thread alternates kvm_entry and kvm_exit."""
    for seed in (1, 2):
        tr = generate(profile, vcpus=3, seconds=0.03, seed=seed, isa=isa)
        assert tr.meta.event_counts["kvm_exit"] > 20
        assert coherence_problems(tr) == []


def test_same_seed_same_trace():
    a = generate("mixed", vcpus=2, seconds=0.01, seed=5)
    b = generate("mixed", vcpus=2, seconds=0.01, seed=5)
    c = generate("mixed", vcpus=2, seconds=0.01, seed=6)
    assert a.events.equals(b.events) and table_rows(a) == table_rows(b)
    assert not a.events.equals(c.events)


def test_userspace_round_trip_in_kernel_order():
    """kvm_exit -> kvm_pio (OUT) -> kvm_fpu unload -> kvm_userspace_exit -> (QEMU) -> kvm_fpu load
    -> kvm_entry, on one thread, as the real recordings show."""
    tr = generate("netio", vcpus=2, seconds=0.02, seed=3, isa="vmx")
    seen = 0
    for evs in by_thread(tr).values():
        names = [e[1] for e in evs]
        for i, (_, name, f) in enumerate(evs):
            if name != "kvm_userspace_exit":
                continue
            seen += 1
            assert names[i - 1] == "kvm_fpu" and evs[i - 1][2]["load"] == 0
            assert names[i + 1] == "kvm_fpu" and evs[i + 1][2]["load"] == 1
            j = max(k for k in range(i) if names[k] == "kvm_exit")
            exit_ = evs[j][2]
            if f["reason"] == R.KVM_EXIT_IO:
                assert exit_["exit_reason"] == R.VMX_EXIT_IO_INSTRUCTION
                pio = [e for e in evs[j:i] if e[1] == "kvm_pio"] or [e for e in evs[i:i + 3] if e[1] == "kvm_pio"]
                assert len(pio) == 1
            else:
                assert f["reason"] == R.KVM_EXIT_MMIO and exit_["exit_reason"] == R.VMX_EXIT_EPT_MISCONFIG
            k = next(k for k in range(i + 1, len(evs)) if names[k] in ("kvm_entry", "kvm_exit", "sched_switch"))
            assert names[k] in ("kvm_entry", "sched_switch")
    assert seen > 50


def test_blocking_halt_sequence_and_wait_times():
    """A HLT that blocks: sched_switch away (state S), later the wake-up on the CPU it ran on,
    sched_switch back, kvm_vcpu_wakeup with the time it waited, the interrupt, kvm_entry."""
    tr = generate("idle", vcpus=2, seconds=0.1, seed=4, isa="svm")
    ev = tr.events.to_pydict()
    sw = {r["row"]: r for r in tr.table("sched_switch").to_pylist()}
    out_at = {}
    checked = 0
    for row, (name, f) in enumerate(table_rows(tr)):
        if name == "sched_switch" and f["prev_state"] == 1 and f["prev_pid"] > 0:
            out_at[f["prev_pid"]] = ev["ts"][row]
        if name == "kvm_vcpu_wakeup" and f["waited"]:
            pid = ev["pid"][row]
            switch_in = max(r for r, s in sw.items() if r < row and s["next_pid"] == pid)
            assert f["ns"] == ev["ts"][switch_in] - out_at[pid]
            checked += 1
    assert checked > 50
    threads = by_thread(tr)
    for evs in threads.values():
        names = [e[1] for e in evs]
        for i, n in enumerate(names):
            if n == "kvm_vcpu_wakeup" and evs[i][2]["waited"]:
                assert names[i + 1: i + 4] == ["kvm_apic_accept_irq", "kvm_inj_virq", "kvm_entry"]
                assert evs[i + 3][2]["intr_info"] == 0x80000000 | evs[i + 1][2]["vec"]
                prev_exit = max(k for k in range(i) if names[k] == "kvm_exit")
                assert evs[prev_exit][2]["exit_reason"] == R.SVM_EXIT_HLT
                assert evs[i + 3][2]["rip"] == evs[prev_exit][2]["guest_rip"] + 1  # after the HLT


def _reason_shares(tr, isa):
    codes = tr.table("kvm_exit").column("exit_reason").to_numpy()
    n = codes.size
    return {R.exit_reason_name(isa, int(c)): k / n for c, k in zip(*np.unique(codes, return_counts=True))}, n


@pytest.mark.parametrize("isa", ["svm", "vmx"])
def test_exit_mix_follows_the_profile(isa):
    prof = load_profile("idle")
    tr = generate(prof, vcpus=4, seconds=0.4, seed=2, isa=isa)
    shares, n = _reason_shares(tr, {"svm": R.ISA_SVM, "vmx": R.ISA_VMX}[isa])
    exits = prof.exits_for(isa)
    total = sum(e.weight for e in exits)
    want = collections.Counter()
    for e in exits:
        want[CLASS_REASONS[e.name][isa]] += e.weight / total
    for name, p in want.items():
        got = shares.get(name, 0.0)
        # Forced interrupt exits (wake-ups, ticks) add a little to "interrupt"; 5 sigma otherwise.
        tol = 5 * math.sqrt(p * (1 - p) / n) + (0.03 if name in ("interrupt", "EXTERNAL_INTERRUPT") else 0)
        assert abs(got - p) < tol, (name, got, p)


def test_managed_msrs_dominate_syscall_heavy():
    prof = load_profile("syscall-heavy")
    tr = generate(prof, vcpus=2, seconds=0.05, seed=3, isa="svm")
    ecx = tr.table("kvm_msr").column("ecx").to_numpy()
    spec = next(e for e in prof.exits if e.name == "msr")
    w = {m.index: m.weight for m in spec.msrs}
    managed = {0xC0000102, 0xC0000081, 0xC0000082, 0xC0000083, 0xC0000084, 0x174, 0x175, 0x176}
    expected = sum(v for k, v in w.items() if k in managed) / sum(w.values())
    got = np.isin(ecx, list(managed)).mean()
    assert abs(got - expected) < 5 * math.sqrt(expected * (1 - expected) / ecx.size)
    # SVM: one msr exit per kvm_msr, EXITINFO1 says read (0) or write (1) as kvm_msr does.
    ex = tr.table("kvm_exit")
    msr_exits = pc.equal(ex.column("exit_reason"), R.SVM_EXIT_MSR)
    assert pc.sum(msr_exits).as_py() == ecx.size
    rows = by_thread(tr)
    for evs in rows.values():
        for i, (_, name, f) in enumerate(evs):
            if name == "kvm_msr":
                ex_f = evs[i - 1][2] if evs[i - 1][1] == "kvm_exit" else evs[i - 2][2]
                assert ex_f["info1"] == f["write"]


def test_nested_l1_instructions_and_vls():
    plain = generate("nested", vcpus=1, seconds=0.03, seed=5)
    vls = generate("nested", vcpus=1, seconds=0.03, seed=5, vls=True)

    def count(tr, code):
        return int(pc.sum(pc.equal(tr.table("kvm_exit").column("exit_reason"), code)).as_py())

    save, load, run = (count(plain, c) for c in (R.SVM_EXIT_VMSAVE, R.SVM_EXIT_VMLOAD, R.SVM_EXIT_VMRUN))
    assert save > 20 and abs(load - 2 * save) <= 2 and abs(run - save) <= 1
    assert count(vls, R.SVM_EXIT_VMSAVE) == count(vls, R.SVM_EXIT_VMLOAD) == 0
    assert count(vls, R.SVM_EXIT_VMRUN) > 20
    # Every VMRUN exit carries kvm_nested_vmenter; every reflected L2 exit its inject event.
    assert plain.meta.event_counts["kvm_nested_vmenter"] == run
    assert abs(plain.meta.event_counts["kvm_nested_vmexit_inject"] - run) <= 1
    for evs in by_thread(plain).values():
        names = [e[1] for e in evs]
        for i, n in enumerate(names):
            if n == "kvm_nested_vmexit_inject":
                assert names[i - 2: i] == ["kvm_exit", "kvm_nested_vmexit"]
                follow = [x for x in names[i + 1: i + 9] if x == "kvm_exit"]
                if len(follow) >= 2:
                    exits = [e[2]["exit_reason"] for e in evs[i + 1: i + 9] if e[1] == "kvm_exit"]
                    assert exits[:2] == [R.SVM_EXIT_VMSAVE, R.SVM_EXIT_VMLOAD]


def test_oversubscribed_host_preempts_and_migrates():
    tr = generate("mixed", vcpus=2, seconds=0.2, seed=8, isa="vmx")
    assert tr.meta.cpus == 4  # 8 vCPUs at 2 per CPU
    sw = tr.table("sched_switch")
    states = collections.Counter(sw.column("prev_state").to_pylist())
    assert states[0x100] > 10 and states[1] > 10  # preempted (R+) and blocked (S)
    ev = tr.events.to_pydict()
    cpus_of = collections.defaultdict(set)
    for p, c, e in zip(ev["pid"], ev["cpu"], ev["event"]):
        if e == "kvm_exit":
            cpus_of[p].add(c)
    assert sum(len(v) > 1 for v in cpus_of.values()) >= 4  # vCPU threads migrate
    # The VMs' threads: QEMU-style names and pids grouped per VM.
    comms = {p: c for p, c in zip(ev["pid"], ev["comm"]) if p in cpus_of}
    vms = collections.defaultdict(list)
    for p, c in sorted(comms.items()):
        vms[p // 100].append(c)
    assert len(vms) == 4 and all(v == ["CPU 0/KVM", "CPU 1/KVM"] for v in vms.values())


def test_host_threads_preempt_cpu_bound_vcpus():
    tr = generate("cpu", vcpus=2, seconds=0.5, seed=2, isa="svm")
    sw = tr.table("sched_switch").to_pylist()
    vcpu_pids = set(tr.table("kvm_exit").column("pid").to_pylist())
    preempted_by = collections.Counter(r["next_comm"].split("/")[0] for r in sw
                                       if r["prev_pid"] in vcpu_pids and r["prev_state"] == 0x100)
    assert preempted_by["kworker"] > 5 and preempted_by["make"] > 1
    shares, _ = _reason_shares(tr, R.ISA_SVM)
    assert shares["interrupt"] > 0.5


def test_older_kernel_template_events():
    tr = generate("nested", vcpus=1, seconds=0.01, seed=1, template="linux-4.19")
    assert tr.meta.extra["template"] == "linux-4.19"
    assert tr.table("kvm_exit").column_names[4:] == ["exit_reason", "guest_rip", "isa", "info1", "info2"]
    assert tr.table("kvm_entry").column_names[4:] == ["vcpu_id"]
    assert tr.has("kvm_nested_vmrun") and not tr.has("kvm_nested_vmenter")
    new = generate("nested", vcpus=1, seconds=0.01, seed=1)
    assert tr.table("kvm_exit").column("exit_reason").equals(new.table("kvm_exit").column("exit_reason"))


def test_bad_arguments_are_usage_errors(tmp_path):
    with pytest.raises(UsageError):
        generate("nested", isa="vmx")
    with pytest.raises(UsageError):
        generate("idle", vls=True)
    with pytest.raises(UsageError):
        generate("idle", vcpus=0)
    with pytest.raises(UsageError):
        generate("idle", isa="arm")
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\n[[exit]]\nclass = "teleport"\n')
    with pytest.raises(UsageError, match="class"):
        generate(str(bad))
    p = subprocess.run([sys.executable, "-m", "exitreplay", "synth", "nope", "-o", str(tmp_path / "x.dat")],
                       capture_output=True, text=True, check=False)
    assert p.returncode == 2 and "unknown profile" in p.stderr and "Traceback" not in p.stderr


def test_cli_writes_what_generate_makes(tmp_path):
    out = tmp_path / "c.dat"
    p = subprocess.run([sys.executable, "-m", "exitreplay", "synth", "netio", "-o", str(out), "--vcpus", "2",
                        "--seconds", "0.01", "--seed", "9", "--isa", "vmx", "--version", "7", "--compression", "zstd"],
                       capture_output=True, text=True, check=False)
    assert p.returncode == 0, p.stderr
    from exitreplay.synth.writer import write_trace
    write_trace(generate("netio", vcpus=2, seconds=0.01, seed=9, isa="vmx"), tmp_path / "d.dat", version=7,
                compression="zstd")
    assert out.read_bytes() == (tmp_path / "d.dat").read_bytes()
