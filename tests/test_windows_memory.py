"""iter_windows holds a window, not the file: peak RSS of a process reading every window (and
every table of each) of a generated trace does not grow when the trace is four times longer."""
from __future__ import annotations

import pytest
from memory_helpers import trace_pair, windows_peak

WINDOW = 100_000


@pytest.fixture(scope="module")
def traces(tmp_path_factory):
    return trace_pair(tmp_path_factory, "syscall-heavy", (2.0, 8.0), 4, WINDOW)


def peak(path, window: int = WINDOW) -> dict:
    return windows_peak(path, window)


def test_peak_rss_does_not_grow_with_the_trace(traces):
    (small, n_small), (big, n_big) = traces[2.0], traces[8.0]
    assert n_big > 3.5 * n_small > 3_000_000
    a, b = peak(small), peak(big)
    assert (a["events"], b["events"]) == (n_small, n_big)
    assert a["rows"] == n_small and b["rows"] == n_big  # every event is in one table
    # Four times the events: a whole-file read grows by ~200 bytes per event (600 MB here); the
    # windows may differ by allocator noise only.
    print(f"peak RSS {a['rss_kb'] // 1000} MB for {n_small:,} events, {b['rss_kb'] // 1000} MB for {n_big:,}")
    assert b["rss_kb"] < a["rss_kb"] * 1.25 + 40_000, (a, b)


# -- perf.data -------------------------------------------------------------------------------------
PERF_WINDOW = 20_000


@pytest.fixture(scope="module")
def perf_files(tmp_path_factory):
    """perf.data files of ~10^5 and ~10^6 events from exitreplay's writer, with rounds of 2^14
    events (perf record's are smaller still: one pass over the ring buffers)."""
    from exitreplay.synth import generate
    from exitreplay.synth import perfdata_writer as pw

    out, keep = {}, pw.ROUND_EVENTS
    pw.ROUND_EVENTS = 1 << 14
    try:
        for seconds in (0.25, 2.5):
            path = tmp_path_factory.mktemp("perfmem") / f"netio-{seconds}.perf.data"
            out[seconds] = (path, pw.write_perfdata(generate("netio", vcpus=4, seconds=seconds, seed=1, isa="svm"),
                                                    path))
    finally:
        pw.ROUND_EVENTS = keep
    return out


def test_perf_data_peak_rss_does_not_grow_with_the_file(perf_files):
    (small, n_small), (big, n_big) = perf_files[0.25], perf_files[2.5]
    assert n_big > 9 * n_small > 800_000
    a, b = peak(small, PERF_WINDOW), peak(big, PERF_WINDOW)
    assert (a["events"], b["events"]) == (n_small, n_big)
    assert a["rows"] == n_small and b["rows"] == n_big
    # Ten times the records: the whole-file index alone would add ~100 bytes a record (90 MB), and
    # the map's pages the file's size (~90 MB) again; the stream holds a window and two rounds.
    print(f"perf.data peak RSS {a['rss_kb'] // 1000} MB for {n_small:,} events, {b['rss_kb'] // 1000} MB for {n_big:,}")
    assert b["rss_kb"] < a["rss_kb"] * 1.25 + 40_000, (a, b)
