"""Hand-derived scenarios for the kernel facts the replay models (docs/model.md, docs/policies.md),
one per fix: the GS base on a Linux host, user returns that follow the CPU's task sequence, a vCPU
thread resuming after another, two VMs on one CPU, a trace starting mid-exit, a CPU change with no
sched_switch, lost events on one CPU, and emulated instructions decoded.

Costs are the zen profile's typical ones (the SVM default): VMLOAD/VMSAVE 100, WRMSR 90, RDMSR
55, IST toggle 30, GS base switch 160 with FSGSBASE, 55 + 2 x 90 = 235 with the MSR pair; on VMX
traces the intel profile.
"""
from __future__ import annotations

import pytest
from tracebuilder import VMX, build, emulate, fpu, kentry, kexit, sched, uexit

from exitreplay.analysis import analyze

NPF, HLT, IO = 0x400, 0x078, 0x07B
VMX_HLT, VMX_EPT, VMX_IO = 12, 48, 30


def row(r, policy):
    return r.policies.filter(r.policies["policy"] == policy).to_dicts()[0]


def ops(r, policy):
    x = row(r, policy)
    return {k: x[k] for k in ("vmload", "vmsave", "ltr", "wrmsr", "rdmsr", "seg_reload", "ist_toggle", "gsbase")
            if x[k]}


def causes(r, policy):
    return {c["cause"]: c["count"] for c in r.sync_causes.to_dicts() if c["policy"] == policy and c["count"]}


# --- 1. the GS base on a Linux host --------------------------------------------------------------

def kernel_loop(n=10, pid=100):
    """One vCPU (KVM_RUN started at 500 ns: kvm_fpu load), n kernel-handled NPF exits, no put."""
    ev = [fpu(500, 0, pid), kentry(1_000, 0, pid)]
    for i in range(n):
        t = 2_000 + 1_000 * i
        ev += [kexit(t, 0, pid, NPF), kentry(t + 400, 0, pid)]
    return build(ev)


def test_linux_ist_off_pays_the_gs_switch_per_exit_xen_does_not():
    """10 exits, 1 load (the KVM_RUN start), no put, no user return.
    kvm-today: 2 VMLOAD + 1 VMSAVE per exit, host VMSAVE at the load, TSC_AUX WRMSR at the load.
    ist-off (Linux): VMSAVE host + VMLOAD guest + IST toggle + TSC_AUX at the load, and the GS base
    switched at each of the 10 exits. xen-lazy: VMLOAD guest + toggle + TSC_AUX at the load, nothing
    per exit. Saved against kvm-today:
      ist-off  (20-1) x 100 + (11-1) x 100 - 30 - 10 x 160 = 1270
      xen-lazy (20-1) x 100 + 11 x 100 - 30               = 2970
    Before paying for the GS switch ist-off would save 1270 + 1600 = 2870 (xen-lazy's 2970 less the
    host VMSAVE a Linux load needs)."""
    r = analyze(kernel_loop(), ["kvm-today", "ist-off", "xen-lazy"], baseline="kvm-today")
    assert ops(r, "kvm-today") == {"vmload": 20, "vmsave": 11, "wrmsr": 1}
    assert ops(r, "ist-off") == {"vmload": 1, "vmsave": 1, "wrmsr": 1, "ist_toggle": 1, "gsbase": 10}
    assert ops(r, "xen-lazy") == {"vmload": 1, "wrmsr": 1, "ist_toggle": 1}
    ist, xen = row(r, "ist-off"), row(r, "xen-lazy")
    assert ist["saved_cycles_typical"] == pytest.approx(1270)
    assert xen["saved_cycles_typical"] == pytest.approx(2970)
    assert ist["gsbase_cycles_per_exit"] == 160 and ist["gsbase_cycles_typical"] == 1600
    assert ist["saved_before_gsbase_cycles_typical"] == pytest.approx(2870)
    assert xen["gsbase_cycles_typical"] == 0 and xen["kernel"].startswith("Xen")
    assert r.summary["cost_profile"] == "zen" and r.summary["gsbase_method"] == "fsgsbase"


def test_gs_switch_by_msr_on_hosts_without_fsgsbase():
    """The same loop priced with the MSR pair (RDMSR + 2 WRMSR = 235 per exit): ist-off saves
    1900 + 1000 - 30 - 10 x 235 = 520; the counts do not change."""
    r = analyze(kernel_loop(), ["kvm-today", "ist-off"], baseline="kvm-today", gsbase_method="msr")
    assert r.summary["gsbase_method"] == "msr"
    assert ops(r, "ist-off")["gsbase"] == 10
    assert row(r, "ist-off")["saved_cycles_typical"] == pytest.approx(1900 + 1000 - 30 - 2350)


# --- 2. user returns follow the CPU's task sequence ----------------------------------------------

def test_user_task_after_idle_fires_the_notifier():
    """vCPU thread A (pid 100) on CPU 0 blocks in HLT; the CPU idles, then bash (a user task)
    runs there, then idle again, then A is woken inside KVM_RUN.
      KVM_RUN start (kvm_fpu), entry              -> load 1: CPU 0 holds host values (first load there)
      e1 hlt, A -> idle (S)                       -> put 1 (blocked); the notifier flag goes to idle
      idle -> bash                                -> bash returns to user mode: user return 1,
                                                     attributed to e1's put
      bash -> idle, idle -> A (inside KVM_RUN)    -> no user return (idle, and A goes back to its guest)
      entry                                       -> load 2: CPU 0 holds host values again
      e2 npf, entry                               -> nothing
    kvm-today: per exit 2 VMLOAD + 1 VMSAVE (2 exits), host VMSAVE at 2 loads, TSC_AUX WRMSR at
    2 loads after a user return and at 1 user return. (The earlier model looked only at A's own
    next task, the idle task: no user return and one TSC_AUX write.)"""
    ev = [fpu(500, 0, 100), kentry(1_000, 0, 100),
          kexit(2_000, 0, 100, HLT), sched(2_100, 0, 100, 0, 1),
          sched(3_000, 0, 0, 700, 0, "bash"), sched(4_000, 0, 700, 0, 1), sched(5_000, 0, 0, 100, 0),
          kentry(5_100, 0, 100), kexit(6_000, 0, 100, NPF), kentry(6_400, 0, 100)]
    r = analyze(build(ev), ["kvm-today"])
    assert ops(r, "kvm-today") == {"vmload": 4, "vmsave": 2 + 2, "wrmsr": 2 + 1}
    assert r.episodes["user_returns"].to_list() == [1, 0]
    assert r.episodes["uret_state"].to_list() == [1, None]  # e1's load found host values
    assert r.summary["pairing"]["user_returns"] == 1


def two_vcpus_two_vms(isa):
    """One CPU (CPU 0), three vCPU threads: A (pid 100, vCPU 0) and B (pid 101, vCPU 1) of one VM,
    C (pid 200, vCPU 0) of another (a vCPU id that does not grow starts a new VM).
      A: kvm_fpu, entry                           load: host values (first on CPU 0)
      A e1 hlt, A -> B                            put (blocked); B resumes inside KVM_RUN (its first
                                                  event after the switch is an entry): no user return
      B entry                                     load (a first entry after a sched-in): A's values,
                                                  same VM -> TSC_AUX differs (per vCPU)
      B e2 hlt, B -> A                            put; A resumes inside KVM_RUN
      A entry                                     load: B's values -> TSC_AUX
      A e3 ept/npf, preempted (R) by C            put; C resumes inside KVM_RUN
      C entry                                     load: another VM's values -> LSTAR and TSC_AUX
      C e4 hlt, C -> A                            put; A resumes inside KVM_RUN
      A entry                                     load: C's values, another VM -> LSTAR and TSC_AUX
      A e5 io + kvm_userspace_exit                put; A returns to user mode: user return
      A kvm_fpu, entry                            load: host values
    Loads 6: host 2, another vCPU 2, another VM 2; puts 5; user returns 1."""
    hlt, ept, io = (VMX_HLT, VMX_EPT, VMX_IO) if isa == VMX else (HLT, NPF, IO)
    a, b, c = 100, 101, 200
    ev = [fpu(500, 0, a), kentry(1_000, 0, a, vcpu=0),
          kexit(2_000, 0, a, hlt, isa=isa, vcpu=0), sched(2_100, 0, a, b, 1, "CPU 1/KVM"), kentry(2_200, 0, b, vcpu=1),
          kexit(3_000, 0, b, hlt, isa=isa, vcpu=1), sched(3_100, 0, b, a, 1, "CPU 0/KVM"), kentry(3_200, 0, a, vcpu=0),
          kexit(4_000, 0, a, ept, isa=isa, vcpu=0), sched(4_100, 0, a, c, 0, "CPU 0/KVM"), kentry(4_200, 0, c, vcpu=0),
          kexit(5_000, 0, c, hlt, isa=isa, vcpu=0), sched(5_100, 0, c, a, 1, "CPU 0/KVM"), kentry(5_200, 0, a, vcpu=0),
          kexit(6_000, 0, a, io, isa=isa, vcpu=0), uexit(6_100, 0, a), fpu(7_000, 0, a), kentry(7_100, 0, a, vcpu=0)]
    return build(ev, cpus=1)


def test_vcpu_threads_resuming_after_each_other_and_two_vms_on_one_cpu():
    """vmx-uret on two_vcpus_two_vms: WRMSR = KERNEL_GS_BASE at 6 loads and 5 puts, LSTAR + TSC_AUX
    at 2 loads after a user return and at 1 user return, TSC_AUX at 2 loads after another vCPU,
    LSTAR + TSC_AUX at 2 loads after another VM: 6 + 5 + 4 + 2 + 2 + 4 = 23; RDMSR: 5 puts.
    (The earlier model took every switch to a vCPU thread for a return to user mode: 3 user returns
    and 5 loads after one.)"""
    r = analyze(two_vcpus_two_vms(VMX), ["vmx-uret"])
    assert r.summary["vms"] == 2
    assert ops(r, "vmx-uret") == {"wrmsr": 6 + 5 + 2 * 2 + 2 * 1 + 2 * 1 + 2 * 2, "rdmsr": 5}
    assert r.summary["pairing"]["user_returns"] == 1
    assert r.summary["pairing"]["first_entries_sched_in"] == 2  # B and C were switched out inside KVM_RUN
    states = r.episodes.select("pid", "uret_state").rows()
    assert states == [(100, 2), (101, None), (100, 3), (200, None), (100, 1)]


def test_same_scenario_on_svm_writes_tsc_aux_only():
    """kvm-today on the SVM version: TSC_AUX is the only user-return MSR on SVM, so each of the
    2 + 2 + 2 loads that find other values writes it once, plus the 1 user return: 7 WRMSR;
    5 exits x (2 VMLOAD, 1 VMSAVE), host VMSAVE at 6 loads."""
    r = analyze(two_vcpus_two_vms(2), ["kvm-today"])
    assert ops(r, "kvm-today") == {"vmload": 10, "vmsave": 5 + 6, "wrmsr": 6 + 1}


# --- 3. the first kvm_entry, a trace starting mid-exit ---------------------------------------------

def started_mid_run(with_fpu=True):
    """Three vCPU threads, each on its own CPU.
      A (CPU 0): first event an entry with no kvm_fpu load before it -> the trace began while A was
                 between an exit and its entry (mid-exit): not a load, but A is loaded
                 e1 npf; e2 io + kvm_userspace_exit -> put, user return (A was loaded); kvm_fpu, entry -> load
      B (CPU 1): first event an exit (in guest mode when the trace began): loaded
                 e3 io + kvm_userspace_exit -> put, user return; kvm_fpu, entry -> load
      C (CPU 2): kvm_fpu, entry -> a KVM_RUN start: load; e4 npf
    With kvm_fpu: loads 3 (after e2, after e3, C's start), all on CPUs that hold host values; user
    returns 2. Without kvm_fpu recorded, A's and C's first entries are assumed to start KVM_RUN:
    loads 4."""
    f = [fpu] if with_fpu else []
    ev = [kentry(1_000, 0, 100, vcpu=0), kexit(2_000, 0, 100, NPF, vcpu=0), kentry(2_300, 0, 100, vcpu=0),
          kexit(3_000, 0, 100, IO, vcpu=0), uexit(3_100, 0, 100)]
    ev += [x(3_900, 0, 100) for x in f] + [kentry(4_000, 0, 100, vcpu=0)]
    ev += [kexit(1_500, 1, 101, IO, vcpu=1), uexit(1_600, 1, 101)]
    ev += [x(2_400, 1, 101) for x in f] + [kentry(2_500, 1, 101, vcpu=1)]
    ev += [x(800, 2, 102) for x in f] + [kentry(900, 2, 102, vcpu=2), kexit(5_000, 2, 102, NPF, vcpu=2),
                                         kentry(5_200, 2, 102, vcpu=2)]
    return build(ev, cpus=3)


def test_first_entry_without_kvm_fpu_load_is_not_a_load():
    """kvm-today, 4 exits: 8 VMLOAD + 4 VMSAVE per exit, host VMSAVE at 3 loads, TSC_AUX at 3 loads
    (host values on each CPU) and at 2 user returns. (The earlier model took A's first entry for a
    KVM_RUN start: 4 loads.)"""
    r = analyze(started_mid_run(), ["kvm-today"])
    p = r.summary["pairing"]
    assert (p["first_entries_kvm_run"], p["first_entries_mid_exit"], p["first_entries_assumed"]) == (1, 1, 0)
    assert ops(r, "kvm-today") == {"vmload": 8, "vmsave": 4 + 3, "wrmsr": 3 + 2}
    assert p["user_returns"] == 2
    assert any("already inside KVM_RUN" in w for w in r.warnings)


def test_without_kvm_fpu_the_first_load_is_assumed_and_said():
    r = analyze(started_mid_run(with_fpu=False), ["kvm-today"])
    p = r.summary["pairing"]
    assert (p["first_entries_assumed"], p["first_entries_mid_exit"]) == (2, 0)
    assert ops(r, "kvm-today")["vmsave"] == 4 + 4
    assert any(w.startswith("kvm_fpu not recorded") for w in r.warnings)


# --- 4. a CPU change with no recorded sched_switch ------------------------------------------------

def test_cpu_change_without_sched_switch_is_a_put_and_a_load():
    """P: kvm_fpu, entry on CPU 0 (load); e1 npf on CPU 0, its entry on CPU 1 and no sched_switch of
    P recorded (other tasks' switches are, on CPU 2): a task changes CPU only while switched out, so
    a put (cause unknown, class 'moved') and a load on CPU 1 (host values: nothing ran a vCPU there);
    e2 npf on CPU 1.
    kvm-today: 4 VMLOAD, 2 + 2 VMSAVE, TSC_AUX at 2 loads. cache-task-state: host VMSAVE at the
    KVM_RUN start and at the migrated load: 2 + 2. ist-off: 2 loads + 1 put + 2 GS switches:
    VMLOAD 3, VMSAVE 3, 3 toggles. (The earlier model saw no put: kvm-today 3 VMSAVE, ist-off 1.)"""
    ev = [sched(100, 2, 900, 901, 1), fpu(500, 0, 100), kentry(1_000, 0, 100),
          kexit(2_000, 0, 100, NPF), kentry(3_000, 1, 100), kexit(4_000, 1, 100, NPF), kentry(4_300, 1, 100),
          sched(5_000, 2, 901, 900, 1)]
    r = analyze(build(ev, cpus=3), ["kvm-today", "cache-task-state", "ist-off"], baseline="kvm-today")
    assert r.summary["classes"] == {"moved": 1, "kernel": 1}
    assert ops(r, "kvm-today") == {"vmload": 4, "vmsave": 4, "wrmsr": 2}
    assert ops(r, "cache-task-state")["vmsave"] == 2 + 2
    assert ops(r, "ist-off") == {"vmload": 3, "vmsave": 3, "wrmsr": 2, "ist_toggle": 3, "gsbase": 2}
    assert causes(r, "ist-off") == {"put:unknown": 1}
    assert r.summary["pairing"]["cpu_changes_without_sched_switch"] == 1
    assert any("no sched_switch of the thread recorded" in w for w in r.warnings)
    assert any(w.startswith("no sched_switch recorded on CPU 0, 1") for w in r.warnings)


# --- 5. lost events on one CPU --------------------------------------------------------------------

def test_lost_events_on_one_cpu_leave_the_other_alone():
    """A (CPU 0): kvm_fpu, entry; e1 npf. B (CPU 1): kvm_fpu, entry; e2 hlt, B -> idle; CPU 1's ring
    buffer then lost events (marked on its next event, idle -> bash at 6000): bash returns to user
    mode, but what ran on CPU 1 during the loss is unknown (it might have loaded a vCPU): the user
    return is counted and flagged as after a loss; bash -> B (inside KVM_RUN), entry: host values.
    e2 crosses the loss; e1 does not.
    kvm-today: 2 exits (4 VMLOAD, 2 VMSAVE), host VMSAVE at 3 loads (A, B, B after e2), TSC_AUX at
    3 loads and 1 user return."""
    ev = [fpu(500, 0, 100), kentry(1_000, 0, 100, vcpu=0), kexit(2_000, 0, 100, NPF, vcpu=0),
          kentry(2_400, 0, 100, vcpu=0),
          fpu(600, 1, 101), kentry(1_100, 1, 101, vcpu=1), kexit(5_000, 1, 101, HLT, vcpu=1),
          sched(5_100, 1, 101, 0, 1), sched(6_000, 1, 0, 700, 0, "bash"), sched(6_500, 1, 700, 101, 1),
          kentry(7_000, 1, 101, vcpu=1)]
    r = analyze(build(ev, cpus=2, drops=[(1, 6_000, 12)]), ["kvm-today"])
    assert r.episodes["crosses_drop"].to_list() == [False, True]
    p = r.summary["pairing"]
    assert (p["user_returns"], p["user_returns_after_loss"]) == (1, 1)
    assert ops(r, "kvm-today") == {"vmload": 4, "vmsave": 2 + 3, "wrmsr": 3 + 1}
    assert r.summary["dropped_events"] == {"1": 12}


# --- 6. emulated instructions, decoded ------------------------------------------------------------

EMULATED = [b"\x89\x02",                              # mov %eax,(%rdx): an MMIO store, nothing deferred
            b"\x65\x48\x8b\x04\x25\x00\x00\x00\x00",  # mov %gs:0x0,%rax: reads the GS base
            b"\x0f\x01\xf8",                          # swapgs: GS base and KernelGSBase
            b"\x0f\x01\x10",                          # lgdt (%rax): GDTR is VMRUN's, not VMLOAD's
            b"\x66"]                                  # a prefix and no opcode: conservative read


def test_emulation_syncs_only_when_the_instruction_touches_deferred_state():
    """5 NPF exits, each emulating one instruction of EMULATED; 1 load (KVM_RUN start).
    ist-off (emulation = "decoded"): lazy reads e2, e5 (VMSAVE each), a lazy write e3 (VMSAVE +
    VMLOAD): VMSAVE 1 + 2 + 1 = 4, VMLOAD 1 + 1 = 2. With the conservative rule ("all") every
    emulation is a read: VMSAVE 1 + 5 = 6, VMLOAD 1."""
    ev = [fpu(500, 0, 100), kentry(1_000, 0, 100)]
    for i, insn in enumerate(EMULATED):
        t = 2_000 + 1_000 * i
        ev += [kexit(t, 0, 100, NPF), emulate(t + 100, 0, 100, insn), kentry(t + 500, 0, 100)]
    import dataclasses

    from exitreplay.replay.policy import load_policy
    base = load_policy("ist-off")
    conservative = dataclasses.replace(base, name="ist-off-all", lazy=dataclasses.replace(base.lazy, emulation="all"))
    r = analyze(build(ev), ["kvm-today", "ist-off", conservative], baseline="kvm-today")
    assert r.summary["pairing"]["emulations_touching_deferred_state"] == 3
    assert r.summary["pairing"]["emulations_undecoded"] == 1
    assert r.episodes.select("emu_read", "emu_write").rows() == [
        (False, False), (True, False), (True, True), (False, False), (True, False)]
    assert (row(r, "ist-off")["vmsave"], row(r, "ist-off")["vmload"]) == (4, 2)
    assert causes(r, "ist-off")["lazy:emulation"] == 3
    assert (row(r, "ist-off-all")["vmsave"], row(r, "ist-off-all")["vmload"]) == (6, 1)


# --- 7. the state that crosses a window boundary ---------------------------------------------------

def test_user_return_state_carries_across_windows():
    """The per-CPU walk's state is explicit: a window that starts with CPU 0 switching from idle to
    bash fires the notifier only if the previous window left a vCPU loaded on CPU 0 (carry), and
    a load after it finds host values either way."""
    import numpy as np
    import polars as pl

    from exitreplay.episodes import userreturn as ur
    window = pl.concat([ur.marks(np.array([0]), np.array([10]), ur.URET),
                        ur.marks(np.array([0]), np.array([20]), ur.LOAD, np.array([0]), ep=np.array([0]))])
    vm = np.array([7])
    alone = ur.infer(window, vm)
    carried = ur.infer(window, vm, pl.DataFrame({"cpu": [0], "kind": [ur.LOAD], "code": [0]}))
    assert (alone.urets_fired, carried.urets_fired) == (0, 1)
    assert alone.load_state["state"].to_list() == carried.load_state["state"].to_list() == [ur.HOST]
    # What this window hands to the next: CPU 0's last state-setting mark, the LOAD.
    assert carried.final.select("cpu", "row", "kind", "code").rows() == [(0, -2, ur.LOAD, 0)]
