"""The perf.data reader on files built record by record (tests/perfbuilder.py): both byte orders,
pipe mode, every sample layout the bits can ask for, perf's delivery order across rounds, task
names, losses, zstd streams, truncation at every byte. perf reads the little- and big-endian
file-mode ones too, and where it does it is the oracle."""
from __future__ import annotations

import struct

import numpy as np
import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st
from perf_oracle import PERF, perf_events, perf_script_lines
from perfbuilder import (
    CALLCHAIN,
    FMT_ENABLED,
    FMT_GROUP,
    FMT_ID,
    FMT_LOST,
    FMT_RUNNING,
    ID,
    READ,
    TRACEPOINT_SAMPLE,
    AttrSpec,
    PerfBuilder,
    Probe,
)

import exitreplay
from exitreplay.errors import TraceError, TraceWarning

needs_perf = pytest.mark.skipif(PERF is None, reason="perf not installed (apt-get install linux-perf)")


def read(tmp_path, blob: bytes, name: str = "t.perf.data"):
    path = tmp_path / name
    path.write_bytes(blob)
    return exitreplay.read_trace(path)


def probes(tr) -> list[tuple]:
    rows = tr.table("probe").to_pylist() if tr.has("probe") else []
    ev = tr.events.to_pylist()
    return [(ev[r["row"]]["ts"], ev[r["row"]]["cpu"], ev[r["row"]]["pid"], r["value"], r["delta"], r["tag"], r["msg"],
             ev[r["row"]]["flags"], ev[r["row"]]["preempt_count"]) for r in rows]


def expected(evs: list[Probe]) -> list[tuple]:
    return [(e.ts, e.cpu, e.tid, e.value, e.delta, e.tag, e.msg, e.flags, e.pc) for e in evs]


probe_st = st.builds(
    Probe, ts=st.integers(1, 2**62), cpu=st.integers(0, 63), tid=st.integers(1, 2**22),
    value=st.integers(0, 2**64 - 1), delta=st.integers(-2**31, 2**31 - 1),
    tag=st.text("abcxyz/-_ 0123456789", max_size=15), msg=st.text("abc=:;{}", max_size=40),
    flags=st.integers(0, 255), pc=st.integers(0, 255))


@settings(max_examples=40, deadline=None)
@given(evs=st.lists(probe_st, min_size=1, max_size=30), endian=st.sampled_from(["little", "big"]),
       pipe=st.booleans())
def test_fields_round_trip_both_byte_orders_and_modes(tmp_path_factory, evs, endian, pipe):
    evs = sorted(evs, key=lambda e: e.ts)
    b = PerfBuilder(endian)
    for e in evs:
        b.sample(e)
    tr = read(tmp_path_factory.mktemp("rt"), b.build_pipe() if pipe else b.build())
    assert probes(tr) == expected(evs)
    assert tr.meta.endian == endian and tr.meta.extra["pipe_mode"] == pipe


@needs_perf
def test_perf_reads_a_big_endian_file_as_we_do(tmp_path):
    b = PerfBuilder("big")
    b.comm(4000, 4001, "worker")
    evs = [Probe(ts=1000 + 7 * i, cpu=i % 3, tid=4001, value=i * 2**40, delta=-i, tag=f"t{i}", msg="m" * i)
           for i in range(20)]
    for e in evs:
        b.sample(e)
    path = tmp_path / "be.perf.data"
    path.write_bytes(b.build())
    got, ok, _ = perf_events(path, tmp_path)
    assert ok
    for g in got:  # perf's Python engine does not sign-extend a field of a file of the other byte order
        g["fields"]["delta"] = g["fields"]["delta"] - (1 << 32) if g["fields"]["delta"] >= 1 << 31 else \
            g["fields"]["delta"]
    assert [(g["ts"], g["cpu"], g["tid"], g["comm"], g["fields"]) for g in got] == \
           [(e.ts, e.cpu, e.tid, "worker", {"value": e.value, "delta": e.delta, "tag": e.tag, "msg": e.msg})
            for e in evs]
    assert probes(exitreplay.read_trace(path)) == expected(evs)


@pytest.mark.parametrize("sample_type,read_format,group", [
    (TRACEPOINT_SAMPLE | READ, FMT_ID, ()),
    (TRACEPOINT_SAMPLE | READ, FMT_ENABLED | FMT_RUNNING | FMT_ID | FMT_LOST, ()),
    (TRACEPOINT_SAMPLE | READ, FMT_GROUP | FMT_ID, (1, 2, 3)),
    (TRACEPOINT_SAMPLE | READ, FMT_GROUP | FMT_ENABLED | FMT_LOST, ()),
    (TRACEPOINT_SAMPLE | CALLCHAIN, FMT_ID, ()),
    (TRACEPOINT_SAMPLE | READ | CALLCHAIN | ID, FMT_GROUP | FMT_RUNNING | FMT_ID, (9, 8)),
    ((TRACEPOINT_SAMPLE & ~(1 << 16)) | ID, FMT_ID, ()),  # ID instead of IDENTIFIER
])
def test_variable_parts_before_raw_are_walked(tmp_path, sample_type, read_format, group):
    b = PerfBuilder(attrs=[AttrSpec(sample_type=sample_type, read_format=read_format, ids=(100,)),
                           AttrSpec(sample_type=sample_type, read_format=read_format, ids=(200,), config=999,
                                    name="other")])
    evs = [Probe(ts=10 * (i + 1), cpu=i % 2, tid=7, value=i, tag="x", msg="y" * i) for i in range(12)]
    for i, e in enumerate(evs):
        b.sample(e, callchain=tuple(range(i % 4)), group=group[: i % (len(group) + 1)] if group else ())
    tr = read(tmp_path, b.build())
    assert probes(tr) == expected(evs)


def test_records_perf_skips_and_odd_sizes(tmp_path):
    b = PerfBuilder()
    evs = [Probe(ts=5 * (i + 1), cpu=0, tid=9, value=i) for i in range(6)]
    for i, e in enumerate(evs):
        b.sample(e, raw_pad=8 * (i % 2))  # RAW longer than the format needs
        b.odd_user_record(13 + i)  # sizes that are not multiples of 8
    tr = read(tmp_path, b.build())
    assert probes(tr) == expected(evs)


@pytest.mark.parametrize("seed", range(6))
@needs_perf
def test_delivery_order_is_perfs(tmp_path, seed):
    """Events across FINISHED_ROUNDs with timestamps out of order within and beyond a round, ties,
    untimed and timed COMM records: the order and names perf script gives."""
    rng = np.random.default_rng(seed)
    b = PerfBuilder()
    evs = []
    t = 1000
    for _round in range(8):
        for _ in range(int(rng.integers(0, 12))):
            t += int(rng.integers(0, 4))  # many ties
            late = int(rng.integers(0, 40)) if rng.random() < 0.3 else 0  # some beyond the round
            e = Probe(ts=max(1, t - late), cpu=int(rng.integers(0, 4)), tid=int(rng.integers(10, 14)),
                      value=len(evs))
            if rng.random() < 0.15:
                b.comm(e.tid, e.tid, f"n{len(evs)}", ts=0 if rng.random() < 0.5 else e.ts, cpu=e.cpu)
            b.sample(e)
            evs.append(e)
        if rng.random() < 0.8:
            b.finished_round()
    path = tmp_path / "order.perf.data"
    path.write_bytes(b.build())
    want = perf_script_lines(path)
    tr = exitreplay.read_trace(path)
    vals = [r["value"] for r in tr.table("probe").to_pylist()]
    got = [(evs[v].ts, evs[v].cpu, evs[v].tid) for v in vals]
    assert got == [(w["ts"], w["cpu"], w["tid"]) for w in want]
    comm = [c if c is not None else f":{p}" for c, p in zip(tr.events.column("comm").to_pylist(),
                                                           tr.events.column("pid").to_pylist())]
    assert comm == [w["comm"] for w in want]


def test_fork_gives_the_parent_name_and_comm_renames(tmp_path):
    b = PerfBuilder()
    b.comm(50, 50, "qemu", ts=0)
    b.sample(Probe(ts=10, cpu=0, tid=50))
    b.fork(50, 50, 51, 50, ts=20)  # thread 51 of process 50
    b.sample(Probe(ts=30, cpu=1, tid=51))
    b.comm(50, 51, "CPU 0/KVM", ts=40)
    b.sample(Probe(ts=50, cpu=1, tid=51))
    b.sample(Probe(ts=60, cpu=1, tid=52))  # never named: null, as perf prints ":52"
    b.sample(Probe(ts=70, cpu=0, tid=0))
    tr = read(tmp_path, b.build())
    assert tr.events.column("comm").to_pylist() == ["qemu", "qemu", "CPU 0/KVM", None, "swapper"]


def test_lost_and_lost_samples_are_dropped_events_per_cpu(tmp_path):
    b = PerfBuilder()
    b.sample(Probe(ts=10, cpu=0, tid=5))
    b.lost(17, ts=15, cpu=1)
    b.sample(Probe(ts=20, cpu=0, tid=5))
    b.sample(Probe(ts=30, cpu=1, tid=5))
    b.lost_samples(4, ts=35, cpu=0)
    b.sample(Probe(ts=40, cpu=0, tid=5))
    tr = read(tmp_path, b.build())
    assert [(d.cpu, d.count, d.row, d.ts) for d in tr.meta.dropped] == [(1, 17, 2, 30), (0, 4, 3, 40)]
    assert tr.meta.dropped_per_cpu == {1: 17, 0: 4}
    assert any("CPU 0: 4" in w and "CPU 1: 17" in w for w in tr.meta.warnings)


class _no_warning:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def _compressed(builder: PerfBuilder, records: list[bytes], pieces: int) -> PerfBuilder:
    """The records as perf record -z writes them: one zstd stream, flushed into COMPRESSED records
    at `pieces` cut points that fall anywhere, mid-record included."""
    raw = b"".join(records)
    cobj = zstandard.ZstdCompressor(level=1).compressobj()
    cuts = sorted({0, len(raw), *np.linspace(0, len(raw), pieces + 1).astype(int).tolist()})
    out = []
    for lo, hi in zip(cuts[:-1], cuts[1:]):
        chunk = cobj.compress(raw[lo:hi]) + cobj.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)
        out.append(builder.header(81, 0, chunk))  # sizes as they come: perf does not pad these
    builder.records = out
    return builder


@pytest.mark.parametrize("pieces", [1, 3, 17])
def test_compressed_stream_cut_anywhere(tmp_path, pieces):
    b = PerfBuilder()
    evs = [Probe(ts=3 * (i + 1), cpu=i % 2, tid=8, value=i, msg="z" * (i % 9)) for i in range(200)]
    for e in evs:
        b.sample(e)
    plain = probes(read(tmp_path, b.build(), "plain.perf.data"))
    tr = read(tmp_path, _compressed(b, b.records, pieces).build(), "z.perf.data")
    assert probes(tr) == plain == expected(evs)
    assert tr.meta.compression == "zstd"


def test_a_compression_bomb_is_refused(tmp_path):
    b = PerfBuilder()
    zeros = zstandard.ZstdCompressor(level=19).compress(b"\0" * (64 << 20))
    b.records = [b.header(81, 0, zeros[i: i + 60000]) for i in range(0, len(zeros), 60000)]
    with pytest.raises(TraceError, match="expand beyond"):
        read(tmp_path, b.build())


def test_corrupt_compressed_data_keeps_what_came_before(tmp_path):
    b = PerfBuilder()
    for i in range(50):
        b.sample(Probe(ts=i + 1, cpu=0, tid=3, value=i))
    _compressed(b, b.records, 5)
    bad = bytearray(b.records[3])
    bad[20:40] = b"\xff" * 20
    b.records[3] = bytes(bad)
    with pytest.warns(TraceWarning, match="corrupt compressed data"):
        tr = read(tmp_path, b.build())
    assert 0 < len(tr) < 50 and [r[3] for r in probes(tr)] == list(range(len(tr)))


def test_truncated_pipe_file_keeps_every_complete_record(tmp_path):
    b = PerfBuilder()
    evs = [Probe(ts=i + 1, cpu=i % 2, tid=3, value=i, msg="q" * (i % 5)) for i in range(40)]
    for e in evs:
        b.sample(e)
    blob = b.build_pipe()
    starts, at = [], len(blob) - sum(len(r) for r in b.records)
    for r in b.records:
        starts.append(at)
        at += len(r)
    ends = {s + len(r) for s, r in zip(starts, b.records)}
    for cut in range(starts[0], len(blob), 7):
        complete = sum(1 for s, r in zip(starts, b.records) if s + len(r) <= cut)
        # a cut between two records looks like a complete file; one inside a record says so
        with _no_warning() if cut in ends or cut == starts[0] else pytest.warns(TraceWarning, match="truncated"):
            tr = read(tmp_path, blob[:cut], f"cut{cut}.perf.data")
        assert probes(tr) == expected(evs[:complete]), cut


def test_truncated_file_mode_keeps_the_events_without_their_formats(tmp_path):
    """perf writes the features (event formats among them) after the data: a file cut in its data
    keeps every complete sample, named by id, with a warning saying what was lost."""
    b = PerfBuilder()
    for i in range(30):
        b.sample(Probe(ts=i + 1, cpu=0, tid=3, value=i))
    blob = b.build()
    data_end = len(blob) - len(b.tracing_data()) - 300
    with pytest.warns(TraceWarning):
        tr = read(tmp_path, blob[: data_end - 100])
    assert 0 < len(tr) < 30
    assert tr.meta.event_counts == {"unknown_1234": len(tr)}
    assert tr.events.column("ts").to_pylist() == list(range(1, len(tr) + 1))
    assert any("truncated" in w for w in tr.meta.warnings)


def _header_patch(blob: bytes, at: int, fmt: str, value) -> bytes:
    out = bytearray(blob)
    struct.pack_into("<" + fmt, out, at, value)
    return bytes(out)


@pytest.mark.parametrize("mutate,problem", [
    (lambda b: b[:12], "no header|truncated"),
    (lambda b: b"PERFILE3" + b[8:], "not a trace"),
    (lambda b: _header_patch(b, 8, "Q", 99), "size 99"),
    (lambda b: _header_patch(b, 24, "Q", 1 << 40), "attr section"),
    (lambda b: _header_patch(b, 16, "Q", 8), "attr size"),
    (lambda b: _header_patch(b, 40, "Q", 1 << 50), "data section offset"),
    (lambda b: _header_patch(b, 104 + 8 + 128 + 0, "Q", 1 << 45), "ids"),  # the first attr's ids offset
])
def test_bad_headers_give_one_line_errors(tmp_path, mutate, problem):
    b = PerfBuilder()
    b.sample(Probe(ts=1, cpu=0, tid=1))
    blob = mutate(b.build())
    with pytest.raises(TraceError, match=problem) as exc:
        read(tmp_path, blob)
    assert "\n" not in str(exc.value)


def test_corrupt_record_sizes_and_ids_are_warnings_not_crashes(tmp_path):
    b = PerfBuilder()
    for i in range(5):
        b.sample(Probe(ts=i + 1, cpu=0, tid=1, value=i))
    b.records.insert(3, struct.pack("<IHH", 9, 0, 4))  # size 4: the walk cannot go on
    with pytest.warns(TraceWarning, match="corrupt record"):
        tr = read(tmp_path, b.build(), "size.perf.data")
    assert [r[3] for r in probes(tr)] == [0, 1, 2]
    b = PerfBuilder(attrs=[AttrSpec(ids=(100,)), AttrSpec(ids=(200,), config=999)])
    b.sample(Probe(ts=1, cpu=0, tid=1, value=1))
    b.attrs[0] = AttrSpec(ids=(555,))  # a sample whose id no attr declares
    b.sample(Probe(ts=2, cpu=0, tid=1, value=2))
    b.attrs[0] = AttrSpec(ids=(100,))
    tr = read(tmp_path, b.build(), "id.perf.data")
    assert [r[3] for r in probes(tr)] == [1]
    assert any("no attr declares" in w for w in tr.meta.warnings)


def test_cli_gives_one_line_and_status_2_on_a_bad_perf_data(tmp_path, capsys, monkeypatch):
    from cli_helpers import run_main

    b = PerfBuilder()
    b.sample(Probe(ts=1, cpu=0, tid=1))
    path = tmp_path / "bad.perf.data"
    path.write_bytes(_header_patch(b.build(), 8, "Q", 7))
    res = run_main(capsys, monkeypatch, ["info", path], tmp_path / "cache")
    assert res.returncode == 2
    assert len(res.stderr.strip().splitlines()) == 1 and "bad.perf.data" in res.stderr
