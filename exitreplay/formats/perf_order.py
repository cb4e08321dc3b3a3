"""The order in which `perf script` delivers a file's records (tools/perf/util/ordered-events.c).

perf queues every kernel record that has a timestamp and delivers it from the queue; a record
without one (time 0 or ~0, e.g. the COMM/MMAP records perf record synthesizes) is delivered at
once (`ordered_events__queue` returns -ETIME). The queue is kept sorted by timestamp, a new record
going after every queued one with the same timestamp (`queue_event`), so ties keep file order.
It is flushed:

- at each PERF_RECORD_FINISHED_ROUND, if the queue is not empty: every queued record with
  timestamp <= next_flush (nothing while next_flush is 0, as it is at the start), after which
  next_flush becomes the largest timestamp queued (`__ordered_events__flush`, OE_FLUSH__ROUND);
- at the end of the file: everything (OE_FLUSH__FINAL).

(OE_FLUSH__HALF happens only when the queue outgrows `ordered-events.max-alloc`, unlimited unless
configured.) So a record's place is (the flush that delivers it, timestamp, file order), and an
untimed record comes right after the flushes before it. The flushes are computed one round at a
time over sorted arrays: the Python loop runs per round, not per record.
"""
from __future__ import annotations

import numpy as np

UNTIMED = (0, (1 << 64) - 1)


def delivery_order(ts: np.ndarray, rounds_before: np.ndarray, n_rounds: int) -> np.ndarray:
    """Permutation of records (given in file order) into perf's delivery order.

    ts: uint64 timestamps (0 or ~0 for records without one); rounds_before: FINISHED_ROUND records
    seen before each record in file order (non-decreasing); n_rounds: FINISHED_ROUNDs in the file.
    """
    n = ts.size
    timed = (ts != UNTIMED[0]) & (ts != np.uint64(UNTIMED[1]))
    flush = np.full(n, n_rounds + 1, dtype=np.int64)  # the final flush
    # first record of each round (records are in file order, rounds_before non-decreasing)
    bounds = np.searchsorted(rounds_before, np.arange(n_rounds + 2), side="left")
    q_ts = np.empty(0, dtype=np.uint64)
    q_idx = np.empty(0, dtype=np.int64)
    next_flush = 0
    for k in range(1, n_rounds + 1):
        lo, hi = bounds[k - 1], bounds[k]
        new = lo + np.flatnonzero(timed[lo:hi])
        if new.size:
            q_ts = np.concatenate([q_ts, ts[new]])
            q_idx = np.concatenate([q_idx, new])
            o = np.argsort(q_ts, kind="stable")  # queued first, so ties keep file order
            q_ts, q_idx = q_ts[o], q_idx[o]
        if not q_ts.size:
            continue  # an empty queue: no flush, next_flush unchanged
        top = int(q_ts[-1])
        if next_flush:
            cut = int(np.searchsorted(q_ts, np.uint64(next_flush), side="right"))
            flush[q_idx[:cut]] = k
            q_ts, q_idx = q_ts[cut:], q_idx[cut:]
        next_flush = top
    # Untimed records arrive between flushes: after flush rounds_before, before the next one.
    flush[~timed] = rounds_before[~timed] + 1
    # Within a flush, records delivered at arrival come first: with the timestamp key 0 (no timed
    # record has 0) they sort first. Sorts are stable, so ties keep file order.
    key_ts = np.where(timed, ts, np.uint64(0))
    if n == 0 or flush.min() == flush.max():
        return np.argsort(key_ts, kind="stable")
    return np.lexsort((key_ts, flush))


def take_rows(a: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """a[idx] for a structured array of 8-byte fields, as rows of words: NumPy copies whole rows
    at once that way, where a structured take copies field by field."""
    words = np.ascontiguousarray(a).view(np.uint64).reshape(a.size, a.dtype.itemsize // 8)
    return words[idx].reshape(-1).view(a.dtype)


class RoundQueue:
    """`delivery_order`'s queue fed a round at a time: records go in (a structured array with a
    uint64 field "ts", in file order), come out in delivery order as each FINISHED_ROUND flushes
    them. It holds the records read but not delivered: about two rounds (all of a file without
    FINISHED_ROUND records, which is one round)."""

    def __init__(self, dtype: np.dtype):
        self.queue = np.empty(0, dtype)  # queued timed records, by (ts, file order)
        self.arrived: list[np.ndarray] = []  # records of the round being read
        self.next_flush = 0

    def feed(self, recs: np.ndarray, rounds_before: np.ndarray, n_rounds: int) -> list[np.ndarray]:
        """Records (file order) and the FINISHED_ROUNDs before each within this run of the file
        (n_rounds of them end in it); returns what those rounds deliver, in order."""
        out: list[np.ndarray] = []
        bounds = np.searchsorted(rounds_before, np.arange(n_rounds + 2), side="left").tolist()
        for k in range(n_rounds):
            self.arrived.append(recs[bounds[k]: bounds[k + 1]])
            self._round(out)
        self.arrived.append(recs[bounds[n_rounds]:])
        return out

    def final(self) -> list[np.ndarray]:
        """The final flush: the last round's untimed records, then everything queued by time."""
        out: list[np.ndarray] = []
        new = self._take_arrived(out)
        q = np.concatenate([self.queue, new]) if new.size else self.queue
        out.append(take_rows(q, np.argsort(q["ts"], kind="stable")))
        self.queue = q[:0]
        return out

    def _take_arrived(self, out: list[np.ndarray]) -> np.ndarray:
        """The round's records: untimed ones delivered on arrival (into out), timed ones returned."""
        parts = [a for a in self.arrived if a.size]
        self.arrived = []
        if not parts:
            return self.queue[:0]
        r = parts[0] if len(parts) == 1 else np.concatenate(parts)
        ts = r["ts"]
        timed = (ts != UNTIMED[0]) & (ts != np.uint64(UNTIMED[1]))
        if not timed.all():
            out.append(take_rows(r, np.flatnonzero(~timed)))
            r = take_rows(r, np.flatnonzero(timed))
        return r

    def _round(self, out: list[np.ndarray]) -> None:
        new = self._take_arrived(out)
        if new.size:
            q = np.concatenate([self.queue, new])
            self.queue = take_rows(q, np.argsort(q["ts"], kind="stable"))  # queued first: ties keep file order
        if not self.queue.size:
            return  # an empty queue: no flush, next_flush unchanged
        top = int(self.queue["ts"][-1])
        if self.next_flush:
            cut = int(np.searchsorted(self.queue["ts"], np.uint64(self.next_flush), side="right"))
            if cut:
                out.append(self.queue[:cut])
                self.queue = self.queue[cut:]
        self.next_flush = top
