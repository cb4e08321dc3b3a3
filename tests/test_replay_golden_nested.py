"""Hand-derived golden scenario: an L0 trace of L1 (a KVM guest hypervisor, SVM) running L2.

L1's vCPU thread (pid 200) on CPU 0; its first kvm_entry (1000 ns) starts KVM_RUN. What L0 sees of
one L2 round trip handled by L1 (exit -> entry times in brackets):
  e1  vmrun (0x080) + kvm_nested_vmenter          L1 enters L2                        [500]
  e2  npf (0x400) + kvm_nested_vmexit             an L2 exit L0 handles itself        [600]
  e3  io (0x07b) + kvm_nested_vmexit + kvm_nested_vmexit_inject
                                                  an L2 exit reflected to L1          [700]
  e4  vmsave (0x083)                              L1 saves L2's state                 [1000]
  e5  vmload (0x082)                              L1 loads its own host state         [1200]
  e6  cpuid (0x072)                               L1's own exit, not a nested one     [300]
  e7  vmload (0x082)                              L1 loads L2's state again           [1400]
  e8  vmrun (0x080) + kvm_nested_vmenter          back into L2                        [500]
L1's intercepted VMLOAD/VMSAVE: e4, e5, e7 (2 VMLOAD, 1 VMSAVE), 3600 ns measured. Among the VMRUN and
VMSAVE exits (e1 R, e4 S, e8 R) the only VMSAVE is the first after a VMRUN: L1's per-L2-exit guest
VMSAVE, so this trace shows no L1 vcpu_load (a load would add the host-area VMSAVE).
Costs: the zen profile (typical VMLOAD/VMSAVE 100; kvm-today's per-exit switching 2 VMLOAD + 1 VMSAVE
= 300 cycles).
"""
from __future__ import annotations

import pytest
from tracebuilder import build, kentry, kexit, nested_inject, nested_vmenter, nested_vmexit

from exitreplay.analysis import analyze

P = 200
EXITS = [(0x080, 500), (0x400, 600), (0x07B, 700), (0x083, 1_000), (0x082, 1_200), (0x072, 300), (0x082, 1_400),
         (0x080, 500)]


def scenario():
    ev = [kentry(1_000, 0, P)]
    for i, (code, lat) in enumerate(EXITS):
        t = 10_000 * (i + 1)
        ev.append(kexit(t, 0, P, code))
        if code == 0x080:
            ev.append(nested_vmenter(t + 100, 0, P))
        if i in (1, 2):
            ev.append(nested_vmexit(t + 50, 0, P, code))
        if i == 2:
            ev.append(nested_inject(t + 100, 0, P, code))
        ev.append(kentry(t + lat, 0, P))
    return build(ev)


@pytest.fixture(scope="module")
def report():
    return analyze(scenario())  # defaults: every SVM policy, and the nested ones on a nested trace


def nested(report, policy):
    return report.nested.filter(report.nested["policy"] == policy).to_dicts()[0]


def test_nested_episodes_and_default_policies(report):
    assert report.summary["classes"] == {"nested": 7, "kernel": 1}
    names = set(report.nested["policy"])
    assert names == {"nested-measured", "nested-vls", "nested-l1-ist-off"}
    assert not names & set(report.policies["policy"])  # nested policies have their own table


def test_nested_measured(report):
    # KVM today: all three exits stay; their measured time is what they cost.
    n = nested(report, "nested-measured")
    assert (n["l1_vmload_vmsave_exits"], n["l1_vmload_exits"], n["l1_vmsave_exits"]) == (3, 2, 1)
    assert (n["remaining_exits"], n["removed_exits"]) == (3, 0)
    assert (n["measured_ns_total"], n["measured_ns_removed"]) == (1_000 + 1_200 + 1_400, 0)
    assert n["l0_cycles_saved_typical"] == 0


def test_nested_vls(report):
    # Virtual VMLOAD/VMSAVE: no exits to L0, so their 3600 ns go, and so does L0's own per-exit
    # switching for each (kvm-today: 300 typical cycles); the instructions still run natively in
    # L1: 2 VMLOAD + 1 VMSAVE = 300 typical cycles (zen: 60/100/200 each).
    n = nested(report, "nested-vls")
    assert (n["remaining_exits"], n["removed_exits"], n["measured_ns_removed"]) == (0, 3, 3_600)
    assert n["l0_cycles_saved_typical"] == pytest.approx(3 * 300)
    assert n["native_cycles_added_typical"] == pytest.approx(2 * 100 + 100)
    assert n["native_cycles_added_low"] == pytest.approx(3 * 60)
    assert n["native_cycles_added_high"] == pytest.approx(3 * 200)


def test_nested_l1_ist_off(report):
    # L1 running ist-off drops its per-L2-exit VMLOAD/VMSAVE (all three here: the trace shows no
    # L1 load), and runs nothing natively instead.
    n = nested(report, "nested-l1-ist-off")
    assert n["l1_loads"] == 0
    assert (n["remaining_exits"], n["removed_exits"], n["measured_ns_removed"]) == (0, 3, 3_600)
    assert n["l0_cycles_saved_typical"] == pytest.approx(3 * 300)
    assert n["native_cycles_added_typical"] == 0


def test_nested_l1_ist_off_keeps_l1_load_and_put_pairs():
    """Two L2 round trips with an L1 vcpu_load between them (L1's vCPU thread was put and loaded
    again in L1, invisible to L0 except for L1's host-area VMSAVE):
      R1 vmrun | S1 vmsave (guest, after #VMEXIT) | L1 vmload (host area)
      | S2 vmsave (host area: L1's load) | L2 vmload (guest) | R2 vmrun
      | S3 vmsave (guest) | L3 vmload (host area) | L4 vmload (guest) | R3 vmrun
    VMRUN/VMSAVE sequence R S S R S R: S2 is not the first VMSAVE after a VMRUN, so it is L1's
    load: 1 load. Today: 7 VMLOAD/VMSAVE exits (S1 L1 S2 L2 S3 L3 L4). L1 running ist-off keeps,
    per load, the host VMSAVE and guest VMLOAD, and adds at the put before it a guest VMSAVE and
    host VMLOAD: 4 exits remain, 3 go (the earlier model removed all 7)."""
    seq = [0x080, 0x083, 0x082, 0x083, 0x082, 0x080, 0x083, 0x082, 0x082, 0x080]
    ev = [kentry(1_000, 0, P)]
    for i, code in enumerate(seq):
        t = 10_000 * (i + 1)
        ev += [kexit(t, 0, P, code), kentry(t + 1_000, 0, P)]
    r = analyze(build(ev), policies=["kvm-today", "nested-measured", "nested-l1-ist-off"])
    n = nested(r, "nested-l1-ist-off")
    assert (n["l1_vmload_vmsave_exits"], n["l1_loads"], n["remaining_exits"], n["removed_exits"]) == (7, 1, 4, 3)
    assert n["measured_ns_removed"] == 3 * 1_000
    assert n["l0_cycles_saved_typical"] == pytest.approx(3 * 300)
    assert nested(r, "nested-measured")["l1_loads"] == 1


def test_l0_ist_off_syncs_only_at_emulated_vmload_vmsave(report):
    # L0 running ist-off itself: only the emulated VMSAVE (e4, vmload_vmsave_interception() reads
    # vmcb01's VMLOAD-managed fields: a lazy read, VMSAVE) and VMLOAD (e5, e7: a write, VMSAVE +
    # VMLOAD) touch L1's deferred state. VMRUN (e1, e8) and #VMEXIT emulation (e3) copy VMRUN-switched
    # state only, and e2 (an L2 exit L0 handles) touches nothing: no sync. Plus the first load
    # (VMSAVE host + VMLOAD guest) and the GS base switch at each of the 8 exits. (The earlier model
    # made all 7 nested episodes lazy writes: 8 VMSAVE, 8 VMLOAD.)
    row = report.policies.filter(report.policies["policy"] == "ist-off").to_dicts()[0]
    assert (row["vmsave"], row["vmload"], row["gsbase"]) == (1 + 1 + 2, 1 + 2, 8)
    causes = {c["cause"]: c["count"] for c in report.sync_causes.to_dicts() if c["policy"] == "ist-off"}
    assert causes["lazy:nested"] == 3


def test_vls_trace_has_nothing_to_remove():
    # The same round trip with virtual VMLOAD/VMSAVE: L0 never sees e4, e5, e7.
    ev = [kentry(1_000, 0, P)]
    for i, (code, lat) in enumerate(EXITS):
        if code in (0x082, 0x083):
            continue
        t = 10_000 * (i + 1)
        ev += [kexit(t, 0, P, code), kentry(t + lat, 0, P)]
    r = analyze(build(ev), policies=["kvm-today", "nested-measured", "nested-vls"])
    for name in ("nested-measured", "nested-vls"):
        n = nested(r, name)
        assert n["l1_vmload_vmsave_exits"] == 0 and n["measured_ns_removed"] == 0


def test_pre_5x_kvm_nested_vmrun_counts_as_a_nested_transition():
    # Linux 4.19 names the L2 entry event kvm_nested_vmrun (later kvm_nested_vmenter). An exit
    # with one attached is a nested transition even when its own reason is not VMRUN.
    ev = [kentry(1_000, 0, P), kexit(2_000, 0, P, 0x072),
          (2_100, 0, P, "kvm_nested_vmrun", {"rip": 0x1000, "vmcb": 0x5000, "nested_rip": 0x2000, "int_ctl": 0,
                                             "event_inj": 0, "npt": 1}),
          kentry(2_500, 0, P), kexit(3_000, 0, P, 0x072), kentry(3_500, 0, P)]
    r = analyze(build(ev), policies=["kvm-today"])
    assert r.episodes["n_nested_vmenter"].to_list() == [1, 0]
    assert r.summary["classes"] == {"nested": 1, "kernel": 1}
