"""What a streamed view hands to the next one (build_episodes(..., carry=)).

A view is analysed whole, but it *owns* only the exits before its cut (the earliest exit still
open at its end) and the row-attributed events before the cut; the next view starts at the cut
and re-reads the rest. What the next view cannot see again is carried:
- `user_return`: each CPU's last state-setting mark before the cut and the last put after it
  (userreturn.infer's `initial`), by pid, their episode as a carried reference;
- `future`: the puts and loads of owned episodes that lie at or after the cut (their entries);
- `consumed`: the kvm_entry rows of owned episodes at or after the cut (not first entries);
- `run_marker`: each known thread's last KVM_RUN marker before the cut (userreturn.run_state);
- `threads`: the vCPU threads seen before the cut (pid, first_row, comm, vid), for vCPU ids and VMs.
A carried episode reference is -(exit_row + 2): a return to user mode fired later that the
kernel attributes to it is reported in Episodes.late (exit_row, count).
"""
from __future__ import annotations

import dataclasses

import numpy as np
import polars as pl

MARKS = {"cpu": pl.Int32, "row": pl.Int64, "kind": pl.Int8, "pid": pl.Int64, "ep": pl.Int64, "first": pl.Int64}
THREADS = {"pid": pl.Int64, "first_row": pl.Int64, "comm": pl.Utf8, "vid": pl.Int64}


def ref(exit_row: np.ndarray) -> np.ndarray:
    return -(np.asarray(exit_row, np.int64) + 2)


def deref(ep: np.ndarray) -> np.ndarray:
    return -np.asarray(ep, np.int64) - 2


@dataclasses.dataclass
class Carry:
    start: int  # the row the next view starts at (the cut)
    user_return: pl.DataFrame = dataclasses.field(default_factory=lambda: pl.DataFrame(schema=MARKS))
    future: pl.DataFrame = dataclasses.field(default_factory=lambda: pl.DataFrame(schema=MARKS))
    consumed: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, np.int64))
    run_pids: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, np.int64))
    run_kinds: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, np.int8))
    threads: pl.DataFrame = dataclasses.field(default_factory=lambda: pl.DataFrame(schema=THREADS))
    # Threads whose first entry or first exit a view has read (not first again), and of the
    # others, those with a KVM_RUN start (kvm_fpu load) or a sched-in before the cut.
    started: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, np.int64))
    pre_fpu: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, np.int64))
    pre_sched_in: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, np.int64))
    seen: frozenset = frozenset()  # event types earlier views had

    def referenced(self) -> np.ndarray:
        """Exit rows of the carried episodes the marks still refer to."""
        ep = np.concatenate([self.user_return["ep"].to_numpy(), self.future["ep"].to_numpy()])
        return np.unique(deref(ep[ep <= -2]))
