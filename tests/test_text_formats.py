"""Text forms of the real recordings give the same events as trace-cmd's reading of the .dat.

`.report.txt` (trace-cmd's plugin formatting) and `.ftrace.txt` (the kernel's own text of the same
buffer) show microseconds and printed fields; each is compared, event by event, with
`trace-cmd report -R -t` of the committed .dat, parsed by the test's own parser.
"""
from __future__ import annotations

import pytest

import exitreplay
from conftest import RECORDINGS, REAL, trace_cmd_report
from test_tracedat_oracle import oracle_events, same_value

# trace-cmd's sched_switch plugin prints the preempted bit (256, the kernel's "R+") as plain "R".
LOSSY = {("sched_switch", "prev_state"): {0: {0, 256}}}


def us(ns: int) -> int:
    return (ns + 500) // 1000  # both trace-cmd and the kernel round ns to the printed µs


def compare(text_trace, expected, *, check_comm: bool):
    ev = text_trace.events.to_pydict()
    assert text_trace.events.num_rows == len(expected)
    fields_by_row = {}
    for name in text_trace.event_names:
        t = text_trace.table(name)
        own = [c for c in t.column_names if c not in ("row", "ts", "cpu", "pid", "text")]
        cols = {c: t.column(c).to_pylist() for c in own}
        for i, r in enumerate(t.column("row").to_pylist()):
            fields_by_row[r] = {c: cols[c][i] for c in own}
    bad = []
    compared = 0
    for i, (ts, cpu, pid, event, comm, fields) in enumerate(expected):
        if (us(ts), cpu, pid, event) != (us(ev["ts"][i]), ev["cpu"][i], ev["pid"][i], ev["event"][i]):
            bad.append((i, "header", (ev["ts"][i], ev["cpu"][i], ev["pid"][i], ev["event"][i]), (ts, event)))
            continue
        if check_comm and comm != "<...>" and ev["comm"][i] != comm:
            bad.append((i, "comm", ev["comm"][i], comm))
        for k, mine in fields_by_row.get(i, {}).items():
            if mine is None or k not in fields:
                continue
            compared += 1
            allowed = LOSSY.get((event, k), {}).get(mine)
            if allowed is not None:
                ok = any(same_value(a, fields[k]) for a in allowed)
            else:
                ok = same_value(mine, fields[k])
            if not ok:
                bad.append((i, event, k, mine, fields[k]))
    assert not bad, bad[:10]
    return compared


@pytest.mark.parametrize("name", RECORDINGS)
@pytest.mark.parametrize("kind", ["report", "ftrace"])
def test_text_equals_dat(trace_cmd, name, kind):
    expected = oracle_events(REAL / f"{name}.v6.dat")
    text = exitreplay.read_trace(REAL / f"{name}.{kind}.txt")
    assert text.meta.source_format == {"report": "trace-cmd-report", "ftrace": "ftrace-text"}[kind]
    assert text.meta.cpus == 2
    n = compare(text, expected, check_comm=kind == "report")
    # The sync-point events must come out as fields, not as text.
    for ev in ("sched_switch", "kvm_msr", "kvm_userspace_exit", "kvm_fpu", "kvm_pio"):
        if text.has(ev):
            assert "text" not in text.table(ev).column_names, ev
    assert n > 5000


@pytest.mark.parametrize("name", RECORDINGS)
def test_raw_report_text_equals_dat_to_the_ns(trace_cmd, tmp_path, name):
    dat = REAL / f"{name}.v7zstd.dat"
    out = tmp_path / "raw.txt"
    out.write_text(trace_cmd_report(dat, "-R", "-t"))
    text = exitreplay.read_trace(out)
    binary = exitreplay.read_trace(dat)
    assert text.events.column("ts").equals(binary.events.column("ts"))
    assert text.events.column("pid").equals(binary.events.column("pid"))
    assert text.event_names == binary.event_names
    for ev in ("sched_switch", "kvm_msr", "kvm_userspace_exit", "kvm_pio"):
        if not binary.has(ev):
            continue
        a, b = text.table(ev), binary.table(ev)
        for col in b.column_names:
            assert a.column(col).to_pylist() == b.column(col).to_pylist(), (ev, col)


def test_report_without_header_and_with_dropped_markers(tmp_path):
    src = (REAL / "pvm-pio-small.report.txt").read_text().splitlines()
    body = [ln for ln in src if not ln.startswith("cpus=")]
    body.insert(100, "CPU:1 [12 EVENTS DROPPED]")
    body.insert(50, "CPU:0 [LOST 7 EVENTS]")
    p = tmp_path / "dropped.txt"
    p.write_text("\n".join(body) + "\n")
    tr = exitreplay.read_trace(p)
    assert tr.meta.cpus == 2
    assert sorted((d.cpu, d.count) for d in tr.meta.dropped) == [(0, 7), (1, 12)]
    for d in tr.meta.dropped:
        assert tr.events.column("cpu")[d.row].as_py() == d.cpu


def test_comm_with_spaces_and_dashes(tmp_path):
    lines = [
        "# tracer: nop",
        "      CPU 0/KVM-4242    [001] d..2.  100.000001: sched_switch: prev_comm=CPU 0/KVM prev_pid=4242 "
        "prev_prio=120 prev_state=R+ ==> next_comm=kworker/u8:0-events next_pid=12 next_prio=120",
        " kworker/u8:0-events-12 [001] .....  100.000002: kvm_fpu: unload",
        "          <idle>-0       [000] d..2.  100.000003: sched_switch: prev_comm=swapper/0 prev_pid=0 "
        "prev_prio=120 prev_state=R ==> next_comm=CPU 0/KVM next_pid=4242 next_prio=120",
    ]
    p = tmp_path / "t.txt"
    p.write_text("\n".join(lines) + "\n")
    tr = exitreplay.read_trace(p)
    assert tr.events.column("comm").to_pylist() == ["CPU 0/KVM", "kworker/u8:0-events", "<idle>"]
    assert tr.events.column("pid").to_pylist() == [4242, 12, 0]
    ss = tr.table("sched_switch")
    assert ss.column("prev_state").to_pylist() == [256, 0]
    assert ss.column("prev_comm").to_pylist() == ["CPU 0/KVM", "swapper/0"]
    assert tr.events.column("flags").to_pylist() == [1, 0, 1]


def test_public_20_cpu_report(public_dir):
    tr = exitreplay.read_trace(public_dir / "vmx-host-3.2-report.txt")
    assert tr.meta.cpus == 20
    assert tr.meta.event_counts["kvm_exit"] == 810
    assert tr.meta.event_counts["kvm_entry"] == 806
    exits = tr.table("kvm_exit")
    assert set(exits.column("isa").to_pylist()) == {1}
    assert exits.column("exit_reason").null_count == 0
    reasons_seen = set(exits.column("exit_reason").to_pylist())
    assert {12, 32} <= reasons_seen  # HLT and MSR_WRITE lines are in the file


@pytest.mark.parametrize("name", RECORDINGS)
def test_perf_script(name):
    path = REAL / f"{name}.perf-script.txt"
    lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
    tr = exitreplay.read_trace(path)
    assert tr.meta.source_format == "perf-script"
    # One event per non-empty line of this file (no lost-samples lines in it).
    assert tr.events.num_rows == len(lines)
    by_type = {}
    for ln in lines:
        ev = ln.split(": ", 2)[1].strip().split(":")[1] if ": " in ln else None
        by_type[ev] = by_type.get(ev, 0) + 1
    assert tr.meta.event_counts == by_type
    ts = tr.events.column("ts").to_numpy()
    assert (ts[1:] >= ts[:-1]).all()
    if name == "pvm-longmode-msr":  # its guest reads and writes KernelGSBase
        assert 0xC0000102 in set(tr.table("kvm_msr").column("ecx").to_pylist())
    assert set(tr.table("kvm_userspace_exit").column("reason").to_pylist()) <= {2, 5}  # IO, HLT
