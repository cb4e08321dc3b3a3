"""A plain, record-at-a-time perf.data encoder for tests, written from the format document
(tools/perf/Documentation/perf.data-file-format.txt, include/uapi/linux/perf_event.h), one
`struct.pack` per field. It shares no code with exitreplay's reader or writer, so files built
here check the vectorized reader; it makes what the writer never does: big-endian files, pipe
mode, READ and CALLCHAIN before RAW, odd record sizes, several rounds out of order, compressed
streams cut mid-record, unknown ids.

Events are one tracepoint, `test:probe`, whose format text is written here (numbers, a fixed
string, a dynamic string), so its payload is packed by field offsets written here too.
"""
from __future__ import annotations

import dataclasses
import struct

PROBE_ID = 1234
PROBE_FORMAT = """name: probe
ID: 1234
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:u64 value;\toffset:8;\tsize:8;\tsigned:0;
\tfield:int delta;\toffset:16;\tsize:4;\tsigned:1;
\tfield:char tag[16];\toffset:20;\tsize:16;\tsigned:0;
\tfield:__data_loc char[] msg;\toffset:36;\tsize:4;\tsigned:0;

print fmt: "value=%llu delta=%d tag=%s msg=%s", REC->value, REC->delta, REC->tag, __get_str(msg)
"""
HEADER_PAGE = (b"\tfield: u64 timestamp;\toffset:0;\tsize:8;\tsigned:0;\n\tfield: local_t commit;\toffset:8;\tsize:8;"
               b"\tsigned:1;\n\tfield: int overwrite;\toffset:8;\tsize:1;\tsigned:1;\n\tfield: char data;\toffset:16;"
               b"\tsize:4080;\tsigned:0;\n")
HEADER_EVENT = (b"# compressed entry header\n\ttype_len    :    5 bits\n\ttime_delta  :   27 bits\n\tarray       :"
                b"   32 bits\n\n\tpadding     : type == 29\n\ttime_extend : type == 30\n\ttime_stamp : type == 31\n"
                b"\tdata max type_len  == 28\n")

IP, TID, TIME, ADDR, READ, CALLCHAIN, ID, CPU, PERIOD, STREAM_ID, RAW = (1 << i for i in range(11))
IDENTIFIER = 1 << 16
TRACEPOINT_SAMPLE = IDENTIFIER | IP | TID | TIME | CPU | PERIOD | RAW
FMT_ENABLED, FMT_RUNNING, FMT_ID, FMT_GROUP, FMT_LOST = 1, 2, 4, 8, 16


@dataclasses.dataclass
class Probe:
    """One test:probe event as the builder writes it and the reader must give it back."""

    ts: int
    cpu: int
    tid: int
    value: int = 0
    delta: int = 0
    tag: str = ""
    msg: str = ""
    pid: int | None = None
    flags: int = 1
    pc: int = 0


@dataclasses.dataclass
class AttrSpec:
    sample_type: int = TRACEPOINT_SAMPLE
    read_format: int = FMT_ID
    config: int = PROBE_ID
    ids: tuple[int, ...] = (100,)
    sample_id_all: bool = True
    type: int = 2  # PERF_TYPE_TRACEPOINT
    name: str = "test:probe"


class PerfBuilder:
    def __init__(self, endian: str = "little", attrs: list[AttrSpec] | None = None):
        self.e = "<" if endian == "little" else ">"
        self.big = endian == "big"
        self.attrs = attrs or [AttrSpec()]
        self.records: list[bytes] = []

    def p(self, fmt: str, *vals) -> bytes:
        return struct.pack(self.e + fmt, *vals)

    # -- payload and records ----------------------------------------------------------------
    def payload(self, ev: Probe) -> bytes:
        msg = ev.msg.encode() + b"\0"
        body = (self.p("HBBi", PROBE_ID, ev.flags, ev.pc, ev.tid) + self.p("Qi", ev.value, ev.delta)
                + ev.tag.encode()[:15].ljust(16, b"\0") + self.p("I", (len(msg) << 16) | 40) + msg)
        return body

    def _sample_id(self, attr: AttrSpec, ev_like: dict) -> bytes:
        st, out = attr.sample_type, b""
        if st & TID:
            out += self.p("ii", ev_like.get("pid", ev_like["tid"]), ev_like["tid"])
        if st & TIME:
            out += self.p("Q", ev_like["ts"])
        if st & ID:
            out += self.p("Q", attr.ids[0])
        if st & STREAM_ID:
            out += self.p("Q", 0)
        if st & CPU:
            out += self.p("II", ev_like["cpu"], 0)
        if st & IDENTIFIER:
            out += self.p("Q", attr.ids[0])
        return out if attr.sample_id_all else b""

    def header(self, rtype: int, misc: int, body: bytes) -> bytes:
        return self.p("IHH", rtype, misc, 8 + len(body)) + body

    def sample(self, ev: Probe, attr: int = 0, callchain: tuple[int, ...] = (), group: tuple[int, ...] = (),
               raw_pad: int = 0) -> None:
        a = self.attrs[attr]
        st, body = a.sample_type, b""
        for bit, blob in ((IDENTIFIER, self.p("Q", a.ids[0])), (IP, self.p("Q", 0xFFFFFFFF81000000)),
                          (TID, self.p("ii", ev.pid if ev.pid is not None else ev.tid, ev.tid)),
                          (TIME, self.p("Q", ev.ts)), (ADDR, self.p("Q", 0)), (ID, self.p("Q", a.ids[0])),
                          (STREAM_ID, self.p("Q", 0)), (CPU, self.p("II", ev.cpu, 0)), (PERIOD, self.p("Q", 1))):
            if st & bit:
                body += blob
        if st & READ:
            body += self._read(a, group)
        if st & CALLCHAIN:
            body += self.p("Q", len(callchain)) + b"".join(self.p("Q", ip) for ip in callchain)
        if st & RAW:
            raw = self.payload(ev)
            raw += b"\0" * ((-(len(raw) + 4)) % 8 + raw_pad)
            body += self.p("I", len(raw)) + raw
        self.records.append(self.header(9, 1, body))

    def _read(self, a: AttrSpec, group: tuple[int, ...]) -> bytes:
        rf = a.read_format
        times = b"".join(self.p("Q", 7) for bit in (FMT_ENABLED, FMT_RUNNING) if rf & bit)
        def member(v):
            return self.p("Q", v) + (self.p("Q", a.ids[0]) if rf & FMT_ID else b"") + \
                (self.p("Q", 0) if rf & FMT_LOST else b"")
        if rf & FMT_GROUP:
            return self.p("Q", len(group)) + times + b"".join(member(v) for v in group)
        return self.p("Q", 5) + times + (self.p("Q", a.ids[0]) if rf & FMT_ID else b"") + \
            (self.p("Q", 0) if rf & FMT_LOST else b"")

    def comm(self, pid: int, tid: int, name: str, ts: int = 0, cpu: int = 0, attr: int = 0) -> None:
        text = name.encode() + b"\0"
        text += b"\0" * (-len(text) % 8)
        self.records.append(self.header(3, 0, self.p("II", pid, tid) + text
                                        + self._sample_id(self.attrs[attr], {"tid": tid, "pid": pid, "ts": ts,
                                                                             "cpu": cpu})))

    def fork(self, pid: int, ppid: int, tid: int, ptid: int, ts: int = 0, cpu: int = 0) -> None:
        self.records.append(self.header(7, 0, self.p("IIIIQ", pid, ppid, tid, ptid, ts)
                                        + self._sample_id(self.attrs[0], {"tid": tid, "ts": ts, "cpu": cpu})))

    def lost(self, count: int, ts: int, cpu: int) -> None:
        self.records.append(self.header(2, 0, self.p("QQ", self.attrs[0].ids[0], count)
                                        + self._sample_id(self.attrs[0], {"tid": -1, "ts": ts, "cpu": cpu})))

    def lost_samples(self, count: int, ts: int, cpu: int) -> None:
        self.records.append(self.header(13, 0, self.p("Q", count)
                                        + self._sample_id(self.attrs[0], {"tid": -1, "ts": ts, "cpu": cpu})))

    def finished_round(self) -> None:
        self.records.append(self.header(68, 0, b""))

    def odd_user_record(self, size: int) -> None:
        """A user record (perf ignores type 75, STAT_CONFIG, here) whose size is not a multiple of 8."""
        self.records.append(self.header(75, 0, b"\x55" * (size - 8)))

    # -- sections -------------------------------------------------------------------------------
    def tracing_data(self) -> bytes:
        fmt = PROBE_FORMAT.encode()
        return (b"\x17\x08\x44tracing" + b"0.6\0" + bytes([1 if self.big else 0, 8]) + self.p("I", 4096)
                + b"header_page\0" + self.p("Q", len(HEADER_PAGE)) + HEADER_PAGE
                + b"header_event\0" + self.p("Q", len(HEADER_EVENT)) + HEADER_EVENT
                + self.p("I", 0) + self.p("I", 1) + b"test\0" + self.p("I", 1) + self.p("Q", len(fmt)) + fmt
                + self.p("I", 0) + self.p("I", 0) + self.p("Q", 0))

    def attr_bytes(self, a: AttrSpec) -> bytes:
        flags = 1 | 2 | (1 << 18 if a.sample_id_all else 0)
        if self.big:  # a big-endian compiler fills each byte's bits from the top
            raw = flags.to_bytes(8, "little")
            flags_b = bytes(int(f"{b:08b}"[::-1], 2) for b in raw)
        else:
            flags_b = flags.to_bytes(8, "little")
        body = self.p("IIQQQQ", a.type, 128, a.config, 1, a.sample_type, a.read_format) + flags_b
        return body + b"\0" * (128 - len(body))

    def string(self, s: str) -> bytes:
        raw = s.encode() + b"\0"
        raw += b"\0" * (-len(raw) % 64)
        return self.p("I", len(raw)) + raw

    def features(self, cpus: int) -> dict[int, bytes]:
        return {1: self.tracing_data(), 3: self.string("builder"), 4: self.string("6.1.0"), 6: self.string("x86_64"),
                7: self.p("II", cpus, cpus), 9: self.string("AuthenticAMD,25,1,1")}

    def build(self, cpus: int = 2, features: dict[int, bytes] | None = None) -> bytes:
        """The file-mode perf.data: header, ids, attrs, data, feature table, features."""
        feats = self.features(cpus) if features is None else features
        data = b"".join(self.records)
        ids_at = 104
        ids = b"".join(self.p("Q", i) for a in self.attrs for i in a.ids)
        attrs_at = ids_at + len(ids)
        attrs, k = b"", 0
        for a in self.attrs:
            attrs += self.attr_bytes(a) + self.p("QQ", ids_at + 8 * k, 8 * len(a.ids))
            k += len(a.ids)
        data_at = attrs_at + len(attrs)
        feat_at = data_at + len(data)
        bits = sorted(feats)
        at = feat_at + 16 * len(bits)
        table, body = b"", b""
        for b in bits:
            table += self.p("QQ", at, len(feats[b]))
            body += feats[b]
            at += len(feats[b])
        words = [0, 0, 0, 0]
        for b in bits:
            words[b // 64] |= 1 << (b % 64)
        magic = b"2ELIFREP" if self.big else b"PERFILE2"
        head = (magic + self.p("QQ", 104, 144) + self.p("QQ", attrs_at, len(attrs)) + self.p("QQ", data_at, len(data))
                + self.p("QQ", 0, 0) + self.p("4Q", *words))
        return head + ids + attrs + data + table + body

    def build_pipe(self, cpus: int = 2) -> bytes:
        """Pipe mode: the 16-byte header, then HEADER_ATTR, HEADER_FEATURE and HEADER_TRACING_DATA
        records (the tracing data follows its record, padded to 8 bytes), then the data."""
        out = (b"2ELIFREP" if self.big else b"PERFILE2") + self.p("Q", 16)
        for a in self.attrs:
            out += self.header(64, 0, self.attr_bytes(a) + b"".join(self.p("Q", i) for i in a.ids))
        for bit, blob in sorted(self.features(cpus).items()):
            if bit == 1:
                continue
            out += self.header(80, 0, self.p("Q", bit) + blob)
        td = self.tracing_data()
        td += b"\0" * (-len(td) % 8)
        out += self.p("IHHII", 66, 0, 16, len(td), 0) + td  # the size perf 6.1 writes: 16
        return out + b"".join(self.records)
