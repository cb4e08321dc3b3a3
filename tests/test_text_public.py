"""The public 20-CPU `trace-cmd report` text of a real Intel host (read in place, never copied)."""
from __future__ import annotations

import re
from collections import Counter

import exitreplay
from exitreplay.formats.detect import sniff

LINE = re.compile(r"^\s*(?P<comm>.*?)-(?P<pid>\d+)\s+\[(?P<cpu>\d+)\]\s+(?P<ts>\d+\.\d+):\s+(?P<event>\w+):\s+"
                  r"(?P<rest>.*?)\s*$")
# EXIT_REASON_* values as arch/x86/include/uapi/asm/vmx.h defines them, for the names in this file.
VMX_H = {"EXTERNAL_INTERRUPT": 1, "HLT": 12, "MSR_WRITE": 32, "EOI_INDUCED": 45, "EPT_MISCONFIG": 49,
         "PREEMPTION_TIMER": 52}


def test_public_20_cpu_report(public_dir):
    path = public_dir / "vmx-host-3.2-report.txt"
    assert sniff(path) == "trace-cmd-report"
    lines = [m for m in map(LINE.match, path.read_text().splitlines()) if m]
    tr = exitreplay.read_trace(path)
    assert tr.meta.cpus == 20  # the `cpus=20` header (only CPU 19 has events)
    assert tr.events.num_rows == len(lines)
    assert tr.meta.event_counts == dict(Counter(m["event"] for m in lines))
    assert tr.meta.event_counts["kvm_exit"] == 810  # the figures of the traces' README
    assert tr.meta.event_counts["kvm_entry"] == 806

    # kvm_exit in trace-cmd's plugin form: "reason NAME rip 0x.. info A B" -> VMX codes
    exits = [m for m in lines if m["event"] == "kvm_exit"]
    exits.sort(key=lambda m: int(m["ts"].replace(".", "")))  # the reader's order: by time, stable
    want = []
    for m in exits:
        r = re.fullmatch(r"reason (\w+) rip 0x([0-9a-f]+) info ([0-9a-f]+) ([0-9a-f]+)", m["rest"])
        want.append({"exit_reason": VMX_H[r[1]], "guest_rip": int(r[2], 16), "info1": int(r[3], 16),
                     "info2": int(r[4], 16), "isa": 1})
    got = tr.table("kvm_exit").select(["exit_reason", "guest_rip", "info1", "info2", "isa"]).to_pylist()
    assert got == want
    entries = tr.table("kvm_entry")
    assert set(entries.column("vcpu_id").to_pylist()) == {0}
    msr = tr.table("kvm_msr").to_pylist()
    assert {r["ecx"] for r in msr} >= {0x6E0}  # IA32_TSC_DEADLINE writes for the guest's timer
    assert all(r["write"] == 1 for r in msr if r["ecx"] == 0x6E0)
    for ev in ("sched_switch", "sched_wakeup", "kvm_exit", "kvm_entry", "kvm_msr", "kvm_userspace_exit",
               "kvm_fpu", "kvm_mmio", "kvm_vcpu_wakeup", "kvm_emulate_insn", "write_msr", "read_msr"):
        assert "text" not in tr.table(ev).column_names, ev
    assert set(tr.table("kvm_userspace_exit").column("reason").to_pylist()) == {6}  # KVM_EXIT_MMIO
