"""Events -> record payloads -> ring-buffer pages, for whole columns at once.

The inverse of formats/ringbuffer.py and formats/eventformat.py: payloads are laid out from the
template's field offsets; pages are filled greedily (one searchsorted per page, not per event),
with time-extend records where the gap to the previous event needs more than 27 bits.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import UsageError
from ..formats.eventformat import EventFormat

TS_BITS = 27
MAX_SMALL = 28 * 4  # payloads up to 112 bytes fit the type_len encoding
TYPE_TIME_EXTEND = 30
PAGE_HEADER = 16  # u64 timestamp + 8-byte commit (64-bit kernels)


def payload_size(fmt: EventFormat) -> int:
    end = max(f.offset + f.size for f in fmt.fields)
    return (end + 3) & ~3


def encode_payloads(fmt: EventFormat, n: int, columns: dict[str, pa.Array | np.ndarray],
                    pid: np.ndarray, flags: np.ndarray | None = None,
                    preempt: np.ndarray | None = None) -> np.ndarray:
    """(n, payload_size) uint8 block: common fields plus the event's own from `columns`."""
    size = payload_size(fmt)
    block = np.zeros((n, size), dtype=np.uint8)
    values: dict[str, np.ndarray | pa.Array] = {
        "common_type": np.full(n, fmt.id), "common_pid": pid,
        "common_flags": np.zeros(n) if flags is None else flags,
        "common_preempt_count": np.zeros(n) if preempt is None else preempt,
    }
    values.update(columns)
    for f in fmt.fields:
        if f.name not in values:
            continue  # absent fields stay zero, as an unset kernel field would not be
        v = values[f.name]
        if f.data_loc or f.rel_loc:
            raise UsageError(f"the writer cannot encode dynamic field {fmt.name}.{f.name}")
        if f.is_string:
            arr = v if isinstance(v, np.ndarray) else np.asarray(
                pc.fill_null(pa.array(v) if not isinstance(v, pa.Array | pa.ChunkedArray) else v, "").to_pylist(),
                dtype=object)
            raw = np.asarray(arr, dtype=object).astype(f"S{f.size}")
            block[:, f.offset: f.offset + f.size] = raw.view(np.uint8).reshape(n, f.size)
            continue
        if f.array_len:
            lst = v.to_pylist() if isinstance(v, pa.Array | pa.ChunkedArray) else v
            es = f.elem_size
            dt = np.dtype(f"<{'i' if f.signed else 'u'}{es}")
            mat = np.zeros((n, f.array_len), dtype=dt)
            for i, row in enumerate(lst):  # arrays are rare (kvm_emulate_insn): fine per row
                if row:
                    mat[i, : len(row)] = row[: f.array_len]
            block[:, f.offset: f.offset + f.size] = mat.view(np.uint8).reshape(n, f.size)
            continue
        if isinstance(v, pa.Array | pa.ChunkedArray):
            if pa.types.is_boolean(v.type):
                v = pc.cast(v, pa.uint8())
            v = v.fill_null(0).to_numpy(zero_copy_only=False)
        v = np.asarray(v)
        if v.dtype == bool:
            v = v.astype(np.uint8)
        dt = np.dtype(f"<{'i' if f.signed else 'u'}{f.size}") if f.size in (1, 2, 4, 8) else None
        if dt is None:
            raise UsageError(f"the writer cannot encode {fmt.name}.{f.name} ({f.size} bytes)")
        block[:, f.offset: f.offset + f.size] = v.astype(np.int64 if f.signed else np.uint64).astype(dt).view(
            np.uint8).reshape(n, f.size)
    return block


def encode_pages(ts: np.ndarray, payload: np.ndarray, sizes: np.ndarray, page_size: int = 4096) -> np.ndarray:
    """One CPU's events (ts non-decreasing, payloads concatenated) -> pages (uint8, n_pages*page_size)."""
    n = ts.size
    if n == 0:
        return np.empty(0, dtype=np.uint8)
    if np.any(np.diff(ts) < 0):
        raise ValueError("events of one CPU must be in timestamp order")
    sizes = sizes.astype(np.int64)
    padded = (sizes + 3) & ~3
    small = padded <= MAX_SMALL
    rec = np.where(small, 4 + padded, 8 + padded)
    delta = np.diff(ts, prepend=ts[0]).astype(np.int64)
    ext = delta >= (1 << TS_BITS)
    need = rec + np.where(ext, 8, 0)
    cap = page_size - PAGE_HEADER
    if need.max() > cap:
        raise ValueError("an event does not fit in a page")
    cum = np.concatenate([[0], np.cumsum(need)])
    starts = []
    i = 0
    while i < n:  # one step per page
        starts.append(i)
        i = int(np.searchsorted(cum, cum[i] + cap, side="right")) - 1
    starts_a = np.array(starts, dtype=np.int64)
    npages = starts_a.size
    page_of = np.repeat(np.arange(npages), np.diff(np.append(starts_a, n)))
    first = np.zeros(n, dtype=bool)
    first[starts_a] = True
    # The first event of a page takes the page's timestamp: no delta, no extend.
    delta = np.where(first, 0, delta)
    ext = ext & ~first
    used = rec + np.where(ext, 8, 0)
    cum_used = np.cumsum(used)
    page_base = np.concatenate([[0], cum_used])[starts_a]
    pos_in_page = cum_used - used - page_base[page_of]  # start of each event's records within page data
    out = np.zeros(npages * page_size, dtype=np.uint8)
    pages = out.reshape(npages, page_size)
    pages[:, 0:8] = ts[starts_a].astype("<u8").view(np.uint8).reshape(npages, 8)
    commit = np.bincount(page_of, weights=used, minlength=npages).astype("<u8")
    pages[:, 8:16] = commit.view(np.uint8).reshape(npages, 8)
    words = out.view("<u4")
    base = page_of * page_size + PAGE_HEADER + pos_in_page  # byte offsets, 4-aligned
    # time extend records
    e_idx = np.flatnonzero(ext)
    if e_idx.size:
        d = delta[e_idx]
        words[base[e_idx] // 4] = (((d & ((1 << TS_BITS) - 1)) << 5) | TYPE_TIME_EXTEND).astype(np.uint32)
        words[base[e_idx] // 4 + 1] = (d >> TS_BITS).astype(np.uint32)
    ev_at = base + np.where(ext, 8, 0)
    ev_delta = np.where(ext, 0, delta)
    tl = np.where(small, padded // 4, 0)
    words[ev_at // 4] = ((ev_delta << 5) | tl).astype(np.uint32)
    big = np.flatnonzero(~small)
    if big.size:
        words[ev_at[big] // 4 + 1] = (sizes[big] + 4).astype(np.uint32)
    data_at = ev_at + np.where(small, 4, 8)
    src_off = np.concatenate([[0], np.cumsum(sizes)])[:-1]
    total = int(sizes.sum())
    idx_dst = np.repeat(data_at - src_off, sizes) + np.arange(total, dtype=np.int64)
    out[idx_dst] = payload[:total]
    return out
