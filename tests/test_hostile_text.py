"""Hostile text traces (trace-cmd report, ftrace, perf script): numbers too large for their columns,
digits that are not ASCII, loss markers counting past 2^64, fields below -2^63. Each was a strict
cast that raised out of Polars; now the line is skipped with a warning, the count is unknown, the
value is null: the rest of the file is read."""
from __future__ import annotations

import pytest

import exitreplay
from exitreplay.errors import TraceError

FTRACE = """# tracer: nop
#
# entries-in-buffer/entries-written: 4/4   #P:2
#
 qemu-system-x86-4242  [000] d..2.  8565.503547: kvm_fpu: load
 qemu-system-x86-4242  [000] d..2.  8565.503600: kvm_userspace_exit: reason KVM_EXIT_IO (2)
 qemu-system-x86-4242  [001] d..2.  8565.503700: kvm_msr: msr_read c0000102 = 0x0
 qemu-system-x86-4242  [001] d..2.  8565.503800: kvm_fpu: unload
"""
REPORT = """cpus=2
 qemu-system-x86-4242  [000]  8565.503547: kvm_fpu:              load
 qemu-system-x86-4242  [000]  8565.503600: kvm_userspace_exit:   reason KVM_EXIT_IO (2)
 qemu-system-x86-4242  [001]  8565.503800: kvm_fpu:              unload
"""
PERF = """ qemu-system-x86  4242 [000]  8566.534881:                 kvm:kvm_fpu: load
 qemu-system-x86  4242 [001]  8566.534901:                 kvm:kvm_fpu: unload
"""
SOURCES = {"ftrace": FTRACE, "report": REPORT, "perf": PERF}


def read(tmp_path, text, name="t.txt"):
    p = tmp_path / name
    p.write_text(text)
    with exitreplay.read_trace(p) as tr:
        return tr, {n: tr.raw_table(n) for n in tr.event_names}


def first_event_line(text: str) -> str:
    return next(ln for ln in text.splitlines() if "kvm_fpu" in ln)


BAD_PREFIX = {  # (old, new) in the first event line: each breaks one of ts, cpu, pid
    "ts beyond int64 ns": (lambda s: s.replace("8565.503547", "99999999999999999999.000001")
                           .replace("8566.534881", "99999999999999999999.000001")),
    "ts just past int64 ns": (lambda s: s.replace("8565.503547", "9223372037.000000")
                              .replace("8566.534881", "9223372037.000000")),
    "cpu beyond int32": lambda s: s.replace("[000]", "[99999999999]"),
    "pid beyond int32": lambda s: s.replace("4242", "99999999999", 1),
}


@pytest.mark.parametrize("source", list(SOURCES))
@pytest.mark.parametrize("what", list(BAD_PREFIX))
def test_number_too_large_for_its_column_skips_the_line(tmp_path, source, what):
    text = SOURCES[source]
    line = first_event_line(text)
    tr, _ = read(tmp_path, text.replace(line, BAD_PREFIX[what](line)))  # was InvalidOperationError
    n = sum(1 for ln in text.splitlines() if ": kvm_" in ln or ":kvm_" in ln)
    assert len(tr) == n - 1
    assert any("1 event lines skipped: timestamp, CPU or pid out of range" in w for w in tr.meta.warnings)


@pytest.mark.parametrize("source", list(SOURCES))
def test_digits_that_are_not_ascii_are_not_numbers(tmp_path, source):
    text = SOURCES[source]
    line = first_event_line(text)
    # Arabic-Indic and full-width digits match \d in Polars' regex engine; they are not timestamps.
    bad = line.replace("[000]", "[\u0660\u0660\u0660]").replace("4242", "\uff14\uff12", 1)
    tr, _ = read(tmp_path, text.replace(line, bad))
    assert len(tr) == sum(1 for ln in text.splitlines() if "kvm_" in ln) - 1


def test_timestamp_at_the_int64_limit_is_kept(tmp_path):
    line = first_event_line(FTRACE)
    tr, _ = read(tmp_path, FTRACE.replace(line, line.replace("8565.503547", "9223372035.000001")))
    assert tr.events.column("ts").to_pylist()[-1] == 9223372035_000_001_000


@pytest.mark.parametrize("marker,cpu,count", [
    ("CPU:1 [LOST 18446744073709551616 EVENTS]", 1, None),  # was a strict cast of the count
    ("CPU:99999999999 [LOST 5 EVENTS]", None, 5),
    ("[LOST 99999999999999999999999 EVENTS]", None, None),
])
def test_loss_markers_with_huge_numbers(tmp_path, marker, cpu, count):
    line = first_event_line(FTRACE)
    tr, _ = read(tmp_path, FTRACE.replace(line, line + "\n" + marker))
    assert len(tr.meta.dropped) == 1
    d = tr.meta.dropped[0]
    assert d.count == count and (cpu is None or d.cpu == cpu)


def test_perf_lost_record_with_huge_numbers(tmp_path):
    tr, _ = read(tmp_path, PERF + " PERF_RECORD_LOST lost 99999999999999999999999 [99999999999]\n")
    assert [d.count for d in tr.meta.dropped] == [None]


@pytest.mark.parametrize("value,expect", [
    ("-9223372036854775809", None),  # below int64: was a strict cast in narrow()
    ("18446744073709551616", None),  # above uint64
    ("-9223372036854775808", -(2**63)),
    ("18446744073709551615", 2**64 - 1),
])
def test_field_values_beyond_64_bits_are_null(tmp_path, value, expect):
    text = (" qemu-system-x86-4242  [000] d..2.  8565.503547: my_event: a=1 x=" + value + "\n"
            " qemu-system-x86-4242  [000] d..2.  8565.503548: my_event: a=2 x=1\n")
    _tr, tables = read(tmp_path, text)
    assert tables["my_event"].column("a").to_pylist() == [1, 2]
    assert tables["my_event"].column("x").to_pylist()[0] == expect


def test_header_cpu_counts_that_are_not_counts(tmp_path):
    tr, _ = read(tmp_path, REPORT.replace("cpus=2", "cpus=99999999999999"))
    assert tr.meta.cpus == 2 and any("CPU count" in w for w in tr.meta.warnings)
    tr, _ = read(tmp_path, FTRACE.replace("#P:2", "#P:" + "9" * 30).replace("4/4", "4/" + "9" * 40))
    assert tr.meta.cpus == 2


def test_userspace_exit_reason_beyond_128_bits(tmp_path):
    _tr, tables = read(tmp_path, FTRACE.replace("reason KVM_EXIT_IO (2)", "reason " + "1" * 60 + " (" + "1" * 60 + ")"))
    assert tables["kvm_userspace_exit"].num_rows == 1  # was OverflowError building the lookup


def test_exit_reason_number_beyond_32_bits(tmp_path):
    text = "cpus=1\n qemu-system-x86-150750 [000] 16062.943940: kvm_exit:             reason 0x" + "f" * 40 + \
        " rip 0xffffffffb33f2e5f info 0 0\n"
    _tr, tables = read(tmp_path, text)
    assert tables["kvm_exit"].column("exit_reason").to_pylist() == [None]


def test_a_file_of_only_bad_lines_is_the_projects_error(tmp_path):
    text = PERF.replace("[000]", "[99999999999]").replace("[001]", "[99999999999]")
    with pytest.raises(TraceError, match="no event lines"):
        read(tmp_path, text)


# Comms that end in a dash or hold "-<digits>": a 16-byte thread name cut to 15 ("async-executor-")
# printed "%16s-%-Nd" reads "async-executor--23839", which was pid -23839.
DASHED_COMMS = ("async-executor-", "w-{cpu}-12-")


@pytest.fixture(scope="module")
def dashed_dat(tmp_path_factory):
    import dataclasses

    from exitreplay.synth.profiles import load_profile
    from exitreplay.synth.synthesize import synthesize

    prof = load_profile("cpu")
    hosts = tuple(dataclasses.replace(h, comm=c) for h, c in zip(prof.host_threads, DASHED_COMMS))
    path = tmp_path_factory.mktemp("dashed") / "dashed.dat"
    synthesize(dataclasses.replace(prof, host_threads=hosts), path, seconds=0.02, cpus=2)
    return path


@pytest.mark.parametrize("opts", [(), ("-R", "-t")], ids=["plugins", "raw-ns"])
def test_comms_ending_in_a_dash_as_trace_cmd_prints_them(trace_cmd, tmp_path, dashed_dat, opts):
    from conftest import trace_cmd_report
    from text_helpers import oracle, us

    expected = oracle(dashed_dat)
    dat = exitreplay.read_trace(dashed_dat).events
    # The oracle's own split agrees with the .dat, and the trace has the comms this is about.
    assert [(e["pid"], e["comm"]) for e in expected] == list(zip(dat.column("pid").to_pylist(),
                                                                 [c or "<...>" for c in dat.column("comm").to_pylist()]))
    comms = {e["comm"] for e in expected}
    assert "async-executor-" in comms and comms & {"w-0-12-", "w-1-12-"}
    p = tmp_path / "report.txt"
    p.write_text(trace_cmd_report(dashed_dat, *opts))
    with exitreplay.read_trace(p) as tr:
        ev = tr.events.to_pydict()
    got = [(us(t), c, pid, comm or "<...>", e) for t, c, pid, comm, e in
           zip(ev["ts"], ev["cpu"], ev["pid"], ev["comm"], ev["event"])]
    assert got == [(us(e["ts"]), e["cpu"], e["pid"], e["comm"], e["event"]) for e in expected]


# (comm, pid) as the kernel, trace-cmd and perf script print them; a padded comm says where the
# separating dash is, so a negative pid is read as one too.
TASKS = [("async-executor-", 23839), ("x-", 5), ("x", -5), ("a-12-", 7), ("a-12", -7), ("-", 1),
         ("b -3 [001]-", 4), ("a-longer-comm-name-", 9), ("<...>", 42)]
LINES = {  # (comm, pid) -> a line of each text form
    "ftrace": lambda c, p: f"{c:>16}-{p:<7d} [001] d..2.  8565.503547: kvm_fpu: load",
    "report": lambda c, p: f"{c:>16}-{p:<5d} [001]  8565.503547: kvm_fpu:              load",
    "perf": lambda c, p: f"{c:>16} {p:>5d} [001]  8565.503547:                 kvm:kvm_fpu: load",
}


@pytest.mark.parametrize("form", list(LINES))
def test_task_column_with_dashes_and_negative_pids(tmp_path, form):
    header = {"ftrace": "# tracer: nop\n", "report": "cpus=2\n", "perf": ""}[form]
    tr, _ = read(tmp_path, header + "\n".join(LINES[form](c, p) for c, p in TASKS) + "\n")
    want = [(None if c == "<...>" else c, p) for c, p in TASKS]
    assert list(zip(tr.events.column("comm").to_pylist(), tr.events.column("pid").to_pylist())) == want


def test_the_oracles_split_of_the_task_column():
    from text_helpers import split_task

    for c, p in TASKS:
        for width in (5, 7):
            assert split_task(f"{c:>16}-{p:<{width}d}".rstrip()) == (c, p)
