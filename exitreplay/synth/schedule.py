"""Scheduling: threads on host CPUs, one Python step per on-CPU burst or wake-up, not per event.

A vCPU keeps its CPU until a HLT blocks it or it is preempted: a waking thread (its interrupt
forces an exit, then the vCPU is switched out still runnable) or the slice expiring while others
wait. A woken thread runs where it last ran if that CPU is idle, else on another idle CPU
(migration), else waits in the run queue. Host threads wake, run and sleep on their CPU. The result:
on-CPU segments per thread (which iterations ran from when), burst starts, sched_switch and wake-ups.

The scheduler runs window by window (`run_until`): everything it records with a time before the
window's end is then final. A burst that no HLT ends soon is cut into segments of at most LOOK
iterations ("cont"), so no step looks further ahead than that, whatever the length of the trace.
"""
from __future__ import annotations

import collections
import dataclasses
import heapq
import math

import numpy as np

from .plans import Plan, Pool
from .profiles import Dist

IDLE = -1  # "thread id" of a CPU's idle task (pid 0, swapper/N)
TASK_INTERRUPTIBLE = 1  # sched_switch prev_state "S" (blocked in kvm_vcpu_block)
TASK_PREEMPTED = 0x100  # TASK_REPORT_MAX: "R+", still runnable (preempted), 4.19 and 6.x alike
LOOK = 2048  # iterations a burst's end is looked for ahead; past that the burst continues in a new segment


@dataclasses.dataclass
class Thread:
    tid: int
    pid: int
    comm: str
    cpu: int
    allowed: tuple[int, ...]
    plan: Plan | None = None  # vCPU threads
    vm: int = 0
    vcpu: int = 0
    host: object = None  # HostThread spec for host threads
    rng: np.random.Generator | None = None
    run_pool: Pool | None = None  # host threads: run and sleep times
    sleep_pool: Pool | None = None
    state: str = "new"  # new, running, runnable, blocked
    k: int = 0  # next iteration to run
    resume: str = "fresh"  # how the next burst starts: fresh, wake, preempt
    blocked_at: int = 0
    seg_t0: int = 0  # entry time of iteration seg_k0 (the current segment)
    seg_k0: int = 0
    end_j: int = 0  # last iteration of the current burst
    end_kind: str = "open"  # block, preempt, cont (goes on in a new segment), open (past the trace's end)
    burst_start: int = 0
    key: int = 0  # the thread's events' random values (noise.Noise)

    def segment(self) -> tuple | None:
        """The on-CPU segment of a running vCPU so far (not yet in Scheduler.segments)."""
        if self.state != "running" or self.plan is None:
            return None
        return (self.tid, self.cpu, self.seg_t0, self.seg_k0, self.end_j + 1)

    def first_needed(self) -> int:
        """The first iteration the scheduler may still look at."""
        return self.seg_k0 if self.state == "running" else self.k


@dataclasses.dataclass
class Cpu:
    cur: int = IDLE
    runq: collections.deque = dataclasses.field(default_factory=collections.deque)
    token: int = 0  # invalidates scheduled burst ends and ticks when the plan changes


_END, _TICK, _WAKE = 0, 1, 2  # heap event kinds; at equal times a burst end comes first


class Scheduler:
    """Step 2: threads on CPUs, one Python step per burst (on-CPU interval) or wake-up."""

    def __init__(self, n_cpus: int, t_end: int, rng: np.random.Generator, slice_ns: int, wake_to_switch: Dist):
        self.cpus = [Cpu() for _ in range(n_cpus)]
        self.threads: list[Thread] = []
        self.t_end = t_end
        self.rng = rng
        self.slice_ns = slice_ns
        self.wake_to_switch = Pool(wake_to_switch, rng)
        self.heap: list = []
        self.seq = 0
        self.segments: list[tuple] = []  # (tid, cpu, t0, k0, k1): iterations k0..k1-1 entered from t0 on
        self.bursts: list[tuple] = []  # vCPU burst starts: (tid, cpu, t_switch, k, resume, waited_ns)
        self.switches: list[tuple] = []  # (ts, cpu, prev_tid, prev_state, next_tid, seq)
        self.wakes: list[tuple] = []  # (ts, cpu, ctx_tid, target_tid, target_cpu, seq)
        self.n_switches = self.n_wakes = 0  # seq: the order of recording, which breaks ties at one ns

    def push(self, t: int, kind: int, data) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (t, kind, self.seq, data))

    def add(self, th: Thread, first_wake: int) -> None:
        self.threads.append(th)
        self.push(first_wake, _WAKE, th.tid)

    def run_until(self, t_stop: int) -> None:
        """Every scheduling step before t_stop (at most the trace's end)."""
        heap = self.heap
        while heap and heap[0][0] < t_stop:
            t, kind, _, data = heapq.heappop(heap)
            if kind == _WAKE:
                self._wake(data, t)
                continue
            cpu, token = data
            c = self.cpus[cpu]
            if token != c.token:
                continue
            if kind == _END:
                self._burst_end(cpu, t)
            elif c.runq:  # slice expired with others waiting: the tick preempts
                self._interrupt(cpu, t, preempt=True)

    def _switch(self, t: int, cpu: int, prev: int, prev_state: int, nxt: int) -> None:
        self.switches.append((t, cpu, prev, prev_state, nxt, self.n_switches))
        self.n_switches += 1

    # -- a running vCPU's timeline ---------------------------------------------------------------
    def _entry_time(self, th: Thread, m: int) -> int:
        p = th.plan
        return th.seg_t0 + p.cum_at(m) - p.cum_at(th.seg_k0)

    def _end_time(self, th: Thread) -> int:
        j = th.end_j
        return self._entry_time(th, j) + int(th.plan.get("run", j) + th.plan.get("pre", j))

    def _plan_end(self, th: Thread, cpu: int, now: int) -> None:
        """The current segment ends at the next blocking HLT, after LOOK iterations (the burst goes
        on: "cont"), or past the end of the trace."""
        p = th.plan
        k0 = th.seg_k0
        p.ensure(k0 + LOOK)
        horizon = p.cum_at(k0) + (self.t_end - th.seg_t0)
        b = p.next_block(k0, k0 + LOOK)
        if b is not None and p.cum_at(b) <= horizon:
            th.end_j, th.end_kind = b, "block"
        elif p.cum_at(k0 + LOOK) > horizon:
            th.end_j, th.end_kind = p.find_cum(horizon) + 1, "open"
            p.ensure(th.end_j + 1)
        else:
            th.end_j, th.end_kind = k0 + LOOK - 1, "cont"
        self._schedule(th, cpu, now)

    def _schedule(self, th: Thread, cpu: int, now: int) -> None:
        """(Re)queue the burst's end and, when others wait for this CPU, the slice's tick."""
        c = self.cpus[cpu]
        c.token += 1
        end = self._end_time(th) if th.end_kind != "open" else self.t_end + 1
        if th.end_kind != "open":
            self.push(end, _END, (cpu, c.token))
        if c.runq:
            tick = max(th.burst_start + self.slice_ns, now + 1)
            if tick < end:
                self.push(tick, _TICK, (cpu, c.token))

    # -- scheduling steps ---------------------------------------------------------------------------
    def _start(self, tid: int, cpu: int, t: int, prev: int | None, prev_state: int) -> None:
        """Thread tid gets `cpu` at time t (prev None: the caller records the switch)."""
        th = self.threads[tid]
        c = self.cpus[cpu]
        if prev is not None:
            self._switch(t, cpu, prev, prev_state, tid)
        c.cur = tid
        th.state = "running"
        th.cpu = cpu
        th.burst_start = t
        if th.plan is None:  # host thread: runs, then sleeps again
            c.token += 1
            th.end_kind = "block"
            self.push(t + th.run_pool(), _END, (cpu, c.token))
            return
        p = th.plan
        p.ensure(th.k + 1)
        waited = t - th.blocked_at if th.resume == "wake" else 0
        self.bursts.append((tid, cpu, t, th.k, th.resume, waited))
        th.seg_t0 = t + int(p.get("res", th.k))
        th.seg_k0 = th.k
        self._plan_end(th, cpu, t)

    def _burst_end(self, cpu: int, t: int) -> None:
        c = self.cpus[cpu]
        th = self.threads[c.cur]
        if th.end_kind == "cont":  # not an end: the burst goes on in a new segment
            self.segments.append((th.tid, cpu, th.seg_t0, th.seg_k0, th.end_j + 1))
            th.seg_t0, th.seg_k0 = t, th.end_j + 1
            self._plan_end(th, cpu, t)
            return
        blocked = th.end_kind == "block"
        if th.plan is not None:
            self.segments.append((th.tid, cpu, th.seg_t0, th.seg_k0, th.end_j + 1))
            th.k = th.end_j + 1
            if not blocked and not c.runq:  # nobody to give the CPU to after all: go on
                th.seg_t0, th.seg_k0 = t, th.k
                self._plan_end(th, cpu, t)
                return
        c.token += 1
        if blocked:
            th.state = "blocked"
            th.blocked_at = t
            th.resume = "wake"
            sleep = int(th.plan.get("bdur", th.end_j)) if th.plan is not None else th.sleep_pool()
            self.push(t + sleep, _WAKE, th.tid)
            state = TASK_INTERRUPTIBLE
        else:
            th.state = "runnable"
            th.resume = "preempt"
            state = TASK_PREEMPTED
        nxt = c.runq.popleft() if c.runq else IDLE
        c.cur = IDLE
        self._switch(t, cpu, th.tid, state, nxt)
        if nxt != IDLE:
            self._start(nxt, cpu, t, None, 0)
        if not blocked:
            idle = self._idle_cpu(th, exclude=cpu)
            if idle is not None:  # an idle CPU pulls the preempted thread (load balancing)
                self.cpus[idle].cur = th.tid
                self._start(th.tid, idle, t + self.wake_to_switch(), IDLE, 0)
            else:
                c.runq.append(th.tid)
                if nxt != IDLE:
                    cur = self.threads[nxt]
                    if cur.plan is not None:
                        self._schedule(cur, cpu, t)

    def _idle_cpu(self, th: Thread, exclude: int | None = None) -> int | None:
        n = len(self.cpus)
        for d in range(n):
            c = (th.cpu + d) % n
            if c != exclude and c in th.allowed and self.cpus[c].cur == IDLE:
                return c
        return None

    def _interrupt(self, cpu: int, w: int, preempt: bool) -> tuple[int, int]:
        """An interrupt at time w on `cpu` (timer, IPI): whose context runs it, and when.

        A vCPU in guest mode exits: an interrupt exit at w takes the place of the exit it would have
        made (except a reflected L2 exit, which the interrupt then follows). With `preempt` its burst
        ends after that exit's handling."""
        c = self.cpus[cpu]
        if c.cur == IDLE:
            return IDLE, w
        th = self.threads[c.cur]
        if w < th.burst_start:  # reserved by a thread about to be switched in: the CPU is still idle
            if preempt and th.plan is not None and th.end_j > th.seg_k0:
                th.end_j, th.end_kind = th.seg_k0, "preempt"
                self._schedule(th, cpu, w)
            return IDLE, w
        if th.plan is None:
            return th.tid, w
        p = th.plan
        if w < th.seg_t0:  # still on its way back into the guest: preempt after its next exit
            if preempt and th.end_j > th.seg_k0:
                th.end_j, th.end_kind = th.seg_k0, "preempt"
                self._schedule(th, cpu, w)
            return th.tid, w
        j = p.find_cum(p.cum_at(th.seg_k0) + (w - th.seg_t0))
        j = min(max(j, th.seg_k0), th.end_j)
        e_j = self._entry_time(th, j)
        x_j = e_j + int(p.get("run", j))
        if w < x_j and not p.get("keep", j):
            h = int(p.get("forced_h", j))
            p.set(j, run=w - e_j, pre=h, kind=p.gen.forced, blk=False, us=False, poll=False, q=0, bdur=0)
            if preempt:
                th.end_j, th.end_kind = j, "preempt"
                self._schedule(th, cpu, w)
            else:  # the iterations after j now start when this exit's handling ends
                self.segments.append((th.tid, cpu, th.seg_t0, th.seg_k0, j + 1))
                th.seg_t0, th.seg_k0 = w + h, j + 1
                self._plan_end(th, cpu, w)
            return th.tid, w + max(1, h // 3)
        t_ev = max(w, x_j + 1)
        if preempt and th.end_j > j:
            th.end_j, th.end_kind = j, "preempt"
            self._schedule(th, cpu, w)
        return th.tid, t_ev

    def _wake(self, tid: int, w: int) -> None:
        th = self.threads[tid]
        if th.state not in ("new", "blocked"):
            return
        fresh = th.state == "new"
        prev = th.cpu
        target = prev
        if self.cpus[prev].cur != IDLE:
            target = self._idle_cpu(th)
            if target is None:
                target = prev
        t_ev = w
        if not fresh:  # the waking interrupt runs on the CPU the thread last ran on
            ctx, t_ev = self._interrupt(prev, w, preempt=target == prev and self.cpus[prev].cur != IDLE)
            self.wakes.append((t_ev, prev, ctx, tid, target, self.n_wakes))
            self.n_wakes += 1
        if self.cpus[target].cur == IDLE:
            lat = self.wake_to_switch() * (1 if target == prev else 2)
            self.cpus[target].cur = tid  # reserved until the switch
            self._start(tid, target, t_ev + lat, IDLE, 0)
            return
        th.state = "runnable"
        th.cpu = target
        self.cpus[target].runq.append(tid)
        cur = self.threads[self.cpus[target].cur]
        if cur.plan is not None and cur.state == "running":
            self._schedule(cur, target, w)


def slice_ns(base: int, n_cpus: int) -> int:
    """EEVDF's sysctl_sched_base_slice: 0.75 ms scaled by 1 + ilog2(min(CPUs, 8)) (kernel/sched/fair.c)."""
    return base * (1 + int(math.log2(max(1, min(n_cpus, 8)))))
