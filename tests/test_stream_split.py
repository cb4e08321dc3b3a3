"""One trace as consecutive time ranges, each folded by its own StreamAnalysis (own_ts) that
reads from before its range (the warm-up) until it is done: the merged snapshots give the Report
of the whole trace."""
from __future__ import annotations

from pathlib import Path

import pytest
from stream_helpers import assert_same_report

from exitreplay.analysis import analyze
from exitreplay.pipeline import StreamAnalysis, finish, merge
from exitreplay.pipeline.view import slices
from exitreplay.reader import read_trace

SAMPLES = Path(__file__).resolve().parents[1] / "sample_traces"
TS_MIN, TS_MAX = -(2**63), 2**63 - 1


def split(trace, parts: int, window: int):
    ts = trace.events.column("ts").to_numpy()
    cuts = [TS_MIN, *[int(ts[len(ts) * i // parts]) for i in range(1, parts)], TS_MAX]
    snaps, read = [], []
    for lo, hi in zip(cuts, cuts[1:]):
        sa = StreamAnalysis(own_ts=(lo, hi))
        n = 0
        for w in slices(trace, window):
            sa.feed(w)
            n += len(w)
            if sa.done:
                break
        snaps.append(sa.partial())
        read.append(n)
    return finish(merge(snaps)), read


@pytest.mark.parametrize("name", ["svm-mixed.v7zstd.dat", "vmx-mixed.v6.dat", "svm-nested.v7.dat",
                                  "svm-idle.v7.dat", "vmx-syscall-heavy.v7zstd.dat"])
@pytest.mark.parametrize("parts", [2, 5])
def test_ranges_merge_into_the_whole_report(name, parts):
    trace = read_trace(SAMPLES / name)
    got, read = split(trace, parts, 700)
    assert_same_report(analyze(trace), got, f"{name} in {parts}")
    assert read[-1] == len(trace) and min(read[:-1]) < len(trace)  # an early range stops when done
