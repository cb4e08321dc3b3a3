"""The trace.dat reader against `trace-cmd report -R -t`, event by event.

trace-cmd is an independent implementation (libtraceevent/libtracecmd, C). Its raw mode prints
every field as `name=value`; the test parses that text with a parser of its own, so a bug in
exitreplay's text readers cannot hide a bug in the binary reader.
"""
from __future__ import annotations

import re

import pyarrow as pa
import pytest
from conftest import DAT_VARIANTS, REAL, RECORDINGS, trace_cmd_report

import exitreplay

LINE = re.compile(
    r"^\s*(?P<comm>.*)-(?P<pid>\d+)\s+\[(?P<cpu>\d+)\]\s+(?P<sec>\d+)\.(?P<ns>\d{9}):\s+"
    r"(?P<event>[\w:]+):\s?(?P<rest>.*)$"
)
FIELD = re.compile(r"(\w+)=(.*?)(?=\s+\w+=|$)")


def oracle_events(path):
    out = []
    for line in trace_cmd_report(path, "-R", "-t").splitlines():
        m = LINE.match(line)
        if not m:
            continue
        fields = dict(FIELD.findall(m["rest"]))
        out.append((int(m["sec"]) * 10**9 + int(m["ns"]), int(m["cpu"]), int(m["pid"]), m["event"],
                    m["comm"].strip(), fields))
    return out


def same_value(mine, text: str) -> bool:
    """Compare a decoded value with trace-cmd's raw text of it.

    libtraceevent prints each raw integer with the conversion its print_fmt uses (`%x` -> hex
    without the literal "0x" around it, `%d` -> decimal), so an integer matches if the text reads
    as that number in the base the text shows: "0x.." or a-f digits are hex, plain digits may be
    either. Arrays print as ARRAY[xx, yy] in hex bytes; bools as 0/1.
    """
    text = text.strip()
    if isinstance(mine, bool):
        return text == str(int(mine))
    if isinstance(mine, list):
        return text == "ARRAY[" + ", ".join(f"{v:02x}" for v in mine) + "]"
    if isinstance(mine, int):
        t = text.lower()
        try:
            if t.startswith(("0x", "-0x")):
                return int(t, 16) == mine
            if any(ch in "abcdef" for ch in t):
                return int(t, 16) == mine
            return int(t, 10) == mine or int(t, 16) == mine
        except ValueError:
            return False
    return str(mine) == text


def mismatches_with_trace_cmd(trace, expected) -> list:
    """Where the reader's events differ from trace-cmd's (`oracle_events`), event by event: the
    header (ts, cpu, pid, event), comm, and every field trace-cmd prints."""
    ev = trace.events.to_pydict()
    assert len(expected) == trace.events.num_rows

    # Field values per row, from the typed tables joined back by `row`. A table's `pid` is the
    # event's own pid field where it has one (sched_wakeup), which trace-cmd prints; else the
    # common pid, which it does not.
    fields_by_row: dict[int, dict] = {}
    for ename in trace.event_names:
        t = trace.table(ename)
        own = [c for c in t.column_names if c not in ("row", "ts", "cpu")]
        cols = {c: t.column(c).to_pylist() for c in own}
        for i, r in enumerate(t.column("row").to_pylist()):
            fields_by_row[r] = {c: cols[c][i] for c in own}

    mismatches = []
    for i, (ts, cpu, pid, event, comm, fields) in enumerate(expected):
        got = (ev["ts"][i], ev["cpu"][i], ev["pid"][i], ev["event"][i])
        if got != (ts, cpu, pid, event):
            mismatches.append((i, "header", got, (ts, cpu, pid, event)))
            continue
        if comm != "<...>" and ev["comm"][i] != comm:
            mismatches.append((i, "comm", ev["comm"][i], comm))
        mine = fields_by_row[i]
        assert set(fields) <= set(mine), (i, event, set(fields) - set(mine))
        for k, v in fields.items():
            if not same_value(mine[k], v):
                mismatches.append((i, k, mine[k], v))
    return mismatches


@pytest.mark.parametrize("variant", DAT_VARIANTS)
@pytest.mark.parametrize("name", RECORDINGS)
def test_reader_matches_trace_cmd_event_by_event(trace_cmd, name, variant):
    path = REAL / f"{name}.{variant}.dat"
    expected = oracle_events(path)
    trace = exitreplay.read_trace(path)
    assert trace.meta.version == (6 if variant == "v6" else 7)
    assert trace.meta.compression == ("zstd" if variant == "v7zstd" else "none")
    assert len(expected) > 1000
    mismatches = mismatches_with_trace_cmd(trace, expected)
    assert not mismatches, mismatches[:10]


@pytest.mark.parametrize("name", RECORDINGS)
def test_all_versions_give_identical_tables(name):
    traces = [exitreplay.read_trace(REAL / f"{name}.{v}.dat") for v in DAT_VARIANTS]
    first = traces[0]
    for other in traces[1:]:
        assert other.events.equals(first.events)
        assert other.event_names == first.event_names
        for ename in first.event_names:
            assert other.table(ename).equals(first.table(ename)), ename


def test_per_cpu_order_and_merge(trace_cmd):
    trace = exitreplay.read_trace(REAL / "pvm-pio-small.v7zstd.dat")
    ts = trace.events.column("ts").to_numpy()
    assert (ts[1:] >= ts[:-1]).all()
    assert trace.meta.cpus == 2
    assert set(trace.events.column("cpu").to_pylist()) == {0, 1}
    assert sum(trace.meta.extra["events_per_cpu"].values()) == trace.events.num_rows


def test_public_vmx_zlib_trace(public_dir):
    """trace-cmd 3.1.6 cannot read zlib sections; the README of the public traces gives the counts."""
    trace = exitreplay.read_trace(public_dir / "vmx-host-6.5.v7zlib.dat")
    assert trace.meta.compression == "zlib"
    assert trace.meta.version == 7
    assert trace.meta.clock == "x86-tsc"
    assert trace.events.num_rows == 7792
    assert trace.meta.event_counts["kvm_exit"] == 1558
    assert trace.meta.event_counts["kvm_entry"] == 1558
    exits = trace.table("kvm_exit")
    assert {"exit_reason", "guest_rip", "isa", "info1", "info2", "vcpu_id"} <= set(exits.column_names)
    # Every exit is a VMX one (isa 1) with a reason below 100: a wrong layout would scatter values.
    assert set(exits.column("isa").to_pylist()) == {1}
    assert max(exits.column("exit_reason").to_pylist()) < 100
    assert exits.schema.field("guest_rip").type == pa.uint64()
