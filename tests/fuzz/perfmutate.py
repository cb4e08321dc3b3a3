"""Structure-aware mutations of perf.data inputs, deterministic per (campaign seed, input index).

Two layers, as for trace.dat: edits of the `PerfModel` before it is written (attr sizes,
sample_type bits, read_format, configs and ids; records dropped, duplicated, reordered, cut,
resized, retyped, taken from another seed, a sample's RAW size; feature sections dropped, cut or
replaced; the tracing data's format and header texts through the trace.dat model mutations, its
page size and version; pipe or file mode; compression), then edits of the written bytes at the
fields `perflayout.walk` finds (header sizes and offsets, the feature bitmap and table, attr
fields, record headers, sample fields, the tracing data's sizes), records inserted with the
file's offsets moved along, splices, bit flips and truncation.
"""
from __future__ import annotations

import random
import struct

from . import perflayout
from .layout import Field, Layout
from .mutate import U, _u, _value_for, insert, truncation_point
from .mutate import model_mutation as dat_model_mutation
from .perfseed import PerfModel

READ, CALLCHAIN, RAW, IDENTIFIER, TIME, TID, CPU = 1 << 4, 1 << 5, 1 << 10, 1 << 16, 1 << 2, 1 << 1, 1 << 7
RECORD_TYPES = [0, 1, 2, 3, 4, 7, 9, 10, 13, 64, 65, 66, 67, 68, 69, 70, 71, 72, 73, 78, 80, 81, 82, 83, 100,
                0xFFFFFFFF]


def _perf_value(f: Field, old: int, size: int, rng: random.Random) -> int:
    special = {
        "attr_type": [0, 1, 2, 3, 4, 5, 6, 0xFFFFFFFF],
        "attr_size": [0, 8, 63, 64, 65, 72, 120, 128, 136, 4096, 2**32 - 1],
        "config": [0, 65535, 65536, 2**63, 2**64 - 1, old + 1],
        "sample_type": [old ^ (1 << rng.randrange(25)), 0, 2**64 - 1, old | READ, old | CALLCHAIN, old & ~RAW,
                        old & ~TIME, old & ~IDENTIFIER, old & ~CPU, old & ~TID],
        "read_format": [0, 1, 2, 4, 8, 16, 31, 2**64 - 1],
        "attr_flags": [old ^ (1 << 18), old ^ (1 << 25), 0, 2**64 - 1, old ^ (1 << rng.randrange(64))],
        "featbits": [0, 2**64 - 1, old ^ (1 << rng.randrange(64)), old | 2, old & ~2],
        "rtype": RECORD_TYPES,
        "rsize": [0, 1, 7, 8, 9, 16, old + 8, old - 8, old + 1, old - 1, 65535],
        "misc": [0, 1, 2, 3, 0x8000, 0xFFFF],
        "feature": [0, 1, 12, 27, 255, 256, 2**63],
        "lost": [0, 2**63, 2**64 - 1],
        "pid": [0xFFFFFFFF, 2**31, 0],
    }.get(f.label)
    if special is None:
        return _value_for(f, old, size, 4096, rng)
    return rng.choice(special + [rng.randrange(U[f.width] + 1)])


def container_mutation(data: bytes, lay: Layout, rng: random.Random, others: list[bytes]) -> tuple[bytes, str]:
    op = rng.choice(["field"] * 7 + ["truncate", "flip", "splice", "insert", "delete"])
    buf = bytearray(data)
    if op == "field" and lay.fields:
        f = rng.choice(lay.fields)
        old = int.from_bytes(buf[f.offset: f.offset + f.width], "little")
        new = _perf_value(f, old, len(buf), rng)
        buf[f.offset: f.offset + f.width] = _u(new, f.width)
        return bytes(buf), f"field:{f.label}@{f.offset}={new & U[f.width]:#x}"
    if op == "truncate":
        cut = truncation_point(data, lay, rng)
        return data[:cut], f"truncate@{cut}"
    records = [r for r in lay.regions if r.label == "record"]
    if op == "splice" and others:
        other = rng.choice(others)
        olay = perflayout.walk(other)
        if lay.regions and olay.regions:
            dst = rng.choice(lay.regions)
            src = rng.choice([r for r in olay.regions if r.label == dst.label] or olay.regions)
            piece = other[src.offset: src.offset + min(src.length, dst.length)]
            buf[dst.offset: dst.offset + len(piece)] = piece
            return bytes(buf), f"splice:{dst.label}@{dst.offset}"
    if op == "insert" and records:
        at = rng.choice(records).offset
        src = rng.choice(records)
        blob = rng.choice([data[src.offset: src.offset + src.length],
                           struct.pack("<IHH", rng.choice(RECORD_TYPES), 0, rng.choice([8, 16, 24])) + bytes(16)])
        size_field = 48 if data[8:16] != _u(16, 8) else None
        return insert(data, lay, at, blob, size_field), f"insert:{len(blob)}@{at}"
    if op == "delete" and len(buf) > 64:
        at = rng.choice([f.offset for f in lay.fields] or [rng.randrange(len(buf))])
        n = rng.choice([1, 2, 4, 8, 16, 100])
        del buf[at: at + n]
        return bytes(buf), f"delete:{n}@{at}"
    for _ in range(rng.choice([1, 2, 4, 8])):
        if buf:
            i = rng.randrange(len(buf))
            buf[i] = buf[i] ^ (1 << rng.randrange(8)) if rng.random() < 0.7 else rng.randrange(256)
    return bytes(buf), "flip"


def _set_u(raw: bytes, at: int, width: int, value: int) -> bytes:
    if at + width > len(raw):
        return raw
    return raw[:at] + _u(value, width) + raw[at + width:]


def model_mutation(m: PerfModel, rng: random.Random, mut, others: list[PerfModel]) -> str:  # noqa: C901
    op = rng.choice(["sample_type", "sample_type", "attr_size", "read_format", "config", "attr_drop", "attr_dup",
                     "ids", "rec_drop", "rec_dup", "rec_shuffle", "rec_foreign", "rec_cut", "rec_size", "rec_type",
                     "raw_size", "raw_size", "feat_drop", "feat_garbage", "feat_cut", "tracing", "tracing", "tracing",
                     "tracing_page_size", "tracing_version", "tracing_drop", "pipe", "compress"])
    k = rng.randrange(len(m.attrs)) if m.attrs else None
    r = rng.randrange(len(m.records)) if m.records else None
    if op == "sample_type" and k is not None:
        a, ids = m.attrs[k]
        st = struct.unpack_from("<Q", a, 24)[0]
        m.attrs[k] = (_set_u(a, 24, 8, _perf_value(Field(24, 8, "sample_type"), st, 0, rng)), ids)
    elif op == "attr_size" and k is not None:
        a, ids = m.attrs[k]
        new = rng.choice([0, 64, 72, 96, 104, 112, 120, 136, 200])
        m.attrs[k] = (_set_u(a, 4, 4, new)[: max(new, 64)].ljust(max(new, 64), b"\0"), ids)
    elif op == "read_format" and k is not None:
        a, ids = m.attrs[k]
        m.attrs[k] = (_set_u(a, 32, 8, rng.choice([1, 2, 4, 8, 12, 16, 31])), ids)
    elif op == "config" and k is not None:
        a, ids = m.attrs[k]
        m.attrs[k] = (_set_u(a, 8, 8, rng.choice([0, 1, 65535, 65536, 2**63])), ids)
    elif op == "attr_drop" and k is not None:
        del m.attrs[k]
    elif op == "attr_dup" and k is not None:
        m.attrs.append(m.attrs[k])
    elif op == "ids" and k is not None:
        a, ids = m.attrs[k]
        m.attrs[k] = (a, rng.choice([[], ids * 2, ids + [2**64 - 1], list(range(1, 5000)), [0]]))
    elif op == "rec_drop" and r is not None:
        del m.records[r: r + rng.choice([1, 1, 10, 100])]
    elif op == "rec_dup" and r is not None:
        m.records[r:r] = [m.records[r]] * rng.choice([1, 2, 50])
    elif op == "rec_shuffle":
        rng.shuffle(m.records)
    elif op == "rec_foreign" and others and r is not None:
        o = rng.choice(others)
        if o.records:
            j = rng.randrange(len(o.records))
            m.records[r:r] = o.records[j: j + rng.choice([1, 5, 20])]
    elif op == "rec_cut" and r is not None:
        rec = m.records[r]
        m.records[r] = rec[: rng.randrange(8, max(9, len(rec)))] if rng.random() < 0.5 else \
            _set_u(rec[: rng.randrange(8, max(9, len(rec)))], 6, 2, len(rec))
    elif op == "rec_size" and r is not None:
        rec = m.records[r]
        m.records[r] = _set_u(rec, 6, 2, rng.choice([0, 1, 7, 8, len(rec) - 8, len(rec) + 8, len(rec) + 1, 65535]))
    elif op == "rec_type" and r is not None:
        m.records[r] = _set_u(m.records[r], 0, 4, rng.choice(RECORD_TYPES))
    elif op == "raw_size" and m.records:
        _raw_size(m, rng)
    elif op == "feat_drop" and m.features:
        del m.features[rng.choice(sorted(m.features))]
    elif op == "feat_garbage":
        bit = rng.choice([3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 16, 20, 21, 22, 23, 25, 26, 27, 29, 31, 32, 255])
        m.features[bit] = rng.choice([b"", b"\xff" * 4, struct.pack("<I", 2**32 - 1) + b"x" * 8, bytes(3),
                                      struct.pack("<II", 2**31, 4096), bytes(rng.randrange(256) for _ in range(40))])
    elif op == "feat_cut" and m.features:
        bit = rng.choice(sorted(m.features))
        m.features[bit] = m.features[bit][: rng.randrange(len(m.features[bit]) + 1)]
    elif op == "tracing" and m.tracing is not None:
        return "tracing:" + dat_model_mutation(m.tracing, rng, mut)  # its format and header texts
    elif op == "tracing_page_size" and m.tracing is not None:
        m.tracing.page_size = rng.choice([0, 1, 63, 64, 4095, 8192, 2**20 + 1, 2**32 - 1])
    elif op == "tracing_version":
        m.tracing_version = rng.choice([b"0.5", b"", b"9" * 50, b"0.6.1", b"x"])
    elif op == "tracing_drop":
        m.tracing = None
    elif op == "pipe":
        m.pipe = not m.pipe
    elif op == "compress":
        m.compress = rng.choice([0, 1, 5, 50])
    return op


def _raw_size(m: PerfModel, rng: random.Random) -> None:
    """A sample's RAW size word changed (the tracepoint payload then says another length)."""
    samples = [i for i, rec in enumerate(m.records) if rec[:4] == _u(9, 4)]
    if not samples or not m.attrs:
        return
    st = struct.unpack_from("<Q", m.attrs[0][0], 24)[0]
    if st & (READ | CALLCHAIN) or not st & RAW:
        return
    at = 8 + 8 * sum(bool(st & b) for b in (IDENTIFIER, 1, TID, TIME, 8, 1 << 6, 1 << 9, CPU, 1 << 8))
    i = rng.choice(samples)
    rec = m.records[i]
    if at + 4 <= len(rec):
        old = struct.unpack_from("<I", rec, at)[0]
        m.records[i] = _set_u(rec, at, 4, rng.choice([0, 1, 3, 7, old - 4, old + 4, old + 1000, 2**31, 2**32 - 1]))
