"""Column values -> event payloads laid out by a format's field offsets, a whole column at a time.

The inverse of eventformat.decode_fields. A payload is the kernel's `struct trace_event_raw_<name>`:
`struct trace_entry` (common_type, common_flags, common_preempt_count, common_pid) and the
event's fields at their offsets, padded to the struct's alignment, because the kernel reserves
`sizeof(struct)` in the ring buffer (kvm_msr: fields end at 25 bytes, records carry 32).
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import UsageError
from ..formats.eventformat import EventFormat, Field


def _align(f: Field) -> int:
    if f.data_loc or f.rel_loc:
        return 4
    a = f.elem_size if f.array_len else f.size
    return a if a in (1, 2, 4, 8) else 1


def payload_size(fmt: EventFormat) -> int:
    """sizeof(struct trace_event_raw_<event>) on x86-64: last field's end rounded up to the widest field."""
    end = max(f.offset + f.size for f in fmt.fields)
    align = max(4, *(_align(f) for f in fmt.fields))
    return (end + align - 1) // align * align


def _ints(v, n: int) -> np.ndarray:
    if isinstance(v, pa.ChunkedArray):
        v = v.combine_chunks()
    if isinstance(v, pa.Array):
        if pa.types.is_boolean(v.type):
            v = pc.cast(v, pa.uint8())
        if pa.types.is_dictionary(v.type):
            v = v.dictionary_decode()
        v = v.fill_null(0).to_numpy(zero_copy_only=False)
    a = np.asarray(v)
    if a.ndim == 0:
        a = np.broadcast_to(a, (n,))
    if a.dtype == bool:
        a = a.astype(np.uint8)
    return a


def _fixed_strings(v, n: int, width: int) -> np.ndarray:
    """(n, width) bytes of NUL-padded strings (longer ones cut, as the kernel's strscpy/memcpy does)."""
    if isinstance(v, str):
        raw = v.encode()[:width]
        row = np.zeros(width, np.uint8)
        row[: len(raw)] = np.frombuffer(raw, np.uint8)
        return np.broadcast_to(row, (n, width))
    if isinstance(v, pa.ChunkedArray):
        v = v.combine_chunks()
    if not isinstance(v, pa.Array):
        v = pa.array(np.asarray(v, dtype=object).astype(str).tolist(), pa.string())
    if not pa.types.is_dictionary(v.type):
        v = pc.dictionary_encode(pc.fill_null(v.cast(pa.string()), ""))
    # Each distinct string encoded once, then gathered: strings repeat (comm names).
    names = v.dictionary.cast(pa.string()).to_pylist()
    if not names:
        return np.zeros((n, width), np.uint8)
    enc = np.array([(s or "").encode() for s in names], dtype=f"S{width}")
    block = enc.view(np.uint8).reshape(len(names), width)
    return block[v.indices.fill_null(0).to_numpy(zero_copy_only=False)]


def _int_arrays(v, n: int, f: Field) -> np.ndarray:
    """(n, array_len) elements of a fixed array column (Arrow list or 2-D NumPy)."""
    dt = np.dtype(f"<{'i' if f.signed else 'u'}{f.elem_size}")
    if isinstance(v, np.ndarray) and v.ndim == 2:
        out = np.zeros((n, f.array_len), dt)
        w = min(v.shape[1], f.array_len)
        out[:, :w] = v[:, :w]
        return out
    if isinstance(v, pa.ChunkedArray):
        v = v.combine_chunks()
    if not isinstance(v, pa.Array):
        v = pa.array(list(v))
    lens = pc.list_value_length(v).fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
    flat = pc.list_flatten(v).fill_null(0).to_numpy(zero_copy_only=False)
    out = np.zeros((n, f.array_len), dt)
    keep = np.minimum(lens, f.array_len)
    row = np.repeat(np.arange(n), lens)
    col = np.arange(lens.sum()) - np.repeat(np.cumsum(lens) - lens, lens)
    m = col < np.repeat(keep, lens)
    out[row[m], col[m]] = flat[m]
    return out


def encode_payloads(fmt: EventFormat, n: int, columns: dict, pid, flags=None, preempt=None) -> np.ndarray:
    """(n, payload_size) uint8 block: common fields plus the event's own fields from `columns`.

    Fields absent from `columns` stay zero. Dynamic (__data_loc) fields are not written.
    """
    size = payload_size(fmt)
    block = np.zeros((n, size), dtype=np.uint8)
    if n == 0:
        return block
    values = {"common_type": fmt.id, "common_pid": pid,
              "common_flags": 0 if flags is None else flags,
              "common_preempt_count": 0 if preempt is None else preempt}
    values.update(columns)
    for f in fmt.fields:
        if f.name not in values:
            continue
        v = values[f.name]
        if f.data_loc or f.rel_loc:
            raise UsageError(f"cannot write dynamic field {fmt.name}.{f.name}")
        span = slice(f.offset, f.offset + f.size)
        if f.is_string:
            block[:, span] = _fixed_strings(v, n, f.size)
        elif f.array_len:
            block[:, span] = _int_arrays(v, n, f).view(np.uint8).reshape(n, f.size)
        elif f.size in (1, 2, 4, 8):
            dt = np.dtype(f"<{'i' if f.signed else 'u'}{f.size}")
            a = _ints(v, n)
            # Wrap to the field's width as C does (-1 in an unsigned field is all ones).
            a = a.astype(np.int64, copy=False) if a.dtype.kind in "iub" and a.dtype != np.uint64 else a
            block[:, span] = a.astype(dt).view(np.uint8).reshape(n, f.size)
        else:
            raise UsageError(f"cannot write {fmt.name}.{f.name} ({f.size} bytes)")
    return block
