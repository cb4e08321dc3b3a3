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
