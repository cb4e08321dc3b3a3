"""Events: what each executed iteration and each scheduling step leaves in the trace, as columns.

`vcpu_events` times every event of a vCPU thread's executed iterations inside its on-CPU segments,
in the kernel's order (docs/profiles.md has the table); `sched_events` turns the scheduler's
switches and wake-ups into sched_switch, sched_waking and sched_wakeup; `EventColumns` gathers them
per event type, names events and fields as the template's kernel did, and builds the Trace.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from ..formats.eventformat import arrow_type
from ..kvm import reasons as R
from ..trace import Trace, TraceMeta
from .noise import Noise
from .plans import Plan, VmPlanner
from .schedule import IDLE, Thread
from .templates import Template

PRIO = 120
# Common flags and preempt count per event, as real hosts record them (kvm_exit/kvm_entry run with
# interrupts off in the vcpu_run loop; sched_switch with interrupts off and preemption disabled;
# wake-ups from the timer interrupt: hardirq context). Source: tests/data/real and the public
# VMX trace (exitreplay info shows them); the wake-up flags are an assumption.
FLAGS = {"kvm_exit": (1, 1), "kvm_entry": (1, 1), "sched_switch": (1, 2), "sched_waking": (9, 1),
         "sched_wakeup": (9, 1)}
SYSTEMS = {"sched_switch": "sched", "sched_waking": "sched", "sched_wakeup": "sched"}
MSR_X2APIC = range(0x800, 0x900)
INSN_LEN = {"hlt": 1, "msr": 2, "io": 1, "cpuid": 2, "pause": 2, "l1_vmsave": 3, "l1_vmload": 3, "l1_vmrun": 3}
# Older templates name some events and fields differently (Linux 4.19 vs today).
EVENT_ALIASES = {"kvm_nested_vmenter": "kvm_nested_vmrun"}
FIELD_ALIASES = {
    "kvm_nested_vmexit": {"rip": "guest_rip", "exit_code": "exit_reason", "exit_info1": "info1",
                          "exit_info2": "info2", "exit_int_info": "intr_info", "exit_int_info_err": "error_code"},
    "kvm_nested_vmrun": {"npt": "tdp_enabled"},
    "kvm_inj_virq": {"irq": "vector"},
}


class EventColumns:
    """Generated events gathered per event type as column arrays, then conformed to the template."""

    def __init__(self, tpl: Template, comm: dict[int, str]):
        self.tpl = tpl
        self.cols: dict[str, list[dict]] = {}
        self.comm = comm  # pid -> comm of every task that may appear

    def name(self, event: str) -> str | None:
        if self.tpl.has(event):
            return event
        alt = EVENT_ALIASES.get(event)
        return alt if alt and self.tpl.has(alt) else None

    def add(self, event: str, ts: np.ndarray, cpu, pid, order, /, **fields) -> None:
        name = self.name(event)
        if name is None:
            return  # this kernel generation has no such tracepoint
        ts = np.asarray(ts, np.int64)
        n = ts.size
        if n == 0:
            return
        def b(v, dt):
            return np.broadcast_to(np.asarray(v, dt), (n,))

        d = {"@ts": ts, "@cpu": b(cpu, np.int32), "@pid": b(pid, np.int32), "@order": b(order, np.int64)}
        d.update({k: (v if isinstance(v, np.ndarray) and v.ndim == 2 else np.broadcast_to(np.asarray(v), (n,)))
                  for k, v in fields.items()})
        self.cols.setdefault(name, []).append(d)

    def to_trace(self, meta: TraceMeta) -> Trace:
        names = sorted(self.cols)
        parts = {}
        for nm in names:
            chunks = self.cols[nm]
            keys = set().union(*(c.keys() for c in chunks))
            merged = {}
            total = sum(c["@ts"].size for c in chunks)
            for k in keys:
                arrs = []
                for c in chunks:
                    if k in c:
                        arrs.append(np.asarray(c[k]))
                    else:
                        arrs.append(None)
                proto = next(a for a in arrs if a is not None)
                full = [a if a is not None else np.zeros((c["@ts"].size,) + proto.shape[1:], proto.dtype)
                        for a, c in zip(arrs, chunks)]
                merged[k] = np.concatenate(full) if len(full) > 1 else full[0]
            assert merged["@ts"].size == total
            parts[nm] = merged
        ts = np.concatenate([parts[n]["@ts"] for n in names])
        cpu = np.concatenate([parts[n]["@cpu"] for n in names])
        order = np.concatenate([parts[n]["@order"] for n in names])
        typ = np.concatenate([np.full(parts[n]["@ts"].size, i, np.int32) for i, n in enumerate(names)])
        local = np.concatenate([np.arange(parts[n]["@ts"].size) for n in names])
        srt = np.lexsort((order, cpu, ts))
        rank = np.empty_like(srt)
        rank[srt] = np.arange(srt.size)
        pid = np.concatenate([parts[n]["@pid"] for n in names])[srt]
        upid, pinv = np.unique(pid, return_inverse=True)
        comm_names = [self.comm.get(int(p)) for p in upid]
        flags = np.zeros(ts.size, np.uint8)
        pcount = np.zeros(ts.size, np.uint8)
        for i, n in enumerate(names):
            f, p = FLAGS.get(n, (0, 0))
            flags[typ == i] = f
            pcount[typ == i] = p
        events = pa.table({
            "ts": pa.array(ts[srt]), "cpu": pa.array(cpu[srt]), "pid": pa.array(pid),
            "comm": pa.DictionaryArray.from_arrays(pa.array(pinv.reshape(-1).astype(np.int32)),
                                                   pa.array(comm_names, pa.string())),
            "system": pa.DictionaryArray.from_arrays(pa.array(typ[srt]), pa.array([SYSTEMS.get(n, "kvm") for n in names])),
            "event": pa.DictionaryArray.from_arrays(pa.array(typ[srt]), pa.array(names)),
            "flags": pa.array(flags[srt]), "preempt_count": pa.array(pcount[srt]),
        })
        tables = {}
        start = 0
        for n in names:
            d = parts[n]
            cnt = d["@ts"].size
            rows = rank[start: start + cnt]
            start += cnt
            o = np.argsort(rows, kind="stable")
            cols = {"row": pa.array(rows[o].astype(np.int64)), "ts": pa.array(d["@ts"][o]),
                    "cpu": pa.array(d["@cpu"][o].astype(np.int32)), "pid": pa.array(d["@pid"][o].astype(np.int32))}
            fmt = self.tpl.format(n)
            aliases = FIELD_ALIASES.get(n, {})
            for f in fmt.own_fields:
                src = f.name if f.name in d else aliases.get(f.name)
                typ_ = arrow_type(f)
                if src is None or src not in d:
                    v = np.zeros(cnt, np.uint8) if not f.is_string else np.full(cnt, "", object)
                else:
                    v = d[src][o]
                cols[f.name] = _arrow(v, typ_, f, cnt)
            tables[n] = pa.table(cols)
        del local
        return Trace(events, tables, meta)


def _arrow(v: np.ndarray, typ: pa.DataType, f, n: int) -> pa.Array:
    if pa.types.is_string(typ):
        return pa.array(np.asarray(v, dtype=object).astype(str), pa.string())
    if pa.types.is_list(typ):
        width = f.array_len
        v = np.asarray(v)
        if v.ndim != 2:
            v = np.zeros((n, width), np.uint8)
        flat = v[:, :width].astype(typ.value_type.to_pandas_dtype()).reshape(-1)
        return pa.ListArray.from_arrays(pa.array(np.arange(n + 1, dtype=np.int32) * width), pa.array(flat))
    if pa.types.is_boolean(typ):
        return pa.array(np.asarray(v).astype(bool))
    dt = typ.to_pandas_dtype()
    v = np.asarray(v)
    if v.dtype.kind in "iub" and np.dtype(dt).kind in "iu":
        v = v.astype(np.int64) if v.dtype != np.uint64 else v
    return pa.array(v.astype(dt), typ)


KERNEL_TEXT = np.uint64(0xFFFFFFFF81000000)


def _rips(rng: np.random.Generator, n: int) -> np.ndarray:
    """Guest kernel text addresses."""
    return KERNEL_TEXT + (rng.integers(0x800, 0x800000, n) * 2).astype(np.uint64)


OWN_EVENTS = ("kvm_exit", "kvm_entry", "kvm_nested_vmexit", "kvm_nested_vmexit_inject", "kvm_nested_vmenter")
# Where each kind of exit happens in the guest: one site (hlt in default_idle, wrmsr in
# native_write_msr, L1's VMLOAD/VMSAVE/VMRUN in __svm_vcpu_run) or anywhere (interrupts, faults).
SITES = {"hlt": 1, "msr": 1, "io": 2, "mmio": 2, "cpuid": 1, "pause": 2, "apic_write": 1}
# L1's __svm_vcpu_run: VMLOAD (guest), VMRUN, VMSAVE, VMLOAD (host save area), in that order.
L1_OFFSETS = {"vmload_guest": 0x0, "vmrun": 0x12, "vmsave": 0x1B, "vmload_host": 0x2E}


def _entries(p: Plan, segs: list[tuple], next_m: int, t1: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Iterations from next_m on entered before t1 in the segments: (m, entry time, CPU), by m."""
    s_cpu = np.array([s[1] for s in segs], np.int32)
    s_t0 = np.array([s[2] for s in segs], np.int64)
    s_k0 = np.array([s[3] for s in segs], np.int64)
    cnt = np.array([s[4] for s in segs], np.int64) - s_k0
    ok = cnt > 0
    s_cpu, s_t0, s_k0, cnt = s_cpu[ok], s_t0[ok], s_k0[ok], cnt[ok]
    seg = np.repeat(np.arange(cnt.size), cnt)
    m = np.repeat(s_k0, cnt) + (np.arange(int(cnt.sum())) - np.repeat(np.cumsum(cnt) - cnt, cnt))
    E = s_t0[seg] + (p.cum_of(m) - p.cum_of(s_k0[seg]))
    keep = (m >= next_m) & (E < t1)
    o = np.argsort(m[keep], kind="stable")
    return m[keep][o], E[keep][o], s_cpu[seg][keep][o]


# Random values per iteration (noise.Noise purposes).
P_RIP, P_SITE, P_L2RIP, P_TSC, P_MSRVAL, P_IOVAL, P_GPA, P_MMIOVAL, P_INSN, P_NPF, P_CPUID, P_CPUIDREG, \
    P_APICVAL, P_VEC = range(14)


def vcpu_events(ev: EventColumns, gen: VmPlanner, th: Thread, segs: list[tuple], bursts: list[tuple], t0: int,
                t1: int, next_m: int) -> int:
    """Step 3 for one vCPU thread in the window [t0, t1): the events there of its iterations from
    next_m on, timed in their segments, and of its burst starts. Returns the first iteration with
    events at t1 or later (a later window computes it again, from the same values)."""
    p = th.plan
    svm = gen.isa == "svm"
    noise = Noise(th.key)
    m_run, E_run, cpu_run = _entries(p, segs, next_m, t1) if segs else (np.zeros(0, np.int64),) * 3
    pid, vcpu, isa = th.pid, th.vcpu, np.uint32(gen.isa_code)
    woken = _burst_events(ev, p, bursts, pid, vcpu, svm, t0, t1)
    if m_run.size == 0:
        return next_m
    lo, hi = int(m_run[0]), int(m_run[-1]) + 1
    assert m_run.size == hi - lo, "a thread's iterations run one after the other"
    # Two iterations before (their kinds and sites make the next entry's fields), one after (the
    # next L2 rip): computed, not emitted.
    c0, c1 = max(0, lo - 2), hi + 1
    p.ensure(c1)
    m = np.arange(c0, c1, dtype=np.int64)
    n = m.size
    emit = (m >= lo) & (m < hi)
    E = np.zeros(n, np.int64)
    cpu = np.zeros(n, np.int32)
    E[emit], cpu[emit] = E_run, cpu_run
    last = np.zeros(n, np.int64)  # each iteration's last event, wherever the window ends
    a = p.view(c0, c1)
    kind = a["kind"].astype(np.int64)
    run, pre, us, q = a["run"], a["pre"], a["us"], a["q"]
    sub, wr, in_l2, poll = a["sub"].astype(np.int64), a["wr"], a["in_l2"], a["poll"]
    X = E + run
    order0 = m * 32  # ties at one ns keep the kernel's order: iteration-major, slot-minor

    # A reflected L2 exit is L1's to handle: L0 only records it (kvm_nested_vmexit, ..._inject).
    here = ~(in_l2 & a["keep"])

    def put(event, ts, sel, slot, **fields):
        sel = emit if sel is None else sel & emit
        if event not in OWN_EVENTS:
            sel = sel & here
        idx = np.flatnonzero(sel)
        t = np.asarray(ts, np.int64)
        t = t[idx] if t.ndim else np.full(idx.size, int(t))
        last[idx] = np.maximum(last[idx], t)  # idx has no repeats: one event per iteration and call
        keep = (t >= t0) & (t < t1)
        idx, t = idx[keep], t[keep]
        f = {k: (np.asarray(v)[idx] if np.ndim(v) and np.asarray(v).shape[0] == n else v) for k, v in fields.items()}
        ev.add(event, t, cpu[idx], pid, order0[idx] + slot, **f)

    def is_(name):
        return np.isin(kind, np.flatnonzero(gen.names == name))

    def specs(name):
        return [(i, k.spec) for i, k in enumerate(gen.kinds) if k.name == name and i != gen.forced]

    # Exit sites: rip of the exit; the guest resumes at rip + instruction length (0: not skipped).
    rip = KERNEL_TEXT + (noise.integers(P_RIP, m, 0x800, 0x800000) * 2).astype(np.uint64)
    for i, k in enumerate(gen.kinds):
        if k.name in SITES:
            sel = kind == i
            sites = _rips(np.random.default_rng([th.vm, i, 11]), SITES[k.name])
            rip[sel] = noise.choice(P_SITE, m[sel], sites)
    l2_rip = (0x401000 + noise.integers(P_L2RIP, m, 0, 0x8000) * 4).astype(np.uint64)
    rip = np.where(in_l2, l2_rip, rip)
    l1_base = _rips(np.random.default_rng([th.vm, 99]), 1)[0]
    if gen.prof.nested is not None:
        prev_k = np.concatenate([[-1], kind[:-1]])
        k_save, k_load, k_run = gen.index["l1_vmsave"], gen.index["l1_vmload"], gen.index["l1_vmrun"]
        rip = np.where(kind == k_run, l1_base + np.uint64(L1_OFFSETS["vmrun"]), rip)
        rip = np.where(kind == k_save, l1_base + np.uint64(L1_OFFSETS["vmsave"]), rip)
        rip = np.where((kind == k_load) & (prev_k == k_save), l1_base + np.uint64(L1_OFFSETS["vmload_host"]),
                       np.where(kind == k_load, l1_base + np.uint64(L1_OFFSETS["vmload_guest"]), rip))
    ilen = np.array([INSN_LEN.get(k.name, 0) for k in gen.kinds], np.uint64)[kind]
    ilen = np.where(kind == gen.forced, np.uint64(0), ilen)
    reason = np.array([k.reason for k in gen.kinds], np.int64)[kind]
    info1 = np.zeros(n, np.uint64)
    info2 = np.zeros(n, np.uint64)
    intr_info = np.zeros(n, np.uint64)
    h_kernel = pre - q
    h1 = np.where(us, np.maximum(h_kernel * 6 // 10, 20), h_kernel)  # kernel part before QEMU
    back = X + h1 + q  # QEMU done (kvm_fpu load)

    def at(frac):
        return X + np.maximum(1, (h1 * frac).astype(np.int64))

    # MSR accesses. An x2APIC register also traces kvm_apic (kvm_lapic_reg_read/write runs
    # inside the MSR emulation, before kvm_msr is traced on success: arch/x86/kvm/x86.c, lapic.c).
    sel = is_("msr")
    if sel.any():
        ecx = np.zeros(n, np.uint32)
        how = np.full(n, "const", dtype=object)
        const = np.zeros(n, np.uint64)
        for i, spec in specs("msr"):
            s_ = kind == i
            ecx[s_] = np.array([x.index for x in spec.msrs], np.uint32)[sub[s_]]
            how[s_] = np.array([x.data for x in spec.msrs], dtype=object)[sub[s_]]
            const[s_] = np.array([x.value for x in spec.msrs], np.uint64)[sub[s_]]
        tsc = ((X - 1_000_000_000) * 29 // 10 + 0x4DC0000000).astype(np.uint64)  # a 2.9 GHz TSC
        data = np.select([how == "tsc_deadline", how == "random"],
                         [tsc + noise.integers(P_TSC, m, 100_000, 3_000_000).astype(np.uint64),
                          noise.integers(P_MSRVAL, m, 0, 2**40).astype(np.uint64)], const)
        wrv = wr.astype(np.uint32)
        x2 = sel & (ecx >= MSR_X2APIC.start) & (ecx < MSR_X2APIC.stop)
        put("kvm_apic", at(0.4), x2, 2, rw=wrv, reg=(ecx - 0x800) << 4, val=data)
        put("kvm_msr", at(0.7), sel, 3, write=wrv, ecx=ecx, data=data, exception=np.uint8(0))
        if svm:  # EXITINFO1: 1 = WRMSR
            info1 = np.where(sel, wr.astype(np.uint64), info1)
        else:
            reason = np.where(sel & ~wr, R.VMX_EXIT_MSR_READ, reason)

    # Port I/O: OUT traces kvm_pio before going to QEMU, IN once the data is back.
    sel = is_("io")
    if sel.any():
        port = np.zeros(n, np.uint32)
        size = np.ones(n, np.uint32)
        for i, spec in specs("io"):
            s_ = kind == i
            port[s_] = np.array([x.port for x in spec.ports], np.uint32)[sub[s_]]
            size[s_] = np.array([x.size for x in spec.ports], np.uint32)[sub[s_]]
        val = noise.integers(P_IOVAL, m, 0, 256).astype(np.uint32)
        io = {"rw": wr.astype(np.uint32), "port": port, "size": size, "count": np.uint32(1), "val": val}
        put("kvm_pio", at(0.3), sel & wr, 2, **io)
        put("kvm_pio", np.where(us, back + np.maximum(1, (h_kernel - h1) // 3), at(0.5)), sel & ~wr, 9, **io)
        if svm:  # EXITINFO1: port << 16, operand size (bits 4-6), 16-bit address (bit 7), IN = bit 0
            szb = np.select([size == 1, size == 2], [1 << 4, 1 << 5], 1 << 6).astype(np.uint64)
            info1 = np.where(sel, (port.astype(np.uint64) << 16) | szb | (1 << 7) | (~wr).astype(np.uint64), info1)
            info2 = np.where(sel, rip + ilen, info2)  # next rip
        else:  # exit qualification: size - 1, IN = bit 3, port << 16 (Intel SDM table 28-5)
            info1 = np.where(sel, (port.astype(np.uint64) << 16) | ((~wr).astype(np.uint64) << 3)
                             | (size.astype(np.uint64) - 1), info1)

    # MMIO. SVM: #NPF on a reserved-bit SPTE (kvm_page_fault), emulation (kvm_emulate_insn, kvm_mmio);
    # an ioeventfd doorbell ends in the kernel. VMX: EPT misconfig; a doorbell takes the fast path
    # (kvm_fast_mmio, no emulation: handle_ept_misconfig), anything else is emulated.
    sel = is_("mmio")
    if sel.any():
        door = sel & (sub == 1)
        base = np.zeros(n, np.uint64)
        for i, spec in specs("mmio"):
            base[kind == i] = spec.gpa
        gpa = np.where(door, base + np.uint64(0x3000), base + noise.integers(P_GPA, m, 0, 0x40).astype(np.uint64) * 4)
        val = np.where(door, 0, noise.integers(P_MMIOVAL, m, 0, 2**32)).astype(np.uint64)
        if svm:
            ec = (np.uint64(1 << 32) | np.uint64(0x9) | np.where(wr, 0x2, 0).astype(np.uint64))  # GPA | P | RSVD | W
            info1 = np.where(sel, ec, info1)
            info2 = np.where(sel, gpa, info2)
            put("kvm_page_fault", at(0.15), sel, 1, vcpu_id=np.uint32(vcpu), guest_rip=rip, fault_address=gpa,
                error_code=ec)
            emul = sel
        else:
            put("kvm_fast_mmio", at(0.5), door, 2, gpa=gpa)
            emul = sel & ~door
        insn = np.zeros((n, 15), np.uint8)
        insn[:, 0], insn[:, 1] = 0x89, 0x02  # mov %eax,(%rdx): the 2 bytes emulated
        insn[:, 2:] = noise.integers(P_INSN, m[:, None] * 16 + np.arange(13), 0, 256)  # what follows in the guest
        put("kvm_emulate_insn", at(0.35), emul, 2, rip=rip, csbase=np.uint32(0), len=np.uint8(2), insn=insn,
            flags=np.uint8(9), failed=np.uint8(0))  # flags 9: prot64 (CR0.PE | CS.L)
        put("kvm_mmio", at(0.55), emul, 3, type=np.where(wr, 2, 0).astype(np.uint32), len=np.uint32(4), gpa=gpa,
            val=np.where(wr, val, 0).astype(np.uint64))
        put("kvm_mmio", back + np.maximum(1, (h_kernel - h1) // 3), emul & ~wr & us, 9, type=np.uint32(1),
            len=np.uint32(4), gpa=gpa, val=val)
        ilen = np.where(sel & (svm | ~door), np.uint64(2), np.where(door, np.uint64(3), ilen))

    # Nested page faults on guest memory.
    sel = is_("npf")
    if sel.any():
        gpa = (0x100000000 + noise.integers(P_NPF, m, 0, 1 << 20) * 0x1000).astype(np.uint64)
        ec = np.uint64(1 << 32) | np.where(wr, 0x6, 0x4).astype(np.uint64)  # GPA final, user, write
        if svm:
            info1, info2 = np.where(sel, ec, info1), np.where(sel, gpa, info2)
        else:  # EPT violation qualification: read or write access, GLA valid and translated
            info1 = np.where(sel, np.where(wr, 0x182, 0x181).astype(np.uint64), info1)
        put("kvm_page_fault", at(0.3), sel, 1, vcpu_id=np.uint32(vcpu), guest_rip=rip, fault_address=gpa, error_code=ec)

    sel = is_("cpuid")
    if sel.any():
        fn = noise.choice(P_CPUID, m, np.array([0x0, 0x1, 0x7, 0xB, 0xD, 0x80000001], np.uint32))
        r4 = noise.integers(P_CPUIDREG, m[None, :] * 4 + np.arange(4)[:, None], 0, 2**32).astype(np.uint64)
        put("kvm_cpuid", at(0.5), sel, 2, function=fn, index=np.uint32(0), rax=r4[0], rbx=r4[1], rcx=r4[2],
            rdx=r4[3], found=True, used_max_basic=False)

    sel = is_("apic_write")  # APICv trap-like exit after the guest wrote an APIC register
    if sel.any():
        reg = np.zeros(n, np.uint32)
        for i, spec in specs("apic_write"):
            reg[kind == i] = spec.reg
        info1 = np.where(sel, reg.astype(np.uint64), info1)
        put("kvm_apic", at(0.5), sel, 2, rw=np.uint32(1), reg=reg,
            val=noise.integers(P_APICVAL, m, 1000, 500000).astype(np.uint64))

    sel = is_("intr")
    if sel.any() and not svm:  # VM-exit interruption information: valid | external | vector
        vec = noise.choice(P_VEC, m, np.array([0xEC, 0xF2, 0xFB, 0x22], np.uint64))
        intr_info = np.where(sel, np.uint64(0x80000000) | vec, intr_info)

    injected = np.zeros(n, bool)
    sel = is_("vintr")  # interrupt window open: the pending interrupt goes in
    put("kvm_inj_virq", at(0.6), sel, 4, vector=np.uint32(0xEC), soft=False, reinjected=False)
    injected |= sel

    # QEMU round trips (kvm_arch_vcpu_ioctl_run puts the guest FPU, then KVM_RUN returns;
    # order as in tests/data/real/pvm-*.report.txt).
    if us.any():
        ureason = np.where(is_("io"), R.KVM_EXIT_IO, R.KVM_EXIT_MMIO).astype(np.uint32)
        put("kvm_fpu", X + h1 - np.maximum(1, h1 // 3), us, 5, load=np.uint32(0))
        put("kvm_userspace_exit", X + h1, us, 6, reason=ureason, errno=np.int32(0))
        put("kvm_fpu", back, us, 7, load=np.uint32(1))

    # A halt that polling caught: the interrupt arrived while KVM polled.
    if poll.any():  # (after the exit, even for the shortest halts: a later window may still shorten the run)
        t_w = np.maximum(X + 1, X + pre - np.maximum(4, pre // 20))
        put("kvm_vcpu_wakeup", t_w, poll, 10, ns=np.maximum(pre - 4, 0).astype(np.uint64), waited=False, valid=True)
        _deliver(put, svm, t_w, poll, vcpu)
        injected |= poll & svm

    # Nested: every exit in guest mode (kvm_nested_vmexit), reflection to L1 (..._inject), VMRUN.
    entry_rip = np.concatenate([[KERNEL_TEXT], (rip + ilen)[:-1]])
    if gen.prof.nested is not None:
        put("kvm_nested_vmexit", at(0.2), in_l2, 1, exit_reason=reason.astype(np.uint32), guest_rip=rip, isa=isa,
            info1=info1, info2=info2, intr_info=intr_info.astype(np.uint32), error_code=np.uint32(0),
            vcpu_id=np.uint32(vcpu), requests=np.uint64(0))
        reflected = in_l2 & a["keep"]
        put("kvm_nested_vmexit_inject", at(0.6), reflected, 2, exit_code=reason.astype(np.uint32),
            exit_info1=info1, exit_info2=info2, exit_int_info=np.uint32(0), exit_int_info_err=np.uint32(0), isa=isa)
        vmrun = is_("l1_vmrun")
        nxt = np.concatenate([l2_rip[1:], l2_rip[-1:]])
        put("kvm_nested_vmenter", at(0.5), vmrun, 2, rip=rip, vmcb=np.uint64(0x10F3A000) + np.uint64(vcpu << 12),
            nested_rip=nxt, int_ctl=np.uint32(0x01000000), event_inj=np.uint32(0), tdp_enabled=True,
            guest_pgd=np.uint64(0x7C2E000), isa=isa)
        # Into L2 after VMRUN (at its next rip), into L1 after a reflected exit (after L1's VMRUN).
        prev_vmrun = np.concatenate([[False], vmrun[:-1]])
        prev_refl = np.concatenate([[False], reflected[:-1]])
        vmrun_rip = l1_base + np.uint64(L1_OFFSETS["vmrun"])
        entry_rip = np.where(prev_vmrun, l2_rip, np.where(prev_refl, vmrun_rip + np.uint64(3), entry_rip))

    put("kvm_exit", X, None, 0, exit_reason=reason.astype(np.uint32), guest_rip=rip, isa=isa, info1=info1,
        info2=info2, intr_info=intr_info.astype(np.uint32), error_code=np.uint32(0), vcpu_id=np.uint32(vcpu),
        requests=np.uint64(0))
    # kvm_entry: on SVM an interrupt injected for this entry shows in EVENTINJ (valid | vector).
    inj_prev = np.concatenate([[False], injected[:-1]])
    entry_ii = np.where(inj_prev, np.uint32(0x80000000 | 0xEC), np.uint32(0)).astype(np.uint32)

    if svm:  # a vCPU woken from a blocking HLT gets the waking interrupt injected on entry
        entry_ii = np.where(np.isin(m, woken), np.uint32(0x80000000 | 0xEC), entry_ii).astype(np.uint32)
    put("kvm_entry", E, None, -1, vcpu_id=np.uint32(vcpu), rip=entry_rip, immediate_exit=False, intr_info=entry_ii,
        error_code=np.uint32(0))
    late = np.flatnonzero(emit & (last >= t1))
    return int(m[late[0]]) if late.size else hi


def _burst_events(ev: EventColumns, p: Plan, bursts: list[tuple], pid: int, vcpu: int, svm: bool, t0: int,
                  t1: int) -> np.ndarray:
    """Bursts that start after a wake-up: kvm_vcpu_wakeup, the interrupt delivered, then the entry
    (vcpu_events); a thread's first burst loads the guest FPU. Returns the woken bursts' iterations."""
    if not bursts:
        return np.zeros(0, np.int64)
    b_cpu = np.array([b[1] for b in bursts], np.int32)
    b_t = np.array([b[2] for b in bursts], np.int64)
    b_k = np.array([b[3] for b in bursts], np.int64)
    b_kind = np.array([b[4] for b in bursts])
    b_wait = np.array([b[5] for b in bursts], np.int64)
    res = p.take("res", b_k)
    border = b_k * 32 - 16
    wk = b_kind == "wake"
    fr = b_kind == "fresh"

    def add(event, ts, sel, slot, **fields):
        sel = sel & (ts >= t0) & (ts < t1)
        ev.add(event, ts[sel], b_cpu[sel], pid, border[sel] + slot,
               **{k: v[sel] if isinstance(v, np.ndarray) and v.shape == sel.shape else v for k, v in fields.items()})

    add("kvm_vcpu_wakeup", b_t + np.maximum(1, res // 4), wk, 1, ns=b_wait.astype(np.uint64), waited=True,
        valid=True)
    _deliver(add, svm, b_t + np.maximum(2, res // 2), wk, vcpu)
    add("kvm_fpu", b_t + np.maximum(1, res // 2), fr, 1, load=np.uint32(1))
    return b_k[wk]


def _deliver(put, svm: bool, t: np.ndarray, sel: np.ndarray, vcpu: int, vec: int = 0xEC) -> None:
    """The waking interrupt reaches the vCPU: the local APIC accepts it (kvm_apic_accept_irq);
    SVM injects it on entry (kvm_inj_virq); VMX with APICv posts it (kvm_apicv_accept_irq)."""
    put("kvm_apic_accept_irq", t + 1, sel, 11, apicid=np.uint32(vcpu), dm=np.uint16(0), tm=np.uint16(0),
        vec=np.uint8(vec))
    if svm:
        put("kvm_inj_virq", t + 2, sel, 12, vector=np.uint32(vec), soft=False, reinjected=False)
    else:
        put("kvm_apicv_accept_irq", t + 2, sel, 12, apicid=np.uint32(vcpu), dm=np.uint16(0), tm=np.uint16(0),
            vec=np.uint8(vec))


def sched_events(ev: EventColumns, threads: list[Thread], switches: list[tuple], wakes: list[tuple], t0: int,
                 t1: int, t_end: int) -> None:
    """sched_switch from the recorded switches; sched_waking/sched_wakeup (1 ns later) from the
    wake-ups; those in the window [t0, t1). A wake-up whose sched_wakeup would fall past the end
    of the trace is left out whole."""

    def who(tid: int, cpu: int) -> tuple[int, str]:
        if tid == IDLE:
            return 0, f"swapper/{cpu}"
        return threads[tid].pid, threads[tid].comm

    sw = [s for s in switches if t0 <= s[0] < t1]
    if sw:
        ts = np.array([s[0] for s in sw], np.int64)
        cpu = np.array([s[1] for s in sw], np.int32)
        prev = [who(s[2], s[1]) for s in sw]
        nxt = [who(s[4], s[1]) for s in sw]
        pid = np.array([x[0] for x in prev], np.int32)
        order = np.array([s[5] for s in sw], np.int64) + (1 << 40)
        ev.add("sched_switch", ts, cpu, pid, order, prev_comm=np.array([x[1] for x in prev], object),
               prev_pid=pid, prev_prio=np.int32(PRIO), prev_state=np.array([s[3] for s in sw], np.int64),
               next_comm=np.array([x[1] for x in nxt], object), next_pid=np.array([x[0] for x in nxt], np.int32),
               next_prio=np.int32(PRIO))
    wk = [w for w in wakes if w[0] + 1 < t_end and (t0 <= w[0] < t1 or t0 <= w[0] + 1 < t1)]
    if wk:
        ts = np.array([w[0] for w in wk], np.int64)
        cpu = np.array([w[1] for w in wk], np.int32)
        ctx = np.array([who(w[2], w[1])[0] for w in wk], np.int32)
        tgt = [threads[w[3]] for w in wk]
        order = np.array([w[5] for w in wk], np.int64) * 2 + (1 << 41)
        common = {"comm": np.array([t.comm for t in tgt], object), "pid": np.array([t.pid for t in tgt], np.int32),
                  "prio": np.int32(PRIO), "success": np.int32(1),
                  "target_cpu": np.array([w[4] for w in wk], np.int32)}
        for name, dt in (("sched_waking", 0), ("sched_wakeup", 1)):
            sel = (ts + dt >= t0) & (ts + dt < t1)
            ev.add(name, ts[sel] + dt, cpu[sel], ctx[sel], order[sel] + dt,
                   **{k: v[sel] if isinstance(v, np.ndarray) and v.ndim else v for k, v in common.items()})


def empty_trace(meta: TraceMeta) -> Trace:
    """A Trace without events (a run too short for any)."""
    events = pa.table({"ts": pa.array([], pa.int64()), "cpu": pa.array([], pa.int32()),
                       "pid": pa.array([], pa.int32()), "comm": pa.array([], pa.string()),
                       "event": pa.array([], pa.string())})
    return Trace(events, {}, meta)


__all__ = ["EventColumns", "empty_trace", "sched_events", "vcpu_events"]
