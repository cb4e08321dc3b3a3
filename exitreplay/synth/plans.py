"""Plans: a vCPU thread's loop iterations as NumPy arrays, drawn from a profile.

One iteration per exit: guest run time, exit kind, in-kernel handling time, QEMU time of a
userspace round trip, whether a HLT blocks and for how long (or is caught by halt polling), and
the per-exit choices (which MSR, port, doorbell). Nested SVM turns each drawn exit into an L2 exit
followed, when L1 handles it, by L1's own intercepted VMSAVE/VMLOAD/VMRUN exits. Arrays grow in
chunks as the scheduler (schedule.py) consumes them; the same seed gives the same arrays.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from ..errors import UsageError
from ..kvm import reasons as R
from .profiles import CLASS_REASONS, Dist, ExitClass, Profile

ISAS = {"svm": R.ISA_SVM, "vmx": R.ISA_VMX}
# Interrupt exits forced by the scheduler (a tick, a wake-up IPI), handled in the kernel.
FORCED_INTR = ExitClass("intr", 0.0, Dist(median=900, sigma=0.4, low=200))
CHUNK = 4096  # loop iterations drawn at a time (before nesting turns some into several)


@dataclasses.dataclass
class Kind:
    """One kind of loop iteration: a profile exit class, a forced interrupt or an L1 instruction."""

    name: str  # class name (CLASS_REASONS) or l1_vmsave / l1_vmload / l1_vmrun
    spec: ExitClass
    reason: int  # exit code on this ISA


class Pool:
    """Single draws from a distribution, taken from arrays drawn a few thousand at a time."""

    def __init__(self, dist: Dist, rng: np.random.Generator, size: int = 4096):
        self.dist, self.rng, self.size = dist, rng, size
        self.buf = np.empty(0, np.int64)
        self.i = 0

    def __call__(self) -> int:
        if self.i >= self.buf.size:
            self.buf = self.dist.draw(self.rng, self.size)
            self.i = 0
        self.i += 1
        return int(self.buf[self.i - 1])


class Plan:
    """A vCPU thread's iterations as arrays, grown a chunk at a time when the scheduler needs more.

    Iterations are numbered from 0 for the whole trace; the arrays hold [base, n) only: `trim`
    drops the ones nobody needs any more, so a long trace keeps a window of them, not all. Chunks
    have a fixed size, so the arrays (and the trace) do not depend on when they were drawn.
    """

    FIELDS = ("kind", "run", "pre", "blk", "bdur", "res", "us", "q", "poll", "in_l2", "keep", "forced_h",
              "sub", "wr")

    def __init__(self, gen: VmPlanner, rng: np.random.Generator):
        self.gen = gen
        self.rng = rng
        self.base = 0
        self.n = 0
        self.a: dict[str, np.ndarray] = {}
        self.cum = np.zeros(1, np.int64)  # cum[m - base]: entry of iteration m relative to iteration 0
        self.block_idx = np.zeros(0, np.int64)  # iterations (>= base) whose HLT blocks

    def ensure(self, k: int) -> None:
        """Iterations up to k exist."""
        while self.n <= k:
            self._grow()

    def _grow(self) -> None:
        chunk = self.gen.make_chunk(self.rng, CHUNK)
        for f in self.FIELDS:
            self.a[f] = chunk[f] if f not in self.a else np.concatenate([self.a[f], chunk[f]])
        dur = chunk["run"] + chunk["pre"]
        self.cum = np.concatenate([self.cum, self.cum[-1] + np.cumsum(dur)])
        self.block_idx = np.concatenate([self.block_idx, np.flatnonzero(chunk["blk"]) + self.n])
        self.n += chunk["kind"].size

    def get(self, field: str, m: int):
        return self.a[field][m - self.base]

    def set(self, m: int, **values) -> None:
        for f, v in values.items():
            self.a[f][m - self.base] = v

    def take(self, field: str, m: np.ndarray) -> np.ndarray:
        return self.a[field][m - self.base]

    def cum_at(self, m: int) -> int:
        return int(self.cum[m - self.base])

    def cum_of(self, m: np.ndarray) -> np.ndarray:
        return self.cum[m - self.base]

    def find_cum(self, x: int) -> int:
        """The last iteration entered at or before relative time x."""
        return int(np.searchsorted(self.cum, x, side="right")) - 1 + self.base

    def next_block(self, lo: int, hi: int) -> int | None:
        """The first blocking iteration in [lo, hi), if any."""
        i = int(np.searchsorted(self.block_idx, lo))
        return int(self.block_idx[i]) if i < self.block_idx.size and self.block_idx[i] < hi else None

    def view(self, lo: int, hi: int) -> dict[str, np.ndarray]:
        """The fields of iterations [lo, hi), as views."""
        return {f: v[lo - self.base: hi - self.base] for f, v in self.a.items()}

    def trim(self, keep_from: int) -> None:
        """Forget iterations before keep_from (copies, so that the memory is freed)."""
        cut = keep_from - self.base
        if cut < CHUNK:  # not worth a copy yet
            return
        self.a = {f: v[cut:].copy() for f, v in self.a.items()}
        self.cum = self.cum[cut:].copy()
        self.block_idx = self.block_idx[self.block_idx >= keep_from].copy()
        self.base = keep_from


class VmPlanner:
    """A VM's profile on one ISA: its iteration kinds and the vectorized plan chunks."""

    def __init__(self, prof: Profile, isa: str, vls: bool):
        self.prof = prof
        self.isa = isa
        self.isa_code = ISAS[isa]
        self.vls = vls
        exits = prof.exits_for(isa)
        if not exits:
            raise UsageError(f"profile {prof.name} has no exit classes for {isa}")
        self.kinds: list[Kind] = [Kind(e.name, e, self._reason(e.name)) for e in exits]
        w = np.array([e.weight for e in exits], float)
        if w.sum() <= 0:
            raise UsageError(f"profile {prof.name}: exit weights sum to 0")
        self.weights = w / w.sum()
        self.n_drawn = len(self.kinds)
        self.forced = len(self.kinds)
        self.kinds.append(Kind("intr", FORCED_INTR, self._reason("intr")))
        if prof.nested:
            n = prof.nested
            for name, d, code in (("l1_vmsave", n.intercept, R.SVM_EXIT_VMSAVE),
                                  ("l1_vmload", n.intercept, R.SVM_EXIT_VMLOAD),
                                  ("l1_vmrun", n.vmrun, R.SVM_EXIT_VMRUN)):
                self.kinds.append(Kind(name, ExitClass(name="intr", weight=0, handling=d), code))
        self.names = np.array([k.name for k in self.kinds])
        self.index = {k.name: i for i, k in reversed(list(enumerate(self.kinds)))}  # first of each name

    def _reason(self, cls: str) -> int:
        code = R.exit_reason_code(self.isa_code, CLASS_REASONS[cls][self.isa])
        assert code is not None, cls
        return code

    def make_chunk(self, rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
        """n loop iterations (before nesting): kind, guest run, handling, QEMU, halts."""
        prof = self.prof
        kind = rng.choice(self.n_drawn, size=n, p=self.weights).astype(np.int16)
        run = prof.run.draw(rng, n)
        pre = np.zeros(n, np.int64)
        blk = np.zeros(n, bool)
        bdur = np.zeros(n, np.int64)
        us = np.zeros(n, bool)
        q = np.zeros(n, np.int64)
        poll = np.zeros(n, bool)
        sub = np.zeros(n, np.int16)  # msr / port chosen, mmio: 1 = ioeventfd doorbell
        wr = np.zeros(n, bool)
        for i in range(self.n_drawn):
            m = kind == i
            cnt = int(m.sum())
            if not cnt:
                continue
            spec = self.kinds[i].spec
            h = spec.handling.draw(rng, cnt)
            u = np.zeros(cnt, bool)
            if spec.name == "msr":
                w = np.array([x.weight for x in spec.msrs])
                pick = rng.choice(w.size, size=cnt, p=w / w.sum())
                sub[m] = pick
                wr[m] = rng.random(cnt) < np.array([x.write for x in spec.msrs])[pick]
            elif spec.name == "io":
                w = np.array([x.weight for x in spec.ports])
                pick = rng.choice(w.size, size=cnt, p=w / w.sum())
                sub[m] = pick
                wr[m] = rng.random(cnt) < np.array([x.write for x in spec.ports])[pick]
                # Ports emulated in the kernel (PIT, PIC, ...) never reach QEMU.
                u = (rng.random(cnt) < spec.userspace) & np.array([x.userspace for x in spec.ports])[pick]
            elif spec.name == "mmio":
                door = rng.random(cnt) < spec.ioeventfd
                sub[m] = door
                wr[m] = door | (rng.random(cnt) < spec.write)
                u = ~door & (rng.random(cnt) < spec.userspace)
            elif spec.name in ("npf", "apic_write"):
                wr[m] = rng.random(cnt) < spec.write
            elif spec.userspace:
                u = rng.random(cnt) < spec.userspace
            if u.any() and spec.qemu is not None:
                qq = np.where(u, spec.qemu.draw(rng, cnt), 0)
                us[m], q[m] = u, qq
                h = h + qq
            if spec.name == "hlt":
                wake = spec.wake.draw(rng, cnt)
                pending = rng.random(cnt) < spec.pending
                polled = ~pending & (wake < prof.poll_ns)
                sleeps = ~pending & ~polled
                blk[m] = sleeps
                bdur[m] = np.where(sleeps, wake, 0)
                poll[m] = polled
                h = np.where(polled, h + wake, np.where(sleeps, prof.pre_block.draw(rng, cnt), h))
            pre[m] = h
        out = {"kind": kind, "run": run, "pre": pre, "blk": blk, "bdur": bdur,
               "res": prof.switch_to_entry.draw(rng, n), "us": us, "q": q, "poll": poll,
               "in_l2": np.zeros(n, bool), "keep": np.zeros(n, bool),
               "forced_h": FORCED_INTR.handling.draw(rng, n), "sub": sub, "wr": wr}
        return self._nest(rng, out) if prof.nested else out

    def _nest(self, rng: np.random.Generator, c: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Each drawn exit becomes an L2 exit. One that L1 must handle (reflected) is followed by L1's
        intercepted instructions: VMSAVE and VMLOAD (its host save area) after the #VMEXIT, VMLOAD
        and VMRUN before going back (arch/x86/kvm/svm/vmenter.S, Linux 5.12+); with --vls only VMRUN
        traps. A reflected HLT makes L1 idle: its own HLT exit (the drawn halt) sits in between."""
        nest = self.prof.nested
        n = c["kind"].size
        is_hlt = self.names[c["kind"].astype(np.int64)] == "hlt"
        reflect = is_hlt | (rng.random(n) < nest.reflect)
        save = [] if self.vls else ["l1_vmsave", "l1_vmload"]
        load = [] if self.vls else ["l1_vmload"]
        own_halt = ["hlt"] if "hlt" in self.index else []
        seqs = [save + load + ["l1_vmrun"], save + own_halt + load + ["l1_vmrun"]]
        handled_at = [len(save), len(save)]  # position where L1 has handled the exit (its run = l1_handle)
        which = is_hlt.astype(np.int64)
        length = np.where(reflect, 1 + np.array([len(s) for s in seqs])[which], 1)
        total = int(length.sum())
        grp = np.repeat(np.arange(n), length)
        pos = np.arange(total) - np.repeat(np.cumsum(length) - length, length)
        out = {k: v[grp].copy() for k, v in c.items()}
        l2 = pos == 0
        l1 = ~l2
        refl = reflect[grp]
        out["in_l2"] = l2
        out["keep"] = l2 & refl
        # L2 exits that L1 handles cost L0 the #VMEXIT emulation (nested_svm_vmexit), nothing else.
        m = l2 & refl
        out["pre"][m] = nest.reflect_cost.draw(rng, int(m.sum()))
        for f in ("blk", "poll", "us"):
            out[f][m] = False
        out["bdur"][m] = 0
        out["q"][m] = 0
        # L1's iterations.
        tbl = np.full((2, max(len(s) for s in seqs)), -1, np.int64)
        for r, s in enumerate(seqs):
            tbl[r, : len(s)] = [self.index[x] for x in s]
        kl1 = tbl[which[grp][l1], pos[l1] - 1]
        out["kind"][l1] = kl1
        run = nest.l1_run.draw(rng, kl1.size)
        handled = (pos[l1] - 1) == np.array(handled_at)[which[grp][l1]]
        run = np.where(handled, nest.l1_handle.draw(rng, kl1.size), run)
        out["run"][l1] = run
        own_hlt = kl1 == self.index.get("hlt", -2)
        pre_l1 = np.zeros(kl1.size, np.int64)
        for name in ("l1_vmsave", "l1_vmload", "l1_vmrun"):
            sel = kl1 == self.index[name]
            pre_l1[sel] = self.kinds[self.index[name]].spec.handling.draw(rng, int(sel.sum()))
        pre_l1 = np.where(own_hlt, out["pre"][l1], pre_l1)  # L1's halt: the drawn one
        out["pre"][l1] = pre_l1
        for f in ("blk", "poll", "bdur"):
            v = out[f][l1]
            out[f][l1] = np.where(own_hlt, v, 0).astype(v.dtype)
        out["us"][l1] = False
        out["q"][l1] = 0
        return out
