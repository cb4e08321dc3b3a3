"""Episodes crossing dropped events: counted, flagged and warned about, never silently used.

A loss on CPU c lies between the last event recorded on c before the reader's marker and the
marker event itself. An episode is affected if it ran on c (its exit or entry CPU) during that
window; an exit that never sees its entry is affected by any later loss on its CPU (the loss may
have swallowed the entry).

vCPU thread 100; other tasks (555, 556, 777, 778) only switch among themselves.
  e1  CPU 0, 1000 -> 2000; CPU 0 lost events before 1500 (window 1000-1500)  -> crosses
  e2  CPU 0, 3000 -> 4000; CPU 1 lost events before 3500                      -> not (other CPU)
  e3  CPU 0, 5000 -> CPU 1 at 7000; CPU 1 lost events before 6000 (3500-6000) -> crosses (entry CPU)
  e4  CPU 0, 8000 -> 9000; CPU 0 lost events before 9500 (window 9000-9500)   -> not (after its entry)
  e5  CPU 0, 10000, no entry; CPU 0 lost events before 12000                   -> crosses
"""
from __future__ import annotations

from tracebuilder import build, kentry, kexit, msr, sched

from exitreplay.analysis import analyze

P = 100


def test_episodes_crossing_dropped_events():
    ev = [sched(500, 1, 555, 556, 1),
          kexit(1_000, 0, P, 0x400), msr(1_500, 0, P, 0x10, False), kentry(2_000, 0, P),
          kexit(3_000, 0, P, 0x400), sched(3_500, 1, 556, 555, 1), kentry(4_000, 0, P),
          kexit(5_000, 0, P, 0x400), sched(6_000, 1, 555, 556, 1), kentry(7_000, 1, P),
          kexit(8_000, 0, P, 0x400), kentry(9_000, 0, P), sched(9_500, 0, 777, 778, 1),
          kexit(10_000, 0, P, 0x400), sched(12_000, 0, 778, 777, 1)]
    tr = build(ev, drops=[(0, 1_500, 4), (1, 3_500, 2), (1, 6_000, 7), (0, 9_500, 1), (0, 12_000, None)])
    r = analyze(tr, policies=["kvm-today"])
    assert r.episodes["crosses_drop"].to_list() == [True, False, True, False, True]
    assert r.summary["pairing"]["episodes_crossing_dropped_events"] == 3
    assert any(w.startswith("3 episodes cross dropped events") for w in r.warnings)
    assert r.summary["dropped_events"] == {"0": None, "1": 9}


def test_no_drops_no_crossing():
    ev = [kexit(1_000, 0, P, 0x400), kentry(2_000, 0, P)]
    r = analyze(build(ev), policies=["kvm-today"])
    assert r.summary["pairing"]["episodes_crossing_dropped_events"] == 0
    assert not any("dropped" in w for w in r.warnings)
