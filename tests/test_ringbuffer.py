"""Property tests of the page decoder against a plain, record-at-a-time reference encoder.

The encoder below is written from the kernel's record layout (include/linux/ring_buffer.h), one
record per loop turn, so it shares nothing with the vectorized decoder it checks.
"""
from __future__ import annotations

import struct

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from exitreplay.formats.eventformat import HeaderPage
from exitreplay.formats.ringbuffer import MISSED_EVENTS, MISSED_STORED, decode_pages

TS_MAX_DELTA = (1 << 27) - 1


def encode(pages_spec, page_size, long_size, endian):
    """pages_spec: list of pages; page = dict(ts, records, missed, stored).

    Records: ("data", delta, payload_bytes) | ("extend", delta) | ("abs", ts) | ("pad", delta, n).
    Returns (bytes, expected events [(ts, payload)], expected missed [(event_index, count)]).
    """
    e = "<" if endian == "little" else ">"
    out = bytearray()
    events = []
    missed = []
    for pg in pages_spec:
        body = bytearray()
        ts = pg["ts"]

        def hdr(type_len, delta):
            if endian == "little":
                return struct.pack(e + "I", (delta << 5) | type_len)
            return struct.pack(e + "I", (type_len << 27) | delta)

        if pg["missed"]:
            missed.append((len(events), pg["stored"]))
        for rec in pg["records"]:
            kind = rec[0]
            if kind == "data":
                _, delta, payload = rec
                ts += delta
                padded = payload + b"\0" * (-len(payload) % 4)
                if len(padded) <= 28 * 4 and len(padded) > 0 and not rec_force_len(payload):
                    body += hdr(len(padded) // 4, delta) + padded
                else:
                    body += hdr(0, delta) + struct.pack(e + "I", len(payload) + 4) + padded
                events.append((ts, bytes(padded)))
            elif kind == "extend":
                _, delta = rec
                ts += delta
                body += hdr(30, delta & TS_MAX_DELTA) + struct.pack(e + "I", delta >> 27)
            elif kind == "abs":
                _, absts = rec
                ts = absts
                body += hdr(31, absts & TS_MAX_DELTA) + struct.pack(e + "I", (absts >> 27) & 0xFFFFFFFF)
            elif kind == "pad":
                _, delta, n = rec
                ts += delta
                # array[0] counts every byte after the 4-byte header (kernel rb_event_discard).
                body += hdr(29, delta) + struct.pack(e + "I", n + 4) + b"\xee" * n
        commit = len(body)
        if pg["missed"]:
            commit |= MISSED_EVENTS
            if pg["stored"] is not None:
                commit |= MISSED_STORED
        page = bytearray(struct.pack(e + "Q", pg["ts"]))
        page += commit.to_bytes(long_size, endian)
        page += body
        if pg["missed"] and pg["stored"] is not None:
            page += pg["stored"].to_bytes(long_size, endian)
        assert len(page) <= page_size, "test generated an over-full page"
        page += b"\0" * (page_size - len(page))
        out += page
    return bytes(out), events, missed


def rec_force_len(payload):
    return len(payload) % 7 == 3  # some small payloads also use the length word, as the kernel may


payloads = st.binary(min_size=4, max_size=150)
data_rec = st.tuples(st.just("data"), st.integers(0, TS_MAX_DELTA), payloads)
extend_rec = st.tuples(st.just("extend"), st.integers(TS_MAX_DELTA + 1, (1 << 40)))
pad_rec = st.tuples(st.just("pad"), st.integers(1, 1000), st.sampled_from([4, 8, 16, 40]))
records = st.lists(st.one_of(data_rec, data_rec, data_rec, extend_rec, pad_rec), min_size=0, max_size=25)


@st.composite
def page_lists(draw):
    page_size = draw(st.sampled_from([4096, 8192]))
    long_size = draw(st.sampled_from([4, 8]))
    endian = draw(st.sampled_from(["little", "big"]))
    n = draw(st.integers(1, 6))
    pages = []
    ts = draw(st.integers(0, 1 << 50))
    for _ in range(n):
        recs = draw(records)
        if draw(st.booleans()):
            recs = recs + [("abs", ts + draw(st.integers(0, 1 << 40)))] + draw(records)
        miss = draw(st.booleans())
        stored = draw(st.one_of(st.none(), st.integers(0, 10**6))) if miss else None
        pages.append({"ts": ts, "records": recs, "missed": miss, "stored": stored})
        ts += 1 << 41
    return page_size, long_size, endian, pages


@settings(max_examples=150, deadline=None)
@given(page_lists())
def test_decoder_matches_reference_encoder(spec):
    page_size, long_size, endian, pages = spec
    raw, events, missed = encode(pages, page_size, long_size, endian)
    header = HeaderPage(0, 8, 8, long_size, 8 + long_size, page_size - 8 - long_size)
    got = decode_pages(np.frombuffer(raw, np.uint8), page_size, header, endian, long_size)
    assert got.ts.tolist() == [t for t, _ in events]
    buf = np.frombuffer(raw, np.uint8)
    assert [bytes(buf[o: o + s]) for o, s in zip(got.offset, got.size)] == [p for _, p in events]
    assert [(m.index, m.count) for m in got.missed] == missed
    assert not got.truncated and not got.warnings


@settings(max_examples=60, deadline=None)
@given(page_lists(), st.data())
def test_truncated_data_keeps_a_prefix(spec, data):
    page_size, long_size, endian, pages = spec
    raw, events, _ = encode(pages, page_size, long_size, endian)
    cut = data.draw(st.integers(1, len(raw) - 1))
    header = HeaderPage(0, 8, 8, long_size, 8 + long_size, page_size - 8 - long_size)
    got = decode_pages(np.frombuffer(raw[:cut], np.uint8), page_size, header, endian, long_size)
    n = got.count
    assert got.ts.tolist() == [t for t, _ in events[:n]]
    assert (got.offset + got.size <= cut).all()
    assert got.truncated == (cut % page_size != 0)


@settings(max_examples=60, deadline=None)
@given(page_lists(), st.data())
def test_garbage_never_crashes_or_hangs(spec, data):
    page_size, long_size, endian, pages = spec
    raw = bytearray(encode(pages, page_size, long_size, endian)[0])
    for _ in range(data.draw(st.integers(1, 20))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    header = HeaderPage(0, 8, 8, long_size, 8 + long_size, page_size - 8 - long_size)
    got = decode_pages(np.frombuffer(bytes(raw), np.uint8), page_size, header, endian, long_size)
    assert (got.offset + got.size <= len(raw)).all()
    assert (got.size >= 0).all()


# -- payload fields ---------------------------------------------------------------------------
# Field decoding against struct.unpack, one record at a time, for any byte order, any alignment
# of the records and fields, records cut short, and every kind of field a format can declare.

SCALARS = {"u8": ("unsigned char", 1, "B"), "s8": ("signed char", 1, "b"), "u16": ("unsigned short", 2, "H"),
           "s16": ("short", 2, "h"), "u32": ("unsigned int", 4, "I"), "s32": ("int", 4, "i"),
           "u64": ("unsigned long long", 8, "Q"), "s64": ("long long", 8, "q"), "bool": ("bool", 1, "?")}
KINDS = [*SCALARS, "comm", "bytes", "words", "dstr", "dwords"]


def _layout(kinds, packed):
    """Format text fields and their (name, kind, offset, size), after the 8-byte common header."""
    at, out = 8, []
    for i, kind in enumerate(kinds):
        size = {"comm": 16, "bytes": 5, "words": 12, "dstr": 4, "dwords": 4}.get(kind) or SCALARS[kind][1]
        align = 1 if packed else min(8, size if kind in SCALARS else (4 if kind in ("words", "dstr", "dwords") else 1))
        at = (at + align - 1) // align * align
        out.append((f"f{i}", kind, at, size))
        at += size
    return out, at


def _format_text(fields):
    lines = ["name: demo", "ID: 7", "format:",
             "\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;",
             "\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;",
             "\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;",
             "\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;", ""]
    for name, kind, at, size in fields:
        decl = {"comm": f"char {name}[16]", "bytes": f"u8 {name}[5]", "words": f"u32 {name}[3]",
                "dstr": f"__data_loc char[] {name}", "dwords": f"__data_loc u32[] {name}"}.get(kind)
        if decl is None:
            decl = f"{SCALARS[kind][0]} {name}"
        signed = int(kind.startswith("s") and kind in SCALARS)
        lines.append(f"\tfield:{decl};\toffset:{at};\tsize:{size};\tsigned:{signed};")
    return "\n".join(lines) + '\n\nprint fmt: "x"\n'


def _encode(fields, fixed_end, values, e):
    body = bytearray(fixed_end)
    tail = bytearray()
    for (_name, kind, at, size), v in zip(fields, values):
        if kind in SCALARS:
            struct.pack_into(e + SCALARS[kind][2], body, at, v)
        elif kind in ("comm", "bytes"):
            body[at: at + size] = v
        elif kind == "words":
            struct.pack_into(e + "3I", body, at, *v)
        else:
            raw = (v.encode() + b"\0") if kind == "dstr" else struct.pack(e + f"{len(v)}I", *v)
            struct.pack_into(e + "I", body, at, (len(raw) << 16) | (fixed_end + len(tail)))
            tail += raw
    return bytes(body + tail)


def _value(kind, size, draw):
    if kind == "bool":
        return draw(st.booleans())
    if kind in SCALARS:
        bits = 8 * size
        return draw(st.integers(-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if kind.startswith("s")
                    else st.integers(0, (1 << bits) - 1))
    if kind == "comm":
        text = draw(st.text("abcdefghijklmnopqrstuvwxyz0123456789/:-", max_size=15)).encode()
        return text + b"\0" + bytes(draw(st.binary(min_size=15 - len(text), max_size=15 - len(text))))
    if kind == "bytes":
        return draw(st.binary(min_size=5, max_size=5))
    if kind == "words":
        return draw(st.lists(st.integers(0, (1 << 32) - 1), min_size=3, max_size=3))
    if kind == "dstr":
        return draw(st.text("abcxyz _-", max_size=20))
    return draw(st.lists(st.integers(0, (1 << 32) - 1), max_size=4))


def _expected(kind, v):
    if kind == "comm":
        return v.split(b"\0")[0].decode()
    if kind == "bytes":
        return list(v)
    return v


@settings(max_examples=120, deadline=None)
@given(st.data())
def test_fields_decode_like_struct_unpack(data):
    from exitreplay.formats.eventformat import decode_fields, parse_format

    draw = data.draw
    endian = draw(st.sampled_from(["little", "big"]))
    e = "<" if endian == "little" else ">"
    kinds = draw(st.lists(st.sampled_from(KINDS), min_size=1, max_size=7))
    fields, fixed_end = _layout(kinds, packed=draw(st.booleans()))
    fmt = parse_format(_format_text(fields), "demo")
    align = draw(st.sampled_from([1, 4]))
    buf, offsets, sizes, want = bytearray(draw(st.binary(max_size=7))), [], [], []
    for _ in range(draw(st.integers(1, 12))):
        values = [_value(k, s, draw) for _, k, _, s in fields]
        rec = struct.pack(e + "HBBi", 7, 1, 2, 3) + _encode(fields, fixed_end, values, e)[8:]
        cut = draw(st.sampled_from([len(rec), len(rec), max(0, len(rec) - draw(st.integers(1, 12)))]))
        buf += b"\xa5" * (-len(buf) % align)
        offsets.append(len(buf))
        sizes.append(cut)
        buf += rec[:cut] + bytes(draw(st.binary(max_size=3)))
        # A field is there only if the whole of it (and, for __data_loc, its data) is in the record.
        row = {}
        for (name, kind, at, size), v in zip(fields, values):
            present = at + size <= cut
            if present and kind in ("dstr", "dwords"):
                word = struct.unpack_from(e + "I", rec, at)[0]
                present = (word & 0xFFFF) + (word >> 16) <= cut
            row[name] = _expected(kind, v) if present else None
        want.append(row)
    arr = np.frombuffer(bytes(buf), np.uint8)
    got = decode_fields(fmt, arr, np.array(offsets, np.int64), np.array(sizes, np.int64), endian)
    for name, _, _, _ in fields:
        assert got[name].to_pylist() == [r[name] for r in want], name
