"""perf.data windows streamed a chunk of records at a time (formats/perf_stream.py) give what the
whole-file read gives: the same windows (rows, events, every table, losses and their windows),
the last one with the file's warnings and meta, concatenated equal to read_trace's tables; on the
committed recordings and on files built here with many rounds, records out of order across
rounds, untimed records, losses, and broken files.

The oracle is the whole-file path (perfdata.whole_file_windows / read_trace: all records indexed,
perf_order.delivery_order over the whole file), which tests/test_perfdata_real.py checks against
perf script; the files built here come from tests/perfbuilder.py, which shares no code with
the reader."""
from __future__ import annotations

import dataclasses
import random
import struct
import warnings
from pathlib import Path

import pytest
from perfbuilder import AttrSpec, PerfBuilder, Probe
from stream_helpers import assert_same_report

import exitreplay
from exitreplay.analysis import analyze
from exitreplay.errors import TraceError
from exitreplay.formats import perf_records, perfdata
from exitreplay.pipeline import analyze_windows
from exitreplay.windows import _plain, concat_windows, iter_windows

ROOT = Path(__file__).resolve().parent.parent
REAL = sorted((ROOT / "tests" / "data" / "real").glob("*.perf.data"))
SIZES = (1, 7, 1000, 10**9)  # 1 on the built files: a window costs about a millisecond


def quiet(fn, *a, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*a, **kw)


def assert_same_windows(path, window: int) -> list:
    """iter_windows (streamed) against perfdata.whole_file_windows and read_trace."""
    whole = quiet(lambda: list(perfdata.whole_file_windows(path, window)))
    wins = quiet(lambda: list(iter_windows(path, window_events=window)))
    assert [(w.row_base, len(w)) for w in wins] == [(w.row_base, len(w)) for w in whole]
    for a, b in zip(whole, wins):
        assert _plain(b.events).equals(_plain(a.events))
        assert b.event_names == a.event_names
        for name in a.event_names:
            assert _plain(b.table(name)).equals(_plain(a.table(name))), name
        assert b.meta.dropped == a.meta.dropped  # each loss in the same window
        assert b.meta.event_counts == a.meta.event_counts
        assert (b.meta.first_ts, b.meta.last_ts) == (a.meta.first_ts, a.meta.last_ts)
    # the last window: everything the file says, warnings in the same order
    assert dataclasses.asdict(wins[-1].meta) == dataclasses.asdict(whole[-1].meta)
    trace = quiet(exitreplay.read_trace, path)
    events, tables, drops = concat_windows(wins)
    assert events.equals(_plain(trace.events))
    assert sorted(tables) == trace.event_names
    for name in trace.event_names:
        assert tables[name].equals(_plain(trace.table(name))), name
    # read_trace lists losses in delivery order; windows by the row they precede
    assert sorted(drops, key=_key) == sorted(trace.meta.dropped, key=_key)
    return wins


def _key(d):
    return (-1 if d.row is None else d.row, d.cpu, d.ts, d.count)


@pytest.mark.parametrize("path", REAL, ids=lambda p: p.name)
def test_recordings(path):
    for size in SIZES[1:] if path.stat().st_size > 300_000 or "zstd" in path.name else SIZES:
        assert_same_windows(path, size)


@pytest.mark.parametrize("path", [p for p in REAL if "zstd" not in p.name][:3], ids=lambda p: p.name)
def test_recordings_in_small_chunks(path, monkeypatch):
    """Chunks of a few records: rounds span chunks, windows fill across them."""
    monkeypatch.setattr(perf_records, "FIRST_CHUNK_SLOTS", 64)
    monkeypatch.setattr(perf_records, "MAX_CHUNK_SLOTS", 256)
    for size in (7, 1000):
        assert_same_windows(path, size)


# -- files with many rounds ---------------------------------------------------------------------------

def rounds_file(seed: int, rounds: int = 40, per_round: int = 60, finished: bool = True,
                endian: str = "little") -> PerfBuilder:
    """Rounds as perf record writes them (each CPU's buffer read in turn, so a round holds records
    older than the previous round's newest), with timestamp ties, untimed COMMs and samples,
    FORKs, LOST records, and perf record's closing LOST_SAMPLES totals."""
    rnd = random.Random(seed)
    b = PerfBuilder(endian)
    b.comm(7, 7, "init")  # untimed, before any flush
    v = 0
    for r in range(rounds):
        recs = []
        for cpu in range(4):
            ts = sorted(rnd.randrange(max(1, r * 1000 - 1500), (r + 1) * 1000) for _ in range(per_round // 4))
            for t in ts:
                recs.append((cpu, t))
        rnd.shuffle(recs)
        for cpu, t in recs:
            kind = rnd.random()
            if kind < 0.02:
                b.comm(100 + cpu, 100 + cpu, f"task{r}-{cpu}", ts=t if rnd.random() < 0.5 else 0, cpu=cpu)
            elif kind < 0.03:
                b.fork(200 + v, 100 + cpu, 200 + v, 100 + cpu, ts=t, cpu=cpu)
            elif kind < 0.04:
                b.lost(rnd.randrange(1, 50), t, cpu)
            else:
                tid = rnd.choice([0, 7, 100 + cpu, 200 + rnd.randrange(max(v, 1))])
                b.sample(Probe(ts=0 if kind > 0.995 else t, cpu=cpu, tid=tid, value=v, msg=f"m{v % 5}"))
                v += 1
        if finished:
            b.finished_round()
    for cpu in range(4):
        b.lost_samples(rnd.randrange(0, 9), 0, cpu)
    return b


def write(tmp_path, b: PerfBuilder, name="t.perf.data", pipe=False, cut=0) -> Path:
    p = tmp_path / name
    raw = b.build_pipe() if pipe else b.build()
    p.write_bytes(raw[:len(raw) - cut] if cut else raw)
    return p


@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("pipe", [False, True])
def test_many_rounds(tmp_path, seed, pipe, monkeypatch):
    path = write(tmp_path, rounds_file(seed), pipe=pipe)
    tr = quiet(exitreplay.read_trace, path)
    assert len(tr) > 2000 and tr.meta.dropped  # the file is what it says
    ts = tr.events["ts"].to_numpy()
    assert (ts[1:] < ts[:-1]).any()  # a late record delivered after a newer one: perf's order, not a sort
    for size in SIZES:
        assert_same_windows(path, size)
    monkeypatch.setattr(perf_records, "FIRST_CHUNK_SLOTS", 64)
    monkeypatch.setattr(perf_records, "MAX_CHUNK_SLOTS", 128)
    for size in (7, 1000):
        assert_same_windows(path, size)


def test_without_finished_round_records(tmp_path):
    """One round, the final flush: records by time, untimed ones first."""
    path = write(tmp_path, rounds_file(3, rounds=10, finished=False))
    for size in (7, 10**9):
        assert_same_windows(path, size)


def test_big_endian(tmp_path):
    path = write(tmp_path, rounds_file(4, rounds=10, endian="big"))
    assert_same_windows(path, 100)


def test_empty_rounds_and_no_events(tmp_path):
    b = PerfBuilder()
    for _ in range(5):
        b.finished_round()
    wins = assert_same_windows(write(tmp_path, b), 10)
    assert len(wins) == 1 and len(wins[0]) == 0
    b.sample(Probe(ts=5, cpu=0, tid=7))
    for _ in range(3):
        b.finished_round()
    assert len(assert_same_windows(write(tmp_path, b, "one.perf.data"), 1)) == 1


# -- broken files -------------------------------------------------------------------------------------

@pytest.mark.parametrize("pipe", [False, True])
def test_truncated_mid_record(tmp_path, pipe):
    """Pipe mode: the file cut 37 bytes into its last records; file mode: a data section that
    ends 37 bytes early (the features after it intact, so the tracing data is there)."""
    b = rounds_file(5, rounds=12)
    raw = bytearray(b.build_pipe() if pipe else b.build())
    if pipe:
        raw = raw[:-37]
    else:
        size = struct.unpack_from("<Q", raw, 48)[0]
        struct.pack_into("<Q", raw, 48, size - 37)
    p = tmp_path / "cut.perf.data"
    p.write_bytes(bytes(raw))
    wins = assert_same_windows(p, 50)
    assert any("truncated at byte" in w for w in wins[-1].meta.warnings)


def test_corrupt_record_in_the_middle(tmp_path):
    b = rounds_file(6, rounds=12)
    b.records.insert(len(b.records) // 2, struct.pack("<IHH", 9, 0, 4))  # size < 8
    wins = assert_same_windows(write(tmp_path, b), 100)
    assert any("corrupt record" in w for w in wins[-1].meta.warnings)


def test_unknown_ids_and_short_records(tmp_path):
    b = rounds_file(7, rounds=8)
    b.attrs = [AttrSpec(ids=(100,)), AttrSpec(ids=(101,), config=99, name="test:other")]
    b.records.insert(20, struct.pack("<IHHQ", 9, 0, 16, 555))  # a sample whose id no attr declares
    b.records.insert(40, struct.pack("<IHHQ", 9, 0, 16, 100))  # a sample too short for its fields
    wins = assert_same_windows(write(tmp_path, b), 100)
    assert any("no attr declares" in w for w in wins[-1].meta.warnings)


def test_bad_tracepoint_id_is_the_same_error(tmp_path):
    b = rounds_file(8, rounds=3)
    b.attrs = [AttrSpec(config=70000)]
    p = write(tmp_path, b)
    msgs = []
    for fn in (lambda: list(perfdata.whole_file_windows(p, 10)), lambda: list(iter_windows(p, window_events=10))):
        with pytest.raises(TraceError) as exc:
            quiet(fn)
        msgs.append(str(exc.value))
    assert msgs[0] == msgs[1] and "tracepoint ids above 65535" in msgs[0] and "\n" not in msgs[0]


# -- the analysis ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", REAL, ids=lambda p: p.name)
def test_streamed_analysis_equals_in_memory(path):
    whole = quiet(lambda: analyze(exitreplay.read_trace(path)))
    for size in (1500, 60):
        assert_same_report(whole, quiet(lambda: analyze_windows(iter_windows(path, window_events=size))),
                           f"{path.name} @{size}")


def test_streamed_analysis_of_a_generated_recording(tmp_path, monkeypatch):
    """exitreplay's own perf.data writer, rounds of 4096 events (a real recording's are small)."""
    from exitreplay.synth import generate
    from exitreplay.synth import perfdata_writer as pw

    monkeypatch.setattr(pw, "ROUND_EVENTS", 4096)
    p = tmp_path / "netio.perf.data"
    pw.write_perfdata(generate("netio", vcpus=2, seconds=0.05, seed=3, isa="svm"), p)
    whole = quiet(lambda: analyze(exitreplay.read_trace(p)))
    assert whole.summary["exits"] > 1000
    assert_same_report(whole, quiet(lambda: analyze_windows(iter_windows(p, window_events=5000))), "netio")
    assert_same_windows(p, 5000)
