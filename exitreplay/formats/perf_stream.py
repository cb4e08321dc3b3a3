"""perf.data read as windows of events in `perf script`'s delivery order, in memory bounded by
the window and perf's ordered-events queue, not by the file.

Two passes over the data section, each a chunk of records at a time (perf_file.PerfFile.chunks):

1. the records that describe the file (pipe mode's attrs, features and tracing data, ID_INDEX,
   COMPRESSED) and the LOST records, whose presence decides what perf record's closing totals
   mean (perfdata._dropped): a few records, kept;
2. every kernel record's values (perfdata.record_values) into perf's queue a round at a time
   (perf_order.RoundQueue); what each FINISHED_ROUND flushes is delivered: task names follow
   COMM/FORK, losses wait for their CPU's next event, the events fill windows of exactly
   `window_events`, rows numbered across the file.

The map's pages are released behind the walk, so the resident file is a chunk or two, not the
file. A compressed file (PERF_RECORD_COMPRESSED) is decompressed whole and read whole, as before
(perfdata.whole_file_windows): its records point into the decompressed stream.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from ..trace import Dropped, Trace
from . import perf_records as pr
from .perf_file import PerfFile
from .perf_order import RoundQueue, take_rows
from .perf_tracing import TracingData
from .perfdata import (
    IDLE_COMM,
    NO_CPU_WARNING,
    attr_index,
    comm_changes,
    event_columns,
    event_mask,
    loss_values,
    lost_totals,
    meta,
    record_values,
    thread_codes,
    thread_codes_at,
    totals_warning,
    value_warnings,
    whole_file_windows,
)
from .tracedat import Decoder, _assemble, emit_warnings, lost_warning, thread_pool, unknown_warning

# One queued record: its place in the file and the values the delivery needs (88 bytes).
REC = np.dtype([("ts", np.uint64), ("off", np.int64), ("size", np.int64), ("rtype", np.int64),
                ("attr", np.int64), ("cpu", np.int64), ("pid", np.int64), ("tid", np.int64),
                ("raw_off", np.int64), ("raw_size", np.int64), ("id", np.uint64)])
_VALUES = ("attr", "ts", "cpu", "pid", "tid", "raw_off", "raw_size", "id")
_EVENT = ("ts", "cpu", "raw_off", "raw_size", "attr", "tid")


def windows(path: str, window_events: int, only: set[str] | None = None,
            progress: Callable[[int, int], None] | None = None) -> Iterator[Trace]:
    pf = PerfFile(path, index=False)
    if pf.compressed:
        pf.close()
        yield from whole_file_windows(path, window_events, only, progress)
        return
    yield from _Stream(pf, window_events, only).windows(progress)


class _Stream:
    """The delivery side of perf's session: records in delivery order -> events, names, losses."""

    def __init__(self, pf: PerfFile, window_events: int, only: set[str] | None):
        self.pf, self.target, self.only = pf, window_events, only
        lr = pf.lost_records
        # whether the file has LOST records (their attrs known): checks the attrs too, as the whole read does
        self.has_lost = bool((attr_index(pf, lr["off"], lr["size"], lr["rtype"]) >= 0).any())
        self.td = TracingData(pf.tracing_blob, pf.path)
        self.dec = Decoder(self.td, self.td.buffers[0])
        self.dec.comm_names = [IDLE_COMM]
        # the tracing data's and decoder's warnings as the whole read has them before its tables
        self.prep = (list(self.td.warnings), list(self.dec.warnings))
        self.counts = {"bad_ids": 0, "short": 0, "bad_raw": 0}
        self.no_cpu = False
        self.names: dict[str, int] = {IDLE_COMM: 0}
        self.cur: dict[int, int] = {0: 0}
        self.rows = self.seq = self.other = 0
        self.per_cpu: dict[int, int] = {}
        self.totals: dict[str, int] = {}
        self.lost_sum, self.any_lost = 0, False
        self.pending = {"cpu": np.empty(0, np.int64), "seq": np.empty(0, np.int64),
                        "count": np.empty(0, np.int64), "ts": np.empty(0, np.int64)}
        self.drops: list[tuple[int, Dropped]] = []  # (delivery position, loss), rows resolved
        self.seen_drops: list[Dropped] = []  # those of the windows given out
        self.buf: list[dict] = []
        self.buf_n = 0
        self.base = 0  # row of the first buffered event
        self.unknown: set[int] = set()
        self.touched = 1 << 62  # the lowest file offset read since the map's pages were last released

    # -- the two loops ----------------------------------------------------------------------------
    def windows(self, progress) -> Iterator[Trace]:
        pf = self.pf
        queue = RoundQueue(REC)
        start = pf.data_range[0]
        total = max(pf.data_bytes, 1)
        for chunk in pf.chunks():
            recs, rounds_before, n_rounds = self._records(chunk)
            self._deliver(queue.feed(recs, rounds_before, n_rounds))
            yield from self._full_windows()
            # The pages read since the last release: this chunk's, and those of the records
            # delivered and the windows' events, read again (a map's pages stay resident).
            end = int(chunk["off"][-1])
            pf.release(min(self.touched, int(chunk["off"][0])), end)
            self.touched = end
            if progress:
                progress(int(chunk["off"][-1]) - start, total)
        self._deliver(queue.final())
        yield from self._full_windows()
        yield self._last_window()
        if progress:
            progress(pf.data_bytes, total)

    def _records(self, chunk: dict) -> tuple[np.ndarray, np.ndarray, int]:
        """A chunk's kernel records of known attrs (file order), FINISHED_ROUNDs before each, and
        how many FINISHED_ROUNDs the chunk holds."""
        t = chunk["rtype"]
        kern = np.flatnonzero(t < pr.USER_TYPE_START)
        rounds = np.cumsum(t == pr.REC_FINISHED_ROUND)
        off, size, rtype = chunk["off"][kern], chunk["size"][kern], t[kern]
        vals, counts = record_values(self.pf, off, size, rtype)
        for k, v in counts.items():
            self.counts[k] += v
        keep = np.flatnonzero(vals["attr"] >= 0)
        recs = np.empty(keep.size, REC)
        recs["off"], recs["size"], recs["rtype"] = off[keep], size[keep], rtype[keep]
        for k in _VALUES:
            recs[k] = vals[k][keep]
        return recs, rounds[kern][keep], int(rounds[-1]) if rounds.size else 0

    # -- delivery -----------------------------------------------------------------------------------
    def _deliver(self, parts: list[np.ndarray]) -> None:
        parts = [p for p in parts if p.size]
        if not parts:
            return
        d = parts[0] if len(parts) == 1 else np.concatenate(parts)
        self.touched = min(self.touched, int(d["off"].min()))
        pf, dec, td = self.pf, self.dec, self.td
        rtype = d["rtype"]
        ev_at = np.flatnonzero(event_mask(pf, rtype, d["attr"]))
        ev = take_rows(d, ev_at)
        self.other += int((rtype == pr.REC_SAMPLE).sum()) - ev_at.size
        nt, nd = len(td.warnings), len(dec.warnings)
        cols, no_cpu = event_columns(pf, dec, {k: ev[k] for k in _EVENT})
        for mine, new in zip(self.prep, (td.warnings[nt:], dec.warnings[nd:])):
            mine += [w for w in new if w not in mine]
        self.no_cpu |= no_cpu
        ev_tid = cols["pid"].astype(np.int64)
        before = thread_codes_at(self.cur, ev_tid)
        ch = np.flatnonzero(np.isin(rtype, (pr.REC_COMM, pr.REC_FORK)))
        if ch.size:
            c = take_rows(d, ch)
            ch_tid, ch_code = comm_changes(pf, c["off"], c["size"], c["rtype"], self.names, self.cur)
            dec.comm_names = list(self.names)
            cols["comm"] = thread_codes(ch_tid, ch, ch_code, ev_tid, ev_at, before)
        else:
            cols["comm"] = before
        self._losses(d, cols, ev_at)
        if ev_at.size:
            cpus, n = np.unique(cols["cpu"], return_counts=True)
            for c, k in zip(cpus.tolist(), n.tolist()):
                self.per_cpu[c] = self.per_cpu.get(c, 0) + k
            self.buf.append(cols)
            self.buf_n += ev_at.size
        self.rows += ev_at.size
        self.seq += d.size

    def _losses(self, d: np.ndarray, cols: dict, ev_at: np.ndarray) -> None:
        """The batch's losses, and those still waiting, to the next event of their CPU in it."""
        at = np.flatnonzero(np.isin(d["rtype"], (pr.REC_LOST, pr.REC_LOST_SAMPLES)))
        new = {k: np.empty(0, np.int64) for k in self.pending}
        pos = np.empty(0, np.int64)
        if at.size:
            r = take_rows(d, at)
            lv = loss_values(self.pf, r["off"], r["size"], r["rtype"], r["ts"], r["cpu"], r["id"])
            if lv["total"].any():
                lost_totals(self.pf, r["attr"][lv["total"]], lv["count"][lv["total"]], self.totals)
            if lv["is_lost"].any():
                self.any_lost = True
                self.lost_sum += int(lv["count"][lv["is_lost"]].sum())
            keep = ~lv["total"] if self.has_lost else np.ones(at.size, bool)
            new = {"cpu": lv["cpu"][keep], "seq": self.seq + at[keep], "count": lv["count"][keep],
                   "ts": lv["ts"][keep]}
            pos = at[keep]
        if not (new["cpu"].size or self.pending["cpu"].size):
            return
        loss = {k: np.concatenate([self.pending[k], new[k]]) for k in self.pending}
        pos = np.concatenate([np.full(self.pending["cpu"].size, -1, np.int64), pos])
        row = np.full(pos.size, -1, np.int64)  # index of the event among the batch's
        ev_cpu = cols["cpu"]
        for c in np.unique(loss["cpu"]).tolist():
            mine, evs = np.flatnonzero(loss["cpu"] == c), np.flatnonzero(ev_cpu == c)
            if evs.size:
                k = np.searchsorted(ev_at[evs], pos[mine], side="right")
                row[mine] = np.where(k < evs.size, evs[np.minimum(k, evs.size - 1)], -1)
        hit = row >= 0
        ts = cols["ts"][row[hit]]
        self.drops += [(s, Dropped(int(c), int(t), int(n), int(w)))
                       for s, c, t, n, w in zip(loss["seq"][hit].tolist(), loss["cpu"][hit].tolist(), ts.tolist(),
                                                loss["count"][hit].tolist(), (self.rows + row[hit]).tolist())]
        self.pending = {k: v[~hit] for k, v in loss.items()}

    # -- windows ------------------------------------------------------------------------------------
    def _full_windows(self) -> Iterator[Trace]:
        """Windows of `target` events while more events follow them (the last waits for the end)."""
        if self.buf_n <= self.target:
            return
        cols = _concat(self.buf)
        lo, n = 0, self.buf_n
        while n - lo > self.target:
            yield self._window({k: None if v is None else v[lo: lo + self.target] for k, v in cols.items()}, None)
            lo += self.target
        self.buf = [{k: None if v is None else v[lo:] for k, v in cols.items()}]
        self.buf_n = n - lo

    def _last_window(self) -> Trace:
        cols = _concat(self.buf) if self.buf else _empty_cols()
        self.buf, self.buf_n = [], 0
        return self._window(cols, True)

    def _window(self, cols: dict, last: bool | None) -> Trace:
        n = cols["ts"].size
        lo = self.base
        if n:
            self.touched = min(self.touched, int(cols["off"].min()))
        part = dict(cols)
        part["type_counts"] = np.bincount(part["type_id"], minlength=1)
        with thread_pool(size=n) as pool:
            events, tables, counts = _assemble(self.dec, part, self.pf.data, pool, row_base=lo, only=self.only,
                                               unknown_out=self.unknown)
        self.base += n
        if last:
            drops = sorted(self.drops + [(s, Dropped(int(c), int(t), int(k), None)) for s, c, t, k in zip(
                *[self.pending[f].tolist() for f in ("seq", "cpu", "ts", "count")])], key=lambda x: x[0])
            self.drops = []
            warn = self._final_warnings([d for _, d in drops])
        else:
            drops = sorted((x for x in self.drops if x[1].row < lo + n), key=lambda x: x[0])
            self.drops = [x for x in self.drops if x[1].row >= lo + n]
            self.seen_drops += [d for _, d in drops]
            warn = self._warnings()
        m = meta(self.pf, self.td, [d for _, d in drops], warn, counts, dict(self.per_cpu), self.other)
        m.first_ts = m.last_ts = None
        return Trace(events, tables, m, row_base=lo)

    def _warnings(self) -> list[str]:
        """As perfdata._Prepared's list: the file's, the tracing data's and decoder's, the records'."""
        warn = self.pf.warnings + self.prep[0] + self.prep[1] + value_warnings(self.counts)
        if self.no_cpu:
            warn.append(NO_CPU_WARNING)
        if self.totals:
            tw = totals_warning(self.totals, self.lost_sum if self.any_lost else None)
            warn += [tw] if tw else []
        return warn

    def _final_warnings(self, drops: list[Dropped]) -> list[str]:
        warn = self._warnings()
        lw = lost_warning(self.seen_drops + drops)
        if lw:
            warn.append(lw)
        if self.unknown:
            self.dec.warnings.append(unknown_warning(list(self.unknown)))
        warn += [w for w in self.td.warnings + self.dec.warnings if w not in warn]
        emit_warnings(self.pf.path, warn)
        return warn


def _concat(parts: list[dict]) -> dict:
    if len(parts) == 1:
        return parts[0]
    out = {k: np.concatenate([p[k] for p in parts]) for k in parts[0] if k != "flags_valid"}
    fv = [p["flags_valid"] for p in parts]
    out["flags_valid"] = None if all(v is None for v in fv) else np.concatenate(
        [np.ones(p["ts"].size, bool) if v is None else v for p, v in zip(parts, fv)])
    return out


def _empty_cols() -> dict:
    return {"ts": np.empty(0, np.int64), "cpu": np.empty(0, np.int32), "off": np.empty(0, np.int64),
            "size": np.empty(0, np.int32), "type_id": np.empty(0, np.uint16), "pid": np.empty(0, np.int32),
            "flags": np.empty(0, np.uint8), "pc": np.empty(0, np.uint8), "comm": np.empty(0, np.int32),
            "flags_valid": None}
