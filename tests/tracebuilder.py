"""Build small in-memory Traces from event lists, with the kernel's field names (for golden tests)."""
from __future__ import annotations

import pyarrow as pa

from exitreplay.trace import Dropped, Trace, TraceMeta

SYSTEMS = {"sched_switch": "sched"}


def build(events: list[tuple], cpus: int = 2, drops: list[tuple[int, int, int]] = ()) -> Trace:
    """events: (ts_ns, cpu, pid, event_name, {field: value}) in any order.

    drops: (cpu, ts, count): the ring buffer of `cpu` lost `count` events just before the first
    event of that CPU at or after `ts` (as a reader marks it).
    """
    evs = sorted(enumerate(events), key=lambda x: (x[1][0], x[0]))
    rows = [e for _, e in evs]
    table = pa.table({
        "ts": pa.array([e[0] for e in rows], pa.int64()),
        "cpu": pa.array([e[1] for e in rows], pa.int32()),
        "pid": pa.array([e[2] for e in rows], pa.int32()),
        "comm": pa.array([f"CPU {0}/KVM" if e[3].startswith("kvm") else "task" for e in rows]),
        "system": pa.array([SYSTEMS.get(e[3], "kvm") for e in rows]),
        "event": pa.array([e[3] for e in rows]),
    })
    tables = {}
    for name in sorted({e[3] for e in rows}):
        idx = [i for i, e in enumerate(rows) if e[3] == name]
        cols = {"row": pa.array(idx, pa.int64()),
                "ts": pa.array([rows[i][0] for i in idx], pa.int64()),
                "cpu": pa.array([rows[i][1] for i in idx], pa.int32()),
                "pid": pa.array([rows[i][2] for i in idx], pa.int32())}
        keys = []
        for i in idx:
            for k in rows[i][4]:
                if k not in keys:
                    keys.append(k)
        for k in keys:
            cols[k] = pa.array([rows[i][4].get(k) for i in idx])
        tables[name] = pa.table(cols)
    dropped = []
    for cpu, ts, count in drops:
        row = next(i for i, e in enumerate(rows) if e[1] == cpu and e[0] >= ts)
        dropped.append(Dropped(cpu=cpu, ts=rows[row][0], count=count, row=row))
    return Trace(table, tables, TraceMeta(path="<built>", source_format="trace.dat", cpus=cpus, dropped=dropped))


SVM, VMX = 2, 1


def kexit(ts, cpu, pid, reason, isa=SVM, vcpu=0, info1=0, info2=0):
    return (ts, cpu, pid, "kvm_exit", {"exit_reason": reason, "guest_rip": 0x1000, "isa": isa, "info1": info1,
                                       "info2": info2, "intr_info": 0, "error_code": 0, "vcpu_id": vcpu})


def kentry(ts, cpu, pid, vcpu=0):
    return (ts, cpu, pid, "kvm_entry", {"vcpu_id": vcpu, "rip": 0x1000})


def msr(ts, cpu, pid, ecx, write):
    return (ts, cpu, pid, "kvm_msr", {"write": int(write), "ecx": ecx, "data": 0, "exception": 0})


def uexit(ts, cpu, pid, reason=2):
    return (ts, cpu, pid, "kvm_userspace_exit", {"reason": reason, "errno": 0})


def sched(ts, cpu, prev_pid, next_pid, prev_state, next_comm=None):
    """prev_state: 0 runnable (preempted), 1 S (blocked). next_comm defaults to swapper/<cpu> for
    pid 0 and to a user task's name otherwise."""
    if next_comm is None:
        next_comm = f"swapper/{cpu}" if next_pid == 0 else "qemu-system-x86"
    return (ts, cpu, prev_pid, "sched_switch", {"prev_comm": "x", "prev_pid": prev_pid, "prev_prio": 120,
                                                "prev_state": prev_state, "next_comm": next_comm,
                                                "next_pid": next_pid, "next_prio": 120})


PROT64 = 9  # KVM_EMUL_INSN_F_CR0_PE | KVM_EMUL_INSN_F_CS_L (arch/x86/kvm/trace.h)


def emulate(ts, cpu, pid, insn=b"\x89\x02", flags=PROT64):
    """kvm_emulate_insn of `insn` (default: mov %eax,(%rdx), an MMIO store) in 64-bit mode."""
    return (ts, cpu, pid, "kvm_emulate_insn", {"rip": 0x1000, "csbase": 0, "len": len(insn),
                                               "insn": list(insn.ljust(15, b"\xcc")), "flags": flags,
                                               "failed": 0})


def fpu(ts, cpu, pid, load=True):
    """kvm_fpu: load at every KVM_RUN start on 6.x (kvm_load_guest_fpu), unload at its end."""
    return (ts, cpu, pid, "kvm_fpu", {"load": int(load)})


def nested_vmexit(ts, cpu, pid, code, isa=SVM):
    return (ts, cpu, pid, "kvm_nested_vmexit", {"rip": 0x2000, "exit_code": code, "exit_info1": 0,
                                                "exit_info2": 0, "exit_int_info": 0, "exit_int_info_err": 0,
                                                "isa": isa})


def nested_inject(ts, cpu, pid, code, isa=SVM):
    return (ts, cpu, pid, "kvm_nested_vmexit_inject", {"exit_code": code, "exit_info1": 0, "exit_info2": 0,
                                                       "exit_int_info": 0, "exit_int_info_err": 0, "isa": isa})


def nested_vmenter(ts, cpu, pid, isa=SVM):
    return (ts, cpu, pid, "kvm_nested_vmenter", {"rip": 0x1000, "vmcb": 0x5000, "nested_rip": 0x2000,
                                                 "int_ctl": 0, "event_inj": 0, "npt": 1, "guest_pgd": 0,
                                                 "isa": isa})


def smm(ts, cpu, pid, entering=True, vcpu=0):
    return (ts, cpu, pid, "kvm_smm_transition", {"vcpu_id": vcpu, "smbase": 0x30000, "entering": int(entering)})
