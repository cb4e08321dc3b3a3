"""The kernel's event `format` texts -> field layouts -> Arrow columns decoded in bulk.

A trace.dat carries, for every event it may contain, the text the kernel prints in
`events/<system>/<name>/format`. Layouts come only from there: no offset is hard-coded, so a
kvm_exit from a 4.x kernel (no vcpu_id) and one from 6.x (vcpu_id, requests) decode alike.
"""
from __future__ import annotations

import dataclasses
import functools
import re
import threading
from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from .limits import GATHER_BYTES, MAX_EVENT_ID, MAX_RECORD

COMMON_PREFIX = "common_"

_FIELD_RE = re.compile(
    r"field:\s*(?P<decl>[^;]+);\s*offset:\s*(?P<offset>\d+);\s*size:\s*(?P<size>\d+);"
    r"(?:\s*signed:\s*(?P<signed>-?\d+);)?"
)
_ARRAY_RE = re.compile(r"^(?P<type>.*?)\s*(?P<name>[A-Za-z_][A-Za-z0-9_]*)\s*\[(?P<len>[^\]]*)\]$")
_NAME_RE = re.compile(r"^(?P<type>.*?)\s*(?P<name>[A-Za-z_][A-Za-z0-9_]*)$")


@dataclasses.dataclass(frozen=True)
class Field:
    name: str
    type: str  # C type as written, e.g. "unsigned int", "char", "__data_loc char[]"
    offset: int
    size: int
    signed: bool
    array_len: int | None  # None: scalar; N: fixed array; 0: dynamic (__data_loc / __rel_loc)
    data_loc: bool
    rel_loc: bool
    is_string: bool

    @property
    def elem_size(self) -> int:
        if self.data_loc or self.rel_loc:
            base = _base_type(self.type)
            return _C_SIZES.get(base, 1)
        if self.array_len:
            return max(1, self.size // self.array_len)
        return self.size

    @property
    def is_common(self) -> bool:
        return self.name.startswith(COMMON_PREFIX)


@dataclasses.dataclass(frozen=True)
class EventFormat:
    id: int
    system: str
    name: str
    fields: tuple[Field, ...]
    print_fmt: str = ""

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(f"{self.system}:{self.name} has no field {name!r}")

    @property
    def own_fields(self) -> tuple[Field, ...]:
        return tuple(f for f in self.fields if not f.is_common)

    @property
    def common_fields(self) -> tuple[Field, ...]:
        return tuple(f for f in self.fields if f.is_common)


@dataclasses.dataclass(frozen=True)
class HeaderPage:
    """Layout of a ring-buffer page header, from the file's `header_page` text."""

    ts_offset: int = 0
    ts_size: int = 8
    commit_offset: int = 8
    commit_size: int = 8
    data_offset: int = 16
    data_size: int = 4080


@dataclasses.dataclass(frozen=True)
class HeaderEvent:
    """Bit layout of the 32-bit event header, from the file's `header_event` text."""

    type_len_bits: int = 5
    time_delta_bits: int = 27
    padding: int = 29
    time_extend: int = 30
    time_stamp: int = 31
    data_max_type_len: int = 28


_C_SIZES = {
    "char": 1, "u8": 1, "s8": 1, "__u8": 1, "__s8": 1, "bool": 1, "_Bool": 1,
    "short": 2, "u16": 2, "s16": 2, "__u16": 2, "__s16": 2,
    "int": 4, "u32": 4, "s32": 4, "__u32": 4, "__s32": 4, "unsigned": 4,
    "u64": 8, "s64": 8, "__u64": 8, "__s64": 8, "long long": 8,
}


def _base_type(ctype: str) -> str:
    t = ctype.replace("__data_loc", "").replace("__rel_loc", "").replace("[]", "")
    t = t.replace("unsigned", "").replace("signed", "").replace("const", "").strip()
    return t or "int"


def _to_text(text: str | bytes) -> str:
    return text.decode("utf-8", "replace") if isinstance(text, bytes | bytearray | memoryview) else text


def _parse_field(decl: str, offset: int, size: int, signed: int | None) -> Field:
    decl = " ".join(decl.split())
    data_loc = decl.startswith("__data_loc")
    rel_loc = decl.startswith("__rel_loc")
    if data_loc or rel_loc:
        parts = decl.split(None, 1)
        m = _ARRAY_RE.match(parts[-1]) if len(parts) == 2 else None
        if m is not None:
            ctype, name = m["type"], m["name"]
        elif len(parts) == 2 and len(parts[1].rsplit(None, 1)) == 2:  # "__data_loc char[] name"
            ctype, name = parts[1].rsplit(None, 1)
        else:
            raise ValueError(f"field {decl!r}: a {parts[0]} field needs a type and a name")
        if size != 4:  # the kernel stores (length << 16 | offset) in 32 bits
            raise ValueError(f"field {name}: {parts[0]} of size {size} (it is 4 bytes)")
        ctype = ctype.replace("[]", "").strip()
        is_string = _base_type(ctype) == "char"
        return Field(name, ("__rel_loc " if rel_loc else "__data_loc ") + ctype + "[]", offset, size,
                     bool(signed), 0, data_loc, rel_loc, is_string)
    m = _ARRAY_RE.match(decl)
    if m is not None:
        ctype, name = m["type"].strip(), m["name"]
        base = _base_type(ctype)
        elem = _C_SIZES.get(base)
        if elem is None and "*" in ctype:
            elem = None
        n_text = m["len"].strip()
        if n_text.isascii() and n_text.isdigit() and 0 < int(n_text) <= max(size, 1):
            n = int(n_text)
        else:  # e.g. char comm[TASK_COMM_LEN]: the size field says how long
            n = size // (elem or 1) if elem else size
        is_string = base == "char"
        if signed is None:
            signed = 0 if ("unsigned" in ctype or ctype.startswith("u")) else 1
        return Field(name, ctype, offset, size, bool(signed), n, False, False, is_string)
    m = _NAME_RE.match(decl)
    ctype, name = (m["type"].strip(), m["name"]) if m else ("int", decl)
    if signed is None:  # formats older than 2.6.30 lack "signed:"
        signed = 0 if ("unsigned" in ctype or ctype.lstrip().startswith("u") or "*" in ctype) else 1
    return Field(name, ctype, offset, size, bool(signed), None, False, False, False)


def parse_format(text: str | bytes, system: str | None = None) -> EventFormat:
    """Parse one event's `format` text (as stored in trace.dat or under tracefs).

    ValueError when the text cannot describe a real event: no name, an id that is not 0..65535,
    two fields of one name, a field beyond any record, a common field that is not an integer.
    Results are remembered by text (formats are immutable): traces from one kernel share them.
    """
    return _parse_format(text if isinstance(text, str | bytes) else bytes(text), system)


@functools.lru_cache(maxsize=1 << 13)
def _parse_format(text: str | bytes, system: str | None) -> EventFormat:
    text = _to_text(text)
    name = ""
    ev_id = -1
    print_fmt = ""
    fields: list[Field] = []
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("name:"):
            name = s[5:].strip()
        elif s.startswith("ID:"):
            ev_id = _event_id(s[3:].strip())
        elif s.startswith("print fmt:"):
            print_fmt = s[len("print fmt:"):].strip()
        elif s.startswith("field:") or s.startswith("field "):
            m = _FIELD_RE.search(s.replace("field ", "field:", 1) if s.startswith("field ") else s)
            if m is None:
                raise ValueError(f"unreadable field line in format of {name or '?'}: {s!r}")
            fields.append(_checked_field(m))
    if not name:
        raise ValueError("format text has no 'name:' line")
    _check_fields(name, fields)
    return EventFormat(ev_id, system or "", name, tuple(fields), print_fmt)


def _event_id(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or int(text) > MAX_EVENT_ID:
        raise ValueError(f"event id {text[:30]!r} is not a number from 0 to {MAX_EVENT_ID}")
    return int(text)


def _checked_field(m: re.Match) -> Field:
    offset, size, sig = m["offset"], m["size"], m["signed"]
    for what, v in (("offset", offset), ("size", size)):
        if not v.isascii() or int(v) > MAX_RECORD:
            raise ValueError(f"field {m['decl'].strip()[:60]!r}: {what} {v[:30]} is beyond any record")
    signed = None if sig is None else int(sig) != 0
    return _parse_field(m["decl"], int(offset), int(size), signed)


def _check_fields(name: str, fields: list[Field]) -> None:
    seen: set[str] = set()
    for f in fields:
        if f.name in seen:
            raise ValueError(f"format of {name}: two fields named {f.name!r}")
        seen.add(f.name)
        if f.offset + max(f.size, 1) > MAX_RECORD:
            raise ValueError(f"format of {name}: field {f.name} ends beyond any record")
        if f.is_common and not _scalar(f):
            raise ValueError(f"format of {name}: common field {f.name} is not an integer of 1, 2, 4 or 8 bytes")


def parse_header_page(text: str | bytes) -> HeaderPage:
    text = _to_text(text)
    got: dict[str, tuple[int, int]] = {}
    for m in _FIELD_RE.finditer(text):
        decl = " ".join(m["decl"].split())
        fname = decl.rsplit(None, 1)[-1]
        got[fname] = (int(m["offset"]), int(m["size"]))
    try:
        ts, commit, data = got["timestamp"], got["commit"], got["data"]
    except KeyError as exc:
        raise ValueError(f"header_page lacks field {exc.args[0]}") from None
    hp = HeaderPage(ts[0], ts[1], commit[0], commit[1], data[0], data[1])
    if hp.ts_size != 8 or hp.commit_size not in (4, 8):
        raise ValueError(f"page header with a {hp.ts_size}-byte timestamp and a {hp.commit_size}-byte commit "
                         "word (expected 8 and 4 or 8)")
    if max(hp.ts_offset + 8, hp.commit_offset + hp.commit_size) > hp.data_offset or hp.data_offset % 4:
        raise ValueError(f"page header fields overlap its data (data offset {hp.data_offset})")
    return hp


def parse_header_event(text: str | bytes) -> HeaderEvent:
    text = _to_text(text)
    vals: dict[str, int] = {}
    for m in re.finditer(r"(\w+)\s*:\s*(\d+)\s*bits", text):
        vals[m[1]] = int(m[2])
    for m in re.finditer(r"(\w+)\s*:\s*type\s*==\s*(\d+)", text):
        vals[m[1]] = int(m[2])
    m = re.search(r"data max type_len\s*==\s*(\d+)", text)
    he = HeaderEvent(
        vals.get("type_len", 5), vals.get("time_delta", 27), vals.get("padding", 29),
        vals.get("time_extend", 30), vals.get("time_stamp", 31), int(m[1]) if m else 28,
    )
    if (he.type_len_bits, he.time_delta_bits) != (5, 27):
        raise ValueError(
            f"unsupported event header layout: type_len {he.type_len_bits} bits, "
            f"time_delta {he.time_delta_bits} bits"
        )
    # type_len is 5 bits: the special kinds are three distinct values above the data lengths.
    special = (he.padding, he.time_extend, he.time_stamp)
    if len(set(special)) != 3 or max(special) > 31 or not 0 < he.data_max_type_len < min(special):
        raise ValueError(f"unsupported event header layout: padding {he.padding}, time_extend {he.time_extend}, "
                         f"time_stamp {he.time_stamp}, data max type_len {he.data_max_type_len}")
    return he


def _int_dtype(size: int, signed: bool, endian: str) -> np.dtype:
    return np.dtype(f"{'<' if endian == 'little' else '>'}{'i' if signed else 'u'}{size}")


def arrow_type(field: Field, long_size: int = 8) -> pa.DataType:
    """Arrow type of a decoded field (strings for char arrays, lists for other arrays)."""
    if field.is_string:
        return pa.string()
    if field.data_loc or field.rel_loc:
        es = field.elem_size
        if es in (1, 2, 4, 8):
            return pa.list_(pa.from_numpy_dtype(_int_dtype(es, field.signed, "little").newbyteorder("=")))
        return pa.binary()
    if field.array_len:
        es = field.elem_size
        if es in (1, 2, 4, 8) and es * field.array_len == field.size:
            return pa.list_(pa.from_numpy_dtype(_int_dtype(es, field.signed, "little").newbyteorder("=")))
        return pa.binary()
    if _base_type(field.type) in ("bool", "_Bool") and field.size == 1:
        return pa.bool_()
    if field.size in (1, 2, 4, 8):
        return pa.from_numpy_dtype(_int_dtype(field.size, field.signed, "little").newbyteorder("="))
    return pa.binary()


# Rows gathered per block: small enough that a block stays in cache while its fields are cut out.
GATHER_ROWS = 1 << 14


@dataclasses.dataclass
class Fixed:
    """Raw bytes of fixed-offset fields of n records, and which rows hold each field whole."""

    values: dict[str, np.ndarray]  # scalars: (n,) native-order ints; arrays and strings: (n, size) uint8
    valid: dict[str, np.ndarray | None]  # None: every row


def _scalar(field: Field) -> bool:
    return not field.array_len and not field.data_loc and not field.rel_loc and field.size in (1, 2, 4, 8)


def _width(field: Field) -> int:
    return 4 if (field.data_loc or field.rel_loc) else field.size


def gather_fixed(fields: Sequence[Field], data: np.ndarray, offsets: np.ndarray, sizes: np.ndarray,
                 endian: str = "little", pool=None, out: dict[str, np.ndarray] | None = None,
                 rows: np.ndarray | None = None, extra: Sequence[tuple[np.ndarray, np.ndarray]] = ()) -> Fixed:
    """Read fixed-offset fields of records starting at `offsets` in `data`.

    Each block of rows is one gather of whole records (a void view of the data at every byte
    offset), then each field is cut out of the block as a strided column: one index pass for all
    fields instead of one per field. Works for any alignment and byte order; a field that does
    not fit in its record (or in the data) is marked invalid, never read out of bounds.

    `rows`, when given, picks the records (offsets[rows], sizes[rows]) block by block, so their
    offsets are never materialized; `extra` (source, destination) pairs are gathered at the same
    rows in the same pass. Blocks run on `pool` when given; `out` may supply destination arrays
    (of the field's own dtype).
    """
    n = offsets.size if rows is None else rows.size
    fields = list(fields)
    res: dict[str, np.ndarray] = {}
    for f in fields:
        if _scalar(f) or f.data_loc or f.rel_loc:
            dt = _int_dtype(_width(f), f.signed, endian)
            given = (out or {}).get(f.name)
            res[f.name] = given if given is not None and given.dtype == dt else np.empty(n, dtype=dt)
        else:
            res[f.name] = np.empty((n, f.size), dtype=np.uint8)
    lo = min((f.offset for f in fields), default=0) & ~7
    width = (max((f.offset + _width(f) for f in fields), default=0) - lo + 7) & ~7
    room = data.size - lo - width + 1  # record starts the whole-width view can serve
    view = np.ndarray((room,), dtype=np.dtype((np.void, width)), buffer=data, offset=lo, strides=(1,)) \
        if room > 0 and width else None
    plan = [(f.name, f.offset - lo, f.offset + _width(f), res[f.name]) for f in fields]
    valid: dict[str, np.ndarray | None] = {f.name: None for f in fields}
    lock = threading.Lock()
    step = max(1, min(GATHER_ROWS, GATHER_BYTES // max(width, 1)))  # a wide record: fewer rows a block

    def block(i: int) -> None:
        if rows is None:
            part, sz = offsets[i: i + step], sizes[i: i + step]
        else:
            r = rows[i: i + step]
            for src, dst in extra:
                np.take(src, r, out=dst[i: i + r.size], mode="clip")
            part, sz = offsets[r], sizes[r]
        if not fields or not part.size:
            return
        part = part.astype(np.intp, copy=False)
        # No view: the fields take no bytes (flexible arrays, `char buf[]` of size 0) or the data
        # is shorter than one record; every row takes the bounds-checked path.
        near_end = part >= room if view is not None else np.ones(part.size, bool)
        if near_end.any():
            blk = np.zeros((part.size, width), dtype=np.uint8)
            inside = np.flatnonzero(~near_end)
            if inside.size:
                blk[inside] = view[part[inside]].view(np.uint8).reshape(-1, width)
            tail = np.flatnonzero(near_end)
            if data.size:
                idx = part[tail, None] + lo + np.arange(width)
                blk[tail] = np.where(idx < data.size, data[np.minimum(idx, data.size - 1)], 0)
        else:
            blk = view[part].view(np.uint8).reshape(-1, width)
        smin, omax = int(sz.min()), int(part.max())
        for name, at, end, dst in plan:
            if dst.ndim == 2:
                dst[i: i + part.size] = blk[:, at: at + dst.shape[1]]
            else:
                k = dst.dtype.itemsize
                if at % k == 0:
                    dst[i: i + part.size] = blk.view(dst.dtype)[:, at // k]
                else:
                    dst[i: i + part.size] = np.ascontiguousarray(blk[:, at: at + k]).view(dst.dtype)[:, 0]
            if smin < end or omax + end > data.size:
                with lock:
                    if valid[name] is None:
                        valid[name] = np.ones(n, dtype=bool)
                valid[name][i: i + part.size] = (sz >= end) & (part + end <= data.size)

    starts = range(0, n, step)
    if pool is None or n <= step:
        for i in starts:
            block(i)
    else:
        list(pool.map(block, starts))
    for f in fields:
        v = res[f.name]
        if v.ndim == 1 and v.dtype.byteorder == ">":
            res[f.name] = v.astype(v.dtype.newbyteorder("="))
    return Fixed(res, valid)


def _strings_from_block(block: np.ndarray, lengths: np.ndarray, valid: np.ndarray | None) -> pa.Array:
    """Arrow strings from the first lengths[i] bytes of each row of a (n, w) block."""
    n, w = block.shape
    mask = np.arange(w)[None, :] < lengths[:, None]
    values = block[mask]
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return _make_strings(n, offsets, values, valid)


def _make_strings(n: int, offsets: np.ndarray, values: np.ndarray, valid: np.ndarray | None) -> pa.Array:
    validity = None
    null_count = 0
    if valid is not None and not valid.all():
        validity = pa.py_buffer(np.packbits(valid.astype(np.uint8), bitorder="little"))
        null_count = int((~valid).sum())
    small = offsets[-1] < (1 << 31) if n else True
    cls = pa.StringArray if small else pa.LargeStringArray
    arr = cls.from_buffers(
        n, pa.py_buffer(offsets.astype(np.int32 if small else np.int64)), pa.py_buffer(np.ascontiguousarray(values)),
        validity, null_count,
    )
    try:
        arr.validate(full=True)
    except pa.ArrowInvalid:  # not UTF-8: keep the bytes readable rather than fail
        raw = pa.Array.from_buffers(pa.large_binary(), n, [validity, pa.py_buffer(offsets.astype(np.int64)),
                                                            pa.py_buffer(np.ascontiguousarray(values))], null_count)
        arr = pa.array([None if b is None else b.decode("utf-8", "replace") for b in raw.to_pylist()],
                       pa.large_string())
    return arr.cast(pa.string()) if small else arr.cast(pa.large_string())


_ONES = np.uint64(0x0101010101010101)
_HIGHS = np.uint64(0x8080808080808080)


def _first_nul_lengths(block: np.ndarray) -> np.ndarray:
    """Bytes before the first NUL of each row (the row width if none), eight bytes at a time.

    Per 64-bit word, (x - 0x01..) & ~x & 0x80.. has its lowest set bit in the first zero byte (a
    borrow only runs upward from a real zero), so that byte's index is log2 of the lowest bit.
    """
    n, w = block.shape
    if w == 0:
        return np.zeros(n, dtype=np.int64)
    w8 = (w + 7) & ~7
    if w8 != w or not block.flags.c_contiguous:
        padded = np.full((n, w8), 0xFF, dtype=np.uint8)
        padded[:, :w] = block
        block = padded
    words = block.view("<u8")
    out = np.full(n, w, dtype=np.int64)
    todo = np.ones(n, dtype=bool)
    for j in range(w8 // 8):
        x = words[:, j]
        z = (x - _ONES) & ~x & _HIGHS
        hit = todo & (z != 0)
        if hit.any():
            zh = z[hit]
            low = zh & (~zh + np.uint64(1))
            out[hit] = np.minimum(8 * j + (np.log2(low.astype(np.float64)).astype(np.int64) >> 3), w)
            todo &= ~hit
            if not todo.any():
                break
    return out


def _masked(arr: pa.Array, valid: np.ndarray) -> pa.Array:
    if valid.all():
        return arr
    return pa.compute.if_else(pa.array(valid), arr, pa.nulls(len(arr), arr.type))


def _dynamic(field: Field, loc_word: np.ndarray, word_ok: np.ndarray | None, data: np.ndarray,
             offsets: np.ndarray, sizes: np.ndarray, endian: str) -> pa.Array:
    """A __data_loc / __rel_loc field: the 32-bit word (length << 16 | offset) points into the record."""
    n = offsets.size
    word = loc_word.astype(np.int64)
    loc = word & 0xFFFF
    length = word >> 16
    if field.rel_loc:
        loc = loc + field.offset + field.size
    valid = (loc + length <= sizes) & (offsets + loc + length <= data.size)
    if word_ok is not None:
        valid &= word_ok
    length = np.where(valid, length, 0)
    abs_start = offsets + loc
    total = int(length.sum())
    seg_off = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(length, out=seg_off[1:])
    if total:
        values = data[np.repeat(abs_start - seg_off[:-1], length) + np.arange(total, dtype=np.int64)]
    else:
        values = np.empty(0, dtype=np.uint8)
    if field.is_string:
        # The stored string includes its NUL; cut at the first NUL of each segment.
        nul_pos = np.flatnonzero(values == 0)
        strlen = length.copy()
        if nul_pos.size:
            seg_of = np.searchsorted(seg_off, nul_pos, side="right") - 1
            firsts, first_idx = np.unique(seg_of, return_index=True)
            strlen[firsts] = nul_pos[first_idx] - seg_off[firsts]
        within = np.arange(total, dtype=np.int64) - np.repeat(seg_off[:-1], length)
        sel = within < np.repeat(strlen, length)
        new_off = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(strlen, out=new_off[1:])
        return _make_strings(n, new_off, values[sel], valid)
    es = field.elem_size
    if es in (1, 2, 4, 8):
        cnt = length // es
        if (cnt * es != length).any():  # a ragged tail of a partial element: drop it
            within = np.arange(total, dtype=np.int64) - np.repeat(seg_off[:-1], length)
            values = values[within < np.repeat(cnt * es, length)]
        flat = np.ascontiguousarray(values).view(_int_dtype(es, field.signed, endian)).astype(
            _int_dtype(es, field.signed, "little").newbyteorder("="))
        loff = np.zeros(n + 1, dtype=np.int32)
        np.cumsum(cnt, out=loff[1:])
        return _masked(pa.ListArray.from_arrays(pa.array(loff), pa.array(flat)), valid)
    arr = pa.LargeBinaryArray.from_buffers(n, pa.py_buffer(seg_off), pa.py_buffer(values))
    return _masked(arr.cast(pa.binary()), valid)


def _to_arrow(field: Field, vals: np.ndarray, valid: np.ndarray | None, long_size: int, endian: str) -> pa.Array:
    n = vals.shape[0]
    if field.is_string:
        return _strings_from_block(vals, _first_nul_lengths(vals), valid)
    atype = arrow_type(field, long_size)
    if pa.types.is_list(atype):
        es = field.elem_size
        flat = vals.view(_int_dtype(es, field.signed, endian)).astype(
            _int_dtype(es, field.signed, "little").newbyteorder("="), copy=False).reshape(-1)
        loff = np.arange(n + 1, dtype=np.int32) * field.array_len
        arr = pa.ListArray.from_arrays(pa.array(loff), pa.array(flat))
        return arr if valid is None else _masked(arr, valid)
    if pa.types.is_binary(atype):
        width = vals.shape[1] if vals.ndim == 2 else vals.dtype.itemsize
        arr = pa.FixedSizeBinaryArray.from_buffers(pa.binary(width), n, [None, pa.py_buffer(
            np.ascontiguousarray(vals))]).cast(pa.binary())
        return arr if valid is None else _masked(arr, valid)
    mask = None if valid is None else ~valid
    if pa.types.is_boolean(atype):
        return pa.array(vals != 0, mask=mask)
    return pa.array(vals, type=atype, mask=mask)


def decode_field(field: Field, data: np.ndarray, offsets: np.ndarray, sizes: np.ndarray,
                 endian: str = "little", long_size: int = 8) -> pa.Array:
    """Decode one field of n events whose payloads start at `offsets` within `data`.

    Bytes past an event's payload (truncated or corrupt records) give nulls, never an error.
    """
    return decode_fields_of([field], data, offsets, sizes, endian, long_size)[field.name]


def decode_fields_of(fields: Sequence[Field], data: np.ndarray, offsets: np.ndarray, sizes: np.ndarray,
                     endian: str = "little", long_size: int = 8, pool=None, rows: np.ndarray | None = None,
                     extra: Sequence[tuple[np.ndarray, np.ndarray]] = ()) -> dict[str, pa.Array]:
    """Decode fields of the records at `offsets` (or at offsets[rows]; see `gather_fixed`)."""
    import pyarrow.compute  # noqa: F401  (pa.compute used by _masked)

    n = offsets.size if rows is None else rows.size
    wide = [f for f in fields if not _scalar(f) and not (f.data_loc or f.rel_loc) and n * f.size > max(data.size, 1 << 20)]
    if wide:
        # More bytes than the data holds: most records cannot contain the field (a corrupt format),
        # so only the rows whose records hold it are gathered, and the rest are null.
        fields = [f for f in fields if f not in wide]
        out = decode_fields_of(fields, data, offsets, sizes, endian, long_size, pool, rows, extra)
        for f in wide:
            out[f.name] = _sparse(f, data, offsets, sizes, endian, long_size, rows)
        return {f.name: out[f.name] for f in (*fields, *wide)}
    fixed = gather_fixed(fields, data, offsets, sizes, endian, pool, rows=rows, extra=extra)
    if any(f.data_loc or f.rel_loc for f in fields):
        if rows is not None:
            offsets, sizes = offsets[rows], sizes[rows]
        offsets, sizes = offsets.astype(np.int64, copy=False), sizes.astype(np.int64, copy=False)
    out = {}
    for f in fields:
        vals, valid = fixed.values.pop(f.name), fixed.valid[f.name]
        if f.data_loc or f.rel_loc:
            out[f.name] = _dynamic(f, vals, valid, data, offsets, sizes, endian)
        else:
            out[f.name] = _to_arrow(f, vals, valid, long_size, endian)
    return out


def _sparse(field: Field, data: np.ndarray, offsets: np.ndarray, sizes: np.ndarray, endian: str, long_size: int,
            rows: np.ndarray | None) -> pa.Array:
    """One fixed field decoded only where its record holds it (null elsewhere)."""
    off = offsets if rows is None else offsets[rows]
    sz = sizes if rows is None else sizes[rows]
    end = field.offset + field.size
    fits = (sz.astype(np.int64) >= end) & (off.astype(np.int64) + end <= data.size)
    at = np.flatnonzero(fits)
    if at.size * field.size > max(data.size, 1 << 20):  # records overlap: not a ring buffer's
        return pa.nulls(off.size, arrow_type(field, long_size))
    got = decode_fields_of([field], data, off[at], sz[at], endian, long_size)[field.name]
    index = np.full(off.size, -1, np.int64)
    index[at] = np.arange(at.size)
    return got.take(pa.array(index, mask=index < 0))


def decode_fields(fmt: EventFormat, data: np.ndarray, offsets: np.ndarray, sizes: np.ndarray,
                  endian: str = "little", long_size: int = 8,
                  fields: Sequence[str] | None = None, pool=None) -> dict[str, pa.Array]:
    """Decode fields (default: the event's own, non-common fields) of n events in bulk."""
    wanted = fmt.own_fields if fields is None else tuple(fmt.field(f) for f in fields)
    return decode_fields_of(wanted, data, offsets, sizes, endian, long_size, pool)
