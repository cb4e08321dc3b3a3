"""The kernel's event `format` texts -> field layouts -> Arrow columns decoded in bulk.

A trace.dat carries, for every event it may contain, the text the kernel prints in
`events/<system>/<name>/format`. Layouts come only from there: no offset is hard-coded, so a
kvm_exit from a 4.x kernel (no vcpu_id) and one from 6.x (vcpu_id, requests) decode alike.
"""
from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence

import numpy as np
import pyarrow as pa

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
        decl_body = decl.split(None, 1)[1]
        m = _ARRAY_RE.match(decl_body)
        if m is None:  # "__data_loc char[] name": the [] sits on the type
            parts = decl_body.rsplit(None, 1)
            ctype, name = parts[0], parts[-1]
        else:
            ctype, name = m["type"], m["name"]
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
        if n_text.isdigit() and int(n_text) > 0:
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
        signed = 0 if ("unsigned" in ctype or ctype.split()[0].startswith("u") or "*" in ctype) else 1
    return Field(name, ctype, offset, size, bool(signed), None, False, False, False)


def parse_format(text: str | bytes, system: str | None = None) -> EventFormat:
    """Parse one event's `format` text (as stored in trace.dat or under tracefs)."""
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
            ev_id = int(s[3:].strip())
        elif s.startswith("print fmt:"):
            print_fmt = s[len("print fmt:"):].strip()
        elif s.startswith("field:") or s.startswith("field "):
            m = _FIELD_RE.search(s.replace("field ", "field:", 1) if s.startswith("field ") else s)
            if m is None:
                raise ValueError(f"unreadable field line in format of {name or '?'}: {s!r}")
            sig = m["signed"]
            fields.append(_parse_field(m["decl"], int(m["offset"]), int(m["size"]),
                                       None if sig is None else int(sig)))
    if not name:
        raise ValueError("format text has no 'name:' line")
    return EventFormat(ev_id, system or "", name, tuple(fields), print_fmt)


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
    return HeaderPage(ts[0], ts[1], commit[0], commit[1], data[0], data[1])


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


def _gather(data: np.ndarray, starts: np.ndarray, width: int) -> np.ndarray:
    """(n, width) uint8 block of data[starts[i] : starts[i] + width] (caller guarantees bounds).

    Ring-buffer records are 4-byte aligned, so most fields are read as whole 32-bit words: a
    quarter of the index work of a byte gather.
    """
    if starts.size == 0:
        return np.empty((0, width), dtype=np.uint8)
    lead = starts & 3
    if width >= 2 and not np.any(lead != lead[0]):
        w0 = starts >> 2
        nw = (int(lead[0]) + width + 3) >> 2
        if int(w0.max()) + nw <= data.size >> 2:
            words = data[: (data.size >> 2) << 2].view(np.uint32)
            idx = w0[:, None] + np.arange(nw, dtype=np.int64)[None, :] if nw > 1 else w0[:, None]
            block = words[idx].view(np.uint8).reshape(starts.size, nw * 4)
            off = int(lead[0])
            return block[:, off: off + width]
    idx = starts[:, None] + np.arange(width, dtype=np.int64)[None, :]
    return data[idx]


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
    arr = pa.LargeStringArray.from_buffers(
        n, pa.py_buffer(offsets.astype(np.int64)), pa.py_buffer(np.ascontiguousarray(values)), validity,
        null_count,
    )
    try:
        arr.validate(full=True)
    except pa.ArrowInvalid:  # not UTF-8: keep the bytes readable rather than fail
        raw = pa.LargeBinaryArray.from_buffers(
            n, pa.py_buffer(offsets.astype(np.int64)), pa.py_buffer(np.ascontiguousarray(values)), validity,
            null_count,
        )
        arr = pa.array([None if b is None else b.decode("utf-8", "replace") for b in raw.to_pylist()],
                       pa.large_string())
    return arr.cast(pa.string())


def _first_nul_lengths(block: np.ndarray) -> np.ndarray:
    if block.shape[1] == 0:
        return np.zeros(block.shape[0], dtype=np.int64)
    is_nul = block == 0
    has = is_nul.any(axis=1)
    first = is_nul.argmax(axis=1)
    return np.where(has, first, block.shape[1]).astype(np.int64)


def _masked(arr: pa.Array, valid: np.ndarray) -> pa.Array:
    if valid.all():
        return arr
    return pa.compute.if_else(pa.array(valid), arr, pa.nulls(len(arr), arr.type))


def decode_field(field: Field, data: np.ndarray, offsets: np.ndarray, sizes: np.ndarray,
                 endian: str = "little", long_size: int = 8) -> pa.Array:
    """Decode one field of n events whose payloads start at `offsets` within `data`.

    Bytes past an event's payload (truncated or corrupt records) give nulls, never an error.
    """
    import pyarrow.compute  # noqa: F401  (pa.compute used by _masked)

    n = offsets.size
    offsets = offsets.astype(np.int64, copy=False)
    sizes = sizes.astype(np.int64, copy=False)
    end_ok = (field.offset + field.size <= sizes) & (offsets + field.offset + field.size <= data.size)
    starts = np.where(end_ok, offsets + field.offset, 0)

    if field.data_loc or field.rel_loc:
        word = _gather(data, starts, 4).view(_int_dtype(4, False, endian)).reshape(n).astype(np.int64)
        loc = word & 0xFFFF
        length = word >> 16
        if field.rel_loc:
            loc = loc + field.offset + field.size
        valid = end_ok & (loc + length <= sizes) & (offsets + loc + length <= data.size)
        length = np.where(valid, length, 0)
        abs_start = offsets + loc
        total = int(length.sum())
        seg_off = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(length, out=seg_off[1:])
        if total:
            idx = np.repeat(abs_start - seg_off[:-1], length) + np.arange(total, dtype=np.int64)
            values = data[idx]
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
            keep = np.repeat(np.arange(n), length)
            within = np.arange(total, dtype=np.int64) - np.repeat(seg_off[:-1], length)
            sel = within < np.repeat(strlen, length) if total else np.zeros(0, dtype=bool)
            del keep
            new_off = np.zeros(n + 1, dtype=np.int64)
            np.cumsum(strlen, out=new_off[1:])
            return _make_strings(n, new_off, values[sel], valid)
        es = field.elem_size
        if es in (1, 2, 4, 8):
            cnt = length // es
            use = np.repeat(cnt * es, 1)
            sel_idx = np.concatenate([np.arange(seg_off[i], seg_off[i] + use[i]) for i in range(n)]) \
                if n and (use != length).any() else None
            vals = values if sel_idx is None else values[sel_idx]
            flat = np.ascontiguousarray(vals).view(_int_dtype(es, field.signed, endian)).astype(
                _int_dtype(es, field.signed, "little").newbyteorder("="))
            loff = np.zeros(n + 1, dtype=np.int32)
            np.cumsum(cnt, out=loff[1:])
            arr = pa.ListArray.from_arrays(pa.array(loff), pa.array(flat))
            return _masked(arr, valid)
        arr = pa.LargeBinaryArray.from_buffers(n, pa.py_buffer(seg_off), pa.py_buffer(values))
        return _masked(arr.cast(pa.binary()), valid)

    block = _gather(data, starts, field.size)
    if field.is_string:
        return _strings_from_block(block, _first_nul_lengths(block), end_ok)
    atype = arrow_type(field, long_size)
    if pa.types.is_list(atype):
        es = field.elem_size
        flat = np.ascontiguousarray(block).view(_int_dtype(es, field.signed, endian)).astype(
            _int_dtype(es, field.signed, "little").newbyteorder("=")).reshape(-1)
        loff = np.arange(n + 1, dtype=np.int32) * field.array_len
        return _masked(pa.ListArray.from_arrays(pa.array(loff), pa.array(flat)), end_ok)
    if pa.types.is_binary(atype):
        return _masked(pa.array(list(map(bytes, block)), pa.binary()), end_ok)
    vals = np.ascontiguousarray(block).view(_int_dtype(field.size, field.signed, endian)).reshape(n)
    if endian != "little" or vals.dtype.byteorder == ">":
        vals = vals.astype(vals.dtype.newbyteorder("="))
    if pa.types.is_boolean(atype):
        return pa.array(vals != 0, mask=~end_ok)
    return pa.array(vals, type=atype, mask=None if end_ok.all() else ~end_ok)


def decode_fields(fmt: EventFormat, data: np.ndarray, offsets: np.ndarray, sizes: np.ndarray,
                  endian: str = "little", long_size: int = 8,
                  fields: Sequence[str] | None = None) -> dict[str, pa.Array]:
    """Decode fields (default: the event's own, non-common fields) of n events in bulk."""
    wanted = fmt.own_fields if fields is None else tuple(fmt.field(f) for f in fields)
    return {f.name: decode_field(f, data, offsets, sizes, endian, long_size) for f in wanted}
