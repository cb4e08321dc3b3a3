"""Workload profiles -> a Trace (the reader's Arrow model) with the exit sequences a KVM host records.

Three steps, each vectorized where the events are:

1. plans.py: per vCPU thread, NumPy arrays of its loop iterations (one per exit) from the profile.
2. schedule.py: threads on host CPUs, one step per on-CPU burst: blocking HLTs, preemption by
   waking threads and expired slices (an interrupt exit, then sched_switch "R+"), migration to idle
   CPUs, host threads competing for the CPUs.
3. events.py: every executed iteration's events in the kernel's order, timed inside its segment,
   plus sched_switch and the wake-ups; sorted per CPU into the Trace.

The same arguments give the same Trace (and, written, the same bytes).
"""
from __future__ import annotations

import collections
import math

import numpy as np

from ..errors import UsageError
from ..trace import Trace, TraceMeta
from .events import EventColumns, sched_events, vcpu_events
from .plans import ISAS, Plan, Pool, VmPlanner
from .profiles import Profile, load_profile, profile_names
from .schedule import Scheduler, Thread, slice_ns
from .templates import DEFAULT_TEMPLATE, Template, load_template

VM_PID_BASE = 4000  # QEMU of VM v has pid VM_PID_BASE + 100 * v, its vCPU threads the pids after
VM_PID_STRIDE = 100
VCPU_PID_OFFSET = 3  # QEMU's main thread, call_rcu and an I/O thread come first
HOST_PID_BASE = 200


def generate(profile: str | Profile, *, vcpus: int = 2, seconds: float = 0.05, seed: int = 1, isa: str = "svm",
             cpus: int | None = None, vls: bool = False, start_ns: int = 1_000_000_000,
             template: str | Template = DEFAULT_TEMPLATE) -> Trace:
    """A Trace of a host running the profile's VMs; the same arguments give the same events.

    vcpus: vCPUs per VM; cpus: host CPUs (default one per vCPU, mixed: oversubscribed);
    vls: nested only, virtual VMLOAD/VMSAVE (no L1 VMLOAD/VMSAVE exits); template: the kernel
    generation whose event set and layouts to produce (linux-6.18, linux-4.19).
    """
    prof = load_profile(profile) if isinstance(profile, str) else profile
    tpl = template if isinstance(template, Template) else load_template(template)
    if isa not in ISAS:
        raise UsageError(f"--isa must be svm or vmx, not {isa!r}")
    if vls and not (prof.nested or any(load_profile(v).nested for v in prof.vms)):
        raise UsageError("--vls applies to the nested profile only")
    if vcpus < 1 or seconds <= 0:
        raise UsageError("--vcpus must be >= 1 and --seconds > 0")
    if cpus is not None and cpus < 1:
        raise UsageError("--cpus must be >= 1")
    vms = [load_profile(v) for v in prof.vms] if prof.vms else [prof]
    for vp in vms:
        if vp.isa and vp.isa != isa:
            raise UsageError(f"profile {vp.name} models {vp.isa.upper()} only (use --isa {vp.isa})")
    total = vcpus * len(vms)
    n_cpus = cpus or (max(1, math.ceil(total / prof.oversubscription)) if prof.vms else vcpus)
    t_end = start_ns + round(seconds * 1e9)
    ss = np.random.SeedSequence(seed)
    sim_rng = np.random.default_rng(ss.spawn(1)[0])
    sim = Scheduler(n_cpus, t_end, sim_rng, slice_ns(vms[0].base_slice_ns, n_cpus), vms[0].wake_to_switch)
    gens = [VmPlanner(vp, isa, vls) for vp in vms]
    streams = ss.spawn(total + 1)
    slot = 0
    for v, (vp, gen) in enumerate(zip(vms, gens)):
        base = VM_PID_BASE + v * VM_PID_STRIDE
        for i in range(vcpus):
            rng = np.random.default_rng(streams[slot])
            th = Thread(len(sim.threads), base + VCPU_PID_OFFSET + i, f"CPU {i}/KVM", slot % n_cpus,
                         tuple(range(n_cpus)) if vp.migrate else (slot % n_cpus,), Plan(gen, rng), vm=v, vcpu=i,
                         rng=rng)
            sim.add(th, start_ns + int(rng.integers(0, 20_000)))
            slot += 1
    host_rng = np.random.default_rng(streams[-1])
    hp = HOST_PID_BASE
    seen = set()
    for vp in vms:
        for h in vp.host_threads:
            if h.comm in seen:
                continue
            seen.add(h.comm)
            for c in range(n_cpus):
                for _ in range(h.per_cpu):
                    rng = np.random.default_rng(host_rng.integers(0, 2**63))
                    th = Thread(len(sim.threads), hp, h.comm.format(cpu=c), c, (c,), host=h, rng=rng,
                                 run_pool=Pool(h.run, rng, 256), sleep_pool=Pool(h.sleep, rng, 256))
                    th.state = "blocked"
                    sim.add(th, start_ns + th.sleep_pool())
                    hp += 1
    sim.run()
    ev = EventColumns(tpl)
    segs: dict[int, list] = collections.defaultdict(list)
    for s in sim.segments:
        segs[s[0]].append(s)
    bursts: dict[int, list] = collections.defaultdict(list)
    for b in sim.bursts:
        bursts[b[0]].append(b)
    for th in sim.threads:
        if th.plan is not None:
            vcpu_events(ev, gens[th.vm], th, segs[th.tid], bursts[th.tid], t_end)
    sched_events(ev, sim, t_end)
    # The template kernel's release and machine, but not the recording host's name.
    u = (tpl.info.get("uname") or "Linux host 6.18 x86_64").split()
    uname = f"Linux exitreplay-synth {u[2]} {u[-1]}" if len(u) >= 4 else " ".join(u)
    meta = TraceMeta(path=None, source_format="trace.dat", cpus=n_cpus, clock="local", uname=uname,
                     extra={"generated": prof.name, "template": tpl.name, "isa": isa, "seed": seed, "vls": vls,
                            "vcpus_per_vm": vcpus})
    return ev.to_trace(meta)


__all__ = ["generate", "load_profile", "profile_names"]
