"""Where each value of a perf record lies, from the attr's bits, and the values gathered in bulk.

PERF_RECORD_SAMPLE (include/uapi/linux/perf_event.h) holds, in this order and only where its attr's
`sample_type` has the bit: IDENTIFIER, IP, TID (u32 pid, u32 tid), TIME, ADDR, ID, STREAM_ID,
CPU (u32 cpu, u32 res), PERIOD, READ (read_format decides its shape), CALLCHAIN (u64 nr, nr ips),
RAW (u32 size, the tracepoint's record), then fields this reader does not need. Other kernel
records end with `sample_id` when the attr has sample_id_all: TID, TIME, ID, STREAM_ID, CPU,
IDENTIFIER. Which attr a record belongs to is told by its id at a position the first attr's bits
fix for every attr (tools/perf/util/evsel.c `evsel__calc_id_pos`, `__evsel__calc_is_pos`;
evlist.c `evlist__event2evsel`).

Values are gathered for a whole group of records of one attr at once (eventformat.gather_fixed);
only the variable parts (READ with PERF_FORMAT_GROUP, CALLCHAIN) move later fields, and those
moves are per-record offset arrays, not loops.
"""
from __future__ import annotations

import numpy as np

from .eventformat import Field, gather_fixed
from .perf_header import (
    FORMAT_GROUP,
    FORMAT_ID,
    FORMAT_LOST,
    FORMAT_TOTAL_TIME_ENABLED,
    FORMAT_TOTAL_TIME_RUNNING,
    SAMPLE_ADDR,
    SAMPLE_CALLCHAIN,
    SAMPLE_CPU,
    SAMPLE_ID,
    SAMPLE_IDENTIFIER,
    SAMPLE_IP,
    SAMPLE_PERIOD,
    SAMPLE_RAW,
    SAMPLE_READ,
    SAMPLE_STREAM_ID,
    SAMPLE_TID,
    SAMPLE_TIME,
    Attr,
)

HEADER = 8
# The fixed-size words at the start of a sample: (bit, name, [(part name, offset, size)]).
_FIXED = (
    (SAMPLE_IDENTIFIER, [("id", 0, 8)]),
    (SAMPLE_IP, [("ip", 0, 8)]),
    (SAMPLE_TID, [("pid", 0, 4), ("tid", 4, 4)]),
    (SAMPLE_TIME, [("time", 0, 8)]),
    (SAMPLE_ADDR, [("addr", 0, 8)]),
    (SAMPLE_ID, [("id", 0, 8)]),
    (SAMPLE_STREAM_ID, [("stream_id", 0, 8)]),
    (SAMPLE_CPU, [("cpu", 0, 4)]),
    (SAMPLE_PERIOD, [("period", 0, 8)]),
)
# sample_id of non-sample records, in record order.
_TRAILER = (
    (SAMPLE_TID, [("pid", 0, 4), ("tid", 4, 4)]),
    (SAMPLE_TIME, [("time", 0, 8)]),
    (SAMPLE_ID, [("id", 0, 8)]),
    (SAMPLE_STREAM_ID, [("stream_id", 0, 8)]),
    (SAMPLE_CPU, [("cpu", 0, 4)]),
    (SAMPLE_IDENTIFIER, [("id", 0, 8)]),
)


def uint_field(name: str, offset: int, size: int) -> Field:
    return Field(name, f"u{8 * size}", offset, size, False, None, False, False, False)


def id_pos(sample_type: int) -> int:
    """Index (in u64 words after the header) of a sample's id; -1 without ID/IDENTIFIER."""
    if sample_type & SAMPLE_IDENTIFIER:
        return 0
    if not sample_type & SAMPLE_ID:
        return -1
    return sum(bool(sample_type & b) for b in (SAMPLE_IP, SAMPLE_TID, SAMPLE_TIME, SAMPLE_ADDR))


def is_pos(sample_type: int) -> int:
    """Position (in u64 words from the end) of a non-sample record's id; -1 without one."""
    if sample_type & SAMPLE_IDENTIFIER:
        return 1
    if not sample_type & SAMPLE_ID:
        return -1
    return 1 + sum(bool(sample_type & b) for b in (SAMPLE_CPU, SAMPLE_STREAM_ID))


def _layout(spec, sample_type: int, start: int) -> tuple[list[Field], int]:
    fields, at = [], start
    for bit, parts in spec:
        if sample_type & bit:
            fields += [uint_field(n, at + o, s) for n, o, s in parts]
            at += 8
    return fields, at


def trailer_size(sample_type: int) -> int:
    return 8 * sum(bool(sample_type & bit) for bit, _ in _TRAILER)


def _gather(fields: list[Field], data: np.ndarray, off: np.ndarray, size: np.ndarray, endian: str
            ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Values of the fields at `off`, and the rows where all of them lie inside the record."""
    fx = gather_fixed(fields, data, off, size, endian)
    ok = np.ones(off.size, dtype=bool)
    for f in fields:
        if fx.valid[f.name] is not None:
            ok &= fx.valid[f.name]
    return {k: v.astype(np.int64) if v.dtype.itemsize < 8 else v for k, v in fx.values.items()}, ok


def _read_size(read_format: int) -> tuple[int, int]:
    """READ value: (fixed words, words per group member); a group adds `nr` members after its count."""
    te = bool(read_format & FORMAT_TOTAL_TIME_ENABLED) + bool(read_format & FORMAT_TOTAL_TIME_RUNNING)
    per = 1 + bool(read_format & FORMAT_ID) + bool(read_format & FORMAT_LOST)
    if read_format & FORMAT_GROUP:
        return 1 + te, per
    return te + per, 0


def sample_values(attr: Attr, data: np.ndarray, off: np.ndarray, size: np.ndarray, endian: str
                  ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Fields of PERF_RECORD_SAMPLEs of one attr: id, ip, pid, tid, time, cpu, period and the RAW
    payload's offset (`raw_off`) and length (`raw_size`, 0 where the attr records none).

    Returns the values and the rows whose fixed fields all lie inside their record."""
    st = attr.sample_type
    fields, at = _layout(_FIXED, st, HEADER)
    vals, ok = _gather(fields, data, off, size, endian)
    n = off.size
    cursor = off.astype(np.int64) + at
    end = off.astype(np.int64) + size
    if st & SAMPLE_READ:
        fixed, per = _read_size(attr.read_format)
        words = np.full(n, fixed, dtype=np.int64)
        if per:
            nr = _word_at(data, cursor, end, endian)
            words += np.minimum(nr, 1 << 32) * per
        cursor = cursor + 8 * words
    if st & SAMPLE_CALLCHAIN:
        nr = _word_at(data, cursor, end, endian)
        cursor = cursor + 8 * (1 + np.minimum(nr, 1 << 32))
    if st & SAMPLE_RAW:
        inside = cursor + 4 <= end
        rs = np.zeros(n, dtype=np.int64)
        if inside.any():
            got, _ = _gather([uint_field("raw_size", 0, 4)], data, np.where(inside, cursor, off), np.where(
                inside, end - cursor, 0), endian)
            rs = np.where(inside, got["raw_size"], 0)
        fits = inside & (cursor + 4 + rs <= end)
        vals["raw_off"] = np.where(fits, cursor + 4, 0)
        vals["raw_size"] = np.where(fits, rs, 0)
        vals["raw_bad"] = ~fits
    return vals, ok


def _word_at(data: np.ndarray, pos: np.ndarray, end: np.ndarray, endian: str) -> np.ndarray:
    """The u64 at each position; 2^32 (pushing later fields past the record) where it does not fit."""
    inside = pos + 8 <= end
    out = np.full(pos.size, 1 << 32, dtype=np.int64)
    if inside.any():
        got, _ = _gather([uint_field("w", 0, 8)], data, np.where(inside, pos, 0), np.where(inside, 8, 0), endian)
        out[inside] = np.minimum(got["w"][inside].astype(np.uint64), 1 << 32).astype(np.int64)
    return out


def trailer_values(attr: Attr, data: np.ndarray, off: np.ndarray, size: np.ndarray, endian: str
                   ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """sample_id of non-sample records (pid, tid, time, id, cpu where the attr records them)."""
    st = attr.sample_type
    tsz = trailer_size(st)
    fields, _ = _layout(_TRAILER, st, 0)
    start = off.astype(np.int64) + size - tsz
    room = size - tsz >= HEADER
    vals, ok = _gather(fields, data, np.where(room, start, off), np.where(room, tsz, 0), endian)
    return vals, ok & room


def record_ids(data: np.ndarray, off: np.ndarray, size: np.ndarray, is_sample: np.ndarray, idp: int, isp: int,
               endian: str) -> tuple[np.ndarray, np.ndarray]:
    """Each record's event id (perf's evlist__event2id) and whether the record is long enough to
    hold it."""
    n = off.size
    pos = np.where(is_sample, off + HEADER + 8 * idp, off + size - 8 * isp).astype(np.int64)
    have = np.where(is_sample, idp >= 0, isp > 0)
    have &= np.where(is_sample, HEADER + 8 * idp + 8 <= size, HEADER + 8 * isp <= size)
    ids = np.zeros(n, dtype=np.uint64)
    if have.any():
        got, _ = _gather([uint_field("id", 0, 8)], data, np.where(have, pos, 0), np.where(have, 8, 0), endian)
        ids[have] = got["id"][have].astype(np.uint64)
    return ids, have
