"""perf.data (`perf record`, `perf kvm stat record`; file or pipe mode, zstd or not) -> `Trace`.

1. perf_file.PerfFile: header, attrs, features, every record in perf's reading order.
2. Each kernel record is matched to its attr by id (perf_samples.record_ids), then its values are
   gathered per attr: samples' time, pid/tid, CPU and RAW payload; other records' sample_id.
3. perf_order.delivery_order puts them in the order `perf script` delivers them.
4. Task names follow COMM and FORK records in that order, as perf's thread table does; LOST and
   LOST_SAMPLES become `meta.dropped` on their CPU.
5. Tracepoint samples become the events; their RAW payloads are the kernel's trace records, so
   the per-event tables are decoded by the trace.dat reader's own code from the tracing data's
   event formats.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import numpy as np

from ..errors import TraceError
from ..trace import Dropped, Trace, TraceMeta
from . import perf_header as ph
from . import perf_records as pr
from .eventformat import gather_fixed
from .perf_file import PerfFile
from .perf_order import delivery_order
from .perf_samples import id_pos, is_pos, record_ids, sample_values, trailer_values, uint_field
from .perf_tracing import PERF_CLOCK, TracingData
from .tracedat import Decoder, _assemble, emit_warnings, lost_warning, thread_pool, unknown_warning

IDLE_COMM = "swapper"  # perf's name for tid 0 (util/session.c, perf_session__register_idle_thread)


def read(path: str | os.PathLike, progress: Callable[[int, int], None] | None = None) -> Trace:
    st = _Prepared(os.fspath(path), progress)
    with thread_pool(size=st.ev["cols"]["ts"].size) as pool:
        events, tables, counts = _assemble(st.dec, st.ev["cols"], st.pf.data, pool)
    warn = st.finish_warnings()
    if progress:
        progress(st.pf.data_bytes, max(st.pf.data_bytes, 1))
    return Trace(events, tables, _meta(st.pf, st.td, st.dropped, warn, counts, st.ev))


def windows(path: str | os.PathLike, window_events: int, only: set[str] | None = None,
            progress: Callable[[int, int], None] | None = None) -> Iterator[Trace]:
    """The events in windows of `window_events`, in delivery order, each decoded on its own (rows:
    the file's), read a chunk of records at a time (perf_stream.py): memory is bounded by the
    window and perf's queue (the records read but not yet flushed by a FINISHED_ROUND: about two
    rounds; a file without FINISHED_ROUND records is one round, so its values are all held, ~90
    bytes a record). A compressed file is read whole (`whole_file_windows`)."""
    from .perf_stream import windows as stream

    return stream(os.fspath(path), window_events, only, progress)


def whole_file_windows(path: str | os.PathLike, window_events: int, only: set[str] | None = None,
                       progress: Callable[[int, int], None] | None = None) -> Iterator[Trace]:
    """`windows` from the whole file's records index, times and delivery order (~100 bytes a
    record); the Arrow events and the per-event tables exist for one window at a time."""
    st = _Prepared(os.fspath(path), progress)
    cols, n = st.ev["cols"], st.ev["cols"]["ts"].size
    rows = np.array([n if d.row is None else d.row for d in st.dropped], np.int64)
    bounds = list(range(0, n, window_events)) + [n] if n else [0, 0]
    unknown: set[int] = set()
    for j in range(len(bounds) - 1):
        lo, hi = bounds[j], bounds[j + 1]
        last = j == len(bounds) - 2
        part = {k: v[lo:hi] for k, v in cols.items() if k not in ("type_counts", "flags_valid")}
        part["type_counts"] = np.bincount(part["type_id"], minlength=1)
        if cols.get("flags_valid") is not None:
            part["flags_valid"] = cols["flags_valid"][lo:hi]
        with thread_pool(size=hi - lo) as pool:
            events, tables, counts = _assemble(st.dec, part, st.pf.data, pool, row_base=lo, only=only,
                                               unknown_out=unknown)
        if last and unknown:
            st.dec.warnings.append(unknown_warning(list(unknown)))
        warn = st.finish_warnings() if last else list(st.warn)
        keep = (rows >= lo) & ((rows < hi) | last)
        dropped = [d for d, k in zip(st.dropped, keep.tolist()) if k]
        meta = _meta(st.pf, st.td, dropped, warn, counts, st.ev)
        meta.first_ts = meta.last_ts = None
        yield Trace(events, tables, meta, row_base=lo)
    if progress:
        progress(st.pf.data_bytes, max(st.pf.data_bytes, 1))


class _Prepared:
    """A perf.data read up to its events columns: records, delivery order, task names, losses."""

    def __init__(self, path: str, progress):
        self.pf = pf = PerfFile(path)
        if progress:
            progress(pf.data_bytes // 2, max(pf.data_bytes, 1))
        self.rec = _record_values(pf)
        order = _delivery(pf, self.rec)
        self.td = TracingData(pf.tracing_blob, path)
        self.dec = Decoder(self.td, self.td.buffers[0])
        self.ev = _events(pf, self.rec, order, self.dec)
        self.dropped = _dropped(pf, self.rec, order, self.ev)  # first: it may add a warning
        self.warn = pf.warnings + self.td.warnings + self.dec.warnings + self.rec["warnings"]
        lw = lost_warning(self.dropped)
        if lw:
            self.warn.append(lw)

    def finish_warnings(self) -> list[str]:
        """Every warning, once the events are assembled (formats parse as they are met); emitted."""
        warn = list(self.warn)
        warn += [w for w in self.td.warnings + self.dec.warnings if w not in warn]
        emit_warnings(self.pf.path, warn)
        return warn


# -- 2. values of every kernel record ----------------------------------------------------------------

def attr_index(pf: PerfFile, off: np.ndarray, size: np.ndarray, rtype: np.ndarray) -> np.ndarray:
    """Attr of each kernel record (-1: unknown id), by perf's rule (evlist.c evlist__event2evsel)."""
    attrs = pf.attrs
    n = off.size
    if not attrs:
        raise TraceError(pf.path, "perf.data has no event attributes (no attr section or HEADER_ATTR records)")
    if len(attrs) == 1:
        return np.zeros(n, np.int64)
    first = attrs[0]
    idp, isp = id_pos(first.sample_type), is_pos(first.sample_type)
    if any(id_pos(a.sample_type) != idp or is_pos(a.sample_type) != isp or a.sample_id_all != first.sample_id_all
           for a in attrs) or idp < 0:
        raise TraceError(pf.path, "perf.data events do not share an id position (perf: non matching sample_type)")
    is_sample = rtype == pr.REC_SAMPLE
    ids, have = record_ids(pf.data, off, size, is_sample, idp, isp if first.sample_id_all else -1, pf.endian)
    all_ids = np.array([i for a in attrs for i in a.ids], dtype=np.uint64)
    owner = np.array([k for k, a in enumerate(attrs) for _ in a.ids], dtype=np.int64)
    o = np.argsort(all_ids)
    all_ids, owner = all_ids[o], owner[o]
    pos = np.minimum(np.searchsorted(all_ids, ids), max(all_ids.size - 1, 0))
    found = (all_ids[pos] == ids) if all_ids.size else np.zeros(n, bool)
    idx = np.where(found, owner[pos] if all_ids.size else 0, -1)
    idx[~is_sample & (~have | (ids == 0))] = 0  # no sample_id, or synthesized (id 0): the first attr
    idx[is_sample & (ids == 0)] = 0
    return idx


def _record_values(pf: PerfFile) -> dict:
    """Per kernel record (type < 64): attr, timestamp, CPU, pid, tid and RAW payload span."""
    kernel = np.flatnonzero(pf.rtype < pr.USER_TYPE_START)
    out, counts = record_values(pf, pf.off[kernel], pf.size[kernel], pf.rtype[kernel])
    out["kernel"] = kernel
    out["warnings"] = value_warnings(counts)
    return out


def value_warnings(counts: dict[str, int]) -> list[str]:
    """The warnings of `record_values`' counts (added up over a file's chunks)."""
    warn = []
    if counts["bad_ids"]:
        warn.append(f"{counts['bad_ids']} records carry event ids no attr declares: skipped")
    if counts["short"]:
        warn.append(f"{counts['short']} records too short for their attr's fields: their values are unknown")
    if counts["bad_raw"]:
        warn.append(f"{counts['bad_raw']} samples whose RAW payload does not fit the record: their fields are null")
    return warn


def record_values(pf: PerfFile, off: np.ndarray, size: np.ndarray, rtype: np.ndarray) -> tuple[dict, dict]:
    """Attr, timestamp, CPU, pid, tid, id and RAW payload span of kernel records (any run of them),
    and the counts of records with unknown ids, too short, or with a RAW payload that does not fit."""
    aidx = attr_index(pf, off, size, rtype)
    n = off.size
    out = {"attr": aidx, "ts": np.zeros(n, np.uint64), "cpu": np.full(n, -1, np.int64),
           "pid": np.full(n, -1, np.int64), "tid": np.full(n, -1, np.int64), "raw_off": np.zeros(n, np.int64),
           "raw_size": np.zeros(n, np.int64), "id": np.zeros(n, np.uint64)}
    is_sample = rtype == pr.REC_SAMPLE
    bad_raw = short = 0
    group = np.where(aidx >= 0, aidx * 2 + is_sample, -1).astype(np.int16 if len(pf.attrs) < 1 << 14 else np.int32)
    order = np.argsort(group, kind="stable")  # a radix sort on small ints
    bounds = np.searchsorted(group[order], np.arange(2 * len(pf.attrs) + 1))
    for g in np.flatnonzero(np.diff(bounds)).tolist():  # each attr's samples, then its other records
        k, sample = divmod(g, 2)
        attr, sel = pf.attrs[k], order[bounds[g]: bounds[g + 1]]
        if not sample and not attr.sample_id_all:
            continue
        fn = sample_values if sample else trailer_values
        vals, ok = fn(attr, pf.data, off[sel], size[sel], pf.endian)
        short += int((~ok).sum())
        good = sel if ok.all() else sel[ok]
        for key, dst in (("cpu", "cpu"), ("pid", "pid"), ("tid", "tid"), ("raw_off", "raw_off"),
                         ("raw_size", "raw_size"), ("id", "id"), ("time", "ts")):
            if key in vals:
                out[dst][good] = vals[key] if good is sel else vals[key][ok]
        bad_raw += int(vals["raw_bad"].sum()) if "raw_bad" in vals else 0
    return out, {"bad_ids": int((aidx < 0).sum()), "short": short, "bad_raw": bad_raw}


# -- 3. order ---------------------------------------------------------------------------------------

def _delivery(pf: PerfFile, rec: dict) -> np.ndarray:
    """Positions (into rec's arrays) of the kernel records in perf script's delivery order."""
    rounds = np.cumsum(pf.rtype == pr.REC_FINISHED_ROUND)
    n_rounds = int(rounds[-1]) if rounds.size else 0
    keep = rec["attr"] >= 0
    pos = np.flatnonzero(keep)
    order = delivery_order(rec["ts"][pos], rounds[rec["kernel"][pos]], n_rounds)
    return pos[order]


# -- 4./5. events, task names, losses ---------------------------------------------------------------

def _events(pf: PerfFile, rec: dict, order: np.ndarray, dec: Decoder) -> dict:
    """The events columns (tracepoint samples in delivery order) for tracedat._assemble."""
    kernel = rec["kernel"]
    is_ev = event_mask(pf, pf.rtype[kernel[order]], rec["attr"][order])
    rows = order[is_ev]
    cols, no_cpu = event_columns(pf, dec, {k: rec[k][rows] for k in ("ts", "cpu", "raw_off", "raw_size", "attr", "tid")})
    if no_cpu:
        rec["warnings"].append(NO_CPU_WARNING)
    cols["type_counts"] = np.bincount(cols["type_id"], minlength=1 << 16)
    position = np.full(kernel.size, -1, np.int64)
    position[order] = np.arange(order.size)
    rec["position"] = position
    sel = order[np.isin(pf.rtype[kernel[order]], (pr.REC_COMM, pr.REC_FORK))]
    names: dict[str, int] = {IDLE_COMM: 0}
    cur: dict[int, int] = {0: 0}
    r = kernel[sel]
    ch_tid, ch_code = comm_changes(pf, pf.off[r], pf.size[r], pf.rtype[r], names, cur)
    dec.comm_names = list(names)
    ev_tid = cols["pid"].astype(np.int64)
    cols["comm"] = thread_codes(ch_tid, position[sel], ch_code, ev_tid, position[rows], thread_codes_at({0: 0}, ev_tid))
    other = int((pf.rtype[kernel[order]] == pr.REC_SAMPLE).sum()) - rows.size
    return {"cols": cols, "rows": rows, "position": position, "other_samples": other}


NO_CPU_WARNING = "samples without PERF_SAMPLE_CPU: CPU taken from the ID_INDEX record, else 0"


def event_mask(pf: PerfFile, rtype: np.ndarray, attr: np.ndarray) -> np.ndarray:
    """Which records are events: samples of tracepoint attrs."""
    tp = np.array([a.is_tracepoint for a in pf.attrs] + [False], dtype=bool)
    return (rtype == pr.REC_SAMPLE) & tp[attr]


def event_columns(pf: PerfFile, dec: Decoder, ev: dict) -> tuple[dict, bool]:
    """The events columns but comm and type_counts, from the event records' values (ts, cpu,
    raw_off, raw_size, attr, tid, in delivery order); True if some CPU came from ID_INDEX."""
    n = ev["ts"].size
    config = np.array([a.config for a in pf.attrs], dtype=np.uint64)[ev["attr"]] if n else np.empty(0, np.uint64)
    if (config > 0xFFFF).any():
        raise TraceError(pf.path, "tracepoint ids above 65535 are not supported")
    cols = {"ts": ev["ts"].view(np.int64).copy(), "cpu": ev["cpu"].astype(np.int32),
            "off": ev["raw_off"].astype(np.int64, copy=True), "size": ev["raw_size"].astype(np.int32),
            "type_id": np.empty(n, np.uint16), "pid": np.empty(n, np.int32), "flags": np.empty(n, np.uint8),
            "pc": np.empty(n, np.uint8)}
    cols["flags_valid"] = dec.common_fields(pf.data, cols["off"], cols["size"], cols)
    # perf shows the sample's tid (-1 for a task that had exited); without TID, the payload's pid
    has_tid = np.array([bool(a.sample_type & ph.SAMPLE_TID) for a in pf.attrs], bool)[ev["attr"]]
    tid = ev["tid"].astype(np.uint32).view(np.int32)
    cols["pid"] = np.where(has_tid, tid, cols["pid"])
    cols["type_id"] = config.astype(np.uint16)
    missing = cols["cpu"] < 0
    if missing.any():  # samples without PERF_SAMPLE_CPU: the CPU of their attr's (single) id
        per_attr = np.array([pf.id_cpu.get(a.ids[0], 0) if len(a.ids) == 1 else 0 for a in pf.attrs], np.int32)
        cols["cpu"][missing] = per_attr[ev["attr"][missing]]
    return cols, bool(missing.any())


def comm_changes(pf: PerfFile, off: np.ndarray, size: np.ndarray, rtype: np.ndarray, names: dict[str, int],
                 cur: dict[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The thread name changes of COMM and FORK records (in delivery order): each one's tid and
    name code, as perf's thread table makes them (COMM sets the name; FORK gives the child its
    parent's). `names` (name -> code) and `cur` (tid -> code) are updated."""
    mm, e = pf.data, pf.endian
    fields = [uint_field("a", 8, 4), uint_field("b", 12, 4), uint_field("c", 16, 4), uint_field("d", 20, 4)]
    fx = gather_fixed(fields, mm, off, size, e)
    ch_tid, ch_code = [], []
    for j, (o, n, t) in enumerate(zip(off.tolist(), size.tolist(), rtype.tolist())):
        if t == pr.REC_COMM:
            tid = int(fx.values["b"][j])
            text = bytes(mm[o + 16: o + n]).split(b"\0", 1)[0].decode("utf-8", "replace")
            code = names.setdefault(text, len(names))
        else:  # FORK: pid, ppid, tid, ptid
            tid = int(fx.values["c"][j])
            code = cur.get(int(fx.values["d"][j]), -1)
        cur[tid] = code
        ch_tid.append(tid)
        ch_code.append(code)
    return np.array(ch_tid, np.int64), np.array(ch_code, np.int32)


def thread_codes_at(cur: dict[int, int], ev_tid: np.ndarray) -> np.ndarray:
    """Each event's thread name code in the state `cur` (tid -> code; -1: no name known)."""
    keys = np.fromiter(cur.keys(), np.int64, len(cur))
    vals = np.fromiter(cur.values(), np.int32, len(cur))
    o = np.argsort(keys)
    keys, vals = keys[o], vals[o]
    at = np.minimum(np.searchsorted(keys, ev_tid), keys.size - 1)
    return np.where(keys[at] == ev_tid, vals[at], -1).astype(np.int32)


def thread_codes(ch_tid, ch_pos, ch_code, ev_tid, ev_pos, default) -> np.ndarray:
    """For each event, the code of its thread's last change delivered before it (`default`: none)."""
    out = default.copy()
    if not ch_tid.size:
        return out
    tids = np.unique(ch_tid)
    rank = np.searchsorted(tids, ev_tid)  # the events' threads among the few that changed name
    rank = np.minimum(rank, tids.size - 1)
    known = tids[rank] == ev_tid
    ck = (np.searchsorted(tids, ch_tid).astype(np.int64) << 40) | ch_pos
    o = np.argsort(ck)
    ck, code = ck[o], ch_code[o]
    at = np.searchsorted(ck, (rank.astype(np.int64) << 40) | ev_pos, side="right") - 1
    hit = known & (at >= 0)
    hit[hit] = (ck[at[hit]] >> 40) == rank[hit]
    out[hit] = code[at[hit]]
    return out


def _dropped(pf: PerfFile, rec: dict, order: np.ndarray, ev: dict) -> list[Dropped]:
    """LOST (a ring buffer's lost records) and LOST_SAMPLES the kernel emits, on the CPU of their
    sample_id (else the one ID_INDEX gives the event id), before the next event of that CPU in
    delivery order.

    perf record also writes, when it stops, one untimed LOST_SAMPLES per event and CPU with the
    event's lost count (builtin-record.c record__read_lost_samples): the same losses the LOST
    records report, per event. Those are totals, kept in meta.extra["lost_samples"]; they count as
    losses only in a file without LOST records."""
    kernel = rec["kernel"]
    lost = order[np.isin(pf.rtype[kernel[order]], (pr.REC_LOST, pr.REC_LOST_SAMPLES))]
    if not lost.size:
        return []
    r = kernel[lost]
    lv = loss_values(pf, pf.off[r], pf.size[r], pf.rtype[r], rec["ts"][lost], rec["cpu"][lost], rec["id"][lost])
    if lv["total"].any():
        is_lost = lv["is_lost"]
        totals = lost_totals(pf, rec["attr"][lost[lv["total"]]], lv["count"][lv["total"]])
        w = totals_warning(totals, int(lv["count"][is_lost].sum()) if is_lost.any() else None)
        rec["warnings"] += [w] if w else []
        if is_lost.any():
            keep = ~lv["total"]
            lost, lv = lost[keep], {k: v[keep] for k, v in lv.items()}
    count, cpu = lv["count"], lv["cpu"]
    row = _next_event_rows(cpu, rec["position"][lost], ev)
    ev_ts = ev["cols"]["ts"]
    ts = np.where(row >= 0, ev_ts[np.maximum(row, 0)] if ev_ts.size else 0, lv["ts"])
    return [Dropped(int(c), int(t), int(n), None if w < 0 else int(w))
            for c, t, n, w in zip(cpu.tolist(), ts.tolist(), count.tolist(), row.tolist())]


def _next_event_rows(cpu: np.ndarray, pos: np.ndarray, ev: dict) -> np.ndarray:
    """Row of the first event of each CPU delivered after each position (-1: none)."""
    ev_cpu = ev["cols"]["cpu"]
    ev_pos = ev["position"][ev["rows"]]  # increasing: events are in delivery order
    row = np.full(cpu.size, -1, np.int64)
    for c in np.unique(cpu).tolist():
        mine, at = np.flatnonzero(cpu == c), np.flatnonzero(ev_cpu == c)
        if at.size:
            k = np.searchsorted(ev_pos[at], pos[mine], side="right")
            row[mine] = np.where(k < at.size, at[np.minimum(k, at.size - 1)], -1)
    return row


def loss_values(pf: PerfFile, off, size, rtype, ts, cpu, rid) -> dict[str, np.ndarray]:
    """Of LOST and LOST_SAMPLES records (their offsets, sizes, types and sample_id values): the
    count lost, which are LOST, which are perf record's closing totals (untimed LOST_SAMPLES),
    and the CPU (sample_id's, else the one ID_INDEX gives the event id)."""
    fx = gather_fixed([uint_field("a", 8, 8), uint_field("b", 16, 8)], pf.data, off, size, pf.endian)
    is_lost = rtype == pr.REC_LOST
    count = np.where(is_lost, fx.values["b"], fx.values["a"]).astype(np.int64)
    ids = np.where(is_lost, fx.values["a"], rid).astype(np.uint64)
    where = np.where(ts != 0, cpu, -1)
    for j in np.flatnonzero(where < 0).tolist():
        where[j] = pf.id_cpu.get(int(ids[j]), int(cpu[j]))
    return {"count": count, "is_lost": is_lost, "total": ~is_lost & (ts == 0), "cpu": where,
            "ts": ts.view(np.int64)}


def lost_totals(pf: PerfFile, attr: np.ndarray, count: np.ndarray, into: dict[str, int] | None = None
                ) -> dict[str, int]:
    """perf record's closing totals per event name, added into `into` (pf.lost_samples)."""
    names = [a.name or f"config {a.config}" for a in pf.attrs]
    out = {} if into is None else into
    for a, n in zip(attr.tolist(), count.tolist()):
        out[names[a]] = out.get(names[a], 0) + int(n)
    pf.lost_samples = out
    return out


def totals_warning(totals: dict[str, int], lost_total: int | None) -> str | None:
    if lost_total is not None and sum(totals.values()) != lost_total:
        return (f"perf record's lost-sample totals ({sum(totals.values())}) differ from its "
                f"LOST records ({lost_total}): the LOST records are counted")
    return None


def _meta(pf: PerfFile, td: TracingData, dropped: list[Dropped], warn: list[str], counts: dict[str, int],
          ev: dict) -> TraceMeta:
    cpu = ev["cols"]["cpu"]
    per_cpu = dict(zip(*[a.tolist() for a in np.unique(cpu, return_counts=True)])) if cpu.size else {}
    return meta(pf, td, dropped, warn, counts, per_cpu, ev["other_samples"])


def meta(pf: PerfFile, td: TracingData, dropped: list[Dropped], warn: list[str], counts: dict[str, int],
         per_cpu: dict[int, int], other_samples: int) -> TraceMeta:
    """The file's TraceMeta; per_cpu: events per CPU (the whole file's, or as far as known)."""
    f = pf.features
    cpus = f.nr_cpus_avail or (max(per_cpu) + 1 if per_cpu else None)
    first = pf.attrs[0] if pf.attrs else None
    clock = ph.CLOCK_NAMES.get(first.clockid, str(first.clockid)) if first and first.use_clockid else PERF_CLOCK
    uname = " ".join(x for x in ("Linux", f.hostname, f.osrelease, f.arch) if x) if f.osrelease else None
    if other_samples:
        warn.append(f"{other_samples} samples of events that are not tracepoints ignored")
    return TraceMeta(
        path=pf.path, source_format="perf.data", version=2,
        compression=(f.compressed or {}).get("type") or ("zstd" if pf.compressed else "none"),
        cpus=cpus, clock=clock, page_size=td.page_size if pf.tracing_blob else None, endian=pf.endian,
        long_size=td.long_size if pf.tracing_blob else None, uname=uname, event_counts=counts,
        dropped=dropped, warnings=warn,
        extra={"pipe_mode": pf.pipe, "hostname": f.hostname, "osrelease": f.osrelease, "arch": f.arch,
               "perf_version": f.perf_version, "cpuid": f.cpuid, "cpudesc": f.cpudesc,
               "nr_cpus_online": f.nr_cpus_online, "total_mem_kb": f.total_mem_kb, "cmdline": f.cmdline,
               "clock_data": f.clock_data, "sample_time": list(f.sample_time) if f.sample_time else None,
               "compression_info": f.compressed, "events_per_cpu": per_cpu, "file_size": pf.file_size,
               "lost_samples": pf.lost_samples,
               "attrs": [{"name": a.name, "type": a.type, "config": a.config,
                          "sample_type": a.sample_type_names(), "ids": len(a.ids)} for a in pf.attrs]},
    )
