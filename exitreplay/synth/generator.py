"""Workload profiles -> a Trace (the reader's Arrow model) with the exit sequences a KVM host records.

Three steps, each vectorized where the events are:

1. plans.py: per vCPU thread, NumPy arrays of its loop iterations (one per exit) from the profile.
2. schedule.py: threads on host CPUs, one step per on-CPU burst: blocking HLTs, preemption by
   waking threads and expired slices (an interrupt exit, then sched_switch "R+"), migration to idle
   CPUs, host threads competing for the CPUs.
3. events.py: every executed iteration's events in the kernel's order, timed inside its segment,
   plus sched_switch and the wake-ups; sorted per CPU into the Trace.

Steps 2 and 3 run window by window (`generate_windows`), carrying what crosses a window's edge;
no random value depends on where the windows fall, so the windows together are the whole trace
(`generate`, one window). The same arguments give the same Trace (and, written, the same bytes).
"""
from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np

from ..errors import UsageError
from ..trace import Trace, TraceMeta
from .events import EventColumns, empty_trace, sched_events, vcpu_events
from .plans import ISAS, Plan, Pool, VmPlanner
from .profiles import Profile, load_profile, profile_names
from .schedule import Scheduler, Thread, slice_ns
from .templates import DEFAULT_TEMPLATE, Template, load_template

VM_PID_BASE = 4000  # QEMU of VM v has pid VM_PID_BASE + 100 * v, its vCPU threads the pids after
VM_PID_STRIDE = 100
VCPU_PID_OFFSET = 3  # QEMU's main thread, call_rcu and an I/O thread come first
HOST_PID_BASE = 200


WINDOW_EVENTS = 1 << 19  # events per window aimed at when window_ns is not given (~250 MB at peak)
FIRST_WINDOW_NS = 1_000_000


def generate(profile: str | Profile, *, vcpus: int = 2, seconds: float = 0.05, seed: int = 1, isa: str = "svm",
             cpus: int | None = None, vls: bool = False, start_ns: int = 1_000_000_000,
             template: str | Template = DEFAULT_TEMPLATE) -> Trace:
    """A Trace of a host running the profile's VMs; the same arguments give the same events.

    vcpus: vCPUs per VM; cpus: host CPUs (default one per vCPU, mixed: oversubscribed);
    vls: nested only, virtual VMLOAD/VMSAVE (no L1 VMLOAD/VMSAVE exits); template: the kernel
    generation whose event set and layouts to produce (linux-6.18, linux-4.19).
    The whole trace is held in memory: for long ones use `generate_windows`.
    """
    run = _Run(profile, vcpus, seconds, seed, isa, cpus, vls, start_ns, template)
    return run.window(run.t_start, run.t_end) or run.empty()


def generate_windows(profile: str | Profile, *, vcpus: int = 2, seconds: float = 0.05, seed: int = 1,
                     isa: str = "svm", cpus: int | None = None, vls: bool = False, start_ns: int = 1_000_000_000,
                     template: str | Template = DEFAULT_TEMPLATE, window_ns: int | None = None,
                     window_events: int = WINDOW_EVENTS) -> Iterator[Trace]:
    """`generate`'s trace as consecutive time windows, each a Trace of the events with
    t0 <= ts < t1 (meta.extra["window"] = [t0, t1]; meta.extra["first_row"]: the row its first
    event has in the whole trace). Windows without events are left out (a trace without any is
    one empty window). The windows together are
    exactly `generate(...)` with the same arguments, whatever their size, and memory is bounded
    by a window: window_ns fixes their length, else each aims at about window_events events.

    The arguments are checked at once (UsageError), not when the first window is asked for.
    """
    if window_ns is not None and window_ns < 1:
        raise UsageError("the window must be at least 1 ns")
    run = _Run(profile, vcpus, seconds, seed, isa, cpus, vls, start_ns, template)
    return run.windows(window_ns, max(1, window_events))


class _Run:
    """One generated trace: the host (scheduler, threads, plans) and what each window carries to
    the next: per vCPU thread its segments and bursts with events left and the first iteration
    not yet fully emitted; switches and wake-ups recorded ahead of the window."""

    def __init__(self, profile, vcpus, seconds, seed, isa, cpus, vls, start_ns, template):
        prof = load_profile(profile) if isinstance(profile, str) else profile
        self.tpl = template if isinstance(template, Template) else load_template(template)
        vms = _check(prof, vcpus, seconds, isa, cpus, vls)
        total = vcpus * len(vms)
        n_cpus = cpus or (max(1, math.ceil(total / prof.oversubscription)) if prof.vms else vcpus)
        self.t_start, self.t_end = start_ns, start_ns + round(seconds * 1e9)
        self.sim, self.gens = _host(prof, vms, vcpus, seed, isa, n_cpus, vls, start_ns, self.t_end)
        self.vcpu_threads = [th for th in self.sim.threads if th.plan is not None]
        self.comm = {0: "<idle>", **{th.pid: th.comm for th in self.sim.threads}}
        self.segs: dict[int, list] = {th.tid: [] for th in self.vcpu_threads}
        self.bursts: dict[int, list] = {th.tid: [] for th in self.vcpu_threads}
        self.next_m = {th.tid: 0 for th in self.vcpu_threads}
        self.switches: list[tuple] = []
        self.wakes: list[tuple] = []
        self.rows = 0
        # The template kernel's release and machine, but not the recording host's name.
        u = (self.tpl.info.get("uname") or "Linux host 6.18 x86_64").split()
        self.uname = f"Linux exitreplay-synth {u[2]} {u[-1]}" if len(u) >= 4 else " ".join(u)
        self.extra = {"generated": prof.name, "template": self.tpl.name, "isa": isa, "seed": seed, "vls": vls,
                      "vcpus_per_vm": vcpus}

    def windows(self, window_ns: int | None, window_events: int) -> Iterator[Trace]:
        t, w = self.t_start, window_ns or FIRST_WINDOW_NS
        any_events = False
        while t < self.t_end:
            t1 = min(self.t_end, t + w)
            tr = self.window(t, t1)
            if tr is not None:
                any_events = True
                yield tr
            if window_ns is None:  # aim the next window at window_events (the events do not depend on it)
                n = len(tr) if tr is not None else 0
                w = int(min(4 * w, max(w // 4, w * window_events / max(n, 1), 10_000)))
            t = t1
        if not any_events:
            yield self.empty()

    def window(self, t0: int, t1: int) -> Trace | None:
        """Steps 2 and 3 for [t0, t1): schedule up to t1, then the events before it."""
        sim = self.sim
        sim.run_until(t1)
        for s in sim.segments:
            self.segs[s[0]].append(s)
        for b in sim.bursts:
            self.bursts[b[0]].append(b)
        self.switches += sim.switches
        self.wakes += sim.wakes
        sim.segments, sim.bursts, sim.switches, sim.wakes = [], [], [], []
        ev = EventColumns(self.tpl, self.comm)
        for th in self.vcpu_threads:
            self._thread_events(ev, th, t0, t1)
        sched_events(ev, sim.threads, self.switches, self.wakes, t0, t1, self.t_end)
        self.switches = [s for s in self.switches if s[0] >= t1]
        self.wakes = [w for w in self.wakes if t1 <= w[0] + 1 < self.t_end]
        if not ev.cols:
            return None
        tr = ev.to_trace(self._meta(t0, t1))
        self.rows += len(tr)
        return tr

    def _thread_events(self, ev: EventColumns, th: Thread, t0: int, t1: int) -> None:
        tid = th.tid
        cur = th.segment()
        segs = self.segs[tid] + ([cur] if cur else [])
        nm = vcpu_events(ev, self.gens[th.vm], th, segs, self.bursts[tid], t0, t1, self.next_m[tid])
        self.next_m[tid] = nm
        self.segs[tid] = [s for s in self.segs[tid] if s[4] > nm]
        self.bursts[tid] = [b for b in self.bursts[tid] if b[3] >= nm]
        # Two iterations back: the next entry's fields depend on them (vcpu_events).
        th.plan.trim(min(nm - 2, th.first_needed(), *(s[3] for s in self.segs[tid])))

    def _meta(self, t0: int, t1: int) -> TraceMeta:
        return TraceMeta(path=None, source_format="trace.dat", cpus=len(self.sim.cpus), clock="local",
                         uname=self.uname, extra={**self.extra, "window": [t0, t1], "first_row": self.rows})

    def empty(self) -> Trace:
        return empty_trace(self._meta(self.t_start, self.t_end))


def _check(prof: Profile, vcpus: int, seconds: float, isa: str, cpus: int | None, vls: bool) -> list[Profile]:
    """The VMs' profiles, once the arguments are known to make sense (UsageError otherwise)."""
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
    return vms


def _host(prof: Profile, vms: list[Profile], vcpus: int, seed: int, isa: str, n_cpus: int, vls: bool,
          start_ns: int, t_end: int) -> tuple[Scheduler, list[VmPlanner]]:
    """The scheduler with every vCPU thread (its plan) and host thread, before the first step."""
    total = vcpus * len(vms)
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
            th.key = int(rng.integers(0, 2**63))
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
    return sim, gens


__all__ = ["generate", "generate_windows", "load_profile", "profile_names"]
