"""Hostile perf.data files: one test per crash class the fuzz campaign found, each on a minimal
file built here (tests/perfbuilder.py, which shares no code with the reader) that is valid but for
the one value the class is about. Each must read (with a warning) or end in the project's
one-line error; none may raise anything else or allocate beyond what the file justifies."""
from __future__ import annotations

import struct

import pytest
from perfbuilder import AttrSpec, PerfBuilder, Probe

import exitreplay
from exitreplay.errors import TraceError

REC_AUXTRACE = 71


def read_all(path):
    with exitreplay.read_trace(path) as tr:
        return tr, {n: tr.raw_table(n) for n in tr.event_names}


def built(tmp_path, b: PerfBuilder, name="t.perf.data", pipe=False):
    p = tmp_path / name
    p.write_bytes(b.build_pipe() if pipe else b.build())
    return p


def probes(n=3, **attr) -> PerfBuilder:
    b = PerfBuilder(attrs=[AttrSpec(**attr)])
    for i in range(n):
        b.sample(Probe(ts=i + 1, cpu=0, tid=7, value=i))
    return b


def test_the_minimal_file_is_valid(tmp_path):
    for pipe in (False, True):
        tr, tables = read_all(built(tmp_path, probes(), f"ok{pipe}.perf.data", pipe))
        assert tables["probe"].column("value").to_pylist() == [0, 1, 2]


@pytest.mark.parametrize("config", [2**63, 2**64 - 1, 65536])
def test_tracepoint_config_beyond_an_event_id(tmp_path, config):
    # A config >= 2^63 overflowed the int64 array of configs (OverflowError in perfdata._events).
    with pytest.raises(TraceError, match="tracepoint ids above 65535") as exc:
        read_all(built(tmp_path, probes(config=config)))
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize("extra", [2**63, 2**64 - 1, 2**63 + 8])
def test_auxtrace_record_whose_data_size_is_negative_in_int64(tmp_path, extra):
    # AUXTRACE carries u64 bytes after its record; past 2^63 they read negative and the record walk
    # indexed before the data (IndexError in perf_records._chunk). Now: a cut data section.
    b = probes(2)
    b.records.insert(1, struct.pack("<IHHQ", REC_AUXTRACE, 0, 16, extra))
    tr, tables = read_all(built(tmp_path, b))
    assert tables["probe"].column("value").to_pylist() == [0]
    assert any("truncated" in w for w in tr.meta.warnings)
