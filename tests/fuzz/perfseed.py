"""perf.data seeds: a `PerfModel` of a real or generated perf.data, written back by its own writer.

A model holds what a perf.data is made of: the attrs (raw `perf_event_attr` bytes and their ids),
the data records (raw, in stream order, compressed ones unpacked), the feature sections, and the
tracing data split into its parts (a `DatModel`: header texts, format texts, cmdlines), so the
mutator can edit attrs, records, features and format texts and still get a file whose offsets and
sizes are right, or then break exactly one of them. A seed keeps a small part of its source: the
first records, three runs of records spread over the recording and its loss records, the attrs
whose ids those records use, and the formats of those attrs' tracepoints.

`write` lays a file-mode model out as header, ids, attrs, data, feature table, features (the
order perf's own writer uses differs; the reader follows the offsets either way), and a pipe-mode
one as the 16-byte header, HEADER_ATTR, HEADER_FEATURE and HEADER_TRACING_DATA records, then the
data. `compress` packs the data records into COMPRESSED records of that many records each, one
zstd stream flushed per record, as perf record -z does (tools/perf/util/zstd.c).
"""
from __future__ import annotations

import dataclasses
import struct
from pathlib import Path

from .corpus import DatModel

MAGIC = b"PERFILE2"
TRACING_MAGIC = b"\x17\x08\x44tracing"
HEADER_ATTR, TRACING_DATA, EVENT_UPDATE, HEADER_FEATURE, COMPRESSED = 64, 66, 78, 80, 81
HEADER_TYPES = (HEADER_ATTR, TRACING_DATA, HEADER_FEATURE, COMPRESSED, 83)
FEAT_TRACING_DATA, FEAT_EVENT_DESC = 1, 12
SAMPLE, LOST, LOST_SAMPLES = 9, 2, 13
IDENTIFIER, ID_BIT = 1 << 16, 1 << 6


@dataclasses.dataclass
class PerfModel:
    attrs: list[tuple[bytes, list[int]]]
    records: list[bytes]
    features: dict[int, bytes]  # without TRACING_DATA: that is `tracing`
    tracing: DatModel | None
    tracing_version: bytes = b"0.6"
    kallsyms: bytes = b""
    printk: bytes = b""
    pipe: bool = False
    compress: int = 0  # data records per COMPRESSED record; 0: not compressed

    def copy(self) -> PerfModel:
        return dataclasses.replace(self, attrs=[(a, list(i)) for a, i in self.attrs], records=list(self.records),
                                   features=dict(self.features), tracing=self.tracing.copy() if self.tracing else None)

    # -- writing --------------------------------------------------------------------------------
    def tracing_blob(self) -> bytes:
        t = self.tracing
        if t is None:
            return b""

        def texts(items: list[bytes]) -> bytes:
            return struct.pack("<I", len(items)) + b"".join(struct.pack("<Q", len(x)) + x for x in items)

        return (TRACING_MAGIC + self.tracing_version + b"\0" + bytes([0, 8]) + struct.pack("<I", t.page_size & 0xFFFFFFFF)
                + b"header_page\0" + struct.pack("<Q", len(t.header_page)) + t.header_page
                + b"header_event\0" + struct.pack("<Q", len(t.header_event)) + t.header_event
                + texts(t.ftrace) + struct.pack("<I", len(t.events))
                + b"".join(s.encode("utf-8", "surrogateescape") + b"\0" + texts(v) for s, v in t.events.items())
                + struct.pack("<I", len(self.kallsyms)) + self.kallsyms + struct.pack("<I", len(self.printk)) + self.printk
                + struct.pack("<Q", len(t.cmdlines)) + t.cmdlines)

    def all_features(self) -> dict[int, bytes]:
        feats = dict(self.features)
        if self.tracing is not None:
            feats[FEAT_TRACING_DATA] = self.tracing_blob()
        return feats

    def data(self) -> bytes:
        if not self.compress:
            return b"".join(self.records)
        import zstandard

        cobj = zstandard.ZstdCompressor(level=1).compressobj()
        out = []
        for k in range(0, len(self.records), self.compress):
            z = cobj.compress(b"".join(self.records[k: k + self.compress])) + cobj.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)
            out.append(_header(COMPRESSED, 0, 8 + len(z)) + z)
        return b"".join(out)

    def write(self) -> bytes:
        return self._write_pipe() if self.pipe else self._write_file()

    def _write_file(self) -> bytes:
        data, feats = self.data(), self.all_features()
        asz = max((len(a) for a, _ in self.attrs), default=128)
        ids = b"".join(struct.pack("<Q", i) for _, li in self.attrs for i in li)
        ids_at = 104
        attrs_at = ids_at + len(ids)
        attrs, k = [], 0
        for a, li in self.attrs:
            attrs.append(a.ljust(asz, b"\0") + struct.pack("<QQ", ids_at + 8 * k, 8 * len(li)))
            k += len(li)
        attrs_b = b"".join(attrs)
        data_at = attrs_at + len(attrs_b)
        bits = sorted(b for b in feats if 0 <= b < 256)
        at = data_at + len(data) + 16 * len(bits)
        table = []
        for b in bits:
            table.append(struct.pack("<QQ", at, len(feats[b])))
            at += len(feats[b])
        words = [0, 0, 0, 0]
        for b in bits:
            words[b // 64] |= 1 << (b % 64)
        head = (MAGIC + struct.pack("<QQ", 104, asz + 16) + struct.pack("<QQ", attrs_at, len(attrs_b))
                + struct.pack("<QQ", data_at, len(data)) + struct.pack("<QQ", 0, 0) + struct.pack("<4Q", *words))
        return head + ids + attrs_b + data + b"".join(table) + b"".join(feats[b] for b in bits)

    def _write_pipe(self) -> bytes:
        out = [MAGIC + struct.pack("<Q", 16)]
        for a, li in self.attrs:
            body = a + b"".join(struct.pack("<Q", i) for i in li)
            out.append(_header(HEADER_ATTR, 0, 8 + len(body)) + body)
        for bit, raw in sorted(self.features.items()):
            out.append(_header(HEADER_FEATURE, 0, 16 + len(raw)) + struct.pack("<Q", bit) + raw)
        if self.tracing is not None:
            td = self.tracing_blob()
            td += b"\0" * (-len(td) % 8)
            out.append(struct.pack("<IHHII", TRACING_DATA, 0, 16, len(td), 0) + td)
        out.append(self.data())
        return b"".join(out)


def _header(rtype: int, misc: int, size: int) -> bytes:
    return struct.pack("<IHH", rtype, misc, size & 0xFFFF)


# -- models from files ------------------------------------------------------------------------------
def _pick(n: int, first: int = 30, runs: int = 3, run: int = 50, last: int = 4) -> list[int]:
    keep = set(range(min(first, n))) | set(range(max(0, n - last), n))
    for k in range(runs):
        s = int((k + 1) * n / (runs + 1))
        keep |= set(range(s, min(n, s + run)))
    return sorted(keep)


def model_of(path: Path) -> PerfModel:
    """A small model of a perf.data read with the project's container reader."""
    import numpy as np

    from exitreplay.formats.perf_file import PerfFile
    from exitreplay.formats.perf_tracing import TracingData

    pf = PerfFile(str(path))
    try:
        body = np.flatnonzero(~np.isin(pf.rtype, HEADER_TYPES))
        picked = set(_pick(body.size))
        loss = [int(i) for i in np.flatnonzero(np.isin(pf.rtype[body], (LOST, LOST_SAMPLES)))[:6]]
        idx = [int(body[i]) for i in sorted(picked | set(loss))]
        records = [bytes(pf.data[pf.off[i]: pf.off[i] + pf.size[i]]) for i in idx]
        raw_attrs = _raw_attrs(pf)
        used = _used_ids(records, pf.attrs[0].sample_type if pf.attrs else 0)
        keep = [k for k, a in enumerate(pf.attrs) if set(a.ids) & used] or list(range(min(2, len(pf.attrs))))
        attrs = [(raw_attrs[k], list(pf.attrs[k].ids)) for k in keep]
        ids = {i for k in keep for i in pf.attrs[k].ids}
        configs = {pf.attrs[k].config for k in keep}
        records = [r for r in records if not (struct.unpack_from("<I", r)[0] == EVENT_UPDATE and len(r) >= 24
                                              and struct.unpack_from("<Q", r, 16)[0] not in ids)]
        feats = {b: v for b, v in pf.features.raw.items() if b != FEAT_TRACING_DATA}
        if FEAT_EVENT_DESC in feats:
            feats[FEAT_EVENT_DESC] = _event_desc_for(feats[FEAT_EVENT_DESC], ids)
        tracing, version, kallsyms, printk = None, b"0.6", b"", b""
        if pf.tracing_blob:
            td = TracingData(pf.tracing_blob, str(path))
            from exitreplay.formats.eventformat import parse_format

            events = {}
            for system, texts in td.event_format_texts.items():
                kept = [t for t in texts if parse_format(t, system).id in configs]
                if kept:
                    events[system] = kept
            lines = td.cmdlines.splitlines(keepends=True)[:40]
            tracing = DatModel(td.header_page_text, td.header_event_text, td.ftrace_formats[:1], events,
                               b"".join(lines), [], td.page_size)
            version, kallsyms, printk = (td.perf_version or "0.6").encode(), b"", td.printk[:200]
        return PerfModel(attrs, records, feats, tracing, version, kallsyms, printk, pf.pipe,
                         20 if pf.compressed else 0)
    finally:
        pf.close()


def _raw_attrs(pf) -> list[bytes]:
    mm = pf._mm
    if not pf.pipe:
        off, _ = pf.hdr.attrs
        return [bytes(mm[off + k * pf.hdr.attr_size: off + k * pf.hdr.attr_size + a.size])
                for k, a in enumerate(pf.attrs)]
    out = []
    for o, t in zip(pf.off.tolist(), pf.rtype.tolist()):
        if t == HEADER_ATTR:
            size = struct.unpack_from("<I", mm, o + 8 + 4)[0] or 64
            out.append(bytes(mm[o + 8: o + 8 + size]))
    return out


def _used_ids(records: list[bytes], sample_type: int) -> set[int]:
    out = set()
    for r in records:
        if struct.unpack_from("<I", r)[0] == SAMPLE and len(r) >= 16 and sample_type & IDENTIFIER:
            out.add(struct.unpack_from("<Q", r, 8)[0])
    return out


def _event_desc_for(raw: bytes, ids: set[int]) -> bytes:
    """HEADER_EVENT_DESC with only the events whose ids are kept."""
    try:
        n, asz = struct.unpack_from("<II", raw)
        at, kept = 8, []
        for _ in range(n):
            start = at
            at += asz
            nr = struct.unpack_from("<I", raw, at)[0]
            slen = struct.unpack_from("<I", raw, at + 4)[0]
            ev_ids = struct.unpack_from(f"<{nr}Q", raw, at + 8 + slen)
            at += 8 + slen + 8 * nr
            if set(ev_ids) & ids:
                kept.append(raw[start:at])
        return struct.pack("<II", len(kept), asz) + b"".join(kept)
    except struct.error:
        return raw


def synthesized(tmp: Path, profile: str, seconds: float, pipe: bool = False, compress: int = 0) -> PerfModel:
    """A model of `exitreplay synth --output-format perf` output."""
    from exitreplay.synth.synthesize import synthesize

    p = tmp / f"synth-{profile}.perf.data"
    synthesize(profile, p, seconds=seconds, output_format="perf", cpus=2)
    m = model_of(p)
    return dataclasses.replace(m, pipe=pipe, compress=compress)
