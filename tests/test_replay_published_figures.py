"""The published measurements the cost profiles cite, recomputed through the model: a trace shaped
like the benchmark each was measured on, replayed with the policies for the kernels before and
after the change, priced with the profile for the CPU family. Each test says how close the model
comes and why (docs/costs.md has the same table).
"""
from __future__ import annotations

import pytest
from tracebuilder import build, fpu, kentry, kexit, uexit

from exitreplay.analysis import analyze
from exitreplay.replay.costs import load_costs
from exitreplay.replay.policy import parse_policy

N = 100
VMMCALL, HLT = 0x081, 0x078
KVM_EXIT_HLT = 5


def row(r, policy):
    return r.policies.filter(r.policies["policy"] == policy).to_dicts()[0]


def null_hypercall_loop(n=N):
    """A guest issuing VMMCALL in a loop: one KVM_RUN start, n exits handled in the kernel."""
    ev = [fpu(500, 0, 100), kentry(1_000, 0, 100)]
    for i in range(n):
        t = 2_000 + 1_000 * i
        ev += [kexit(t, 0, 100, VMMCALL), kentry(t + 300, 0, 100)]
    return build(ev)


# Xen before f64b7618e119: "VMSAVE/VMLOAD/VMSAVE/VMLOAD sequence on every vmexit/vmentry" (host
# state saved and guest state loaded before VMRUN, the reverse after #VMEXIT).
XEN_2007 = parse_policy({"name": "xen-before-f64b7618e119", "isa": "svm", "kernel": "Xen 3.0/3.1 (2007)",
                         "ops": {"exit": {"vmsave": 2, "vmload": 2}, "load_after_user_return": {"wrmsr": 1}}},
                        "test")


def test_xen_650_cycles_per_null_hypercall():
    """Xen f64b7618e119 (K. Fraser, 2007, "AMD X2"): dropping the per-exit sequence saved "about
    650 cycles for a null hypercall". Through the model: 4 VMLOAD/VMSAVE avoided per exit, nothing
    added in the loop (xen-lazy's one load costs a VMLOAD and an IST toggle once):
      per hypercall = (100 x (2 x 100 + 2 x 100) - 100 - 30) / 100 = 398.7 cycles at zen's typical
      costs; 240 .. 800 over zen's low .. high range.
    How close: 61% of 650. The op counts are exact; the gap is the CPU: Zen's VMLOAD/VMSAVE (about
    a WRMSR, ~100 cycles) are cheaper than the K8's Xen measured on (~160 each, the zen profile's
    high end is set from that figure), and 650 lies inside the model's range."""
    r = analyze(null_hypercall_loop(), [XEN_2007, "xen-lazy"], "zen", baseline=XEN_2007)
    x = row(r, "xen-lazy")
    assert (x["vmload_vmsave_avoided"], x["ist_toggle"]) == (4 * N - 1, 1)
    per_call = x["saved_cycles_typical"] / N
    assert per_call == pytest.approx((N * 400 - 100 - 30) / N)
    assert x["saved_cycles_low"] / N <= 650 <= x["saved_cycles_high"] / N
    assert per_call / 650 == pytest.approx(0.61, abs=0.01)


def hlt_loop(n=N):
    """The e79b91bb3c91 workload: a guest that issues HLT in a tight loop with HLT handled in
    user space, so each KVM_RUN is one vcpu_load, one exit and one vcpu_put: kvm_fpu load (KVM_RUN
    start), entry, hlt exit, kvm_userspace_exit (KVM_EXIT_HLT)."""
    ev = []
    for i in range(n):
        t = 10_000 * i
        ev += [fpu(t, 0, 100), kentry(t + 1_000, 0, 100), kexit(t + 2_000, 0, 100, HLT),
               uexit(t + 2_500, 0, 100, KVM_EXIT_HLT)]
    return build(ev)


def test_2021_kvm_arch_vcpu_ioctl_run_4600_to_2800_cycles():
    """e79b91bb3c91 (M. Roth, 2021, EPYC): kvm_arch_vcpu_ioctl_run() took ~4600 cycles per
    iteration of a guest hlt loop before and ~2800 after: ~1800 saved. Per iteration the model has
    1 load, 1 exit, 1 put (and no user-return work: neither kernel defers TSC_AUX to it):
      kvm-5.11: load 11 RDMSR + 1 WRMSR; exit VMLOAD, VMSAVE, WRMSR GS_BASE, LTR;
                put 11 WRMSR + 3 selector reloads
      kvm-5.12: load VMSAVE + RDMSR + WRMSR (TSC_AUX); exit 2 VMLOAD, VMSAVE, LTR; put WRMSR
      saved  = 10 RDMSR + 11 WRMSR + 3 reloads - VMLOAD - VMSAVE
             = 550 + 990 + 60 - 200 = 1400 cycles at zen's typical costs, 590 .. 2570 over its range.
    How close: 78% of 1800, inside the range. Why not all of it: the profile also shows
    svm_set_cr4() under vcpu_load shrinking (13.97% of 4600 -> 9.19% of 2800, ~390 cycles), which
    is not state switching and not modelled; and zen's WRMSR price comes from this same profile
    (native_write_msr 21.31% of 4600 / 11), so the put part agrees by construction: the model's
    kvm-5.11 put is 11 x 90 + 3 x 20 = 1050 cycles against vcpu_put's 23.13% of 4600 = 1064."""
    r = analyze(hlt_loop(), ["kvm-5.11", "kvm-5.12"], "zen", baseline="kvm-5.11")
    new = row(r, "kvm-5.12")
    old = row(r, "kvm-5.11")
    assert (old["rdmsr"], old["wrmsr"], old["seg_reload"], old["vmload"], old["vmsave"], old["ltr"]) == \
        (11 * N, 13 * N, 3 * N, N, N, N)
    assert (new["rdmsr"], new["wrmsr"], new["vmload"], new["vmsave"], new["ltr"]) == (N, 2 * N, 2 * N, 2 * N, N)
    per_iter = new["saved_cycles_typical"] / N
    assert per_iter == pytest.approx(1400)
    assert new["saved_cycles_low"] / N <= 1800 <= new["saved_cycles_high"] / N
    assert per_iter / 1800 == pytest.approx(0.78, abs=0.01)
    zen = load_costs("zen")
    put = 11 * zen.cycles("wrmsr") + 3 * zen.cycles("seg_reload")
    assert put == pytest.approx(0.2313 * 4600, rel=0.02)
