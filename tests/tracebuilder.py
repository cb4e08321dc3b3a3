"""Build small in-memory Traces from event lists, with the kernel's field names (for golden tests)."""
from __future__ import annotations

import pyarrow as pa

from exitreplay.trace import Trace, TraceMeta

SYSTEMS = {"sched_switch": "sched"}


def build(events: list[tuple], cpus: int = 2) -> Trace:
    """events: (ts_ns, cpu, pid, event_name, {field: value}) in any order."""
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
    return Trace(table, tables, TraceMeta(path="<built>", source_format="trace.dat", cpus=cpus))


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


def sched(ts, cpu, prev_pid, next_pid, prev_state):
    return (ts, cpu, prev_pid, "sched_switch", {"prev_comm": "x", "prev_pid": prev_pid, "prev_prio": 120,
                                                "prev_state": prev_state, "next_comm": "y",
                                                "next_pid": next_pid, "next_prio": 120})
