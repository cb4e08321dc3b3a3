"""Hand-derived golden scenario for the VMX policies (vmx-uret, the VMX baseline; vmx-2.6.25 and
vmx-2.6.26, the two behaviours the former vmx-2008 mixed).

One VMX vCPU thread (pid 300) on CPU 0; its first kvm_entry (1000 ns) is a KVM_RUN start.
  e1  MSR_WRITE (32) + kvm_msr write LSTAR         (10000 -> 10400)
  e2  MSR_READ (31) + kvm_msr read KERNEL_GS_BASE   (20000 -> 20300)
  e3  MSR_READ (31) + kvm_msr read LSTAR            (30000 -> 30200)
  e4  HLT (12), blocked (S) to idle, woken on CPU 0 (40000, out 40100, back 49000 -> 49100)
  e5  IO_INSTRUCTION (30) + kvm_userspace_exit      (50000, userspace 50300 -> 60000)
  e6  EPT_VIOLATION (48), preempted (R) by vhost-299, a kernel thread (70000, out 70200 -> 71000)
  e7  EPT_MISCONFIG (49), no entry before the trace ends (80000)
Boundaries: puts 3 (e4, e5, e6); loads 4 (first, after e4, e5, e6); user returns 1 (e5: idle and
a kernel thread never return to user mode, and the vCPU thread switched back in each time resumes
inside KVM_RUN); loads that find host values in the user-return MSRs 2 (CPU 0's first, after e5);
the loads after e4 and e6 find the vCPU's own values (CPU 0 ran nothing else that returned to user
mode in between).
vmx-uret (KVM today): a guest write of a user-return MSR while loaded goes to the CPU at once (e1:
1 WRMSR); a read of KERNEL_GS_BASE while the guest value is live is an RDMSR (e2); a read of
LSTAR comes from the cached copy (e3: nothing).
vmx-2.6.25: reads come from the cached array (e2, e3: nothing); a write of a switched MSR while
loaded rewrites all 5 (e1: 5 WRMSR). vmx-2.6.26: the same plus reload_tss() (an LTR) at each put.
Costs: the intel profile (the default for a VMX trace), typical WRMSR 140, RDMSR 80, LTR 150.
"""
from __future__ import annotations

import pytest
from tracebuilder import VMX, build, kentry, kexit, msr, sched, uexit

from exitreplay.analysis import analyze

P = 300


def scenario():
    ev = [kentry(1_000, 0, P)]
    ev += [kexit(10_000, 0, P, 32, isa=VMX), msr(10_100, 0, P, 0xC0000082, True), kentry(10_400, 0, P)]
    ev += [kexit(20_000, 0, P, 31, isa=VMX), msr(20_100, 0, P, 0xC0000102, False), kentry(20_300, 0, P)]
    ev += [kexit(30_000, 0, P, 31, isa=VMX), msr(30_100, 0, P, 0xC0000082, False), kentry(30_200, 0, P)]
    ev += [kexit(40_000, 0, P, 12, isa=VMX), sched(40_100, 0, P, 0, 1), sched(49_000, 0, 0, P, 0),
           kentry(49_100, 0, P)]
    ev += [kexit(50_000, 0, P, 30, isa=VMX), uexit(50_300, 0, P), kentry(60_000, 0, P)]
    ev += [kexit(70_000, 0, P, 48, isa=VMX), sched(70_200, 0, P, 299, 0, "vhost-299"), sched(70_900, 0, 299, P, 1),
           kentry(71_000, 0, P)]
    ev += [kexit(80_000, 0, P, 49, isa=VMX)]
    return build(ev)


@pytest.fixture(scope="module")
def report():
    return analyze(scenario())  # defaults on a VMX trace: the VMX policies against vmx-uret


def row(report, policy):
    return report.policies.filter(report.policies["policy"] == policy).to_dicts()[0]


def ops(report, policy):
    r = row(report, policy)
    return {k: r[k] for k in ("vmload", "vmsave", "ltr", "wrmsr", "rdmsr", "seg_reload", "ist_toggle")}


def test_defaults_on_a_vmx_trace(report):
    assert report.summary["isa"] == "vmx" and report.summary["baseline"] == "vmx-uret"
    assert set(report.policies["policy"]) == {"vmx-uret", "vmx-2.6.25", "vmx-2.6.26"}
    assert report.summary["cost_profile"] == "intel"
    assert report.summary["classes"] == {"kernel": 4, "blocked": 1, "userspace": 1, "preempted": 1}
    assert report.summary["pairing"]["exits_open_at_end"] == 1


def test_vmx_uret(report):
    # WRMSR: KERNEL_GS_BASE at 4 loads and 3 puts, LSTAR+TSC_AUX at 2 loads after a user return and
    # at 1 user return, 1 lazy write (e1). RDMSR: KERNEL_GS_BASE at 3 puts, 1 lazy read (e2).
    assert ops(report, "vmx-uret") == {"vmload": 0, "vmsave": 0, "ltr": 0, "wrmsr": 4 + 3 + 2 * 2 + 2 * 1 + 1,
                                       "rdmsr": 3 + 1, "seg_reload": 0, "ist_toggle": 0}
    r = row(report, "vmx-uret")
    assert r["syncs"] == 3 + 2
    causes = {c["cause"]: c["count"] for c in report.sync_causes.to_dicts() if c["policy"] == "vmx-uret"}
    assert causes == {"put:userspace": 1, "put:preempted": 1, "put:blocked": 1, "put:migrated": 0, "put:unknown": 0,
                      "lazy:msr": 2}
    # Guest user-return MSR values stay live in host mode until a return to user mode: e5 from the
    # exit to its KVM_RUN return (300 ns); every other timed exit for its whole exit->entry time.
    assert r["guest_state_live_ns"] == 400 + 300 + 200 + 9_100 + 300 + 1_000


def test_vmx_2_6_25(report):
    # Load: 3 RDMSR (FS/GS base, host KERNEL_GS_BASE) + 5 WRMSR; put: 5 RDMSR + 5 WRMSR; e1: 5 WRMSR.
    assert ops(report, "vmx-2.6.25") == {"vmload": 0, "vmsave": 0, "ltr": 0, "wrmsr": 4 * 5 + 3 * 5 + 5,
                                         "rdmsr": 4 * 3 + 3 * 5, "seg_reload": 0, "ist_toggle": 0}
    r = row(report, "vmx-2.6.25")
    assert r["syncs"] == 3 + 1
    # Against vmx-uret: 40 - 14 = 26 more WRMSR and 27 - 4 = 23 more RDMSR, at typical 140 and 80 cycles.
    assert r["saved_cycles_typical"] == pytest.approx(-(26 * 140 + 23 * 80))
    assert r["saved_cycles_low"] == pytest.approx(-(26 * 250 + 23 * 150))  # added ops at their dearest


def test_vmx_2_6_26_adds_an_ltr_per_put(report):
    # reload_tss() ran at every put from 2.6.26 until b7ffc44d5b2e: 3 puts, 3 LTR at 150 typical.
    a, b = ops(report, "vmx-2.6.25"), ops(report, "vmx-2.6.26")
    assert b == {**a, "ltr": 3}
    assert row(report, "vmx-2.6.26")["saved_cycles_typical"] == pytest.approx(
        row(report, "vmx-2.6.25")["saved_cycles_typical"] - 3 * 150)
    assert row(report, "vmx-2.6.26")["kernel"].startswith("Linux 2.6.26")


def test_kernel_gs_base_read_before_a_put_is_an_rdmsr():
    """VMX reads KERNEL_GS_BASE with RDMSR while guest_state_loaded is set
    (vmx_read_guest_kernel_gs_base()), that is in any handler that runs before the episode's
    sched-out, even if the episode then has a put; after the put it reads the cached value.
      e1  MSR_READ + kvm_msr read KERNEL_GS_BASE, then preempted by bash (a user task) -> RDMSR, put
      e2  IO_INSTRUCTION + kvm_userspace_exit, then (completion of a userspace-handled RDMSR at the
          next KVM_RUN) kvm_msr read KERNEL_GS_BASE -> put, no RDMSR for the read (after the put)
    vmx-uret: RDMSR = puts 2 + the e1 read 1 = 3 (the earlier model dropped e1's: 2). Its WRMSR:
    loads 3 x 1 (first, e1, e2) + puts 2 + user returns 2 x 2 (bash at e1, the KVM_RUN return at e2)
    + loads after a user return 3 x 2 (all three) = 15. SVM's deferral absorbs e1's read into the
    put's sync (ist-off: no lazy sync), and so the syncs differ: vmx-uret 2 puts + 1 lazy read."""
    ev = [kentry(1_000, 0, P)]
    ev += [kexit(10_000, 0, P, 31, isa=VMX), msr(10_100, 0, P, 0xC0000102, False),
           sched(10_200, 0, P, 500, 0, "bash"), sched(11_000, 0, 500, P, 1), kentry(11_100, 0, P)]
    ev += [kexit(20_000, 0, P, 30, isa=VMX), uexit(20_100, 0, P), msr(29_000, 0, P, 0xC0000102, False),
           kentry(29_500, 0, P)]
    r = analyze(build(ev), policies=["vmx-uret", "ist-off"], baseline="vmx-uret")
    assert ops(r, "vmx-uret")["rdmsr"] == 2 + 1
    assert ops(r, "vmx-uret")["wrmsr"] == 3 + 2 + 2 * 2 + 3 * 2
    assert row(r, "vmx-uret")["syncs"] == 2 + 1
    causes = {c["cause"]: c["count"] for c in r.sync_causes.to_dicts() if c["policy"] == "ist-off"}
    assert causes["lazy:msr"] == 0
