"""One trace.dat split in time over workers: each range's worker gets a warm-up window, then its
windows in order until its StreamAnalysis is done; every event is owned by exactly one range;
and the merged Report equals one process's."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import REAL, ROOT, SAMPLES
from ray_helpers import ray_cluster  # noqa: F401 - the session fixture
from stream_helpers import assert_same_report

import exitreplay.pipeline as pipeline
from exitreplay.engines import LocalEngine
from exitreplay.errors import UsageError
from exitreplay.fleet import analyze_split
from exitreplay.formats.pageindex import TS_MAX, TS_MIN
from exitreplay.reader import read_trace


class Recorder:
    """A stand-in fold: counts the events it owns, and is done 1 ms past its range."""

    def __init__(self, *args, own_ts, **kw):
        self.lo, self.hi = own_ts
        self.fed: list[tuple[int, int, int]] = []  # (first ts, last ts, events) of each window
        self.owned = 0
        self.seen_past = False

    @property
    def done(self) -> bool:
        return self.seen_past

    def feed(self, window) -> None:
        ts = window.events.column("ts").to_numpy()
        self.fed.append((int(ts[0]) if ts.size else None, int(ts[-1]) if ts.size else None, ts.size))
        self.owned += int(((ts >= self.lo) & (ts < self.hi)).sum())
        self.seen_past |= bool(ts.size and self.hi < TS_MAX and ts[-1] >= self.hi + 1_000_000)

    def partial(self) -> dict:
        return {"lo": self.lo, "hi": self.hi, "owned": self.owned, "fed": [list(f) for f in self.fed]}


@pytest.fixture()
def recorder(monkeypatch):
    monkeypatch.setattr(pipeline, "StreamAnalysis", Recorder)
    monkeypatch.setattr(pipeline, "merge", lambda parts: parts)
    monkeypatch.setattr(pipeline, "finish", lambda parts: parts)


@pytest.mark.usefixtures("recorder")
@pytest.mark.parametrize("name", ["pvm-longmode-msr.v7.dat", "pvm-pio-small.v7zstd.dat"])
def test_each_event_is_owned_once_and_windows_run_until_done(name):
    path = REAL / name
    ts = read_trace(path).events.column("ts").to_numpy()
    warmup, step = 2_000_000, 1_000_000
    parts = analyze_split(path, LocalEngine(1), 4, window_ns=step, warmup_ns=warmup)
    assert [p["lo"] for p in parts][0] == TS_MIN and parts[-1]["hi"] == TS_MAX
    assert [p["hi"] for p in parts[:-1]] == [p["lo"] for p in parts[1:]]  # consecutive ranges
    assert sum(p["owned"] for p in parts) == ts.size
    for p in parts:
        assert p["owned"] == int(((ts >= p["lo"]) & (ts < p["hi"])).sum()) > 0
        fed = [f for f in p["fed"] if f[2]]
        firsts = [f[0] for f in fed]
        assert firsts == sorted(firsts)  # windows in time order
        if p["lo"] != TS_MIN:  # the warm-up window ends where the range begins
            warm = ts[(ts >= p["lo"] - warmup) & (ts < p["lo"])]
            assert p["fed"][0][2] == warm.size
        if p["hi"] != TS_MAX:  # read past the range until done, and no further
            assert fed[-1][1] >= p["hi"] + 1_000_000
            assert fed[-2][1] < p["hi"] + 1_000_000
        else:
            assert fed[-1][1] == ts[-1]


def test_split_needs_a_trace_dat():
    with pytest.raises(UsageError, match="needs a trace.dat"):
        analyze_split(REAL / "pvm-pio-small.perf.data", LocalEngine(1), 2)


def _fold_merges() -> bool:
    """Whether the fold's partial()/merge() exist yet (main has them as NotImplementedError stubs)."""
    if not hasattr(pipeline.StreamAnalysis, "partial"):
        return False
    try:
        pipeline.merge([])
    except NotImplementedError:
        return False
    except Exception:  # noqa: BLE001 - any other answer means merge() is real
        return True
    return True


needs_fold = pytest.mark.skipif(not _fold_merges(), reason="StreamAnalysis.partial/merge/finish are not on main yet")
SPLIT_TRACES = ["svm-idle.v7.dat", "svm-mixed.v7zstd.dat", "vmx-idle.v6.dat", "svm-nested.v7.dat",
                "vmx-syscall-heavy.v7zstd.dat", "svm-cpu.v6.dat"]


@needs_fold
@pytest.mark.parametrize("name", SPLIT_TRACES)
@pytest.mark.parametrize("parts", [2, 5])
def test_split_analyze_equals_one_process(name, parts):
    from exitreplay.analysis import analyze

    path = SAMPLES / name
    assert_same_report(analyze(read_trace(path)), analyze_split(path, LocalEngine(1), parts, window_ns=2_000_000),
                       f"{name} in {parts}")


@needs_fold
@pytest.mark.usefixtures("ray_cluster")
@pytest.mark.parametrize("name", ["svm-mixed.v7zstd.dat", "vmx-idle.v6.dat"])
def test_split_analyze_on_ray_equals_one_process(name):
    from exitreplay.analysis import analyze
    from exitreplay.engines import RayEngine

    path = SAMPLES / name
    with RayEngine() as eng:
        got = analyze_split(path, eng, 4, window_ns=2_000_000)
    assert_same_report(analyze(read_trace(path)), got, name)


@pytest.mark.parametrize("args, message", [
    (["tests/data/real/pvm-pio-small.perf.data", "--split", "2"], "splitting a trace in time needs a trace.dat"),
    (["sample_traces/svm-idle.v7.dat", "--split", "0"], "--split must be at least 1"),
    (["sample_traces/svm-idle.v7.dat", "--engine", "local", "--address", "h:1"], "--address goes with --engine ray"),
    (["sample_traces/no-such.dat", "--split", "2"], "no such file"),
])
def test_split_usage_errors_are_one_line(args, message):
    p = subprocess.run([sys.executable, "-m", "exitreplay", "analyze", *args], capture_output=True, text=True,
                       cwd=ROOT)
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("exitreplay: error: ") and message in lines[0]


@pytest.mark.parametrize("name", ["svm-mixed.v7zstd.dat", "vmx-cpu.v7.dat"])
def test_the_real_fold_takes_a_ranges_windows_and_is_done_past_its_end(name):
    """The windows a worker feeds (warm-up, then from its range on, rows numbered on) are adjacent
    for the fold, and it is done a little past its range, well before the trace's end."""
    from exitreplay.fleet import feed_range
    from exitreplay.formats.pageindex import WindowReader, build_index
    from exitreplay.pipeline import StreamAnalysis

    path = SAMPLES / name
    index = build_index(path)
    lo, hi = index.cuts(4)[1:3]
    step = 1_000_000
    sa = StreamAnalysis(own_ts=(lo, hi))
    with WindowReader(path, index) as reader:
        fed = feed_range(sa, reader, lo, hi, step, warmup_ns=5_000_000)
        rest = sum(1 for _ in reader.windows(lo, None, step))
    assert sa.done
    assert 2 <= fed < rest
    assert sa.last_ts >= hi - step  # the range read to its end (its last window may hold no event past it)


def test_times_from_the_first_event_mean_the_same_in_every_range():
    """--from +5ms --to +40ms: a worker starting mid-trace resolves them as the whole trace does."""
    from exitreplay.filters import Filters, parse_time
    from exitreplay.fleet import absolute_filters
    from exitreplay.formats.pageindex import WindowReader, build_index
    from exitreplay.pipeline import StreamAnalysis

    path = SAMPLES / "svm-mixed.v7zstd.dat"
    flt = Filters(start=parse_time("+5ms"), end=parse_time("+40ms", "--to"))
    whole = StreamAnalysis(filters=flt)
    whole.feed(read_trace(path))
    index = build_index(path)
    lo, hi = index.cuts(3)[1:3]
    with WindowReader(path, index) as reader:
        fixed = absolute_filters(flt, reader)
        worker = StreamAnalysis(filters=fixed, own_ts=(lo, hi))
        worker.feed(reader.read(lo, hi))
    assert worker.bounds == whole.bounds
    assert (str(fixed.start), str(fixed.end)) == ("+5ms", "+40ms")  # reported as the user gave them
    naive = StreamAnalysis(filters=flt, own_ts=(lo, hi))
    with WindowReader(path, index) as reader:
        naive.feed(reader.read(lo, hi))
    assert naive.bounds != whole.bounds  # what the workers would get without it


@pytest.mark.parametrize("name", ["svm-idle.v7.dat", "svm-cpu.v6.dat"])
def test_the_warm_up_carries_the_state_into_a_range(name):
    """With a 10 ms warm-up the ranges merge exactly; with none, each range starts blind (the
    loaded vCPU of each CPU unknown) and the savings differ: the warm-up is what makes it exact."""
    from exitreplay.analysis import analyze

    path = SAMPLES / name
    want = analyze(read_trace(path))
    assert_same_report(want, analyze_split(path, LocalEngine(1), 5, window_ns=2_000_000, warmup_ns=10_000_000), name)
    with pytest.raises(AssertionError, match="policies"):
        assert_same_report(want, analyze_split(path, LocalEngine(1), 5, window_ns=2_000_000, warmup_ns=0), name)


def test_analyze_split_command_gives_the_streamed_report():
    """`analyze --split 3` on the spawn pool prints what the one-process streamed analysis does."""
    trace = "sample_traces/svm-mixed.v7zstd.dat"
    run = [sys.executable, "-m", "exitreplay", "analyze", trace, "-f", "json"]
    split = subprocess.run([*run, "--split", "3", "-j", "2"], capture_output=True, text=True, cwd=ROOT)
    one = subprocess.run([*run, "--window-events", "1000"], capture_output=True, text=True, cwd=ROOT)
    assert split.returncode == one.returncode == 0, split.stderr + one.stderr
    assert json.loads(split.stdout) == json.loads(one.stdout)
    assert json.loads(split.stdout)["summary"]["exits"] > 1000
