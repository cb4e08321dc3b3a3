"""Ring-buffer pages -> event timestamps and payload offsets, decoded for all pages at once.

A CPU's data is a run of pages; each page is a header (timestamp, commit word) and a packed list
of records with a 32-bit header (type_len, time_delta). Records must be walked in order within a
page, but pages are independent: so we walk every page of a CPU in lockstep, one record slot per
step, with NumPy doing the same step for all pages together. The number of Python-level steps is
the largest record count of any page (about a hundred for 4 KiB pages), not the number of events.

The walk only finds where records start (a record's length is a table lookup on its type_len,
except for the rare kinds that carry a length word); headers, time deltas and length words are
then read once for all records of the CPU.

Record kinds (kernel `include/linux/ring_buffer.h`, libtraceevent `kbuffer-parse.c`):
  type_len 1..28  data, payload type_len*4 bytes
  type_len 0      data, payload length in the next word (which counts itself)
  29 padding      discarded record of array[0] bytes; time_delta 0 means "rest of page empty"
  30 time extend  delta = time_delta + (array[0] << 27)
  31 time stamp   absolute: (array[0] << 27) | time_delta, top bits from the running clock
"""
from __future__ import annotations

import dataclasses

import numpy as np

from .eventformat import HeaderEvent, HeaderPage

# Commit-word flags (kernel ring_buffer.c): the page was preceded by lost events, and the count
# of lost events was stored after the page's data.
MISSED_EVENTS = 1 << 31
MISSED_STORED = 1 << 30
COMMIT_MASK = (1 << 27) - 1  # kbuffer's mask for the data length part of the commit word
TS_SHIFT = 27
DELTA_MASK = (1 << TS_SHIFT) - 1
ABS_TS_BITS = 59  # absolute time stamps hold 59 bits; the top ones come from the page clock


@dataclasses.dataclass
class Missed:
    index: int  # index of the first event after the loss, in this CPU's arrays
    count: int | None  # None when only flagged, not counted
    page: int


@dataclasses.dataclass
class CpuEvents:
    ts: np.ndarray  # int64 raw clock units, absolute
    offset: np.ndarray  # offset of each payload (common_type) within the data (int64 or uint32)
    size: np.ndarray  # int32 payload length in bytes
    missed: list[Missed]
    truncated: bool
    warnings: list[str]
    pages: int = 0  # pages decoded (a partial last page counts)

    @property
    def count(self) -> int:
        return int(self.ts.size)


def _u(nbytes: int, endian: str) -> np.dtype:
    return np.dtype(f"{'<' if endian == 'little' else '>'}u{nbytes}")


def _size_lut(eh: HeaderEvent) -> np.ndarray:
    """Words per record (header included) by type_len; 0 where the length is in array[0]."""
    lut = np.zeros(32, dtype=np.uint8)
    tl = np.arange(1, eh.data_max_type_len + 1)
    lut[tl] = 1 + tl
    lut[eh.time_extend] = 2
    lut[eh.time_stamp] = 2
    return lut


def _walk(words: np.ndarray, start: np.ndarray, limw: np.ndarray, eh: HeaderEvent, big: bool
          ) -> tuple[list[np.ndarray], list[int]]:
    """Word index of every record (step-major: one array per step, each in page order), and the
    word positions of records that run past their page's data."""
    lut = _size_lut(eh)
    live = start < limw
    cur, lim = start[live], limw[live]
    steps: list[np.ndarray] = []
    bad_at: list[int] = []
    while cur.size:
        w = words[cur]
        tl = w >> 27 if big else w & 31
        sz = lut[tl]
        nxt = cur + sz
        dropped = None
        if not sz.all():
            sp = np.flatnonzero(sz == 0)
            sc, slim = cur[sp], lim[sp]
            stl = tl[sp]
            std = (w[sp] & DELTA_MASK) if big else (w[sp] >> 5)
            has_a0 = sc + 2 <= slim
            a0 = words[np.where(has_a0, sc + 1, sc)].astype(np.int64)
            is_len = stl == 0
            null_pad = (stl == eh.padding) & (std == 0)
            # Length word and padding both count the bytes after the header; payloads are
            # padded to 4 bytes.
            n = sc + 1 + ((a0 + 3) >> 2)
            n = np.where(~has_a0 | (is_len & (a0 < 4)), slim + 1, n)
            nxt[sp] = np.where(null_pad, slim, n)
            if null_pad.any():
                dropped = np.zeros(cur.size, dtype=bool)
                dropped[sp[null_pad]] = True
        left = lim - nxt
        if left.min() > 0:
            steps.append(cur if dropped is None else cur[~dropped])
            cur = nxt
            continue
        bad = left < 0
        if bad.any():
            bad_at.extend(cur[bad][:5].tolist())
            dropped = bad if dropped is None else dropped | bad
        steps.append(cur if dropped is None else cur[~dropped])
        alive = left > 0
        cur, lim = nxt[alive], lim[alive]
    return steps, bad_at


def _page_major(steps: list[np.ndarray], nwords: int, npages: int) -> tuple[np.ndarray, np.ndarray]:
    """Records of the step-major walk in page order, and the record count of every page.

    A page's records are its steps 0..k-1, so a record's page-major position is the number of
    records in earlier pages plus its step: a scatter, not a sort.
    """
    if not steps:
        return np.empty(0, np.int64), np.zeros(npages, np.int64)
    flat = np.concatenate(steps)
    page = flat >> (nwords.bit_length() - 1) if nwords & (nwords - 1) == 0 else flat // nwords
    counts = np.bincount(page, minlength=npages)
    first = np.cumsum(counts) - counts
    dest = first[page]
    dest += np.repeat(np.arange(len(steps), dtype=np.int64), [s.size for s in steps])
    out = np.empty_like(flat)
    out[dest] = flat
    return out, counts


def _timestamps(delta: np.ndarray, counts: np.ndarray, page_ts: np.ndarray, is_abs: np.ndarray | None,
                abs_val: np.ndarray | None) -> np.ndarray:
    """Running clock: each page starts at its header time stamp, each absolute stamp restarts it."""
    csum = np.cumsum(delta, dtype=np.uint64)
    has = counts > 0
    first = (np.cumsum(counts) - counts)[has]
    if is_abs is None:
        base = page_ts[has] - (csum[first] - delta[first])
        csum += np.repeat(base, counts[has])
        return csum
    seg_start = np.zeros(delta.size, dtype=bool)
    seg_start[first] = True
    seg_start |= is_abs
    seg_first = np.flatnonzero(seg_start)
    page_of = np.repeat(np.flatnonzero(has), counts[has])
    base = page_ts[page_of[seg_first]]
    abs_first = is_abs[seg_first]
    if abs_first.any():
        top = base & ~np.uint64((1 << ABS_TS_BITS) - 1)
        base = np.where(abs_first, abs_val[seg_first] | top, base)
    base -= csum[seg_first] - delta[seg_first]
    seg_len = np.diff(np.append(seg_first, delta.size))
    csum += np.repeat(base, seg_len)
    return csum


def decode_pages(
    data: np.ndarray,
    page_size: int,
    header: HeaderPage | None = None,
    endian: str = "little",
    long_size: int = 8,
    cpu: int | None = None,
    event_header: HeaderEvent | None = None,
    base_offset: int = 0,
    offset_dtype: np.dtype | type = np.int64,
    first_page: int = 0,
) -> CpuEvents:
    """Decode one CPU's pages. `offset` values are relative to `data` plus `base_offset`.

    `first_page` only numbers pages in warnings (for data decoded in chunks).
    """
    header = header or HeaderPage(commit_size=long_size, data_offset=8 + long_size,
                                  data_size=page_size - 8 - long_size)
    eh = event_header or HeaderEvent()
    where = f"CPU {cpu}" if cpu is not None else "CPU buffer"
    data = np.asarray(data, dtype=np.uint8).reshape(-1)
    if page_size % 4 or header.data_offset % 4:
        raise ValueError(f"page size {page_size} / data offset {header.data_offset} not 4-byte aligned")
    n_full, tail = divmod(data.size, page_size)
    args = (page_size, header, eh, endian, long_size, where, offset_dtype)
    ev = _decode_whole_pages(data[: n_full * page_size], page_size, page_size, base_offset, first_page, *args)
    if not tail:
        return ev
    # Keep the complete records of the partial page: pad a copy of it to a whole page and let the
    # page's limit stop at the real end of the bytes.
    padded = np.zeros(page_size, dtype=np.uint8)
    padded[:tail] = data[n_full * page_size:]
    last = _decode_whole_pages(padded, tail, page_size, base_offset + n_full * page_size,
                               first_page + n_full, *args)
    for m in last.missed:
        m.index += ev.count
    last.warnings = [w for w in last.warnings if "running past" not in w]
    return CpuEvents(
        np.concatenate([ev.ts, last.ts]),
        np.concatenate([ev.offset, last.offset.astype(ev.offset.dtype)]),
        np.concatenate([ev.size, last.size]),
        ev.missed + last.missed, True,
        [*ev.warnings, (f"{where}: data ends {tail} bytes into page {first_page + n_full} (truncated file); "
                        "complete events before the cut are kept"), *last.warnings],
        n_full + 1,
    )


def _decode_whole_pages(data: np.ndarray, avail_last: int, page_size: int, base_offset: int, first_page: int,
                        _ps: int, header: HeaderPage, eh: HeaderEvent, endian: str, long_size: int, where: str,
                        offset_dtype) -> CpuEvents:
    """Decode whole pages; only `avail_last` bytes of the last one are real (the rest is padding)."""
    npages = data.size // page_size
    if npages == 0:
        return CpuEvents(np.empty(0, np.int64), np.empty(0, offset_dtype), np.empty(0, np.int32), [], False, [])
    warnings: list[str] = []
    pages_u8 = data.reshape(npages, page_size)
    page_ts = np.ascontiguousarray(pages_u8[:, header.ts_offset: header.ts_offset + 8]).view(
        _u(8, endian)).reshape(npages).astype(np.uint64)
    cs = header.commit_size
    commit = np.ascontiguousarray(pages_u8[:, header.commit_offset: header.commit_offset + cs]).view(
        _u(cs, endian)).reshape(npages).astype(np.int64)
    flags_missed = (commit & MISSED_EVENTS) != 0
    flags_stored = (commit & MISSED_STORED) != 0
    length = commit & COMMIT_MASK
    dstart = header.data_offset
    room = page_size - dstart
    bad_len = length > room
    if bad_len.any():
        for p in np.flatnonzero(bad_len)[:5]:
            warnings.append(f"{where}: page {first_page + int(p)} is corrupt (commit length {int(length[p])} > "
                            f"{room} bytes of page data); page skipped")
        if bad_len.sum() > 5:
            warnings.append(f"{where}: {int(bad_len.sum()) - 5} more corrupt pages skipped")
        length = np.where(bad_len, 0, length)
    # Records may only use bytes that both the commit length and the file provide.
    limit = dstart + length
    limit[-1] = min(int(limit[-1]), avail_last)

    stored_count = np.full(npages, -1, dtype=np.int64)
    if flags_stored.any():
        sp = np.flatnonzero(flags_stored)
        at = dstart + length[sp]
        ok = at + long_size <= np.where(sp == npages - 1, avail_last, page_size)
        sp, at = sp[ok], at[ok]
        if sp.size:
            blk = pages_u8[sp[:, None], at[:, None] + np.arange(long_size)[None, :]]
            stored_count[sp] = np.ascontiguousarray(blk).view(_u(long_size, endian)).reshape(-1).astype(np.int64)

    nwords = page_size // 4
    words = data.view(_u(4, endian))  # flat: page p, word w at p * nwords + w
    big = endian != "little"
    page_word = np.arange(npages, dtype=np.int64) * nwords
    steps, bad_at = _walk(words, page_word + dstart // 4, page_word + (limit >> 2), eh, big)
    for pg in sorted({w // nwords for w in bad_at})[:5]:
        warnings.append(f"{where}: page {first_page + pg} has a record running past its data; rest of page skipped")
    flat, counts = _page_major(steps, nwords, npages)
    del steps

    w = words[flat]
    if big:
        tl = (w >> 27).astype(np.uint8)
        delta = (w & DELTA_MASK).astype(np.uint64)
    else:
        tl = (w & 31).astype(np.uint8)
        delta = (w >> 5).astype(np.uint64)
    del w
    dmax = eh.data_max_type_len
    # Rare kinds: length-word data, time extends, absolute stamps, padding.
    rare = np.flatnonzero((tl == 0) | (tl > dmax))
    is_abs = abs_val = None
    a0_len = None
    if rare.size:
        rtl = tl[rare]
        a0 = words[flat[rare] + 1].astype(np.uint64)
        ext = rtl == eh.time_extend
        delta[rare[ext]] += a0[ext] << np.uint64(TS_SHIFT)
        ab = rtl == eh.time_stamp
        if ab.any():
            is_abs = np.zeros(flat.size, dtype=bool)
            is_abs[rare[ab]] = True
            abs_val = np.zeros(flat.size, dtype=np.uint64)
            abs_val[rare[ab]] = (a0[ab] << np.uint64(TS_SHIFT)) | delta[rare[ab]]
            delta[rare[ab]] = 0
        a0_len = (rare[rtl == 0], a0[rtl == 0].astype(np.int64))
    ts = _timestamps(delta, counts, page_ts, is_abs, abs_val).view(np.int64)
    del delta, is_abs, abs_val

    off = flat << 2
    off += base_offset + 4
    size = tl.astype(np.int32) << 2
    if a0_len is not None and a0_len[0].size:
        at, a0 = a0_len
        off[at] += 4
        # As kbuffer does: the length word counts itself; the payload is padded to 4 bytes.
        size[at] = (a0 - 1) & ~3
    if rare.size and (tl[rare] > dmax).any():
        keep = np.flatnonzero(tl <= dmax)
        ts, off, size = ts[keep], off[keep], size[keep]
        page_counts = np.bincount(flat[keep] // nwords, minlength=npages)
    else:
        page_counts = counts
    if off.dtype != np.dtype(offset_dtype):
        off = off.astype(offset_dtype)

    missed: list[Missed] = []
    if flags_missed.any():
        first_ev = np.cumsum(page_counts) - page_counts
        for pg in np.flatnonzero(flags_missed):
            cnt = int(stored_count[pg]) if flags_stored[pg] and stored_count[pg] >= 0 else None
            missed.append(Missed(int(first_ev[pg]), cnt, first_page + int(pg)))
    return CpuEvents(ts, off, size, missed, False, warnings, npages)
