"""The live pipeline's parts, against independent results: the live page decoder against
read_trace of the same pages, time windows against the whole trace, pid -> comm as tasks appear,
and the page files' disk given back."""
from __future__ import annotations

import os

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from conftest import SAMPLES

import exitreplay
from exitreplay.formats.tracedat_file import TraceDatFile
from exitreplay.live.comms import Comms
from exitreplay.live.holes import punch
from exitreplay.live.pages import PageDecoder
from exitreplay.live.window import time_windows
from exitreplay.pipeline.view import concat_windows
from exitreplay.synth import synthesize


def live_windows(path, tmp_path, pages_per_add: int, seed: int):
    """The file's per-CPU pages fed to a PageDecoder a few pages at a time, CPUs in a random order,
    each window taken at a bound no CPU can still go below (the smallest of their latest keys)."""
    tdf = TraceDatFile(path)
    cmd = tmp_path / "saved_cmdlines"
    cmd.write_bytes(tdf.cmdlines)
    buf = tdf.buffers[0]
    ps = buf.page_size
    data = {cd.cpu: np.array(tdf.cpu_data(i)[0]) for i, cd in enumerate(buf.cpus)}
    tdf.close()
    dec = PageDecoder(str(path), sorted(data), str(cmd), str(path))
    rng = np.random.default_rng(seed)
    pos = dict.fromkeys(data, 0)
    out = []
    while any(pos[c] < data[c].size for c in data):
        for c in rng.permutation(sorted(data)).tolist():
            if pos[c] < data[c].size:
                n = int(rng.integers(1, pages_per_add + 1)) * ps
                dec.add(c, data[c][pos[c]: pos[c] + n])
                pos[c] += n
        live = [q.keymax for c, q in dec.cpus.items() if pos[c] < data[c].size and q.keymax is not None]
        w = dec.take(min(live)) if live else None
        if w is not None:
            out.append(w)
    w = dec.take(None)
    if w is not None:
        out.append(w)
    dec.close()
    return out


def same_table(a: pa.Table, b: pa.Table) -> bool:
    return a.select(b.column_names).cast(b.schema).equals(b) if set(a.column_names) == set(b.column_names) else False


@pytest.mark.parametrize("make", ["pvm-pio-small.v7zstd.dat", "synth-svm", "synth-vmx"])
def test_live_page_decoder_equals_read_trace(tmp_path, make):
    if make.startswith("synth"):
        path = tmp_path / "s.dat"
        synthesize("mixed", path, vcpus=2, seconds=0.01, isa=make[-3:], seed=11)
    else:
        path = SAMPLES / make if "/" not in make else make
    whole = exitreplay.read_trace(path)
    wins = live_windows(path, tmp_path, pages_per_add=3, seed=1)
    assert len(wins) > 3
    rows = [w.row_base for w in wins]
    assert rows[0] == 0 and rows == sorted(rows)
    back = concat_windows(wins)
    for col in ("ts", "cpu", "pid", "flags", "preempt_count"):
        assert back.events.column(col).equals(whole.events.column(col)), col
    for col in ("event", "system", "comm"):
        assert back.events.column(col).cast(pa.string()).equals(whole.events.column(col).cast(pa.string())), col
    assert back.event_names == whole.event_names
    for name in whole.event_names:
        assert same_table(back.table(name), whole.table(name)), name
    # The losses, each at the row of the event after it (read_trace lists them by time, windows
    # in their own order).
    assert sorted((d.ts, d.cpu, d.count or -1, d.row) for d in back.meta.dropped) == \
        sorted((d.ts, d.cpu, d.count or -1, d.row) for d in whole.meta.dropped)


def test_time_windows_tile_the_trace():
    t = exitreplay.read_trace(SAMPLES / "svm-idle.v7.dat")
    span = t.meta.duration_ns // 7
    wins = list(time_windows(t, span))
    assert wins[-1].last and not any(w.last for w in wins[:-1])
    assert [w.lo_ts for w in wins[1:]] == [w.hi_ts for w in wins[:-1]]
    assert all(w.hi_ts - w.lo_ts == span for w in wins[:-1])
    assert 0 < wins[-1].hi_ts - wins[-1].lo_ts <= span and wins[-1].hi_ts == t.meta.last_ts + 1
    full = [w.trace for w in wins if w.trace is not None]
    assert sum(len(x) for x in full) == len(t)
    for w in wins:
        if w.trace is not None:
            ts = w.trace.events.column("ts").to_numpy()
            assert ts.min() >= w.lo_ts and ts.max() < w.hi_ts
            assert w.trace.table(w.trace.event_names[0]).column("row")[0].as_py() >= w.trace.row_base
    back = concat_windows(full)
    assert back.events.equals(t.events)
    for name in t.event_names:
        assert back.table(name).equals(t.table(name))


def test_time_windows_keep_a_quiet_stretch():
    t = exitreplay.read_trace(SAMPLES / "svm-mixed.v7zstd.dat")
    ts = t.events.column("ts").to_numpy()
    gap = int(np.argmax(np.diff(ts)))  # the longest quiet stretch
    span = max(1, int(ts[gap + 1] - ts[gap]) // 3)
    wins = list(time_windows(t, span))
    assert any(w.trace is None for w in wins)
    assert sum(w.events for w in wins) == len(t)
    assert wins[0].lo_ts == int(ts[0]) and wins[-1].hi_ts == int(ts.max()) + 1


def test_window_rows_outside_the_window_are_refused():
    from exitreplay.errors import TraceError
    from exitreplay.live.window import WindowTrace

    t = exitreplay.read_trace(SAMPLES / "svm-mixed.v7zstd.dat")
    ex = t.table("kvm_exit")
    w = WindowTrace(t.events.slice(100, 50), {"kvm_exit": ex.slice(0, 5)}, t.meta, 100)
    if pc.min(ex.slice(0, 5).column("row")).as_py() < 100:
        with pytest.raises(TraceError, match="rows outside"):
            w.table("kvm_exit")


def test_comms_grow_and_keep_their_codes(tmp_path):
    f = tmp_path / "saved_cmdlines"
    f.write_text("10 qemu\n20 CPU 0/KVM\n")
    c = Comms(str(f))
    first = c.codes(np.array([10, 20, 0, 30, -5], np.int32))
    names = [None if k < 0 else c.names[k] for k in first.tolist()]
    assert names == ["qemu", "CPU 0/KVM", "<idle>", None, None]
    f.write_text("10 qemu\n20 CPU 0/KVM\n30 CPU 1/KVM\n4000000 big\n")
    again = c.codes(np.array([10, 20, 30, 4000000, 4000001], np.int32))
    assert again[:2].tolist() == first[:2].tolist()
    assert [c.names[k] for k in again[2:4].tolist()] == ["CPU 1/KVM", "big"] and again[4] == -1
    assert c.dictionary().to_pylist() == c.names


def test_punch_gives_the_disk_back_and_keeps_the_bytes_after(tmp_path):
    p = tmp_path / "cpu0.raw"
    data = os.urandom(1 << 20)
    p.write_bytes(data)
    os.sync()
    before = os.stat(p).st_blocks
    if not punch(p, 1 << 19):
        pytest.skip("this file system cannot punch holes")
    assert os.path.getsize(p) == 1 << 20 and os.stat(p).st_blocks < before
    got = p.read_bytes()
    assert got[: 1 << 19] == bytes(1 << 19) and got[1 << 19:] == data[1 << 19:]


def test_live_pid_of_a_qemu_process_becomes_its_first_vcpu_thread(tmp_path):
    from exitreplay.live.sources import vcpu_thread_of

    for tid, comm in ((500, "qemu-system-x86"), (503, "IO mon_iothread"), (507, "CPU 1/KVM"), (506, "CPU 0/KVM")):
        d = tmp_path / "500" / "task" / str(tid)
        d.mkdir(parents=True)
        (d / "comm").write_text(comm + "\n")
    assert vcpu_thread_of(500, tmp_path) == 506
    assert vcpu_thread_of(42, tmp_path) == 42  # no such process: the pid as given
    (tmp_path / "600" / "task" / "600").mkdir(parents=True)
    (tmp_path / "600" / "task" / "600" / "comm").write_text("python3\n")
    assert vcpu_thread_of(600, tmp_path) == 600  # a process without vCPU threads named by QEMU


def test_a_screen_that_falls_behind_catches_up_in_one_frame():
    """Windows waiting while a report is made are folded into the next frame (catch_up), and the
    frames still add up to the whole trace; without catch_up every window is a frame."""
    import time

    from exitreplay.analysis import analyze
    from exitreplay.live.keys import Keys
    from exitreplay.live.session import StopFlag, Watcher, run
    from exitreplay.live.sources import ReplaySource

    path = str(SAMPLES / "svm-mixed.v7zstd.dat")
    n_windows = sum(1 for _ in ReplaySource(path, 0.005, 0).frames())

    class SlowFirst(Watcher):
        calls = 0

        def step(self, *ws):
            self.calls += 1
            if self.calls == 1:
                time.sleep(0.5)  # the source fills the queue meanwhile
            return super().step(*ws)

    for catch_up in (True, False):
        frames: list = []
        run(ReplaySource(path, 0.005, 0), SlowFirst(), lambda f, _s, out=frames: out.append(f), Keys(None),
            StopFlag(), catch_up=catch_up)
        shown = list({id(f): f for f in frames if f is not None}.values())
        assert sum(f.delta.exits for f in shown) == analyze(path).summary["exits"]
        assert (len(shown) < n_windows) if catch_up else (len(shown) == n_windows)


def event_windows(trace, n: int):
    """The trace as windows of n events with its rows (as a streaming reader gives them)."""
    from exitreplay.live.window import slice_rows

    for a in range(0, len(trace), n):
        yield slice_rows(trace, a, min(a + n, len(trace)))


@pytest.mark.parametrize("n", [1, 97, 1000, 10**9])
def test_time_frames_of_a_stream_equal_those_of_the_whole_trace(n):
    """Cut by time, a stream of event windows gives the frames the whole trace gives: each frame's
    pieces, concatenated, are that interval's rows, whatever the windows' size."""
    from exitreplay.live.window import time_frames

    t = exitreplay.read_trace(SAMPLES / "vmx-mixed.v6.dat")
    span = t.meta.duration_ns // 9
    whole = list(time_frames([t], span))
    streamed = list(time_frames(event_windows(t, n), span))
    assert len(streamed) == len(whole) >= 9
    for a, b in zip(whole, streamed):
        assert {(w.lo_ts, w.hi_ts, w.last) for w in a} == {(w.lo_ts, w.hi_ts, w.last) for w in b}
        pa_ = [w.trace for w in a if w.trace is not None]
        pb = [w.trace for w in b if w.trace is not None]
        assert sum(len(x) for x in pa_) == sum(len(x) for x in pb)
        assert pieces(pa_) == pieces(pb)


def pieces(traces) -> tuple:
    """The events and each event's table of consecutive window pieces, concatenated."""
    if not traces:
        return ()
    names = sorted({n for t in traces for n in t.event_names})
    return (pa.concat_tables([t.events for t in traces]).to_pylist(),
            {n: pa.concat_tables([t.table(n) for t in traces if t.has(n)]).to_pylist() for n in names})


def test_time_frames_of_the_librarys_stream_if_it_has_one():
    windows = pytest.importorskip("exitreplay.windows", reason="exitreplay.windows (iter_windows) not here yet")
    from exitreplay.live.window import time_frames

    path = SAMPLES / "svm-mixed.v7zstd.dat"
    t = exitreplay.read_trace(path)
    span = t.meta.duration_ns // 5
    whole = [sum(w.events for w in f) for f in time_frames([t], span)]
    streamed = [sum(w.events for w in f) for f in time_frames(windows.iter_windows(path, window_events=500), span)]
    assert streamed == whole


def test_frames_outlive_their_file():
    """The frames of a replay are analysed after its reader may have closed the file: they hold
    their tables (a frame holding a lazy table would fail with 'the trace is closed')."""
    from exitreplay.analysis import analyze
    from exitreplay.live.session import Watcher
    from exitreplay.live.sources import ReplaySource

    path = str(SAMPLES / "svm-mixed.v7zstd.dat")
    frames = list(ReplaySource(path, 1.0, 0).frames())  # one frame, the file closed after it
    assert len(frames) == 1
    f = Watcher().step(*frames[0])
    assert f.total.exits == analyze(path).summary["exits"]
