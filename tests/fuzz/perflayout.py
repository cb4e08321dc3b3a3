"""Where the fields of a perf.data are, found by a walker of its own (not the project's parser).

`walk(data)` returns the integer fields and regions (layout.Field / layout.Region) of a file-mode
or pipe-mode perf.data: the header's sizes, offsets and feature bitmap, each attr's type, size,
config, sample_type, read_format and flag word and its ids section, the feature table, the
tracing data's own sizes (the walker of trace.dat's sections), and the headers of the data
records (type, misc, size) with a sample's RAW size. It never raises: a file it cannot follow
just yields fewer fields. File offsets are labelled "ptr".
"""
from __future__ import annotations

import struct

from .layout import Layout, Region, _Stop, _Walk

MAGIC = b"PERFILE2"
TRACING_MAGIC = b"\x17\x08\x44tracing"
FEAT_TRACING_DATA = 1
MAX_RECORDS = 400  # record headers labelled per file


class _PerfWalk(_Walk):
    def attr(self, at: int, limit: int) -> tuple[int, int]:
        """Fields of the perf_event_attr at `at`; (its size, its sample_type)."""
        self.u(at, 4, "attr_type")
        size = self.u(at + 4, 4, "attr_size") or 64
        self.u(at + 8, 8, "config")
        self.u(at + 16, 8, "count")  # sample_period
        st = self.u(at + 24, 8, "sample_type")
        self.u(at + 32, 8, "read_format")
        self.u(at + 40, 8, "attr_flags")
        return min(size, limit), st

    def tracing(self, at: int, end: int) -> None:
        self.region(at, end - at, "tracing")
        if self.d[at: at + 10] != TRACING_MAGIC:
            return
        p = self.cstr(at + 10)
        self.u(p, 1, "endian")
        self.u(p + 1, 1, "long_size")
        self.u(p + 2, 4, "page_size")
        p = self.header_info(p + 6)
        p = self.formats(p, False)
        p = self.formats(p, True)
        n = self.u(p, 4, "size")  # kallsyms
        n = self.u(p + 4 + n, 4, "size")  # printk
        self.u(p + 8 + n, 8, "size")  # saved cmdlines

    def records(self, at: int, end: int, sample_type: int) -> None:
        for _ in range(MAX_RECORDS):
            if at + 8 > end:
                return
            rtype = self.u(at, 4, "rtype")
            self.u(at + 4, 2, "misc")
            size = self.u(at + 6, 2, "rsize")
            if size < 8:
                return
            self.region(at, size, "record")
            if rtype == 9:
                self.sample(at, size, sample_type)
            elif rtype == 64:
                self.attr(at + 8, size - 8)
            elif rtype == 80:
                self.u(at + 8, 8, "feature")
                self.region(at + 16, size - 16, "feature")
            elif rtype == 66:
                n = self.u(at + 8, 4, "size")
                self.tracing(at + size, min(at + size + n, len(self.d)))
                at += n
            elif rtype in (2, 13):  # LOST: id, lost / LOST_SAMPLES: lost
                self.u(at + 8 + (8 if rtype == 2 else 0), 8, "lost")
            elif rtype in (81, 83):
                self.region(at + 8, size - 8, "chunk")
            at += size

    def sample(self, at: int, size: int, st: int) -> None:
        p = at + 8
        for bit, label in ((1 << 16, "id"), (1, None), (2, "pid"), (4, "timestamp"), (8, None), (1 << 6, "id"),
                           (1 << 9, None), (1 << 7, "cpu"), (1 << 8, None)):
            if st & bit:
                if label:
                    self.u(p, 4 if label in ("pid", "cpu") else 8, label)
                p += 8
        if st & (1 << 4 | 1 << 5):  # READ, CALLCHAIN: variable; not followed
            return
        if st & (1 << 10) and p + 4 <= at + size:
            self.u(p, 4, "length")

    def file_mode(self) -> None:
        self.u(8, 8, "size")
        asz = self.u(16, 8, "size")
        aoff, alen = self.u(24, 8, "ptr"), self.u(32, 8, "size")
        doff, dlen = self.u(40, 8, "ptr"), self.u(48, 8, "size")
        bits = [b for w in range(4) for b in range(64) if self.u(72 + 8 * w, 8, "featbits") >> b & 1]
        st = 0
        for k in range(min(alen // max(asz, 1), 256)):
            at = aoff + k * asz
            used, s = self.attr(at, asz - 16)
            st = st or s
            ioff, _ = self.u(at + used, 8, "ptr"), self.u(at + used + 8, 8, "size")
            self.region(ioff, 8, "ids")
        self.region(doff, dlen, "data")
        at = doff + dlen
        feats = []
        for bit in bits:
            feats.append((bit, self.u(at, 8, "ptr"), self.u(at + 8, 8, "size")))
            at += 16
        for bit, off, size in feats:
            try:
                if bit == FEAT_TRACING_DATA:
                    self.tracing(off, off + size)
                else:
                    self.region(off, size, "feature")
            except _Stop:
                pass
        self.records(doff, min(doff + dlen, len(self.d)), st)

    def run(self) -> Layout:
        try:
            if not self.d.startswith(MAGIC):
                return self.out
            if struct.unpack_from("<Q", self.d, 8)[0] == 16:
                self.u(8, 8, "size")
                self.records(16, len(self.d), self._pipe_sample_type())
            else:
                self.file_mode()
        except (_Stop, ValueError, struct.error):
            pass
        return self.out

    def _pipe_sample_type(self) -> int:
        # The first HEADER_ATTR record's sample_type (the records before the data are all header records).
        at = 16
        while at + 8 <= len(self.d):
            rtype, size = struct.unpack_from("<I", self.d, at)[0], struct.unpack_from("<H", self.d, at + 6)[0]
            if rtype == 64 and at + 40 <= len(self.d):
                return struct.unpack_from("<Q", self.d, at + 8 + 24)[0]
            if size < 8:
                break
            at += size
        return 0


def walk(data: bytes) -> Layout:
    return _PerfWalk(data).run()


__all__ = ["Region", "walk"]
