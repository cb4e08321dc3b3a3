"""The read-ahead thread of the streamed analysis: same windows, errors where they happened,
and nothing left running when the consumer stops early."""
from __future__ import annotations

import threading
from pathlib import Path

import pytest

from exitreplay.pipeline.prefetch import prefetched
from exitreplay.windows import iter_windows

SAMPLE = Path(__file__).resolve().parent.parent / "sample_traces" / "svm-mixed.v7zstd.dat"


def _threads() -> set[str]:
    return {t.name for t in threading.enumerate() if t.name == "exitreplay-prefetch"}


def test_windows_arrive_in_order_with_their_tables_decoded():
    direct = list(iter_windows(SAMPLE, window_events=700))
    ahead = list(prefetched(iter_windows(SAMPLE, window_events=700), ["kvm_exit", "kvm_entry"]))
    assert len(direct) == len(ahead) > 3
    for a, b in zip(direct, ahead):
        assert a.row_base == b.row_base
        assert a.events.equals(b.events)
        assert set(a.event_names) == set(b.event_names)
        for name in a.event_names:
            assert a.table(name).equals(b.table(name)), name
        # asked for: decoded on the reading thread, before the window was handed over
        assert {"kvm_exit", "kvm_entry"} & set(b.event_names) <= set(b._cache)


def test_an_error_in_the_reader_is_raised_after_the_windows_before_it():
    def source():
        yield from iter_windows(SAMPLE, window_events=700)
        raise ValueError("page 7 is torn")

    got = []
    with pytest.raises(ValueError, match="page 7 is torn"):
        for w in prefetched(source()):
            got.append(w.row_base)
    assert got == [w.row_base for w in iter_windows(SAMPLE, window_events=700)]
    assert not _threads()


def test_stopping_early_closes_the_reader_and_ends_the_thread():
    closed = threading.Event()

    def source():
        try:
            yield from iter_windows(SAMPLE, window_events=300)
        finally:
            closed.set()

    gen = prefetched(source(), depth=1)
    first = next(gen)
    assert first.row_base == 0
    gen.close()
    assert closed.is_set()
    assert not _threads()
