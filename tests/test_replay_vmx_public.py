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

import polars as pl
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
            if cur is not None:  # its entry was lost: the thread entered its guest again
                cur["entry_lost"] = True
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


def boundaries(eps: list[dict], first_entries: int, cpu_seq: dict[str, int] | None = None) -> dict[str, int]:
    """vcpu_put: a KVM_RUN return or a sched-out inside the episode; the entry after it is a
    vcpu_load. User returns and loads that find host values come from the CPUs' task sequence
    (cpu_sequence); without sched_switch, from the KVM_RUN returns alone."""
    b = defaultdict(int)
    for ep in eps:
        put = bool(ep["userspace"] or ep["outs"])
        b["exit"] += 1
        b["put"] += put
        b["load"] += put and (ep["entry_ts"] is not None or ep.get("entry_lost", False))
        if cpu_seq is None:
            b["user_return"] += bool(ep["userspace"])
            b["load_after_user_return"] += bool(ep["userspace"]) and ep["entry_ts"] is not None
    b["load"] += first_entries
    if cpu_seq is None:
        b["load_after_user_return"] += first_entries
    else:
        b.update(cpu_seq)
    return dict(b)


def cpu_sequence(lines, vcpu_threads: set[int]) -> dict[str, int]:
    """The test's own walk of each CPU's task sequence (kernel/user-return-notifier.c: the flag
    follows the CPU). A CPU holds guest values from a vCPU's load (its kvm_entry after a put) until
    a task returns to user mode there: the vCPU thread's KVM_RUN return, or a switch to a task that
    is not idle, not a kernel thread and not a vCPU thread resuming inside KVM_RUN."""
    holds_guest: dict[int, bool] = {}
    in_run = dict.fromkeys(vcpu_threads, False)
    needs_load = dict.fromkeys(vcpu_threads, True)
    seen: set[int] = set()
    in_episode: dict[int, bool] = {}
    out = {"user_return": 0, "load_after_user_return": 0}
    for m in lines:
        cpu, pid, ev = int(m["cpu"]), int(m["pid"]), m["event"]
        if ev in ("kvm_exit", "kvm_entry") and pid in vcpu_threads and pid not in seen:
            seen.add(pid)
            if ev == "kvm_exit":  # in guest mode when the trace began: loaded, on this CPU
                holds_guest[cpu], needs_load[pid] = True, False
        if ev == "kvm_entry" and pid in vcpu_threads:
            in_run[pid], in_episode[pid] = True, False
            if needs_load[pid]:
                out["load_after_user_return"] += not holds_guest.get(cpu, False)
                holds_guest[cpu], needs_load[pid] = True, False
        elif ev == "kvm_exit" and pid in vcpu_threads:
            if in_run[pid] and in_episode.get(pid) and needs_load[pid]:  # a lost entry was a load
                out["load_after_user_return"] += not holds_guest.get(cpu, False)
                holds_guest[cpu], needs_load[pid] = True, False
            in_run[pid], in_episode[pid] = True, True
        elif ev == "kvm_userspace_exit" and pid in vcpu_threads:
            in_run[pid], needs_load[pid] = False, True
            out["user_return"] += holds_guest.get(cpu, False)
            holds_guest[cpu] = False
        elif ev == "sched_switch":
            sw = SWITCH.match(m["rest"])
            prev, nxt = int(sw["prev_pid"]), int(sw["next_pid"])
            if prev in vcpu_threads and prev != nxt:
                needs_load[prev] = True
            user = nxt != 0 and not KERNEL_THREAD.match(sw["next_comm"]) and not (nxt in vcpu_threads and in_run[nxt])
            if user:
                out["user_return"] += holds_guest.get(cpu, False)
                holds_guest[cpu] = False
    return out


def vmx_expected_ops(b: dict[str, int]) -> dict[str, dict[str, int]]:
    # vmx-uret: WRMSR KERNEL_GS_BASE at each load, LSTAR+TSC_AUX at loads after a user return and at
    # the user return, RDMSR+WRMSR KERNEL_GS_BASE at each put (no lazy accesses: no kvm_msr of those MSRs).
    # vmx-2.6.25: RDMSR FS/GS base + host KERNEL_GS_BASE and 5 guest WRMSR per load; 5 RDMSR + 5 WRMSR
    # per put; vmx-2.6.26: the same and an LTR per put. (One vCPU: no load finds another vCPU's values.)
    v25 = {"wrmsr": 5 * b["load"] + 5 * b["put"], "rdmsr": 3 * b["load"] + 5 * b["put"],
           "vmload": 0, "vmsave": 0, "ltr": 0, "seg_reload": 0, "ist_toggle": 0}
    return {
        "vmx-uret": {"wrmsr": b["load"] + 2 * b["load_after_user_return"] + b["put"] + 2 * b["user_return"],
                     "rdmsr": b["put"], "vmload": 0, "vmsave": 0, "ltr": 0, "seg_reload": 0, "ist_toggle": 0},
        "vmx-2.6.25": v25, "vmx-2.6.26": {**v25, "ltr": b["put"]},
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


def dat_walk(tr) -> dict[str, int]:
    """The test's own walk of the 6.5 trace's KVM events in row order (it has no sched_switch).
    A put: a KVM_RUN return, or a CPU change between an exit and its entry (a task changes CPU
    only while switched out). A load: the entry after a put, or a first entry that a kvm_fpu load
    precedes (6.x starts KVM_RUN with it); a first event that is an exit, or a first entry with no
    kvm_fpu before it, is a vCPU already loaded when the trace began. A CPU returns to user mode
    at a KVM_RUN return; a load finds host values where the CPU last returned to user mode."""
    evs = []
    for name, kind in (("kvm_exit", "exit"), ("kvm_entry", "entry"), ("kvm_userspace_exit", "userspace"),
                       ("kvm_fpu", "fpu")):
        evs += [(r["row"], kind, r["pid"], r["cpu"], r.get("load")) for r in tr.table(name).to_pylist()]
    started, fpu_seen, needs_load, exit_cpu, put_seen, in_episode = set(), set(), {}, {}, {}, {}
    holds_guest: dict[int, bool] = {}
    b = defaultdict(int)
    for _, kind, pid, cpu, load in sorted(evs):
        if kind == "fpu" and load:
            fpu_seen.add(pid)
        elif kind == "exit":
            if pid not in started:
                started.add(pid)
                holds_guest[cpu], needs_load[pid] = True, False
            b["exit"] += 1
            exit_cpu[pid], put_seen[pid], in_episode[pid] = cpu, False, True
        elif kind == "userspace":
            b["put"] += not put_seen.get(pid, True)
            put_seen[pid], needs_load[pid] = True, True
            b["user_return"] += holds_guest.get(cpu, False)
            holds_guest[cpu] = False
        elif kind == "entry":
            if pid not in started:
                started.add(pid)
                if pid not in fpu_seen:  # already running: loaded, no load seen
                    holds_guest[cpu], needs_load[pid] = True, False
                    continue
                needs_load[pid] = True
            elif not in_episode[pid]:  # an entry after an entry: its exit was lost, no episode
                continue
            elif cpu != exit_cpu[pid] and not put_seen[pid]:
                b["put"] += 1
                needs_load[pid] = True
            in_episode[pid] = False
            if needs_load.get(pid):
                b["load"] += 1
                b["load_after_user_return"] += not holds_guest.get(cpu, False)
                holds_guest[cpu], needs_load[pid] = True, False
    return dict(b)


def test_dat_vmx_policies_counts(dat):
    report = analyze(dat, tsc_mhz=TSC_MHZ)
    # The default on a VMX trace: the VMX policies, against vmx-uret.
    assert report.summary["baseline"] == "vmx-uret"
    assert set(report.policies["policy"]) == {"vmx-uret", "vmx-2.6.25", "vmx-2.6.26"}
    b = dat_walk(dat)
    # The five KVM_EXIT_MMIO returns and nine CPU changes with no sched_switch recorded; the first
    # kvm_entry has no kvm_fpu load before it (the vCPU was running when the trace began). (Before
    # the model was corrected: 5 puts and a first load, as if that entry started KVM_RUN.)
    assert (b["put"], b["load"], b["user_return"]) == (5 + 9, 5 + 9, 5)
    assert report.summary["pairing"]["first_entries_mid_exit"] == 1
    assert report.summary["pairing"]["cpu_changes_without_sched_switch"] == 9
    for name, ops in vmx_expected_ops(b).items():
        assert policy_ops(report, name) == ops, name
    causes = {(r["policy"], r["cause"]): r["count"] for r in report.sync_causes.to_dicts()}
    assert causes[("vmx-uret", "put:userspace")] == 5 and causes[("vmx-uret", "put:unknown")] == 9
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
    b = boundaries(eps, firsts, cpu_sequence(lines, set(seq)))
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
    assert report.summary["pairing"]["user_returns"] == b["user_return"]


def test_model_agrees_with_the_hosts_own_msr_writes(text):
    """The trace also holds the host kernel's read_msr/write_msr events: the ground truth the VMX
    model describes. vmx_prepare_switch_to_guest writes KERNEL_GS_BASE (0xc0000102) at each load and
    vmx_prepare_switch_to_host reads and writes it at each put; LSTAR (0xc0000082) is written at a
    load after a user return and restored at that return (by whichever task returns), as is TSC_AUX
    (0xc0000103). The trace lost some events (gaps of up to a second), so the KERNEL_GS_BASE and
    TSC_AUX agreement is close; LSTAR's is exact (18 writes: 9 loads after a user return, 9 returns)."""
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
    tsc_aux_w = sum(1 for m in lines if m["event"] == "write_msr" and m["rest"].startswith("c0000103,"))
    b = boundaries(eps, firsts, cpu_sequence(lines, threads))
    assert kgs_r == b["put"]  # one RDMSR of the guest value per put, exactly
    assert abs(kgs_w - (b["load"] + b["put"])) <= 0.02 * kgs_w
    assert lstar_w == b["load_after_user_return"] + b["user_return"] == 18
    assert abs(tsc_aux_w - (b["load_after_user_return"] + b["user_return"])) <= 1
    ops = policy_ops(report, "vmx-uret")
    assert ops["rdmsr"] == b["put"]
    # The model's own counts (the per-CPU inference in episodes/userreturn.py) are the same.
    eb = report.episodes.select(pl.col("user_returns").sum(), (pl.col("uret_state") == 1).sum()).row(0)
    assert eb == (b["user_return"], b["load_after_user_return"])
