"""Workload profiles -> a Trace with real exit sequences, generated column-wise with NumPy.

Each vCPU thread loops: kvm_entry -> guest runs -> kvm_exit -> handler events -> maybe a QEMU
round trip (kvm_userspace_exit, kvm_fpu unload/load) -> maybe blocking or preemption
(sched_switch away and back, possibly on another CPU) -> kvm_entry. Every exit is one row of
fixed "slots" (exit, handlers, userspace, fpu, sched out/in, wakeup, entry); a slot that does not
happen is masked out, so a thread's whole history is a handful of array operations.
"""
from __future__ import annotations

import dataclasses
import math
import tomllib
from importlib import resources
from pathlib import Path

import numpy as np
import pyarrow as pa

from ..errors import UsageError
from ..kvm import reasons as R
from ..trace import Trace, TraceMeta

ISAS = {"svm": R.ISA_SVM, "vmx": R.ISA_VMX}
IDLE_PID = 0
PREEMPTOR_PID_BASE = 9000  # host threads that preempt vCPUs ("stress" workers)
VM_PID_BASE = 4000
VM_PID_STRIDE = 100


def profile_names() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files(__package__).joinpath("profiles").iterdir()
                  if p.name.endswith(".toml"))


def load_profile(name_or_path: str) -> dict:
    p = Path(name_or_path)
    if p.suffix == ".toml":
        if not p.exists():
            raise UsageError(f"profile file {p} does not exist")
        return tomllib.loads(p.read_text())
    if name_or_path not in profile_names():
        raise UsageError(f"unknown profile {name_or_path!r} (built-ins: {', '.join(profile_names())}, or a .toml)")
    return tomllib.loads(resources.files(__package__).joinpath("profiles", f"{name_or_path}.toml").read_text())


def _lognormal(rng: np.random.Generator, spec: dict, n: int) -> np.ndarray:
    return np.maximum(1, rng.lognormal(math.log(spec["median"]), spec.get("sigma", 0.5), n)).astype(np.int64)


@dataclasses.dataclass
class _Events:
    """Column buffers of generated events, one list of arrays per column."""

    cols: dict[str, dict[str, list[np.ndarray]]] = dataclasses.field(default_factory=dict)

    def add(self, event: str, ts, cpu, pid, **fields) -> None:
        n = len(ts)
        if n == 0:
            return
        d = self.cols.setdefault(event, {})
        for k, v in (("ts", ts), ("cpu", cpu), ("pid", pid), *fields.items()):
            arr = np.broadcast_to(np.asarray(v), (n,)) if np.ndim(v) == 0 else np.asarray(v)
            d.setdefault(k, []).append(arr)


def _vcpu_thread(ev: _Events, prof: dict, isa: int, rng: np.random.Generator, pid: int, vcpu: int,
                 home_cpu: int, n_cpus: int, t_start: int, t_end: int, vls: bool) -> None:
    rs = prof["reasons"]
    key = "svm" if isa == R.ISA_SVM else "vmx"
    codes = []
    for r in rs:
        name = r.get(key)
        if name is None:
            raise UsageError(f"profile {prof['name']}: reason without a {key} name")
        c = R.exit_reason_code(isa, name)
        if c is None:
            raise UsageError(f"profile {prof['name']}: unknown {key} exit reason {name!r}")
        codes.append(c)
    w = np.array([r["weight"] for r in rs], dtype=float)
    w /= w.sum()
    nested = prof.get("name") == "nested" or "l1_intercept_ns" in prof
    # Estimate how many exits fill the time, then trim to t_end.
    mean_cycle = prof["guest_run_ns"]["median"] * 1.6 + sum(
        wi * (r["handling_ns"]["median"] + r.get("block_prob", 0) * r.get("block_ns", {"median": 0})["median"]
              + r.get("userspace_prob", 0) * r.get("qemu_ns", {"median": 0})["median"]) for wi, r in zip(w, rs))
    if nested:
        mean_cycle += 4 * (prof["l1_run_ns"]["median"] + prof["l1_intercept_ns"]["median"])
    n = max(1, int((t_end - t_start) / mean_cycle * 1.3) + 10)
    k = rng.choice(len(rs), size=n, p=w)
    reason = np.array(codes, dtype=np.int64)[k]
    h = np.zeros(n, np.int64)
    for i, r in enumerate(rs):
        m = k == i
        h[m] = _lognormal(rng, r["handling_ns"], int(m.sum()))
    us = np.zeros(n, bool)
    q = np.zeros(n, np.int64)
    blk = np.zeros(n, bool)
    b = np.zeros(n, np.int64)
    for i, r in enumerate(rs):
        m = k == i
        cnt = int(m.sum())
        if r.get("userspace_prob"):
            us[m] = rng.random(cnt) < r["userspace_prob"]
            q[m] = _lognormal(rng, r["qemu_ns"], cnt)
        if r.get("block_prob"):
            blk[m] = rng.random(cnt) < r["block_prob"]
            b[m] = _lognormal(rng, r["block_ns"], cnt)
    q = np.where(us, q, 0)
    pre = ~blk & (rng.random(n) < prof.get("preempt_prob", 0))
    b = np.where(blk, b, np.where(pre, _lognormal(rng, prof.get("preempt_ns", {"median": 20000}), n), 0))
    away = blk | pre
    mig = away & (rng.random(n) < prof.get("migrate_prob", 0)) & (n_cpus > 1)
    run = _lognormal(rng, prof["guest_run_ns"], n)

    # Nested: every L2 exit is followed by L1's intercepted instructions, each its own exit.
    if nested:
        pattern = [R.SVM_EXIT_VMRUN] if vls else [R.SVM_EXIT_VMSAVE, R.SVM_EXIT_VMLOAD, R.SVM_EXIT_VMLOAD,
                                                    R.SVM_EXIT_VMRUN]
        per = 1 + len(pattern)
        idx = np.repeat(np.arange(n), per)
        sub = np.tile(np.arange(per), n)
        l2 = sub == 0
        reason = np.where(l2, reason[idx], np.array([0, *pattern])[sub])
        h = np.where(l2, h[idx], _lognormal(rng, prof["l1_intercept_ns"], n * per))
        run = np.where(sub == per - 1, run[idx], _lognormal(rng, prof["l1_run_ns"], n * per))
        last = sub == per - 1
        us, q, blk, pre, b, mig, away = (np.where(l2, a[idx], 0).astype(a.dtype) if a.dtype != bool
                                         else (a[idx] & last) for a in (us, q, blk, pre, b, mig, away))
        l2_reason = np.where(l2, reason, 0)
        n = n * per
    else:
        l2 = np.zeros(n, bool)
        last = np.ones(n, bool)

    # Host CPU of each exit and of the following entry (a migration moves the thread for good).
    new_cpu = (home_cpu + 1 + rng.integers(0, max(n_cpus - 1, 1), n)) % n_cpus
    last_mig = np.maximum.accumulate(np.where(mig, np.arange(n), -1))
    cpu_after = np.where(last_mig >= 0, new_cpu[np.maximum(last_mig, 0)], home_cpu).astype(np.int32)
    cpu_exit = np.concatenate([[home_cpu], cpu_after[:-1]]).astype(np.int32)

    host = h + q + b
    cycle = run + host
    t_exit = t_start + run[0] + np.concatenate([[0], np.cumsum(cycle)[:-1]])
    keep = t_exit + host < t_end
    t_exit, t_entry = t_exit[keep], (t_exit + host)[keep]
    m = int(keep.sum())
    (reason, h, q, b, us, blk, pre, away, mig, cpu_exit, cpu_after, l2, last) = (
        a[:m] for a in (reason, h, q, b, us, blk, pre, away, mig, cpu_exit, cpu_after, l2, last))
    if nested:
        l2_reason = l2_reason[:m]
        kk = None
    else:
        kk = k[:m]

    # First entry of the thread (KVM_RUN starts): fpu load, then entry.
    ev.add("kvm_fpu", [t_start - 200], [home_cpu], pid, load=np.uint32(1))
    ev.add("kvm_entry", [t_start], [home_cpu], pid, vcpu_id=np.uint32(vcpu), rip=np.uint64(0xFFFFFFFF81000000),
           immediate_exit=False, intr_info=np.uint32(0), error_code=np.uint32(0))
    rip = np.uint64(0xFFFFFFFF81000000) + (rng.integers(0, 1 << 20, m) * 4).astype(np.uint64)
    info1 = np.zeros(m, np.uint64)
    info2 = np.zeros(m, np.uint64)
    ev.add("kvm_exit", t_exit, cpu_exit, pid, exit_reason=reason.astype(np.uint32), guest_rip=rip,
           isa=np.uint32(isa), info1=info1, info2=info2, intr_info=np.uint32(0), error_code=np.uint32(0),
           vcpu_id=np.uint32(vcpu), requests=np.uint64(0))
    a1 = t_exit + np.maximum(h // 5, 1)
    a2 = t_exit + np.maximum(h * 3 // 10, 2)
    # Handler events.
    if not nested:
        for i, r in enumerate(rs):
            sel = np.flatnonzero(kk == i)
            if sel.size == 0 or "handler" not in r:
                continue
            hd = r["handler"]
            if hd == "kvm_msr":
                msrs = np.array(r["msrs"], dtype=np.uint32)
                ecx = msrs[rng.integers(0, len(msrs), sel.size)]
                wr = (rng.random(sel.size) < r.get("write_prob", 1.0)).astype(np.uint32)
                ev.add("kvm_msr", a1[sel], cpu_exit[sel], pid, write=wr, ecx=ecx,
                       data=rng.integers(0, 1 << 40, sel.size).astype(np.uint64), exception=np.uint8(0))
                if isa == R.ISA_VMX:  # VMX names the direction in the exit reason
                    ex_rows = ev.cols["kvm_exit"]["exit_reason"][-1]
                    ex_rows[sel] = np.where(wr == 1, R.VMX_EXIT_MSR_WRITE, R.VMX_EXIT_MSR_READ)
                else:
                    ev.cols["kvm_exit"]["info1"][-1][sel] = wr
            elif hd == "kvm_pio":
                ev.add("kvm_pio", a1[sel], cpu_exit[sel], pid, rw=np.uint32(1), port=np.uint32(0x3F8),
                       size=np.uint32(1), count=np.uint32(1), val=np.uint32(0x41))
            elif hd == "kvm_mmio":
                ev.add("kvm_mmio", a1[sel], cpu_exit[sel], pid, type=np.uint32(1), len=np.uint32(4),
                       gpa=np.uint64(0xFEBF1000), val=np.uint64(1))
    else:
        sel = np.flatnonzero(l2)
        ev.add("kvm_nested_vmexit", a1[sel], cpu_exit[sel], pid, exit_reason=l2_reason[sel].astype(np.uint32),
               guest_rip=rip[sel], isa=np.uint32(isa), info1=np.uint64(0), info2=np.uint64(0),
               intr_info=np.uint32(0), error_code=np.uint32(0), vcpu_id=np.uint32(vcpu), requests=np.uint64(0))
        ev.add("kvm_nested_vmexit_inject", a2[sel], cpu_exit[sel], pid,
               exit_code=l2_reason[sel].astype(np.uint32), exit_info1=np.uint64(0), exit_info2=np.uint64(0),
               exit_int_info=np.uint32(0), exit_int_info_err=np.uint32(0), isa=np.uint32(isa))
        sel = np.flatnonzero(reason == R.SVM_EXIT_VMRUN)
        ev.add("kvm_nested_vmenter", a1[sel], cpu_exit[sel], pid, rip=rip[sel], vmcb=np.uint64(0x12345000),
               nested_rip=np.uint64(0x401000), int_ctl=np.uint32(0), event_inj=np.uint32(0), tdp_enabled=True,
               guest_pgd=np.uint64(0x7000), isa=np.uint32(isa))
    # QEMU round trip.
    sel = np.flatnonzero(us)
    t_us = t_exit[sel] + np.maximum(h[sel] // 2, 3)
    ev.add("kvm_userspace_exit", t_us, cpu_exit[sel], pid,
           reason=np.where(reason[sel] == R.SVM_EXIT_IOIO if isa == R.ISA_SVM else
                           reason[sel] == R.VMX_EXIT_IO_INSTRUCTION, R.KVM_EXIT_IO, R.KVM_EXIT_MMIO).astype(np.uint32),
           errno=np.int32(0))
    ev.add("kvm_fpu", t_us + 1, cpu_exit[sel], pid, load=np.uint32(0))
    ev.add("kvm_fpu", t_us + 1 + q[sel], cpu_exit[sel], pid, load=np.uint32(1))
    # Away from the CPU: blocked on HLT (to idle) or preempted (to a host worker), back maybe elsewhere.
    sel = np.flatnonzero(away)
    t_out = t_exit[sel] + np.maximum(h[sel] * 7 // 10, 4) + q[sel]
    t_in = t_out + b[sel]
    other = np.where(pre[sel], PREEMPTOR_PID_BASE + cpu_exit[sel], IDLE_PID).astype(np.int32)
    ev.add("sched_switch", t_out, cpu_exit[sel], pid, prev_comm=f"CPU {vcpu}/KVM", prev_pid=np.int32(pid),
           prev_prio=np.int32(120), prev_state=np.where(blk[sel], 1, 0).astype(np.int64),
           next_comm=np.where(other == 0, f"swapper/{home_cpu}", "stress"), next_pid=other, next_prio=np.int32(120))
    back_from = np.where(mig[sel], IDLE_PID, other).astype(np.int32)
    ev.add("sched_switch", t_in, cpu_after[sel], back_from, prev_comm=np.where(back_from == 0, "swapper", "stress"),
           prev_pid=back_from, prev_prio=np.int32(120), prev_state=np.where(back_from == 0, 0, 1).astype(np.int64),
           next_comm=f"CPU {vcpu}/KVM", next_pid=np.int32(pid), next_prio=np.int32(120))
    wsel = np.flatnonzero(blk[sel])
    ev.add("kvm_vcpu_wakeup", t_in[wsel] + 1, cpu_after[sel][wsel], pid, ns=b[sel][wsel].astype(np.uint64),
           waited=True, valid=True)
    ev.add("kvm_entry", t_entry, cpu_after, pid, vcpu_id=np.uint32(vcpu), rip=rip + np.uint64(2),
           immediate_exit=False, intr_info=np.uint32(0), error_code=np.uint32(0))


def generate(profile: str | dict, *, vcpus: int = 2, seconds: float = 0.05, seed: int = 1, isa: str = "svm",
             cpus: int | None = None, vls: bool = False, start_ns: int = 1_000_000_000) -> Trace:
    """A Trace (the reader's model) for a profile; the same arguments give the same events."""
    prof = load_profile(profile) if isinstance(profile, str) else profile
    if isa not in ISAS:
        raise UsageError(f"--isa must be svm or vmx, not {isa!r}")
    if prof.get("isa") and prof["isa"] != isa:
        raise UsageError(f"profile {prof['name']} models {prof['isa'].upper()} only (use --isa {prof['isa']})")
    if vls and prof.get("name") != "nested":
        raise UsageError("--vls applies to the nested profile only")
    if vcpus < 1 or seconds <= 0:
        raise UsageError("--vcpus must be >= 1 and --seconds > 0")
    rng = np.random.default_rng(seed)
    ev = _Events()
    t_end = start_ns + int(seconds * 1e9)
    if "vms" in prof:  # mixed: one VM per listed profile, vCPUs shared over fewer host CPUs
        vms = [load_profile(v) for v in prof["vms"]]
        total = vcpus * len(vms)
        n_cpus = cpus or max(1, int(total / prof.get("oversubscription", 2.0)))
        slot = 0
        for vi, vp in enumerate(vms):
            base = VM_PID_BASE + vi * VM_PID_STRIDE
            for v in range(vcpus):
                _vcpu_thread(ev, vp, ISAS[isa], rng, base + 1 + v, v, slot % n_cpus, n_cpus,
                             start_ns + int(rng.integers(0, 50_000)), t_end, vls)
                slot += 1
    else:
        n_cpus = cpus or vcpus
        for v in range(vcpus):
            _vcpu_thread(ev, prof, ISAS[isa], rng, VM_PID_BASE + 1 + v, v, v % n_cpus, n_cpus,
                         start_ns + int(rng.integers(0, 50_000)), t_end, vls)
    return _to_trace(ev, n_cpus, prof["name"])


SYSTEM = {"sched_switch": "sched"}


def _to_trace(ev: _Events, n_cpus: int, name: str) -> Trace:
    names, ts, cpu, pid, local = [], [], [], [], []
    for i, (event, cols) in enumerate(ev.cols.items()):
        t = np.concatenate(cols["ts"]).astype(np.int64)
        names.append(event)
        ts.append(t)
        cpu.append(np.concatenate(cols["cpu"]).astype(np.int32))
        pid.append(np.concatenate(cols["pid"]).astype(np.int32))
        local.append(np.full(t.size, i, np.int32))
    ts_a, cpu_a, pid_a, type_a = (np.concatenate(x) for x in (ts, cpu, pid, local))
    within = np.concatenate([np.arange(x.size) for x in ts])
    # Time order; ties keep the order events were generated within a thread (exit before handler).
    order = np.lexsort((within, type_a, cpu_a, ts_a))
    ts_a, cpu_a, pid_a, type_a, within = ts_a[order], cpu_a[order], pid_a[order], type_a[order], within[order]
    row_of = {}
    for i in range(len(names)):
        sel = np.flatnonzero(type_a == i)
        row_of[i] = (sel, within[sel])
    comm = np.where(pid_a == IDLE_PID, "<idle>", np.where(pid_a >= PREEMPTOR_PID_BASE, "stress", ""))
    is_vcpu = comm == ""
    comm = comm.astype(object)
    if is_vcpu.any():
        # QEMU names vCPU threads "CPU <n>/KVM": n from the thread's kvm_entry vcpu_id.
        ent = names.index("kvm_entry")
        vid = np.concatenate(ev.cols["kvm_entry"]["vcpu_id"]).astype(np.int64)
        epid = np.concatenate(ev.cols["kvm_entry"]["pid"]).astype(np.int64)
        lut = dict(zip(epid.tolist(), vid.tolist()))
        del ent
        comm[is_vcpu] = [f"CPU {lut.get(p, 0)}/KVM" for p in pid_a[is_vcpu].tolist()] if is_vcpu.sum() < 0 else \
            np.vectorize(lambda p: f"CPU {lut.get(p, 0)}/KVM", otypes=[object])(np.unique(pid_a[is_vcpu]))[
                np.searchsorted(np.unique(pid_a[is_vcpu]), pid_a[is_vcpu])]
    events = pa.table({
        "ts": pa.array(ts_a), "cpu": pa.array(cpu_a), "pid": pa.array(pid_a),
        "comm": pa.array(comm, pa.string()).dictionary_encode(),
        "system": pa.array([SYSTEM.get(n, "kvm") for n in names], pa.string()).take(pa.array(type_a)).dictionary_encode(),
        "event": pa.DictionaryArray.from_arrays(pa.array(type_a), pa.array(names)),
        "flags": pa.nulls(ts_a.size, pa.uint8()), "preempt_count": pa.nulls(ts_a.size, pa.uint8()),
    })
    tables = {}
    for i, event in enumerate(names):
        rows, idx = row_of[i]
        inv = np.empty_like(idx)
        inv[idx] = np.arange(idx.size)
        rows_in_gen_order = rows[inv]
        cols = {"row": pa.array(rows_in_gen_order.astype(np.int64))}
        for k, parts in ev.cols[event].items():
            v = np.concatenate(parts)
            if k in ("ts", "cpu", "pid"):
                v = v.astype({"ts": np.int64, "cpu": np.int32, "pid": np.int32}[k])
            cols[k] = pa.array(v) if v.dtype != object and v.dtype.kind != "U" else pa.array(v.astype(str))
        t = pa.table(cols)
        tables[event] = t.take(pa.array(np.argsort(rows_in_gen_order, kind="stable")))
    meta = TraceMeta(path=None, source_format="trace.dat", cpus=n_cpus, clock="local",
                     extra={"generated": name})
    return Trace(events, tables, meta)
