"""Reading a trace.dat by time: the window [t0, t1) from the page index equals the whole file read
and filtered to t0 <= ts < t1 (events, every per-event table, lost-event records), at many cut
points, on v6, v7 and compressed files; and only the pages of the window are decoded."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from conftest import PUBLIC, REAL, SAMPLES

from exitreplay.formats import pageindex
from exitreplay.formats.pageindex import TS_MAX, TS_MIN, WindowReader, build_index, read_window
from exitreplay.formats.tracedat_file import TraceDatFile
from exitreplay.reader import read_trace

TRACES = [SAMPLES / n for n in ("svm-idle.v7.dat", "svm-netio.v7zstd.dat", "vmx-idle.v6.dat",
                                "svm-nested.v7.dat", "pvm-pio-small.v7zstd.dat")]
TRACES += [REAL / n for n in ("pvm-longmode-msr.v6.dat", "pvm-longmode-msr.v7.dat", "pvm-pio-small.v7zstd.dat",
                              "pvm-guest.both.dat")]


def _decoded(t: pa.Table) -> dict[str, list]:
    """Column values, dictionaries decoded (a window's dictionaries hold only its own names)."""
    return {c: t.column(c).to_pylist() for c in t.column_names}


def expect_window(full, t0: int, t1: int) -> tuple[dict, dict[str, dict], list]:
    """The whole trace filtered to [t0, t1), rows renumbered from 0: the oracle."""
    ts = full.events.column("ts").to_numpy()
    keep = (ts >= t0) & (ts < t1)
    local = np.cumsum(keep) - 1
    events = _decoded(full.events.filter(pa.array(keep)))
    tables = {}
    for name in full.event_names:
        t = full.table(name)
        rows = t.column("row").to_numpy()
        t = t.filter(pa.array(keep[rows]))
        if t.num_rows:
            tables[name] = _decoded(t.set_column(0, "row", pa.array(local[t.column("row").to_numpy()], pa.int64())))
    dropped = [(d.cpu, d.ts, d.count, int(local[d.row])) for d in full.meta.dropped
               if d.row is not None and keep[d.row]]
    return events, tables, dropped


def got_window(w) -> tuple[dict, dict[str, dict], list]:
    return (_decoded(w.events), {n: _decoded(w.table(n)) for n in w.event_names},
            [(d.cpu, d.ts, d.count, d.row) for d in w.meta.dropped])


def cut_points(full, k: int, seed: int) -> list[int]:
    """k + 1 sorted times: the ends, event timestamps themselves (ties at a cut) and times between."""
    ts = full.events.column("ts").to_numpy()
    rng = np.random.default_rng(seed)
    inner = np.concatenate([rng.choice(ts, k // 2), rng.integers(int(ts[0]), int(ts[-1]), k - k // 2)])
    return [TS_MIN, *np.unique(inner).tolist(), TS_MAX]


@pytest.mark.parametrize("path", TRACES, ids=lambda p: p.name)
def test_windows_equal_the_filtered_trace(path):
    full = read_trace(path)
    index = build_index(path)
    cuts = cut_points(full, 24, seed=len(path.name))
    total = 0
    with WindowReader(path, index) as reader:
        for t0, t1 in zip(cuts, cuts[1:]):
            w = reader.read(t0, t1)
            assert got_window(w) == expect_window(full, t0, t1), (t0, t1)
            assert w.meta.source_format == "trace.dat" and w.meta.version == full.meta.version
            total += len(w)
    assert total == len(full)  # the windows partition the trace


def test_public_zlib_trace(public_dir):
    path = PUBLIC / "vmx-host-6.5.v7zlib.dat"
    full = read_trace(path)
    cuts = cut_points(full, 8, seed=1)
    index = build_index(path)
    for t0, t1 in zip(cuts, cuts[1:]):
        assert got_window(read_window(path, t0, t1, index)) == expect_window(full, t0, t1)


def test_an_empty_or_inverted_window_has_no_events():
    path = SAMPLES / "svm-idle.v7.dat"
    full = read_trace(path)
    t = int(full.events.column("ts")[100].as_py())
    assert len(read_window(path, t, t)) == 0
    assert len(read_window(path, t + 10, t)) == 0
    assert len(read_window(path, TS_MIN, int(full.events.column("ts")[0].as_py()))) == 0


@pytest.mark.parametrize("name", ["pvm-longmode-msr.v7.dat", "pvm-longmode-msr.v7zstd.dat"])
def test_a_narrow_window_reads_only_its_pages(name, monkeypatch):
    """Decoded bytes: at most the pages stamped inside the window plus one before, per CPU; for a
    compressed file, only the chunks holding them are inflated."""
    path = REAL / name
    index = build_index(path)
    full = read_trace(path)
    ts = full.events.column("ts").to_numpy()
    t0, t1 = int(np.quantile(ts, 0.4)), int(np.quantile(ts, 0.42))
    decoded, inflated = [], []
    real_decode, real_chunk = pageindex.decode_pages, TraceDatFile._chunk_bytes
    monkeypatch.setattr(pageindex, "decode_pages", lambda data, *a, **k: decoded.append(data.size) or
                        real_decode(data, *a, **k))
    monkeypatch.setattr(TraceDatFile, "_chunk_bytes", lambda self, cd, ch: inflated.append(ch.usize) or
                        real_chunk(self, cd, ch))
    w = read_window(path, t0, t1, index)
    assert len(w) == int(((ts >= t0) & (ts < t1)).sum()) > 0
    inside = sum(int(((c.ns >= t0) & (c.ns < t1)).sum()) for c in index.cpus)
    assert sum(decoded) <= (inside + len(index.cpus)) * index.page_size
    assert sum(decoded) < sum(c.nbytes for c in index.cpus) / 10
    if "zstd" in name:
        assert 0 < sum(inflated) < sum(c.nbytes for c in index.cpus) / 2


def test_cuts_split_the_pages_evenly():
    path = REAL / "pvm-longmode-msr.v7.dat"
    index = build_index(path)
    cuts = index.cuts(4)
    assert cuts[0] == TS_MIN and cuts[-1] == TS_MAX and cuts == sorted(set(cuts))
    full = read_trace(path)
    ts = full.events.column("ts").to_numpy()
    sizes = [int(((ts >= a) & (ts < b)).sum()) for a, b in zip(cuts, cuts[1:])]
    assert sum(sizes) == len(full)
    assert min(sizes) > len(full) / 4 / 2  # balanced by pages: within a factor 2 of even


@pytest.mark.parametrize("name", ["vmx-cpu.v7.dat", "svm-mixed.v7zstd.dat"])
def test_windows_iterate_the_whole_trace(name):
    """Consecutive windows number their rows on from each other: joined, they are the file."""
    from exitreplay.pipeline.view import concat_windows

    path = SAMPLES / name
    full = read_trace(path)
    with WindowReader(path) as reader:
        parts = list(reader.windows(None, None, step_ns=3_000_000))
    assert len(parts) > 3
    assert [p.row_base for p in parts] == np.cumsum([0] + [len(p) for p in parts[:-1]]).tolist()
    for p in parts[:-1]:
        ts = p.events.column("ts").to_numpy()
        assert ts.size == 0 or ts[-1] - ts[0] < 3_000_000
    joined = concat_windows(parts)
    assert got_window(joined) == expect_window(full, TS_MIN, TS_MAX)


def test_lost_events_are_kept_with_the_event_after_them(tmp_path):
    """A copy of a sample whose pages are flagged as preceded by lost events (the commit word's
    MISSED_EVENTS bit, as the kernel sets it): each window keeps the losses whose next event it holds."""
    from exitreplay.formats.ringbuffer import MISSED_EVENTS

    path = tmp_path / "lossy.v7.dat"
    data = bytearray((SAMPLES / "vmx-cpu.v7.dat").read_bytes())
    with TraceDatFile(SAMPLES / "vmx-cpu.v7.dat") as tdf:
        hp, ps = tdf.header_page, tdf.page_size
        spots = [(cd.offset, cd.size) for cd in tdf.buffers[0].cpus if cd.size]
    for k, (off, size) in enumerate(spots):
        for page in range(k % 2, size // ps, 3):
            at = off + page * ps + hp.commit_offset
            word = int.from_bytes(data[at: at + hp.commit_size], "little") | MISSED_EVENTS
            data[at: at + hp.commit_size] = word.to_bytes(hp.commit_size, "little")
    path.write_bytes(bytes(data))
    full = read_trace(path)
    assert len(full.meta.dropped) > 10
    index = build_index(path)
    cuts = cut_points(full, 12, seed=5)
    kept = 0
    for t0, t1 in zip(cuts, cuts[1:]):
        w = read_window(path, t0, t1, index)
        assert got_window(w) == expect_window(full, t0, t1)
        kept += len(w.meta.dropped)
    assert kept == sum(d.row is not None for d in full.meta.dropped)
