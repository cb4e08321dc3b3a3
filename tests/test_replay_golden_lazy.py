"""Hand-derived golden scenario: the lazy syncs of the deferring SVM policies (ist-off, no-ist,
ist-config), one per kind of handler that touches state those policies leave in the CPU.

One SVM vCPU thread (pid 100) on CPU 0; its first kvm_entry at 1000 ns is a KVM_RUN start (a load).
  e1  npf (0x400) + kvm_emulate_insn of SLDT (0f 00 c0)
                                       -> lazy read: the emulated instruction reads LDTR (VMSAVE)
  e2  read_tr (0x069)                  -> lazy read: TR read intercept (VMSAVE)
  e3  write_ldtr (0x06c)               -> lazy write: LDTR write intercept (VMSAVE, then VMLOAD)
  e4  task_switch (0x07d)              -> lazy write: reads TR, writes every segment
  e5  smi (0x062) + kvm_smm_transition -> lazy write: SMM entry saves and replaces the state
  e6  cpuid (0x072)                    -> nothing deferred is touched
  e7  msr (0x07c) + kvm_msr read EFER  -> EFER is switched by VMRUN itself: nothing deferred
  e8  io (0x07b) + kvm_emulate_insn (a string OUT, 6e) + kvm_userspace_exit -> a put, which syncs
                                          everything anyway: its emulation costs nothing more
So: loads 2 (first, after e8), puts 1 (e8), user returns 1 (e8), loads after a user return 2
(first, after e8), lazy reads 2 (e1, e2), lazy writes 3 (e3, e4, e5); 8 exits, each with the GS base
switched by hand on a Linux host (ist-off, no-ist, ist-config).
Costs: the zen profile's typical VMLOAD/VMSAVE 100, IST toggle 30, GS base switch 160.
"""
from __future__ import annotations

import pytest
from tracebuilder import build, emulate, kentry, kexit, msr, smm, uexit

from exitreplay.analysis import analyze

P = 100
EXITS = [0x400, 0x069, 0x06C, 0x07D, 0x062, 0x072, 0x07C, 0x07B]


def scenario():
    ev = [kentry(1_000, 0, P)]
    for i, code in enumerate(EXITS):
        t = 10_000 * (i + 1)
        ev.append(kexit(t, 0, P, code, info1=0))
        if i == 0:
            ev.append(emulate(t + 100, 0, P, b"\x0f\x00\xc0"))
        if i == 7:
            ev.append(emulate(t + 100, 0, P, b"\x6e"))
        if i == 4:
            ev.append(smm(t + 100, 0, P, entering=True))
        if i == 6:
            ev.append(msr(t + 100, 0, P, 0xC0000080, False))
        if i == 7:
            ev.append(uexit(t + 200, 0, P))
        ev.append(kentry(t + 1_000, 0, P))
    return build(ev, cpus=2)


@pytest.fixture(scope="module")
def report():
    return analyze(scenario(), policies=["kvm-today", "ist-off", "no-ist", "ist-config"], baseline="kvm-today")


def row(report, policy):
    return report.policies.filter(report.policies["policy"] == policy).to_dicts()[0]


def causes(report, policy):
    return {c["cause"]: c["count"] for c in report.sync_causes.to_dicts() if c["policy"] == policy}


def test_ist_off_lazy_syncs(report):
    r = row(report, "ist-off")
    # VMSAVE: loads 2 (host) + puts 1 (guest) + lazy reads 2 + lazy writes 3 = 8.
    # VMLOAD: loads 2 (guest) + puts 1 (host) + lazy writes 3 = 6. IST toggles: loads 2 + puts 1.
    # WRMSR TSC_AUX: loads after a user return 2 + user return 1 = 3. GS base: 8 exits.
    assert (r["vmsave"], r["vmload"], r["ist_toggle"], r["wrmsr"], r["ltr"], r["rdmsr"], r["gsbase"]) == \
        (8, 6, 3, 3, 0, 0, 8)
    c = causes(report, "ist-off")
    assert (c["lazy:emulation"], c["lazy:segment"], c["lazy:task_switch"], c["lazy:smm"]) == (1, 2, 1, 1)
    assert c["lazy:msr"] == 0 and c["lazy:nested"] == 0
    assert c["put:userspace"] == 1
    assert r["syncs"] == 1 + 5
    assert r["mean_exits_between_syncs"] == 8 / 6


def test_no_ist_and_ist_config_switch_like_ist_off_without_toggles(report):
    base = row(report, "ist-off")
    span_x_cpus = (80_000 + 1_000 - 1_000) * 2  # first event 1000 ns, last entry 81000 ns; 2 CPUs
    for name in ("no-ist", "ist-config"):
        r = row(report, name)
        assert r["ist_toggle"] == 0
        assert all(r[k] == base[k] for k in ("vmload", "vmsave", "wrmsr", "ltr", "rdmsr", "gsbase", "syncs"))
        assert causes(report, name) == causes(report, "ist-off")
        # IST is gone for good (or built out): exposed for the whole trace on every CPU.
        assert r["ist_off_ns"] == span_x_cpus and "always" in r["ist_off_scope"]
    # ist-off only while a vCPU is loaded: each exit's host time up to its entry (1000 ns), or up
    # to the put (e8: the userspace exit 200 ns after the exit).
    assert base["ist_off_ns"] == 7 * 1_000 + 200


def test_kvm_today_has_no_lazy_syncs(report):
    r = row(report, "kvm-today")
    # 3 per exit (2 VMLOAD + 1 VMSAVE), host VMSAVE at 2 loads; TSC_AUX as ist-off.
    assert (r["vmload"], r["vmsave"], r["wrmsr"]) == (16, 8 + 2, 3)
    assert r["syncs"] == 8 and causes(report, "kvm-today")["every exit"] == 8
    assert not any(k.startswith("lazy:") for k in causes(report, "kvm-today"))
    saved = row(report, "ist-off")["saved_cycles_typical"]
    # (16 - 6) VMLOAD and (10 - 8) VMSAVE saved; 3 IST toggles and 8 GS base switches added.
    assert saved == pytest.approx((16 - 6) * 100 + (10 - 8) * 100 - 3 * 30 - 8 * 160)


def test_emulation_rule_is_a_policy_option(report):
    # The conservative rule (every emulation may read FS/GS/TR/LDTR) is `emulation = "all"` (or
    # true): it syncs at e1 as the decoded rule does; e8's emulation is in a put episode either
    # way. A policy that trusts the emulator ("none") loses the e1 sync.
    import dataclasses

    from exitreplay.replay.policy import load_policy
    base = load_policy("ist-off")
    pols = [dataclasses.replace(base, name=f"ist-off-{mode}", lazy=dataclasses.replace(base.lazy, emulation=mode))
            for mode in ("all", "none")]
    r = analyze(scenario(), policies=["kvm-today", *pols], baseline="kvm-today")
    assert causes(r, "ist-off-all")["lazy:emulation"] == 1
    assert "lazy:emulation" not in causes(r, "ist-off-none")
    assert row(r, "ist-off-none")["vmsave"] == row(report, "ist-off")["vmsave"] - 1


def test_unknown_msr_index_counts_as_a_sync_when_kvm_msr_is_not_recorded():
    # Two MSR exits, no kvm_msr events in the trace: their index is unknown, so ist-off must assume
    # the worst (a deferred MSR). EXITINFO1 says which is a write (1) and which a read (0).
    ev = [kentry(1_000, 0, P), kexit(2_000, 0, P, 0x07C, info1=0), kentry(2_500, 0, P),
          kexit(3_000, 0, P, 0x07C, info1=1), kentry(3_500, 0, P)]
    r = analyze(build(ev), policies=["kvm-today", "ist-off"])
    c = causes(r, "ist-off")
    assert c["lazy:msr_unknown_index"] == 2
    o = row(r, "ist-off")
    assert (o["vmsave"], o["vmload"]) == (1 + 2, 1 + 1)  # first load + read (VMSAVE) + write (VMSAVE+VMLOAD)
    assert any("no kvm_msr recorded" in w for w in r.warnings)
