"""Hostile input past the readers: tables that lack or mistype a field the analysis reads (a
KeyError, ArrowTypeError or ValueError deep in the episode builder before), and policy and cost
files nested 5,000 deep or holding integers TOML does not allow (RecursionError, OverflowError).
Each now gives the project's one-line error naming the file."""
from __future__ import annotations

import json

import pyarrow as pa
import pytest
from cli_helpers import run_main
from tracebuilder import build, emulate, fpu, kentry, kexit, msr, sched

import exitreplay
from exitreplay.errors import TraceError, UsageError
from exitreplay.replay.costs import load_costs
from exitreplay.replay.policy import load_policy
from exitreplay.trace import Trace


def exits_trace(**exit_fields):
    """Two HLT exits of one vCPU thread, kvm_exit fields replaced by `exit_fields` (None: dropped)."""
    t = build([kentry(0, 0, 100), kexit(1000, 0, 100, 0x78), kentry(2000, 0, 100), kexit(3000, 0, 100, 0x78),
               kentry(4000, 0, 100), msr(1500, 0, 100, 0xC0000102, True), sched(5000, 0, 100, 0, 1)])
    tables = {n: t.table(n) for n in t.event_names}
    ex = tables["kvm_exit"]
    for name, col in exit_fields.items():
        i = ex.column_names.index(name)
        ex = ex.remove_column(i) if col is None else ex.set_column(i, name, col)
    tables["kvm_exit"] = ex
    t.meta.path = "hand-built.dat"
    return Trace(t.events, tables, t.meta)


def test_kvm_exit_without_exit_reason(tmp_path):
    with pytest.raises(TraceError, match="kvm_exit events have no exit_reason field"):
        exitreplay.analyze(exits_trace(exit_reason=None))  # was KeyError in locate.column


def test_exit_reason_of_text_that_is_not_a_number():
    bad = pa.array(["I ==>", "hlt"])
    with pytest.raises(TraceError, match="exit_reason field is string, not an integer"):
        exitreplay.analyze(exits_trace(exit_reason=bad))  # was ValueError: invalid literal for int()


def test_exit_reason_as_a_list():
    with pytest.raises(TraceError, match="exit_reason field is list"):
        exitreplay.analyze(exits_trace(exit_reason=pa.array([[1], [2]])))  # was ArrowTypeError


def test_exit_reason_as_numeric_text_is_read_as_numbers():
    r = exitreplay.analyze(exits_trace(exit_reason=pa.array(["120", "120"])))
    assert r.summary["exits"] == 2 and set(r.latency["reason"].to_list()) == {"hlt"}


def test_an_optional_field_of_the_wrong_type_is_ignored_with_a_warning():
    t = exits_trace(info1=pa.array([b"\x01", b"\x02"]))
    r = exitreplay.analyze(t)
    assert r.summary["exits"] == 2 and "info1" not in t.table("kvm_exit").column_names
    assert any("info1 field is binary, not an integer: ignored" in w for w in t.meta.warnings)


def test_rows_outside_the_events():
    t = exits_trace()
    ex = t.table("kvm_exit")
    bad = {n: t.table(n) for n in t.event_names} | {"kvm_exit": ex.set_column(0, "row", pa.array([1, 10**6]))}
    with pytest.raises(TraceError, match="rows outside"):
        Trace(t.events, bad, t.meta).table("kvm_exit")


def test_text_trace_whose_exits_do_not_parse(tmp_path, capsys, monkeypatch):
    p = tmp_path / "odd.txt"
    p.write_text("cpus=1\n"
                 " qemu-system-x86-4242 [000] 100.000001: kvm_entry:            vcpu 0\n"
                 " qemu-system-x86-4242 [000] 100.000002: kvm_exit:             something else entirely\n"
                 " qemu-system-x86-4242 [000] 100.000003: kvm_entry:            vcpu 0\n")
    proc = run_main(capsys, monkeypatch, ["analyze", p], tmp_path / "cache")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert str(p) in proc.stderr and "exit_reason" in proc.stderr


def test_convert_still_writes_the_table_analysis_cannot_use(tmp_path):
    from exitreplay.convert import convert

    paths = convert(exits_trace(exit_reason=None), tmp_path / "out")
    assert any(p.name == "kvm_exit.parquet" for p in paths)


# -- policy and cost files ----------------------------------------------------------------------------------
DEEP = "x = " + "[" * 5000 + "]" * 5000 + "\n"
HUGE = 'name = "huge"\nisa = "svm"\n[ops.exit]\nvmload = ' + "1" * 400 + "\n"


@pytest.mark.parametrize("loader,what", [(load_policy, "policy file"), (load_costs, "cost profile")])
@pytest.mark.parametrize("text,words", [(DEEP, "nested too deeply"), (HUGE, "beyond TOML's 64-bit integers"),
                                        ("a = " + "{b = " * 40 + "1" + "}" * 40, "nested more than 32"),
                                        ("[" + ".".join(["a"] * 100000) + "]", "nested more than 32")])
def test_toml_that_tomllib_reads_badly(tmp_path, loader, what, text, words):
    p = tmp_path / "bad.toml"
    p.write_text(text)
    with pytest.raises(UsageError) as exc:
        loader(str(p))  # were RecursionError, OverflowError, and 20 s of tomllib for the dotted key
    assert str(exc.value).startswith(f"{what} {p}:") and words in str(exc.value)


def test_bad_baseline_file_is_named(tmp_path, capsys, monkeypatch):
    p = tmp_path / "base.toml"
    p.write_text(DEEP)
    proc = run_main(capsys, monkeypatch, ["analyze", "sample_traces/svm-nested-linux4.19.v7zstd.dat", "--baseline", p],
                    tmp_path / "cache")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"policy file {p}: not valid TOML: nested too deeply" in proc.stderr


def test_unsigned_field_with_nulls():
    """vcpu_id is unsigned; where a record is too short to hold it, it is null, and the analysis
    fills nulls with -1 (was OverflowError: negative value to unsigned int)."""
    t = exits_trace(vcpu_id=pa.array([0, None], pa.uint32()))
    tables = {n: t.table(n) for n in t.event_names}
    en = tables["kvm_entry"]
    i = en.column_names.index("vcpu_id")
    tables["kvm_entry"] = en.set_column(i, "vcpu_id", pa.array([0, None, 0], pa.uint32()))
    r = exitreplay.analyze(Trace(t.events, tables, t.meta))
    assert r.summary["exits"] == 2


def with_fields(event: str, events: list[tuple], **fields) -> Trace:
    """A trace of `events` whose `event` table has `fields` replaced (None: dropped)."""
    t = build(events)
    tables = {n: t.table(n) for n in t.event_names}
    tbl = tables[event]
    for name, col in fields.items():
        i = tbl.column_names.index(name)
        tbl = tbl.remove_column(i) if col is None else tbl.set_column(i, name, col)
    tables[event] = tbl
    t.meta.path = "hand-built.dat"
    return Trace(t.events, tables, t.meta)


FPU_TRACE = [kentry(0, 0, 100), fpu(500, 0, 100), kexit(1000, 0, 100, 0x78), kentry(2000, 0, 100),
             fpu(2500, 0, 100, load=False), kexit(3000, 0, 100, 0x78), kentry(4000, 0, 100)]


@pytest.mark.parametrize("load,problem", [(pa.array([[1], [0]], pa.list_(pa.uint32())), "load field is list"),
                                          (None, "kvm_fpu events have no load field")])
def test_kvm_fpu_load_that_is_not_an_integer(load, problem):
    # Long campaign input 30485 (`int load[16]` in the format): ValueError in episodes/locate.column.
    with pytest.raises(TraceError, match=problem):
        exitreplay.analyze(with_fields("kvm_fpu", FPU_TRACE, load=load))


EMU_TRACE = [kentry(0, 0, 100), kexit(1000, 0, 100, 0x400), emulate(1100, 0, 100), kentry(2000, 0, 100)]


@pytest.mark.parametrize("field,col", [("insn", pa.array(["89 02"])), ("insn", pa.array([["a", "b"]])),
                                       ("len", pa.array([[2]])), ("flags", pa.array(["x"]))])
def test_kvm_emulate_insn_fields_of_the_wrong_type_are_ignored(field, col):
    t = with_fields("kvm_emulate_insn", EMU_TRACE, **{field: col})
    r = exitreplay.analyze(t)
    assert r.summary["exits"] == 1 and field not in t.table("kvm_emulate_insn").column_names
    assert any(f"the {field} field is" in w and "ignored" in w for w in t.meta.warnings)


def test_convert_of_a_kvm_exit_whose_isa_is_text(tmp_path):
    # Long campaign input 129004 (isa declared char[]): ValueError in convert._isas.
    from exitreplay.convert import convert_file

    p = tmp_path / "isa.txt"
    p.write_text("cpus=1\n qemu-system-x86-4242  [000]   100.000001: kvm_exit:             exit_reason=1 isa=svm-ish\n"
                 " qemu-system-x86-4242  [000]   100.000002: kvm_entry:            vcpu_id=0\n")
    _paths, written = convert_file(p, tmp_path / "out")
    assert written == 2
    assert json.loads((tmp_path / "out" / "meta.json").read_text())["isa"] is None  # no ISA named by text
