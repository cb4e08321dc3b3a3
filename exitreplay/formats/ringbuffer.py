"""Ring-buffer pages -> event timestamps and payload offsets, decoded for all pages at once.

A CPU's data is a run of pages; each page is a header (timestamp, commit word) and a packed list
of records with a 32-bit header (type_len, time_delta). Records must be walked in order within a
page, but pages are independent: so we walk every page of a CPU in lockstep, one record slot per
step, with NumPy doing the same step for all pages together. The number of Python-level steps is
the largest record count of any page (about a hundred for 4 KiB pages), not the number of events.

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
ABS_TS_BITS = 59  # absolute time stamps hold 59 bits; the top ones come from the page clock


@dataclasses.dataclass
class Missed:
    index: int  # index of the first event after the loss, in this CPU's arrays
    count: int | None  # None when only flagged, not counted
    page: int


@dataclasses.dataclass
class CpuEvents:
    ts: np.ndarray  # int64 raw clock units, absolute
    offset: np.ndarray  # int64 offset of each payload (common_type) within the data
    size: np.ndarray  # int64 payload length in bytes
    missed: list[Missed]
    truncated: bool
    warnings: list[str]

    @property
    def count(self) -> int:
        return int(self.ts.size)


def _u(nbytes: int, endian: str) -> np.dtype:
    return np.dtype(f"{'<' if endian == 'little' else '>'}u{nbytes}")


def decode_pages(
    data: np.ndarray,
    page_size: int,
    header: HeaderPage | None = None,
    endian: str = "little",
    long_size: int = 8,
    cpu: int | None = None,
    event_header: HeaderEvent | None = None,
    base_offset: int = 0,
) -> CpuEvents:
    """Decode one CPU's pages. `offset` values are relative to `data` plus `base_offset`."""
    header = header or HeaderPage(commit_size=long_size, data_offset=8 + long_size,
                                  data_size=page_size - 8 - long_size)
    eh = event_header or HeaderEvent()
    where = f"CPU {cpu}" if cpu is not None else "CPU buffer"
    warnings: list[str] = []
    data = np.asarray(data, dtype=np.uint8).reshape(-1)
    n_full, tail = divmod(data.size, page_size)
    truncated = tail != 0
    if truncated:
        # Keep the complete records of the partial page: pad it so every page has one shape, then
        # let the per-page limit stop at the real end of the bytes.
        padded = np.zeros((n_full + 1) * page_size, dtype=np.uint8)
        padded[: data.size] = data
        pages_u8 = padded.reshape(n_full + 1, page_size)
        warnings.append(
            f"{where}: data ends {tail} bytes into page {n_full} (truncated file); "
            "complete events before the cut are kept"
        )
    else:
        pages_u8 = data[: n_full * page_size].reshape(n_full, page_size)
    npages = pages_u8.shape[0]
    if npages == 0:
        e = np.empty(0, dtype=np.int64)
        return CpuEvents(e, e.copy(), e.copy(), [], truncated, warnings)

    page_ts = np.ascontiguousarray(pages_u8[:, header.ts_offset: header.ts_offset + 8]).view(
        _u(8, endian)).reshape(npages).astype(np.uint64)
    cs = header.commit_size
    commit = np.ascontiguousarray(pages_u8[:, header.commit_offset: header.commit_offset + cs]).view(
        _u(cs, endian)).reshape(npages).astype(np.uint64)
    flags_missed = (commit & np.uint64(MISSED_EVENTS)) != 0
    flags_stored = (commit & np.uint64(MISSED_STORED)) != 0
    length = (commit & np.uint64(COMMIT_MASK)).astype(np.int64)
    dstart = header.data_offset
    room = page_size - dstart
    bad_len = length > room
    if bad_len.any():
        for p in np.flatnonzero(bad_len)[:5]:
            warnings.append(f"{where}: page {int(p)} is corrupt (commit length {int(length[p])} > "
                            f"{room} bytes of page data); page skipped")
        if bad_len.sum() > 5:
            warnings.append(f"{where}: {int(bad_len.sum()) - 5} more corrupt pages skipped")
        length = np.where(bad_len, 0, length)
    avail = np.full(npages, page_size, dtype=np.int64)
    if truncated:
        avail[-1] = tail
    # Records may only use bytes that both the commit length and the file provide.
    limit = np.minimum(dstart + length, avail)

    stored_count = np.full(npages, -1, dtype=np.int64)
    if flags_stored.any():
        sp = np.flatnonzero(flags_stored)
        at = dstart + length[sp]
        ok = at + long_size <= avail[sp]
        sp, at = sp[ok], at[ok]
        if sp.size:
            blk = pages_u8[sp[:, None], at[:, None] + np.arange(long_size)[None, :]]
            stored_count[sp] = np.ascontiguousarray(blk).view(_u(long_size, endian)).reshape(-1).astype(
                np.int64)

    if page_size % 4 or dstart % 4:
        raise ValueError(f"page size {page_size} / data offset {dstart} not 4-byte aligned")
    nwords = page_size // 4
    words = pages_u8.view(_u(4, endian)).reshape(-1)  # flat: page p, word w at p * nwords + w
    big = endian != "little"

    pos = np.full(npages, dstart, dtype=np.int64)  # byte position of the next record, per page
    active = np.flatnonzero(pos + 4 <= limit)
    rec_page: list[np.ndarray] = []
    rec_pos: list[np.ndarray] = []
    rec_type: list[np.ndarray] = []
    rec_delta: list[np.ndarray] = []
    rec_arg: list[np.ndarray] = []
    rec_step: list[int] = []
    corrupt_pages: list[int] = []
    step = 0
    while active.size:
        p = active
        pp = pos[p]
        wpos = pp >> 2
        flat = p * nwords + wpos
        w = words[flat].astype(np.int64)
        if big:  # big-endian kernels put type_len in the top bits (kbuffer "type_len_ts")
            tl = w >> 27
            td = w & ((1 << 27) - 1)
        else:
            tl = w & 31
            td = w >> 5
        lim = limit[p]
        a0 = words[np.minimum(flat + 1, words.size - 1)].astype(np.int64)
        has_a0 = pp + 8 <= lim
        size = np.where(tl <= eh.data_max_type_len, 4 + tl * 4, 8)  # bytes incl. header
        is_len = tl == 0
        # type 0: array[0] counts itself; payload is padded to 4 bytes.
        size = np.where(is_len, 4 + ((a0 + 3) & ~3), size)
        is_pad = tl == eh.padding
        null_pad = is_pad & (td == 0)
        size = np.where(is_pad & ~null_pad, 4 + a0, size)
        needs_a0 = is_len | is_pad & ~null_pad | (tl == eh.time_extend) | (tl == eh.time_stamp)
        bad = (needs_a0 & ~has_a0) | (is_len & (a0 < 4)) | (pp + size > lim) | (size <= 0)
        bad &= ~null_pad
        if bad.any():
            corrupt_pages.extend(p[bad].tolist())
        keep = ~bad & ~null_pad
        rec_page.append(p[keep])
        rec_pos.append(pp[keep])
        rec_type.append(tl[keep])
        rec_delta.append(td[keep])
        rec_arg.append(a0[keep])
        rec_step.append(step)
        step += 1
        newpos = pp + size
        newpos[bad | null_pad] = page_size  # stop this page
        pos[p] = newpos
        active = p[newpos + 4 <= lim]

    for pg in sorted(set(corrupt_pages))[:5]:
        if truncated and pg == npages - 1:
            continue  # the cut itself, already reported
        warnings.append(f"{where}: page {pg} has a record running past its data; rest of page skipped")

    if rec_page:
        page = np.concatenate(rec_page)
        steps = np.repeat(np.array(rec_step, dtype=np.int64), [a.size for a in rec_page])
        # Records were gathered step-major. A page's kept records are its steps 0..k-1, so the
        # page-major position of a record is (records of earlier pages) + its step: a scatter.
        counts = np.bincount(page, minlength=npages)
        dest = (np.cumsum(counts) - counts)[page] + steps
        out = [np.empty(page.size, dtype=np.int64) for _ in range(5)]
        for o, parts in zip(out, (rec_page, rec_pos, rec_type, rec_delta, rec_arg)):
            o[dest] = np.concatenate(parts)
        page, rpos, rtype, rdelta, rarg = out
    else:
        page = rpos = rtype = rdelta = rarg = np.empty(0, dtype=np.int64)

    is_ext = rtype == eh.time_extend
    is_abs = rtype == eh.time_stamp
    delta = np.where(is_ext, rdelta + (rarg << TS_SHIFT), rdelta).astype(np.uint64)
    delta[is_abs] = 0
    # Segments restart the running clock: at every page start and at every absolute time stamp.
    first_of_page = np.ones(page.size, dtype=bool)
    first_of_page[1:] = page[1:] != page[:-1]
    seg_start = first_of_page | is_abs
    seg_id = np.cumsum(seg_start) - 1
    csum = np.cumsum(delta, dtype=np.uint64)
    seg_first = np.flatnonzero(seg_start)
    before = csum[seg_first] - delta[seg_first]
    base = page_ts[page[seg_first]].astype(np.uint64)
    abs_first = is_abs[seg_first]
    if abs_first.any():
        top = base & ~np.uint64((1 << ABS_TS_BITS) - 1)
        absval = ((rarg[seg_first].astype(np.uint64) << np.uint64(TS_SHIFT))
                  | rdelta[seg_first].astype(np.uint64))
        base = np.where(abs_first, absval | top, base)
    ts_all = base[seg_id] + (csum - before[seg_id])

    is_data = rtype <= eh.data_max_type_len
    data_idx = np.flatnonzero(is_data)
    ts = ts_all[data_idx].astype(np.int64)
    dtl = rtype[data_idx]
    hdr = np.where(dtl == 0, 8, 4)
    offset = page[data_idx] * page_size + rpos[data_idx] + hdr + base_offset
    # As kbuffer does: the length word counts itself; the payload is padded to 4 bytes.
    size = np.where(dtl == 0, (rarg[data_idx] - 4 + 3) & ~3, dtl * 4).astype(np.int64)

    missed: list[Missed] = []
    if flags_missed.any():
        ev_page = page[data_idx]
        first_ev = np.searchsorted(ev_page, np.arange(npages), side="left")
        for pg in np.flatnonzero(flags_missed):
            cnt = int(stored_count[pg]) if flags_stored[pg] and stored_count[pg] >= 0 else None
            missed.append(Missed(int(first_ev[pg]), cnt, int(pg)))
    return CpuEvents(ts, offset.astype(np.int64), size, missed, truncated, warnings)
