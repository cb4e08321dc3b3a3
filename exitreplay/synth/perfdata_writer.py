"""perf.data writer: a Trace (or time-ordered Trace windows) as the file `perf record -e 'kvm:*' -e
sched:sched_switch -a` writes, read by `perf script` and `perf kvm stat report`.

Layout (tools/perf/Documentation/perf.data-file-format.txt; the order perf 6.1 reads it in,
util/header.c): the 104-byte header; the data section; the feature section table right after the
data (perf finds it at data.offset + data.size) and the features; then the event ids and the attr
section. Attrs come last so the file streams in one pass: an event type may first appear in any
window, and the header is patched at the end.

- One attr per event type: PERF_TYPE_TRACEPOINT, config = the template format's id,
  sample_type IP|TID|TIME|CPU|PERIOD|RAW|IDENTIFIER and sample_id_all (as perf record sets them
  for tracepoints), one event id each.
- PERF_RECORD_SAMPLE per event: RAW is the kernel's trace record, laid out by the same template
  and encoder as the trace.dat writer, padded so the record is a multiple of 8 bytes (the kernel
  pads RAW so: kernel/events/core.c perf_prepare_sample).
- PERF_RECORD_COMM before a thread's first event (and when its name changes), so `perf script`
  names the vCPU threads; PERF_RECORD_FINISHED_ROUND after every ROUND_EVENTS events, so perf's
  ordered-events queue stays small (perf_order.py explains the rule).
- Features: TRACING_DATA (the template's header_page/header_event/formats, perf's "0.6" layout),
  HOSTNAME, OSRELEASE, VERSION, ARCH, NRCPUS, CPUDESC, CPUID (`AuthenticAMD,25,1,1` for SVM,
  `GenuineIntel,6,143,8` for VMX: perf kvm stat picks its exit-reason table from the vendor),
  CMDLINE, EVENT_DESC and SAMPLE_TIME.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import struct
from collections.abc import Iterable

import numpy as np

from ..errors import UsageError
from ..formats import perf_header as ph
from ..formats import perf_records as pr
from ..formats.tracedat_file import MAGIC as TRACING_MAGIC
from ..kvm import reasons
from ..trace import Trace
from .records import payload_blocks
from .templates import DEFAULT_TEMPLATE, Template, load_template
from .writer import _events, _ftrace, _header_info

SAMPLE_TYPE = (ph.SAMPLE_IDENTIFIER | ph.SAMPLE_IP | ph.SAMPLE_TID | ph.SAMPLE_TIME | ph.SAMPLE_CPU
               | ph.SAMPLE_PERIOD | ph.SAMPLE_RAW)
SAMPLE_WORDS = 6  # IDENTIFIER, IP, TID, TIME, CPU, PERIOD: the u64 words before RAW
ATTR_SIZE = 128  # sizeof(struct perf_event_attr) in perf 6.1 (PERF_ATTR_SIZE_VER7)
ATTR_FLAGS = 1 << 0 | 1 << 1 | 1 << ph.FLAG_SAMPLE_ID_ALL  # disabled, inherit, sample_id_all
MISC_KERNEL = 1  # PERF_RECORD_MISC_KERNEL: tracepoints fire in the kernel
SAMPLE_ID_BYTES = 32  # sample_id of COMM: TID, TIME, CPU, IDENTIFIER
ROUND_EVENTS = 1 << 18
NAME_ALIGN = 64  # perf pads header strings to this (util/header.c do_write_string)
CPUIDS = {"svm": ("AuthenticAMD,25,1,1", "AMD EPYC (exitreplay synth)"),
          "vmx": ("GenuineIntel,6,143,8", "Intel(R) Xeon(R) (exitreplay synth)")}
HOSTNAME = "exitreplay-synth"
FIRST_ID = 1000  # event ids are arbitrary u64s; 0 means "synthesized" to perf


@dataclasses.dataclass
class _State:
    """What the writer learns across windows: attrs by event name, thread names, CPUs, span."""

    template: Template
    attrs: dict[str, int] = dataclasses.field(default_factory=dict)  # event name -> id
    comm: dict[int, str] = dataclasses.field(default_factory=dict)
    cpus: int = 1
    first_ts: int | None = None
    last_ts: int = 0
    events: int = 0
    meta_cpus: int = 0
    uname: str | None = None
    isa: str | None = None
    cpuid: str | None = None


def write_perfdata(trace: Trace | Iterable[Trace], path: str | os.PathLike, *, template: str | Template | None = None,
                   isa: str | None = None, cmdline: list[str] | None = None) -> int:
    """Write a Trace, or an iterable of time-ordered Trace windows, as a perf.data file.

    template: the event layouts (default: the trace's own template, else linux-6.18); isa: "svm" or
    "vmx" for the CPUID feature (default: the trace's, from its kvm_exit events or its metadata).
    Returns the number of events written.
    """
    windows = [trace] if isinstance(trace, Trace) else trace
    path = os.fspath(path)
    tmp = f"{path}.part"
    st: _State | None = None
    try:
        with open(tmp, "wb") as out:
            out.write(b"\0" * ph.FILE_HEADER_SIZE)
            for w in windows:
                if st is None:
                    tpl = template if isinstance(template, Template) else load_template(
                        template or w.meta.extra.get("template") or DEFAULT_TEMPLATE)
                    st = _State(tpl)
                _write_window(out, w, st, isa)
            if st is None:
                raise UsageError("nothing to write: no trace windows")
            data_end = out.tell()
            feats = _features(st, cmdline)
            _write_tail(out, st, data_end, feats)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return st.events


# -- data section ----------------------------------------------------------------------------

def _write_window(out, trace: Trace, st: _State, isa: str | None) -> None:
    ev = trace.events
    n = ev.num_rows
    st.meta_cpus = max(st.meta_cpus, trace.meta.cpus or 0)
    st.uname = st.uname or trace.meta.uname
    st.isa = st.isa or isa or _isa_of(trace)
    st.cpuid = st.cpuid or trace.meta.extra.get("cpuid")
    if not n:
        return
    for name in trace.event_names:
        st.attrs.setdefault(name, FIRST_ID + len(st.attrs))
    ts, cpu, pid = (ev.column(c).to_numpy() for c in ("ts", "cpu", "pid"))
    st.cpus = max(st.cpus, int(cpu.max()) + 1)
    st.first_ts = int(ts[0]) if st.first_ts is None else st.first_ts
    st.last_ts = max(st.last_ts, int(ts.max()))
    tgid = trace.meta.extra.get("tgid_of") or {}
    blocks, psize = payload_blocks(trace, st.template)
    comms = _comm_changes(trace, st)
    for lo in range(0, n, ROUND_EVENTS):
        hi = min(n, lo + ROUND_EVENTS)
        out.write(_records(trace, st, blocks, psize, comms, lo, hi, ts, cpu, pid, tgid))
        out.write(struct.pack("<IHH", pr.REC_FINISHED_ROUND, 0, 8))
    st.events += n


def _isa_of(trace: Trace) -> str | None:
    if trace.meta.extra.get("isa") in CPUIDS:
        return trace.meta.extra["isa"]
    if trace.has("kvm_exit") and "isa" in trace.table("kvm_exit").column_names:
        vals = set(trace.table("kvm_exit").column("isa").drop_null().to_pylist())
        if vals == {reasons.ISA_VMX}:
            return "vmx"
        if vals == {reasons.ISA_SVM}:
            return "svm"
    return None


def _comm_changes(trace: Trace, st: _State) -> dict[int, str]:
    """Rows before which a COMM record names the row's thread: where a pid is first seen with a
    name, or its name changes (tid 0 is perf's built-in "swapper")."""
    ev = trace.events
    pid = ev.column("pid").to_numpy()
    comm = ev.column("comm").combine_chunks()  # dictionary-encoded (schema.EVENTS_SCHEMA)
    names = comm.dictionary.to_pylist()
    code = comm.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
    order = np.argsort(pid, kind="stable")
    p, c = pid[order], code[order]
    change = np.ones(order.size, bool)
    change[1:] = (p[1:] != p[:-1]) | (c[1:] != c[:-1])
    out = {}
    for row in order[change & (c >= 0) & (p != 0)].tolist():
        name = names[int(code[row])]
        if st.comm.get(int(pid[row])) != name:
            st.comm[int(pid[row])] = name
            out[row] = name
    return out


def _tgids(pid: np.ndarray, tgid: dict) -> np.ndarray:
    """Process id of each thread id (the thread itself where the trace does not say)."""
    if not tgid:
        return pid.astype(np.int64)
    keys = np.array(sorted(tgid), np.int64)
    vals = np.array([tgid[k] for k in keys.tolist()], np.int64)
    at = np.minimum(np.searchsorted(keys, pid), keys.size - 1)
    return np.where(keys[at] == pid, vals[at], pid).astype(np.int64)


def _sample_block(name: str, st: _State, payload: np.ndarray) -> np.ndarray:
    """(n, record bytes) PERF_RECORD_SAMPLEs around payloads; TID, TIME, CPU filled in later."""
    n, psize = payload.shape
    raw = (psize + 4 + 7) // 8 * 8 - 4
    size = 8 + 8 * SAMPLE_WORDS + 4 + raw
    rec = np.zeros((n, size), np.uint8)
    rec[:, :8] = np.frombuffer(struct.pack("<IHH", pr.REC_SAMPLE, MISC_KERNEL, size), np.uint8)
    words = rec[:, : 8 + 8 * SAMPLE_WORDS].view("<u8")
    words[:, 1] = st.attrs[name]
    words[:, 6] = 1  # period
    rec[:, 56:60] = np.frombuffer(struct.pack("<I", raw), np.uint8)
    rec[:, 60: 60 + psize] = payload
    return rec


def _records(trace, st, blocks, psize, comms, lo, hi, ts, cpu, pid, tgid) -> bytes:
    """Rows lo..hi as sample records (and the COMM records due before them), in row order.
    Every record is whole u64 words, so records are scattered as words."""
    raw = (psize[lo:hi] + 4 + 7) // 8 * 8 - 4
    words = (8 + 8 * SAMPLE_WORDS + 4 + raw) // 8
    pre = {r - lo: _comm_record(r, name, st, trace, ts, cpu, pid, tgid) for r, name in comms.items() if lo <= r < hi}
    extra = np.zeros(hi - lo, np.int64)
    for k, rec in pre.items():
        extra[k] = len(rec) // 8
    end = np.cumsum(words + extra)
    start = end - words
    buf = np.zeros(int(end[-1]), np.uint64)
    for k, rec in pre.items():
        buf[start[k] - len(rec) // 8: start[k]] = np.frombuffer(rec, "<u8")
    pg = _tgids(pid[lo:hi], tgid)
    for name, (rows, block) in zip(trace.event_names, blocks):
        inside = (rows >= lo) & (rows < hi)
        sel = rows[inside] - lo
        if not sel.size:
            continue
        rec = _sample_block(name, st, block[inside]).view("<u8")
        rec[:, 3] = ((pg[sel] & 0xFFFFFFFF) | (pid[lo + sel].astype(np.int64) << 32)).astype(np.uint64)
        rec[:, 4] = ts[lo + sel].astype(np.uint64)
        rec[:, 5] = cpu[lo + sel].astype(np.uint64) & np.uint64(0xFFFFFFFF)
        w = rec.shape[1]
        buf[(start[sel][:, None] + np.arange(w)[None, :]).reshape(-1)] = rec.reshape(-1)
    return buf.tobytes()


def _comm_record(row: int, name: str, st: _State, trace: Trace, ts, cpu, pid, tgid) -> bytes:
    text = name.encode()[:15] + b"\0"
    text += b"\0" * (-len(text) % 8)
    size = 8 + 8 + len(text) + SAMPLE_ID_BYTES
    tid = int(pid[row])
    tg = int(tgid.get(tid, tid))
    ev_name = trace.events.column("event")[row].as_py()
    return (struct.pack("<IHHII", pr.REC_COMM, 0, size, tg, tid) + text
            + struct.pack("<IIQQQ", tg, tid, int(ts[row]), int(cpu[row]), st.attrs[ev_name]))


# -- features, ids, attrs, header -------------------------------------------------------------

def _string(s: str) -> bytes:
    raw = s.encode() + b"\0"
    raw += b"\0" * (-len(raw) % NAME_ALIGN)
    return struct.pack("<I", len(raw)) + raw


def _tracing_data(st: _State) -> bytes:
    """perf's tracing data (util/trace-event-info.c): the formats of the event types written."""
    tpl = st.template
    used = {tpl.formats[n].system for n in st.attrs}
    kept = {s: [t for t in texts if _format_name(tpl, s, t) in st.attrs] for s, texts in tpl.event_formats.items()
            if s in used}
    view = dataclasses.replace(tpl, event_formats=kept)
    cmd = "".join(f"{p} {c}\n" for p, c in sorted(st.comm.items())).encode()
    return (TRACING_MAGIC + b"0.6\0" + bytes([0, 8]) + struct.pack("<I", int(tpl.info.get("page_size", 4096)))
            + _header_info(view) + _ftrace(view) + _events(view) + struct.pack("<II", 0, 0)
            + struct.pack("<Q", len(cmd)) + cmd)


def _format_name(tpl: Template, system: str, text: bytes) -> str:
    from ..formats.eventformat import parse_format

    return parse_format(text, system).name


def _attr(config: int) -> bytes:
    body = struct.pack("<IIQQQQQ", ph.PERF_TYPE_TRACEPOINT, ATTR_SIZE, config, 1, SAMPLE_TYPE, ph.FORMAT_ID,
                       ATTR_FLAGS)
    return body + b"\0" * (ATTR_SIZE - len(body))


def _features(st: _State, cmdline: list[str] | None) -> dict[int, bytes]:
    if st.isa in CPUIDS:
        cpuid, desc = CPUIDS[st.isa]
    else:  # a recording's own CPUID if it had one; else (no kvm_exit to tell) AMD's
        cpuid, desc = (st.cpuid, None) if st.cpuid else CPUIDS["svm"]
    uname = (st.uname or "Linux exitreplay-synth 6.18 x86_64").split()
    cpus = max(st.cpus, st.meta_cpus)
    events = b"".join(_attr(st.template.formats[n].id) + struct.pack("<I", 1)
                      + _string(f"{st.template.formats[n].system}:{n}") + struct.pack("<Q", i)
                      for n, i in st.attrs.items())
    args = cmdline or ["exitreplay", "synth"]
    return {
        ph.FEAT_TRACING_DATA: _tracing_data(st),
        ph.FEAT_HOSTNAME: _string(HOSTNAME),
        ph.FEAT_OSRELEASE: _string(uname[2] if len(uname) > 2 else "unknown"),
        ph.FEAT_VERSION: _string("6.1 (exitreplay synth)"),
        ph.FEAT_ARCH: _string(uname[-1] if len(uname) > 3 else "x86_64"),
        ph.FEAT_NRCPUS: struct.pack("<II", cpus, cpus),
        ph.FEAT_CPUDESC: _string(desc or "exitreplay synth"),
        ph.FEAT_CPUID: _string(cpuid),
        ph.FEAT_CMDLINE: struct.pack("<I", len(args)) + b"".join(_string(a) for a in args),
        ph.FEAT_EVENT_DESC: struct.pack("<II", len(st.attrs), ATTR_SIZE) + events,
        ph.FEAT_SAMPLE_TIME: struct.pack("<QQ", st.first_ts or 0, st.last_ts),
    }


def _write_tail(out, st: _State, data_end: int, feats: dict[int, bytes]) -> None:
    """Feature table and sections after the data, then ids and attrs; the header last."""
    bits = sorted(feats)
    at = data_end + 16 * len(bits)
    table, body = [], []
    for b in bits:
        table.append(struct.pack("<QQ", at, len(feats[b])))
        body.append(feats[b])
        at += len(feats[b])
    out.write(b"".join(table) + b"".join(body))
    ids_at = out.tell()
    out.write(b"".join(struct.pack("<Q", i) for i in st.attrs.values()))
    attrs_at = out.tell()
    for k, name in enumerate(st.attrs):
        out.write(_attr(st.template.formats[name].id) + struct.pack("<QQ", ids_at + 8 * k, 8))
    flags = [0, 0, 0, 0]
    for b in bits:
        flags[b // 64] |= 1 << (b % 64)
    header = (ph.MAGIC + struct.pack("<QQ", ph.FILE_HEADER_SIZE, ATTR_SIZE + 16)
              + struct.pack("<QQ", attrs_at, (ATTR_SIZE + 16) * len(st.attrs))
              + struct.pack("<QQ", ph.FILE_HEADER_SIZE, data_end - ph.FILE_HEADER_SIZE)
              + struct.pack("<QQ", 0, 0) + struct.pack("<4Q", *flags))
    out.seek(0)
    out.write(header)


__all__ = ["write_perfdata"]
