"""Generation in time windows: the windows together are exactly the whole trace, whatever their size."""
from __future__ import annotations

import pytest
from synth_helpers import table_rows

from exitreplay.errors import UsageError
from exitreplay.synth import schedule
from exitreplay.synth.generator import generate, generate_windows
from exitreplay.synth.profiles import profile_names

# Every profile; a few long windows and many short ones, their edges anywhere in bursts and exits.
CASES = [(p, isa) for p in profile_names() for isa in ("svm", "vmx") if not (p == "nested" and isa == "vmx")]


def _assert_windows_are_the_trace(windows, whole):
    t = whole.meta.extra["window"][0]
    rows = 0
    for w in windows:
        t0, t1 = w.meta.extra["window"]
        assert t0 >= t and t1 > t0
        assert w.meta.extra["first_row"] == rows
        part = whole.slice_time(t, t1)  # the events from the previous window's end to this one's
        assert len(part) == len(w) > 0, (t0, t1)
        assert w.events.to_pylist() == part.events.to_pylist(), (t0, t1)
        assert w.event_names == part.event_names, (t0, t1)
        for name in w.event_names:
            assert w.table(name).to_pylist() == part.table(name).to_pylist(), (t0, t1, name)
        t = t1
        rows += len(w)
    assert rows == len(whole)
    assert whole.slice_time(t, None).events.num_rows == 0


@pytest.mark.parametrize("profile,isa", CASES)
def test_windows_of_any_size_are_the_whole_trace(profile, isa):
    seconds = {"cpu": 0.2, "idle": 0.05}.get(profile, 0.01)
    whole = generate(profile, vcpus=2, seconds=seconds, seed=3, isa=isa)
    assert len(whole) > 1000
    span = round(seconds * 1e9)
    for window_ns in (span // 3 + 7, span // 41 + 1):
        _assert_windows_are_the_trace(generate_windows(profile, vcpus=2, seconds=seconds, seed=3, isa=isa,
                                                       window_ns=window_ns), whole)


@pytest.mark.parametrize("profile", ["mixed", "nested"])
def test_windows_shorter_than_an_exit_are_the_whole_trace(profile):
    whole = generate(profile, vcpus=1, seconds=0.001, seed=5)
    assert len(whole) > 100
    _assert_windows_are_the_trace(generate_windows(profile, vcpus=1, seconds=0.001, seed=5, window_ns=997), whole)


def test_adaptive_windows_aim_at_an_event_count_and_are_the_whole_trace():
    whole = generate("mixed", vcpus=2, seconds=0.05, seed=4, isa="vmx", template="linux-4.19")
    windows = list(generate_windows("mixed", vcpus=2, seconds=0.05, seed=4, isa="vmx", template="linux-4.19",
                                    window_events=500))
    _assert_windows_are_the_trace(windows, whole)
    sizes = [len(w) for w in windows[5:-1]]  # once the window length has adapted
    assert len(sizes) > 10 and 250 < sorted(sizes)[len(sizes) // 2] < 1000


@pytest.mark.parametrize("profile,isa", [("syscall-heavy", "svm"), ("mixed", "vmx"), ("nested", "svm")])
def test_bursts_cut_into_short_segments_give_the_same_trace(monkeypatch, profile, isa):
    """The scheduler looks LOOK iterations ahead for a burst's end and otherwise continues it in a
    new segment: with a look-ahead of 7 iterations every burst is cut many times, and the trace,
    whole or in windows, is the same as with the default."""
    args = {"vcpus": 2, "seconds": 0.01, "seed": 6, "isa": isa}
    default = generate(profile, **args)
    cuts = []
    real = schedule.Scheduler._plan_end

    def plan_end(self, th, cpu, now):
        real(self, th, cpu, now)
        cuts.append(th.end_kind == "cont")

    monkeypatch.setattr(schedule, "LOOK", 7)
    monkeypatch.setattr(schedule.Scheduler, "_plan_end", plan_end)
    short = generate(profile, **args)
    assert sum(cuts) > 50
    assert short.events.to_pylist() == default.events.to_pylist()
    assert table_rows(short) == table_rows(default)
    _assert_windows_are_the_trace(generate_windows(profile, window_ns=300_007, **args), default)


def test_window_arguments_are_checked_at_once():
    with pytest.raises(UsageError):
        generate_windows("idle", isa="arm")
    with pytest.raises(UsageError):
        generate_windows("idle", window_ns=0)
