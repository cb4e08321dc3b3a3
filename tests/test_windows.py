"""iter_windows / slice_windows: the windows of a file, concatenated, are read_trace's tables.

The oracle is read_trace itself (checked against trace-cmd report and perf script elsewhere):
every column of `events` and of every per-event table, the losses and their rows, the order.
"""
from __future__ import annotations

import shutil
import struct
import warnings
from pathlib import Path

import pytest

import exitreplay
from exitreplay import windows
from exitreplay.errors import UsageError
from exitreplay.formats.ringbuffer import MISSED_EVENTS
from exitreplay.formats.tracedat_file import TraceDatFile
from exitreplay.windows import _plain, concat_windows, iter_windows, slice_windows

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "traces"
FILES = sorted({p.name: p for d in (ROOT / "sample_traces", ROOT / "tests" / "data" / "real", SHARED)
                if d.is_dir() for p in d.iterdir() if p.suffix in (".dat", ".data", ".txt")
                and p.name != "README.md"}.values())
SIZES = (1000, 10**9)  # and 7 on the smaller files: a window costs about a millisecond


def read(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return exitreplay.read_trace(path)


def assert_same(trace, wins, names=None):
    wins = list(wins)
    events, tables, drops = concat_windows(wins)
    assert events.equals(_plain(trace.events))
    expect = trace.event_names if names is None else [n for n in trace.event_names if n in names]
    assert sorted(tables) == expect
    for name in expect:
        assert tables[name].equals(_plain(trace.table(name))), name
    assert drops == trace.meta.dropped
    base = 0
    for w in wins:  # rows are the file's, each window's own range
        assert w.row_base == base
        for name in w.event_names:
            rows = w.table(name).column("row").to_numpy()
            assert rows.min() >= base and rows.max() < base + len(w)
        assert w.meta.first_ts == (int(w.events["ts"][0].as_py()) if len(w) else None)
        assert w.meta.path == trace.meta.path and w.meta.source_format == trace.meta.source_format
        assert (w.meta.version, w.meta.compression, w.meta.cpus, w.meta.clock) == (
            trace.meta.version, trace.meta.compression, trace.meta.cpus, trace.meta.clock)
        base += len(w)
    assert set(wins[-1].meta.warnings) == set(trace.meta.warnings)
    return wins


@pytest.mark.parametrize("path", FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_windows_concatenate_to_read_trace(path):
    trace = read(path)
    for size in SIZES + ((7,) if len(trace) <= 3000 else ()):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            wins = assert_same(trace, iter_windows(path, window_events=size))
        assert [len(w) for w in wins[:-1]] == [size] * (len(wins) - 1) and 0 < len(wins[-1]) <= size


@pytest.mark.parametrize("name", ["vmx-netio.v6.dat", "svm-nested-linux4.19.v7zstd.dat"])
def test_small_windows(name):
    path = ROOT / "sample_traces" / name
    trace = read(path)
    wins = assert_same(trace, iter_windows(path, window_events=1))
    assert len(wins) == len(trace)
    assert len(assert_same(trace, iter_windows(path, window_events=7))) == -(-len(trace) // 7)


def test_stream_chunks_joined_and_cut(monkeypatch):
    """Chunks of pages much smaller than a window: several stream windows make one."""
    monkeypatch.setattr(windows, "MIN_CHUNK", 4096)
    monkeypatch.setattr(windows, "BYTES_PER_EVENT", 0)
    path = ROOT / "sample_traces" / "vmx-netio.v6.dat"
    trace = read(path)
    for size in (1, 333, 5000):
        assert_same(trace, iter_windows(path, window_events=size))


def test_events_selects_the_tables_decoded():
    path = ROOT / "sample_traces" / "svm-mixed.v7zstd.dat"
    trace = read(path)
    pick = {"kvm_exit", "sched_switch"}
    wins = assert_same(trace, iter_windows(path, window_events=999, events=pick), names=pick)
    assert sum(len(w) for w in wins) == len(trace)


def _with_losses(src: Path, dst: Path, every: int) -> Path:
    """A copy of an uncompressed trace.dat with the missed-events flag set on every `every`-th
    page of each CPU (as the kernel sets it after an overrun, count unknown)."""
    shutil.copy(src, dst)
    with TraceDatFile(dst) as tdf:
        buf, hp, fmt = tdf.buffers[0], tdf.header_page, "<Q" if tdf.endian == "little" else ">Q"
        spots = [cd.offset + k * buf.page_size + hp.commit_offset for cd in buf.cpus
                 for k in range(1, cd.size // buf.page_size, every)]
    with open(dst, "r+b") as fh:
        for at in spots:
            fh.seek(at)
            (commit,) = struct.unpack(fmt, fh.read(8))
            fh.seek(at)
            fh.write(struct.pack(fmt, commit | MISSED_EVENTS))
    return dst


@pytest.mark.parametrize("name", ["vmx-netio.v6.dat", "svm-nested.v7.dat"])
def test_losses_land_in_their_window(tmp_path, name, monkeypatch):
    path = _with_losses(ROOT / "sample_traces" / name, tmp_path / name, every=3)
    trace = read(path)
    assert len(trace.meta.dropped) > 3
    monkeypatch.setattr(windows, "MIN_CHUNK", 8192)
    for size in (1, 50, 777, 10**9):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            wins = assert_same(trace, iter_windows(path, window_events=size))
        for w in wins:
            assert all(d.row is None or w.row_base <= d.row < w.row_base + len(w) for d in w.meta.dropped)


@pytest.mark.parametrize("size", [1, 5, 4096, 10**9])
def test_slice_windows(size):
    trace = read(ROOT / "sample_traces" / "vmx-netio.v6.dat")
    wins = assert_same(trace, slice_windows(trace, size))
    assert len(wins) == max(1, -(-len(trace) // size))


def test_windows_of_a_window():
    trace = read(ROOT / "sample_traces" / "vmx-netio.v6.dat")
    wins = [w2 for w in slice_windows(trace, 1000) for w2 in slice_windows(w, 300)]
    assert_same(trace, wins)
    assert [w.row_base for w in wins[:5]] == [0, 300, 600, 900, 1000]


def test_window_size_must_be_positive():
    with pytest.raises(UsageError):
        next(iter_windows(ROOT / "sample_traces" / "vmx-mixed.v6.dat", window_events=0))
