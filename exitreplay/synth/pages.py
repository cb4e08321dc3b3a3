"""Events -> ring-buffer pages, for all events of a CPU at once (the inverse of formats/ringbuffer.py).

Record layout (include/linux/ring_buffer.h, kernel/trace/ring_buffer.c rb_update_event):
a 32-bit header, type_len in the low 5 bits and the time delta in the high 27 (little-endian);
payloads up to 28 words use type_len = words, longer ones type_len 0 and a length word that
counts itself; a delta that needs more than 27 bits goes in a time-extend record (type 30:
low 27 bits in the header, the rest in the next word) just before the event.

Paging: every record's size is known up front, so pages are cut greedily with a cumulative sum
(one searchsorted per page, not one step per event). A page starts with its first event's
timestamp, so that event's delta is 0; the commit word holds the bytes used. A stream written a
window at a time (`cut_pages`) carries its last, unfinished page over to the next window.
"""
from __future__ import annotations

import numpy as np

TS_BITS = 27
TS_MASK = (1 << TS_BITS) - 1
MAX_SMALL = 28 * 4  # RB_MAX_SMALL_DATA
TYPE_TIME_EXTEND = 30


def encode_pages(ts: np.ndarray, payload: np.ndarray, sizes: np.ndarray, page_size: int = 4096,
                 header_size: int = 16) -> np.ndarray:
    """One CPU's events -> its pages (uint8, n_pages * page_size).

    ts: int64 non-decreasing; payload: the payloads concatenated (each a multiple of 4 bytes);
    sizes: bytes per payload; header_size: the page header (u64 timestamp + commit long).
    """
    return cut_pages(ts, payload, sizes, page_size, header_size)[0]


def cut_pages(ts: np.ndarray, payload: np.ndarray, sizes: np.ndarray, page_size: int = 4096,
              header_size: int = 16, *, prev_ts: int | None = None, final: bool = True) -> tuple[np.ndarray, int]:
    """encode_pages for a stream that goes on: (pages, events in them).

    prev_ts: the timestamp of the event before ts[0] (in pages already cut). Unless `final`, the
    last page is left out, since more events may still fit it: its events (from the count
    returned on) start the next call, which then cuts the same pages the whole stream would.
    """
    n = int(ts.size)
    if n == 0:
        return np.empty(0, dtype=np.uint8), 0
    ts = np.asarray(ts, dtype=np.int64)
    sizes = np.asarray(sizes, dtype=np.int64)
    if np.any(sizes % 4) or np.any(sizes <= 0):
        raise ValueError("payload sizes must be positive multiples of 4 bytes")
    delta = np.diff(ts, prepend=ts[0] if prev_ts is None else prev_ts)
    if np.any(delta < 0):
        raise ValueError("the events of a CPU must be in timestamp order")
    ext = delta > TS_MASK
    need = np.where(sizes <= MAX_SMALL, 4, 8) + sizes + np.where(ext, 8, 0)
    cap = page_size - header_size
    if int(need.max()) > cap:
        raise ValueError(f"an event of {int(need.max())} bytes does not fit a {page_size}-byte page")

    # Greedy page cut: a page takes events while their records fit.
    cum = np.concatenate([[0], np.cumsum(need)])
    starts = []
    i = 0
    while i < n:
        starts.append(i)
        i = int(np.searchsorted(cum, cum[i] + cap, side="right")) - 1
    if not final:
        n = starts.pop()
        if n == 0:
            return np.empty(0, dtype=np.uint8), 0
    first = np.asarray(starts, dtype=np.int64)
    return _lay_out(ts[:n], payload, sizes[:n], delta[:n], ext[:n], first, page_size, header_size), n


def _lay_out(ts: np.ndarray, payload: np.ndarray, sizes: np.ndarray, delta: np.ndarray, ext: np.ndarray,
             first: np.ndarray, page_size: int, header_size: int) -> np.ndarray:
    """The pages, given where each starts (first: index of its first event)."""
    n = ts.size
    small = sizes <= MAX_SMALL
    rec = np.where(small, 4, 8) + sizes
    npages = first.size
    counts = np.diff(np.append(first, n))
    page_of = np.repeat(np.arange(npages), counts)
    is_first = np.zeros(n, dtype=bool)
    is_first[first] = True
    # A page's first event sits at the page timestamp: no delta, no extend record.
    delta = np.where(is_first, 0, delta)
    ext &= ~is_first
    used = rec + np.where(ext, 8, 0)
    end_in_page = np.cumsum(used) - np.repeat(np.concatenate([[0], np.cumsum(used)])[first], counts)
    start_in_page = end_in_page - used

    out = np.zeros(npages * page_size, dtype=np.uint8)
    pages = out.reshape(npages, page_size)
    pages[:, 0:8] = ts[first].astype("<u8").view(np.uint8).reshape(npages, 8)
    commit = np.bincount(page_of, weights=used, minlength=npages).astype("<u8")
    pages[:, 8:16] = commit.view(np.uint8).reshape(npages, 8)
    words = out.view("<u4")
    at = page_of * page_size + header_size + start_in_page  # byte offset of each event's first record
    e = np.flatnonzero(ext)
    if e.size:
        d = delta[e]
        words[at[e] // 4] = (((d & TS_MASK) << 5) | TYPE_TIME_EXTEND).astype(np.uint32)
        words[at[e] // 4 + 1] = (d >> TS_BITS).astype(np.uint32)
    ev_at = at + np.where(ext, 8, 0)
    ev_delta = np.where(ext, 0, delta)
    type_len = np.where(small, sizes // 4, 0)
    words[ev_at // 4] = ((ev_delta << 5) | type_len).astype(np.uint32)
    big = np.flatnonzero(~small)
    if big.size:
        words[ev_at[big] // 4 + 1] = (sizes[big] + 4).astype(np.uint32)
    # Payloads: whole words, copied word by word to their 4-aligned places.
    data_w = (ev_at + np.where(small, 4, 8)) // 4
    nw = sizes // 4
    total = int(nw.sum())
    src = np.concatenate([[0], np.cumsum(nw)])[:-1]
    dst = np.repeat(data_w - src, nw) + np.arange(total, dtype=np.int64)
    words[dst] = np.ascontiguousarray(payload[: total * 4]).view("<u4")
    return out
