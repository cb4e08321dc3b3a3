"""Variants of the text formats: headers present or not, lost-event lines, trace_pipe, no latency
columns, tgid column, odd task names, and print formats written out by hand from the kernel's
`print fmt` strings (expected values worked out here from those strings)."""
from __future__ import annotations

import re

import pyarrow as pa
import pytest
from conftest import REAL

import exitreplay
from exitreplay.errors import TraceError
from exitreplay.formats.detect import sniff
from exitreplay.kvm import reasons as R

EVENT_LINE = re.compile(r"^\s*.*-\d+\s+(?:\(\s*[-\d]+\)\s+)?\[(\d+)\]")


def write(tmp_path, name: str, lines: list[str]):
    p = tmp_path / name
    p.write_text("\n".join(lines) + "\n")
    return p


def fields(trace, event: str) -> list[dict]:
    return trace.table(event).to_pylist()


def expected_row(lines: list[str], marker_at: int, cpu: int | None) -> tuple[int, int]:
    """(row, cpu) of the first event line after the marker (of `cpu`), counting event lines."""
    row = 0
    for ln in lines[:marker_at]:
        if EVENT_LINE.match(ln):
            row += 1
    for ln in lines[marker_at + 1:]:
        m = EVENT_LINE.match(ln)
        if not m:
            continue
        if cpu is None or int(m[1]) == cpu:
            return row, int(m[1])
        row += 1
    raise AssertionError("no event after the marker")


def test_report_without_header_with_dropped_lines(tmp_path):
    src = (REAL / "pvm-pio-small.report.txt").read_text().splitlines()
    body = [ln for ln in src if not ln.startswith("cpus=")]
    # trace-cmd's two forms, the kernel's form, and a bare one (its CPU is the next event's)
    inserts = [(900, "CPU:1 [12 EVENTS DROPPED]", 1, 12), (600, "CPU:0 [EVENTS DROPPED]", 0, None),
               (300, "CPU:0 [LOST 7 EVENTS]", 0, 7), (100, "[5 EVENTS DROPPED]", None, 5)]
    for at, text, _, _ in inserts:  # from the bottom up, so earlier positions stay put
        body.insert(at, text)
    p = write(tmp_path, "dropped.txt", body)
    assert sniff(p) == "trace-cmd-report"
    tr = exitreplay.read_trace(p)
    assert tr.meta.cpus == 2  # no header: the highest CPU seen + 1
    assert tr.events.num_rows == sum(1 for ln in body if EVENT_LINE.match(ln))
    want = []
    for _at, text, cpu, count in inserts:
        idx = body.index(text)
        row, real_cpu = expected_row(body, idx, cpu)
        want.append((real_cpu, count, row))
    got = [(d.cpu, d.count, d.row) for d in tr.meta.dropped]
    assert sorted(got, key=lambda x: x[2]) == sorted(want, key=lambda x: x[2])
    ts = tr.events.column("ts").to_pylist()
    assert all(d.ts == ts[d.row] for d in tr.meta.dropped)
    per_cpu: dict[int, int | None] = {}
    for cpu, count, _ in want:
        prev = per_cpu.get(cpu, 0)
        per_cpu[cpu] = None if prev is None or count is None else prev + count
    assert tr.meta.dropped_per_cpu == per_cpu
    assert per_cpu[0] is None  # "[EVENTS DROPPED]" carries no count
    assert any("lost" in w for w in tr.meta.warnings)


def _ftrace_lines():
    return (REAL / "pvm-longmode-msr.ftrace.txt").read_text().splitlines()


def test_trace_pipe_form_equals_trace_form(tmp_path):
    full = exitreplay.read_trace(REAL / "pvm-longmode-msr.ftrace.txt")
    p = write(tmp_path, "pipe.txt", [ln for ln in _ftrace_lines() if not ln.startswith("#")])
    assert sniff(p) == "ftrace-text"
    pipe = exitreplay.read_trace(p)
    assert pipe.meta.extra["trace_pipe"] and not full.meta.extra["trace_pipe"]
    assert pipe.events.equals(full.events)
    for ev in full.event_names:
        assert pipe.table(ev).equals(full.table(ev)), ev


def test_ftrace_without_latency_columns_and_with_tgid(tmp_path):
    full = exitreplay.read_trace(REAL / "pvm-longmode-msr.ftrace.txt")
    lat = re.compile(r"^(\s*.*-\d+\s+\[\d+\]) [.dDbX][.nNpPlLbB][.hHsSzZ][.0-9a-f][.0-9a-f] ")
    no_lat = [lat.sub(r"\1 ", ln) for ln in _ftrace_lines() if not ln.startswith("#")]
    assert sum(1 for ln in no_lat if lat.match(ln)) == 0
    p = write(tmp_path, "nolat.txt", no_lat)
    assert sniff(p) == "ftrace-text"  # the kernel does not pad event names as trace-cmd does
    tr = exitreplay.read_trace(p)
    assert tr.events.column("flags").null_count == tr.events.num_rows
    for col in ("ts", "cpu", "pid", "comm", "event"):
        assert tr.events.column(col).equals(full.events.column(col)), col
    for ev in full.event_names:
        assert tr.table(ev).equals(full.table(ev)), ev
    tgid = re.compile(r"^(\s*.*-(\d+)\s+)(\[\d+\])")
    with_tgid = [tgid.sub(lambda m: f"{m[1]}({m[2]:>7}) {m[3]}", ln) for ln in _ftrace_lines()]
    tr2 = exitreplay.read_trace(write(tmp_path, "tgid.txt", with_tgid))
    assert tr2.events.equals(full.events)


def test_task_names_with_spaces_dashes_idle_and_unknown(tmp_path):
    lines = [
        "# tracer: nop",
        ("      CPU 0/KVM-4242    [001] d..2.  100.000001: sched_switch: prev_comm=CPU 0/KVM prev_pid=4242 "
        "prev_prio=120 prev_state=R+ ==> next_comm=kworker/u8:0-events next_pid=12 next_prio=120"),
        " kworker/u8:0-events-12 [001] .N...  100.000002: kvm_fpu: unload",
        ("          <idle>-0       [000] dNh2.  100.000003: sched_switch: prev_comm=swapper/0 prev_pid=0 "
        "prev_prio=120 prev_state=D|W ==> next_comm=CPU 0/KVM next_pid=4242 next_prio=120"),
        "           <...>-77      [000] D.s13  100.000004: kvm_fpu: load",
        "    vhost-150742-150787 [019] b..1.  100.000005: kvm_fpu: load",
    ]
    tr = exitreplay.read_trace(write(tmp_path, "t.txt", lines))
    assert tr.events.column("comm").to_pylist() == ["CPU 0/KVM", "kworker/u8:0-events", "<idle>", None,
                                                     "vhost-150742"]
    assert tr.events.column("pid").to_pylist() == [4242, 12, 0, 77, 150787]
    # latency letters -> common_flags (kernel/trace/trace.h bits: irqs-off 0x01, need-resched 0x04,
    # hardirq 0x08, softirq 0x10, preempt-resched 0x20, bh-off 0x80); preempt count from the digits
    assert tr.events.column("flags").to_pylist() == [0x01, 0x24, 0x01 | 0x24 | 0x08, 0x81 | 0x10, 0x80]
    assert tr.events.column("preempt_count").to_pylist() == [2, 0, 2, 0x31, 1]
    ss = fields(tr, "sched_switch")
    # kernel letters: "R+" is TASK_REPORT_MAX (0x100); "D|W" has a letter the kernel does not print
    assert [r["prev_state"] for r in ss] == [0x100, None]
    assert [r["prev_comm"] for r in ss] == ["CPU 0/KVM", "swapper/0"]
    assert [r["next_comm"] for r in ss] == ["kworker/u8:0-events", "CPU 0/KVM"]


def test_plugin_sched_states(tmp_path):
    # trace-cmd's plugin letters "SDTtZXxW" are bits 0..7; "R" is none of them
    lines = ["cpus=1"] + [
        f"           a-1     [000]   1.00000{i}: sched_switch:         a:1 [120] {s} ==> b:2 [100]"
        for i, s in enumerate(["R", "S", "D", "Z", "X", "x", "W", "S|D", "T|t"])
    ]
    tr = exitreplay.read_trace(write(tmp_path, "p.txt", lines))
    assert [r["prev_state"] for r in fields(tr, "sched_switch")] == [0, 1, 2, 16, 32, 64, 128, 3, 12]
    assert {r["next_prio"] for r in fields(tr, "sched_switch")} == {100}


def test_kernel_print_formats_by_hand(tmp_path):
    """Lines written from Linux 6.18's print fmt strings (arch/x86/kvm/trace.h); the values below
    are read off those strings by hand."""
    pre = "       CPU 1/KVM-5001    [003] .....  200.000{:03d}: "
    body = [
        ("kvm_exit: vcpu 1 reason EPT_VIOLATION rip 0xffffffff81000010 info1 0x0000000000000182 "
        "info2 0x0000000000000000 intr_info 0x00000000 error_code 0x00000000 requests 0x0000000000000000"),
        ("kvm_exit: vcpu 1 reason INVALID_STATE FAILED_VMENTRY rip 0xfff0 info1 0x0000000000000000 "
        "info2 0x0000000000000000 intr_info 0x00000000 error_code 0x00000000 requests 0x0000000000000000"),
        ("kvm_exit: vcpu 1 reason 0x63 rip 0x10 info1 0x0000000000000000 info2 0x0000000000000000 "
        "intr_info 0x80000b0e error_code 0x00000004 requests 0x0000000000000000"),
        "kvm_entry: vcpu 1, rip 0xffffffff81000010 intr_info 0x80000b0e error_code 0x00000004[immediate exit]",
        "kvm_entry: vcpu 1, rip 0xffffffff81000012 intr_info 0x00000000 error_code 0x00000000",
        "kvm_userspace_exit: reason KVM_EXIT_IO (2)",
        "kvm_userspace_exit: reason restart (4)",
        "kvm_userspace_exit: reason error (14)",
        "kvm_userspace_exit: reason 0x27 (39)",
        "kvm_msr: msr_write c0000102 = 0xffff888100000000 (#GP)",
        "kvm_msr: msr_read 10 = 0x5",
        "kvm_pio: pio_read at 0x70 size 1 count 2 val 0x80 (...)",
        "kvm_mmio: mmio unsatisfied-read len 8 gpa 0xfee00300 val 0x0",
        "kvm_apic: apic_write APIC_ICR = 0x4000000fd",
        "kvm_inj_virq: Soft/INTn 0x80 [reinjected]",
        "kvm_emulate_insn: 0:ffffffff81000010:0f 01 d9 (prot64) failed",
        ("kvm_nested_vmenter: rip: 0x0000000000401000 vmcs: 0x0000000012345000 nested_rip: 0x0000000000402000 "
        "int_ctl: 0x00000000 event_inj: 0x00000000 nested_ept=n guest_cr3: 0x0000000000007000"),
        "kvm_write_tsc_offset: vcpu=1 prev=0 next=18446744073709551615",
    ]
    p = write(tmp_path, "k.txt", ["# tracer: nop"] + [pre.format(i) + b for i, b in enumerate(body)])
    tr = exitreplay.read_trace(p)
    ex = fields(tr, "kvm_exit")
    assert [(r["isa"], r["exit_reason"]) for r in ex] == [(1, 48), (1, 0x80000000 | 33), (1, 0x63)]
    assert ex[0]["info1"] == 0x182 and ex[0]["guest_rip"] == 0xFFFFFFFF81000010 and ex[0]["vcpu_id"] == 1
    assert ex[2]["intr_info"] == 0x80000B0E and ex[2]["error_code"] == 4
    assert tr.table("kvm_exit").schema.field("guest_rip").type == pa.uint64()  # >= 2**63
    assert tr.table("kvm_exit").schema.field("info1").type == pa.int64()
    en = fields(tr, "kvm_entry")
    assert [r["immediate_exit"] for r in en] == [1, 0]
    ue = fields(tr, "kvm_userspace_exit")
    # errno < 0 prints "restart" (EINTR) or "error" and -errno; otherwise the reason twice
    assert [(r["reason"], r["errno"]) for r in ue] == [(2, 0), (None, -4), (None, -14), (39, 0)]
    msr = fields(tr, "kvm_msr")
    assert [(r["write"], r["ecx"], r["data"], r["exception"]) for r in msr] == [
        (1, 0xC0000102, 0xFFFF888100000000, 1), (0, 0x10, 5, 0)]
    assert fields(tr, "kvm_pio")[0] == {**fields(tr, "kvm_pio")[0], "rw": 0, "port": 0x70, "size": 1,
                                        "count": 2, "val": 0x80}
    assert fields(tr, "kvm_mmio")[0]["type"] == 0  # KVM_TRACE_MMIO_READ_UNSATISFIED
    assert (fields(tr, "kvm_apic")[0]["reg"], fields(tr, "kvm_apic")[0]["val"]) == (0x300, 0x4000000FD)
    assert {k: fields(tr, "kvm_inj_virq")[0][k] for k in ("soft", "vector", "reinjected")} == {
        "soft": 1, "vector": 0x80, "reinjected": 1}
    emu = fields(tr, "kvm_emulate_insn")[0]
    assert (emu["rip"], emu["insn"], emu["flags"], emu["failed"]) == (0xFFFFFFFF81000010, [0x0F, 0x01, 0xD9], 9, 1)
    nv = fields(tr, "kvm_nested_vmenter")[0]
    assert (nv["isa"], nv["vmcb"], nv["tdp_enabled"], nv["guest_pgd"]) == (1, 0x12345000, 0, 0x7000)
    assert fields(tr, "kvm_write_tsc_offset")[0]["next_tsc_offset"] == 2**64 - 1
    assert tr.table("kvm_write_tsc_offset").schema.field("next_tsc_offset").type == pa.uint64()
    assert all("text" not in tr.table(e).column_names for e in tr.event_names)


def test_plugin_svm_names_and_unknown_codes(tmp_path):
    # trace-cmd's kvm plugin: SVM header macro names; "UNKNOWN (n)" for a code it lacks
    lines = ["cpus=1"] + [
        f"       CPU 0/KVM-7     [000]     1.00000{i}: kvm_exit:             reason {r} rip 0x1000 info 1 0"
        for i, r in enumerate(["EXIT_NPF", "EXIT_VMLOAD", "UNKNOWN (166)", "EXIT_EXCP_PF"])
    ]
    tr = exitreplay.read_trace(write(tmp_path, "svm.txt", lines))
    rows = fields(tr, "kvm_exit")
    assert [(r["isa"], r["exit_reason"]) for r in rows] == [
        (R.ISA_SVM, 0x400), (R.ISA_SVM, 0x82), (R.ISA_SVM, 0xA6), (R.ISA_SVM, 0x4E)]
    assert {(r["info1"], r["info2"]) for r in rows} == {(1, 0)}


def test_timestamps_exact(tmp_path):
    lines = ["cpus=1",
             "       a-1     [000] 1700000000.123456: kvm_fpu:              load",
             "       a-1     [000] 1700000000.123456789: kvm_fpu:              unload",
             "       a-1     [000] 1700000001.000001: kvm_fpu:              load"]
    tr = exitreplay.read_trace(write(tmp_path, "ts.txt", lines))
    assert tr.events.column("ts").to_pylist() == [1700000000123456000, 1700000000123456789, 1700000001000001000]


def test_unknown_events_keep_fields_or_text(tmp_path):
    lines = ["cpus=1",
             "       a-1     [000]     1.000001: my_event:             a=1 b=0x10 c=hello world d=ff",
             "       a-1     [000]     1.000002: my_event:             a=-2 b=0x20 c=x d=1a",
             "       a-1     [000]     1.000003: odd_event:            something free-form 42"]
    tr = exitreplay.read_trace(write(tmp_path, "u.txt", lines))
    t = tr.table("my_event")
    assert t.column("a").to_pylist() == [1, -2]
    assert t.column("b").to_pylist() == [16, 32]
    assert t.column("c").to_pylist() == ["hello world", "x"]
    assert t.column("d").to_pylist() == [0xFF, 0x1A]  # hex digits beyond 9 say hex
    assert tr.table("odd_event").column("text").to_pylist() == ["something free-form 42"]
    assert any("odd_event" in w for w in tr.meta.warnings)


def test_ftrace_header_loss_and_buffer_started(tmp_path):
    lines = _ftrace_lines()
    i = next(k for k, ln in enumerate(lines) if "entries-in-buffer" in ln)
    lines[i] = "# entries-in-buffer/entries-written: 6558/7000   #P:4"
    first_event = next(k for k, ln in enumerate(lines) if EVENT_LINE.match(ln))
    lines.insert(first_event + 40, "##### CPU 1 buffer started ####")
    tr = exitreplay.read_trace(write(tmp_path, "lost.txt", lines))
    assert tr.meta.cpus == 4  # from #P:4
    assert tr.meta.extra["entries_lost"] == 442
    assert any("442" in w for w in tr.meta.warnings)
    (d,) = tr.meta.dropped
    row, _cpu = expected_row(lines, first_event + 40, 1)
    assert (d.cpu, d.count, d.row) == (1, None, row)


def test_not_traces(tmp_path):
    for name, content, problem in [
        ("empty.txt", b"", "empty file"),
        ("blank.txt", b"\n\n   \n", "not a trace"),
        ("garbage.bin", bytes(range(256)) * 8, "not a trace"),
        ("prose.txt", b"This is a README.\nIt has lines: but no events.\n", "not a trace"),
    ]:
        p = tmp_path / name
        p.write_bytes(content)
        with pytest.raises(TraceError) as err:
            exitreplay.read_trace(p)
        assert problem in str(err.value) and str(p) in str(err.value)
