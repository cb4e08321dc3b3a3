"""The replay on the public Intel (VMX) host traces, read in place (never copied; skipped where
the folder is absent).

Every expected number here is computed in the test, independently of exitreplay's episode code:
plain Python over the raw kvm_exit/kvm_entry rows of the trace.dat, or over the report text
parsed with the test's own regular expression. The VMX exit-reason numbers are those of
arch/x86/include/uapi/asm/vmx.h.
"""
from __future__ import annotations

import math
import re
from collections import defaultdict

import pytest

import exitreplay
from exitreplay.analysis import analyze

VMX_NAMES = {1: "EXTERNAL_INTERRUPT", 12: "HLT", 32: "MSR_WRITE", 45: "EOI_INDUCED", 48: "EPT_VIOLATION",
             49: "EPT_MISCONFIG", 52: "PREEMPTION_TIMER", 56: "APIC_WRITE"}
LINE = re.compile(r"^\s*(?P<comm>.*?)-(?P<pid>\d+)\s+\[(?P<cpu>\d+)\]\s+(?P<ts>\d+)\.(?P<frac>\d+):\s+"
                  r"(?P<event>\w+):\s+(?P<rest>.*?)\s*$")
SWITCH = re.compile(r"(?P<prev_comm>.*):(?P<prev_pid>\d+) \[\d+\] (?P<state>\S+) ==> (?P<next_comm>.*):(?P<next_pid>\d+) \[")
# The test's own rule for "this task never returns to user mode": idle and kernel-thread names.
KERNEL_THREAD = re.compile(r"^(swapper|kworker/|ksoftirqd/|migration/|rcu|vhost-)")
TSC_MHZ = 3000.0  # any value works; 3000 makes delta*1000/3000 never a rounding tie


def nearest_rank(values: list[int], q: float) -> int:
    s = sorted(values)
    return s[max(math.ceil(q * len(s)) - 1, 0)]


def episodes_from(seq: list[dict]) -> tuple[list[dict], int]:
    """Episodes of one thread from its events in trace order: an exit, and what follows up to the
    thread's next exit or entry; paired if that is an entry. Also: entries before any exit/entry."""
    eps, cur, first_entries, seen = [], None, 0, False
    for e in seq:
        if e["kind"] == "exit":
            if cur is not None:
                eps.append(cur)
            cur = {"ts": e["ts"], "reason": e["reason"], "entry_ts": None, "userspace": [], "outs": []}
            seen = True
        elif e["kind"] == "entry":
            if cur is None:
                first_entries += 0 if seen else 1
            else:
                cur["entry_ts"] = e["ts"]
                eps.append(cur)
                cur = None
            seen = True
        elif cur is not None:
            cur["userspace" if e["kind"] == "userspace" else "outs"].append(e)
    if cur is not None:
        eps.append(cur)
    return eps, first_entries


def expected_latency(eps: list[dict], scale: float = 1.0) -> dict[str, dict]:
    by: dict[str, list] = defaultdict(list)
    for ep in eps:
        by[ep["reason"]].append(ep)
    out = {}
    for reason, group in by.items():
        lat = [round((e["entry_ts"] - e["ts"]) * scale) for e in group if e["entry_ts"] is not None]
        out[reason] = {"exits": len(group), "timed": len(lat), "total_ns": sum(lat), "mean_ns": sum(lat) / len(lat),
                       "p50_ns": nearest_rank(lat, 0.5), "p90_ns": nearest_rank(lat, 0.9),
                       "p99_ns": nearest_rank(lat, 0.99), "max_ns": max(lat), "min_ns": min(lat)}
    return out


def assert_latency(report, expected: dict[str, dict]) -> None:
    got = {r["reason"]: r for r in report.latency.to_dicts()}
    assert set(got) == set(expected)
    for reason, want in expected.items():
        row = got[reason]
        for k, v in want.items():
            assert row[k] == pytest.approx(v, rel=1e-12), (reason, k)


def boundaries(eps: list[dict], first_entries: int) -> dict[str, int]:
    """vcpu_put: a KVM_RUN return or a sched-out inside the episode; the entry after it is a
    vcpu_load; a user return: the KVM_RUN return or a sched-out to a task that is not a kernel thread."""
    b = defaultdict(int)
    for ep in eps:
        put = bool(ep["userspace"] or ep["outs"])
        uret = bool(ep["userspace"]) or any(not KERNEL_THREAD.match(o["next_comm"]) and o["next_pid"] != 0
                                            for o in ep["outs"])
        b["exit"] += 1
        b["put"] += put
        b["load"] += put and ep["entry_ts"] is not None
        b["user_return"] += uret
        # All on one CPU in these traces: no migration; a load after a user return rewrites the MSRs.
        b["load_after_user_return"] += put and uret and ep["entry_ts"] is not None
    b["load"] += first_entries
    b["load_after_user_return"] += first_entries
    return dict(b)


def vmx_expected_ops(b: dict[str, int]) -> dict[str, dict[str, int]]:
    # vmx-uret: WRMSR KERNEL_GS_BASE at each load, LSTAR+TSC_AUX at loads after a user return and at
    # the user return, RDMSR+WRMSR KERNEL_GS_BASE at each put (no lazy accesses: no kvm_msr of those MSRs).
    # vmx-2008: RDMSR FS/GS base + host KERNEL_GS_BASE and 5 guest WRMSR per load; 5 RDMSR + 5 WRMSR per put.
    return {
        "vmx-uret": {"wrmsr": b["load"] + 2 * b["load_after_user_return"] + b["put"] + 2 * b["user_return"],
                     "rdmsr": b["put"], "vmload": 0, "vmsave": 0, "ltr": 0, "seg_reload": 0, "ist_toggle": 0},
        "vmx-2008": {"wrmsr": 5 * b["load"] + 5 * b["put"], "rdmsr": 3 * b["load"] + 5 * b["put"],
                     "vmload": 0, "vmsave": 0, "ltr": 0, "seg_reload": 0, "ist_toggle": 0},
    }


def policy_ops(report, name: str) -> dict[str, int]:
    row = report.policies.filter(report.policies["policy"] == name).to_dicts()[0]
    return {k: row[k] for k in ("wrmsr", "rdmsr", "vmload", "vmsave", "ltr", "seg_reload", "ist_toggle")}


# --- vmx-host-6.5.v7zlib.dat: raw TSC timestamps, no sched_switch ---------------------------------

@pytest.fixture(scope="module")
def dat(public_dir):
    return exitreplay.read_trace(public_dir / "vmx-host-6.5.v7zlib.dat")


def _dat_sequences(tr) -> dict[int, list[dict]]:
    seq: dict[int, list[tuple]] = defaultdict(list)
    for r in tr.table("kvm_exit").to_pylist():
        assert r["isa"] == 1
        seq[r["pid"]].append((r["row"], {"kind": "exit", "ts": r["ts"], "reason": VMX_NAMES[r["exit_reason"]]}))
    for r in tr.table("kvm_entry").to_pylist():
        seq[r["pid"]].append((r["row"], {"kind": "entry", "ts": r["ts"]}))
    for r in tr.table("kvm_userspace_exit").to_pylist():
        seq[r["pid"]].append((r["row"], {"kind": "userspace", "ts": r["ts"]}))
    return {pid: [e for _, e in sorted(s, key=lambda x: x[0])] for pid, s in seq.items()}


def test_dat_latency_table_equals_raw_computation(dat):
    assert dat.meta.clock == "x86-tsc"
    report = analyze(dat, tsc_mhz=TSC_MHZ)
    eps, firsts = [], 0
    for s in _dat_sequences(dat).values():
        e, f = episodes_from(s)
        eps += e
        firsts += f
    assert report.summary["exits"] == len(eps) == 1558
    assert report.summary["timed_exits"] == sum(e["entry_ts"] is not None for e in eps)
    assert_latency(report, expected_latency(eps, 1000.0 / TSC_MHZ))
    assert any("converted at 3000 MHz" in w for w in report.warnings)
    # One vCPU, one VM: the per-vCPU and per-VM tables by reason are the same numbers.
    for t in (report.latency_reason_vcpu, report.latency_reason_vm):
        assert sorted(t.select("reason", "exits", "total_ns", "p99_ns").rows()) == \
            sorted(report.latency.select("reason", "exits", "total_ns", "p99_ns").rows())


def test_dat_vmx_policies_counts(dat):
    report = analyze(dat, tsc_mhz=TSC_MHZ)
    # The default on a VMX trace: the VMX policies, against vmx-uret.
    assert report.summary["baseline"] == "vmx-uret"
    assert set(report.policies["policy"]) == {"vmx-uret", "vmx-2008"}
    eps, firsts = [], 0
    for s in _dat_sequences(dat).values():
        e, f = episodes_from(s)
        eps += e
        firsts += f
    b = boundaries(eps, firsts)
    assert b["put"] == 5 and firsts == 1  # the five KVM_EXIT_MMIO returns; the one KVM_RUN start
    for name, ops in vmx_expected_ops(b).items():
        assert policy_ops(report, name) == ops, name
    causes = {(r["policy"], r["cause"]): r["count"] for r in report.sync_causes.to_dicts()}
    assert causes[("vmx-uret", "put:userspace")] == 5
    assert any(w.startswith("no sched_switch recorded: preemption sync points unknown") for w in report.warnings)


# --- vmx-host-3.2-report.txt: trace-cmd report text, sched_switch and the host's own MSR events ---

@pytest.fixture(scope="module")
def text(public_dir):
    path = public_dir / "vmx-host-3.2-report.txt"
    lines = [m for m in map(LINE.match, path.read_text().splitlines()) if m]
    return path, lines


def _text_sequences(lines) -> tuple[dict[int, list[dict]], set[int]]:
    vcpu_threads = {int(m["pid"]) for m in lines if m["event"] == "kvm_exit"}
    seq: dict[int, list[dict]] = defaultdict(list)
    for m in lines:
        ts = int(m["ts"]) * 10**9 + int(m["frac"].ljust(9, "0"))
        pid, ev = int(m["pid"]), m["event"]
        if ev == "kvm_exit":
            seq[pid].append({"kind": "exit", "ts": ts, "reason": re.match(r"reason (\w+)", m["rest"])[1]})
        elif ev == "kvm_entry":
            seq[pid].append({"kind": "entry", "ts": ts})
        elif ev == "kvm_userspace_exit":
            seq[pid].append({"kind": "userspace", "ts": ts})
        elif ev == "sched_switch":
            s = SWITCH.match(m["rest"])
            prev, nxt = int(s["prev_pid"]), int(s["next_pid"])
            if prev in vcpu_threads and prev != nxt:
                seq[prev].append({"kind": "out", "ts": ts, "next_comm": s["next_comm"], "next_pid": nxt})
    return seq, vcpu_threads


def test_report_text_latency_table_equals_text_computation(text):
    path, lines = text
    report = analyze(exitreplay.read_trace(path))
    seq, _ = _text_sequences(lines)
    eps = [e for s in seq.values() for e in episodes_from(s)[0]]
    assert len(eps) == 810 and report.summary["exits"] == 810
    assert_latency(report, expected_latency(eps))
    pairing = report.summary["pairing"]
    assert pairing["exits"] - pairing["exits_without_entry"] - pairing["exits_open_at_end"] == \
        sum(e["entry_ts"] is not None for e in eps)


def test_report_text_vmx_policies_counts(text):
    path, lines = text
    report = analyze(exitreplay.read_trace(path))
    seq, _ = _text_sequences(lines)
    eps, firsts = [], 0
    for s in seq.values():
        e, f = episodes_from(s)
        eps += e
        firsts += f
    b = boundaries(eps, firsts)
    for name, ops in vmx_expected_ops(b).items():
        assert policy_ops(report, name) == ops, name
    row = report.policies.filter(report.policies["policy"] == "vmx-uret").to_dicts()[0]
    assert row["syncs"] == b["put"]
    causes = {(r["policy"], r["cause"]): r["count"] for r in report.sync_causes.to_dicts()}
    assert causes[("vmx-uret", "put:userspace")] == sum(bool(e["userspace"]) for e in eps) == 7
    blocked = sum(1 for e in eps if not e["userspace"] and e["outs"] and e["outs"][0]["next_pid"] == 0)
    assert causes[("vmx-uret", "put:blocked")] == blocked  # HLT: the thread sleeps, the CPU idles
    # Only preemptions by user tasks (QEMU's main thread) return this CPU to user mode; those by
    # the vhost worker (a kernel thread) do not.
    assert b["user_return"] == 7 + 2


def test_model_agrees_with_the_hosts_own_msr_writes(text):
    """The trace also holds the host kernel's read_msr/write_msr events: the ground truth the VMX
    model describes. vmx_prepare_switch_to_guest writes KERNEL_GS_BASE (0xc0000102) at each load and
    vmx_prepare_switch_to_host reads and writes it at each put; LSTAR (0xc0000082) is written at a
    load after a user return and restored at that return (by whichever task returns). The trace
    lost some events (gaps of up to a second), so the agreement is close, not exact."""
    path, lines = text
    report = analyze(exitreplay.read_trace(path))
    seq, threads = _text_sequences(lines)
    kgs_w = sum(1 for m in lines if int(m["pid"]) in threads and m["event"] == "write_msr"
                and m["rest"].startswith("c0000102,"))
    kgs_r = sum(1 for m in lines if int(m["pid"]) in threads and m["event"] == "read_msr"
                and m["rest"].startswith("c0000102,"))
    lstar_w = sum(1 for m in lines if m["event"] == "write_msr" and m["rest"].startswith("c0000082,"))
    eps, firsts = [], 0
    for s in seq.values():
        e, f = episodes_from(s)
        eps += e
        firsts += f
    b = boundaries(eps, firsts)
    assert kgs_r == b["put"]  # one RDMSR of the guest value per put, exactly
    assert abs(kgs_w - (b["load"] + b["put"])) <= 0.02 * kgs_w
    assert abs(lstar_w - (b["load_after_user_return"] + b["user_return"])) <= 2
    ops = policy_ops(report, "vmx-uret")
    assert ops["rdmsr"] == b["put"]
