"""perf.data headers: the file header (file and pipe mode), event attributes with their ids, and the
feature sections.

Layouts: tools/perf/Documentation/perf.data-file-format.txt, include/uapi/linux/perf_event.h
(`struct perf_event_attr`) and tools/perf/util/header.c (how perf itself reads them: `read_attr`,
`perf_session__read_header`, the `process_*` feature readers). Every offset and size is checked
against the bytes present before use; nothing is allocated beyond what the file holds.
"""
from __future__ import annotations

import dataclasses
import struct

MAGIC = b"PERFILE2"
MAGIC_SWAPPED = b"2ELIFREP"  # the u64 magic written by a machine of the other byte order
FILE_HEADER_SIZE = 104  # struct perf_file_header
PIPE_HEADER_SIZE = 16  # struct perf_pipe_file_header: magic and size only
ATTR_SIZE_VER0 = 64  # the part of perf_event_attr every perf version writes
FEAT_BITS = 256

# perf_event_attr.type
PERF_TYPE_TRACEPOINT = 2

# sample_type bits (include/uapi/linux/perf_event.h, enum perf_event_sample_format)
SAMPLE_IP = 1 << 0
SAMPLE_TID = 1 << 1
SAMPLE_TIME = 1 << 2
SAMPLE_ADDR = 1 << 3
SAMPLE_READ = 1 << 4
SAMPLE_CALLCHAIN = 1 << 5
SAMPLE_ID = 1 << 6
SAMPLE_CPU = 1 << 7
SAMPLE_PERIOD = 1 << 8
SAMPLE_STREAM_ID = 1 << 9
SAMPLE_RAW = 1 << 10
SAMPLE_IDENTIFIER = 1 << 16
SAMPLE_NAMES = ("IP", "TID", "TIME", "ADDR", "READ", "CALLCHAIN", "ID", "CPU", "PERIOD", "STREAM_ID", "RAW",
                "BRANCH_STACK", "REGS_USER", "STACK_USER", "WEIGHT", "DATA_SRC", "IDENTIFIER", "TRANSACTION",
                "REGS_INTR", "PHYS_ADDR", "AUX", "CGROUP", "DATA_PAGE_SIZE", "CODE_PAGE_SIZE", "WEIGHT_STRUCT")

# read_format bits
FORMAT_TOTAL_TIME_ENABLED = 1 << 0
FORMAT_TOTAL_TIME_RUNNING = 1 << 1
FORMAT_ID = 1 << 2
FORMAT_GROUP = 1 << 3
FORMAT_LOST = 1 << 4

# Bits of the attr's flag word (the bitfield after read_format), in declaration order.
FLAG_SAMPLE_ID_ALL = 18
FLAG_USE_CLOCKID = 25

# Feature bits (tools/perf/util/header.h, HEADER_*)
FEAT_TRACING_DATA = 1
FEAT_BUILD_ID = 2
FEAT_HOSTNAME = 3
FEAT_OSRELEASE = 4
FEAT_VERSION = 5
FEAT_ARCH = 6
FEAT_NRCPUS = 7
FEAT_CPUDESC = 8
FEAT_CPUID = 9
FEAT_TOTAL_MEM = 10
FEAT_CMDLINE = 11
FEAT_EVENT_DESC = 12
FEAT_SAMPLE_TIME = 21
FEAT_CLOCKID = 23
FEAT_COMPRESSED = 27
FEAT_CLOCK_DATA = 29
STRING_FEATURES = {FEAT_HOSTNAME: "hostname", FEAT_OSRELEASE: "osrelease", FEAT_VERSION: "perf_version",
                   FEAT_ARCH: "arch", FEAT_CPUDESC: "cpudesc", FEAT_CPUID: "cpuid"}
COMPRESSION_TYPES = {0: "none", 1: "zstd"}
# clockid_t values perf record -k accepts (tools/perf/builtin-record.c, clockids[]).
CLOCK_NAMES = {0: "realtime", 1: "monotonic", 4: "monotonic_raw", 7: "boottime", 11: "tai"}


class Corrupt(Exception):
    """A header structure that does not fit the bytes present (message: what and where)."""


@dataclasses.dataclass
class Attr:
    """One perf_event_attr, the fields this reader uses, and the event ids that carry it."""

    type: int
    size: int
    config: int
    sample_type: int
    read_format: int
    flags: int
    clockid: int
    ids: list[int]
    name: str | None = None

    @property
    def sample_id_all(self) -> bool:
        return bool(self.flags >> FLAG_SAMPLE_ID_ALL & 1)

    @property
    def use_clockid(self) -> bool:
        return bool(self.flags >> FLAG_USE_CLOCKID & 1)

    @property
    def is_tracepoint(self) -> bool:
        return self.type == PERF_TYPE_TRACEPOINT

    def sample_type_names(self) -> str:
        return "|".join(n for i, n in enumerate(SAMPLE_NAMES) if self.sample_type >> i & 1)


class Bytes:
    """Bounds-checked reads of integers and perf strings from a byte buffer in one byte order."""

    def __init__(self, buf, endian: str, what: str):
        self.buf, self.what = buf, what
        self.e = "<" if endian == "little" else ">"

    def need(self, at: int, n: int) -> None:
        if at < 0 or n < 0 or at + n > len(self.buf):
            raise Corrupt(f"{self.what}: {n} bytes at {at} run past its end ({len(self.buf)} bytes)")

    def u(self, at: int, n: int) -> int:
        self.need(at, n)
        return struct.unpack_from(self.e + {1: "B", 2: "H", 4: "I", 8: "Q"}[n], self.buf, at)[0]

    def s32(self, at: int) -> int:
        self.need(at, 4)
        return struct.unpack_from(self.e + "i", self.buf, at)[0]

    def string(self, at: int) -> tuple[str, int]:
        """A perf_header_string (u32 length, then that many bytes, NUL padded): (text, next offset)."""
        n = self.u(at, 4)
        self.need(at + 4, n)
        raw = bytes(self.buf[at + 4: at + 4 + n])
        return raw.split(b"\0", 1)[0].decode("utf-8", "replace"), at + 4 + n


def byte_order(magic: bytes) -> str | None:
    """'little' or 'big' from the 8 magic bytes; None if they are not PERFILE2 either way round."""
    if magic == MAGIC:
        return "little"
    if magic == MAGIC_SWAPPED:
        return "big"
    return None


@dataclasses.dataclass
class FileHeader:
    endian: str
    pipe: bool
    attr_size: int = 0
    attrs: tuple[int, int] = (0, 0)  # (offset, size) of the attr section
    data: tuple[int, int] = (0, 0)
    features: frozenset[int] = frozenset()

    @property
    def feat_offset(self) -> int:
        # header.c perf_file_header__read: the feature table follows the data section directly.
        return self.data[0] + self.data[1]


def read_file_header(buf) -> FileHeader:
    """The header at the start of `buf`: a full perf_file_header, or the pipe-mode one."""
    endian = byte_order(bytes(buf[:8]))
    if endian is None:
        raise Corrupt("not a perf.data file (no PERFILE2 magic)")
    b = Bytes(buf, endian, "file header")
    size = b.u(8, 8)
    if size == PIPE_HEADER_SIZE:
        return FileHeader(endian, pipe=True)
    if size != FILE_HEADER_SIZE:
        raise Corrupt(f"file header: size {size}, expected {FILE_HEADER_SIZE} (or {PIPE_HEADER_SIZE} for a pipe)")
    b.need(0, FILE_HEADER_SIZE)
    words = [b.u(72 + 8 * i, 8) for i in range(4)]  # flags and flags1[3]: the feature bitmap
    bits = frozenset(i for i in range(FEAT_BITS) if words[i // 64] >> (i % 64) & 1)
    return FileHeader(endian, pipe=False, attr_size=b.u(16, 8), attrs=(b.u(24, 8), b.u(32, 8)),
                      data=(b.u(40, 8), b.u(48, 8)), features=bits)


def _flag_word(raw: bytes, endian: str) -> int:
    """The attr's bitfield word. A big-endian compiler fills bitfields from the top bit of each byte,
    so there every byte's bits are reversed (perf's own swap_bitfield in util/session.c)."""
    if endian == "big":
        raw = bytes(int(f"{b:08b}"[::-1], 2) for b in raw)
    return int.from_bytes(raw, "little")


def parse_attr(buf, at: int, endian: str, limit: int | None = None, what: str = "attr") -> tuple[Attr, int]:
    """The perf_event_attr at `at` (its own `size` field says how long: 0 means the first ABI's 64
    bytes, as perf's read_attr assumes); returns it (no ids yet) and the bytes it occupies.

    `limit`: the space the container gives it (an attr section's stride, a record's body)."""
    b = Bytes(buf, endian, what)
    b.need(at, ATTR_SIZE_VER0)
    size = b.u(at + 4, 4) or ATTR_SIZE_VER0
    if size < ATTR_SIZE_VER0 or (limit is not None and size > limit):
        raise Corrupt(f"{what}: attr size {size} (room for {limit})")
    b.need(at, size)
    clockid = b.s32(at + 92) if size >= 96 else 0
    attr = Attr(type=b.u(at, 4), size=size, config=b.u(at + 8, 8), sample_type=b.u(at + 24, 8),
                read_format=b.u(at + 32, 8), flags=_flag_word(bytes(buf[at + 40: at + 48]), endian),
                clockid=clockid, ids=[])
    return attr, size


def read_ids(buf, at: int, count: int, endian: str, what: str) -> list[int]:
    b = Bytes(buf, endian, what)
    b.need(at, 8 * count)
    return list(struct.unpack_from(f"{b.e}{count}Q", buf, at))


def read_attr_section(buf, hdr: FileHeader, file_size: int) -> list[Attr]:
    """File mode: attr_size-strided entries of (perf_event_attr, perf_file_section of its ids)."""
    off, size = hdr.attrs
    if hdr.attr_size < ATTR_SIZE_VER0 + 16 or hdr.attr_size > 4096:
        raise Corrupt(f"file header: attr size {hdr.attr_size}")
    if off + size > file_size:
        raise Corrupt(f"attr section ({size} bytes at {off}) runs past the end of the file")
    b = Bytes(buf, hdr.endian, "attr section")
    attrs = []
    for i in range(size // hdr.attr_size):
        at = off + i * hdr.attr_size
        attr, used = parse_attr(buf, at, hdr.endian, hdr.attr_size - 16, f"attr {i}")
        ids_off, ids_size = b.u(at + used, 8), b.u(at + used + 8, 8)
        if ids_size % 8 or ids_off + ids_size > file_size:
            raise Corrupt(f"attr {i}: ids ({ids_size} bytes at {ids_off}) do not fit the file")
        attr.ids = read_ids(buf, ids_off, ids_size // 8, hdr.endian, f"attr {i} ids")
        attrs.append(attr)
    return attrs


def feature_sections(buf, hdr: FileHeader, file_size: int) -> tuple[dict[int, bytes], list[str]]:
    """File mode: each feature's bytes, from the table of perf_file_sections after the data; the
    features the file lacks room for (cut short) are named in the warnings instead."""
    out: dict[int, bytes] = {}
    warn: list[str] = []
    b = Bytes(buf, hdr.endian, "feature table")
    at = hdr.feat_offset
    for bit in sorted(hdr.features):
        if at + 16 > file_size:
            warn.append(f"feature sections missing from feature {bit} on (the file ends at {file_size})")
            break
        off, size = b.u(at, 8), b.u(at + 8, 8)
        at += 16
        if off + size > file_size:
            warn.append(f"feature {bit} ({size} bytes at {off}) runs past the end of the file: skipped")
            continue
        out[bit] = bytes(buf[off: off + size])
    return out, warn


@dataclasses.dataclass
class Features:
    """The feature sections this reader interprets (others are kept raw in `raw`)."""

    hostname: str | None = None
    osrelease: str | None = None
    perf_version: str | None = None
    arch: str | None = None
    cpudesc: str | None = None
    cpuid: str | None = None
    nr_cpus_avail: int | None = None
    nr_cpus_online: int | None = None
    total_mem_kb: int | None = None
    cmdline: list[str] | None = None
    event_desc: list[tuple[str, list[int]]] = dataclasses.field(default_factory=list)
    sample_time: tuple[int, int] | None = None
    clockid_res_ns: int | None = None
    clock_data: dict | None = None
    compressed: dict | None = None
    tracing_data: bytes | None = None
    raw: dict[int, bytes] = dataclasses.field(default_factory=dict)
    warnings: list[str] = dataclasses.field(default_factory=list)


def parse_features(sections: dict[int, bytes], endian: str) -> Features:
    """Interpret feature sections; an unreadable one becomes a warning, never an error."""
    f = Features(raw=dict(sections))
    for bit, raw in sorted(sections.items()):
        try:
            _parse_feature(f, bit, raw, endian)
        except Corrupt as exc:
            f.warnings.append(f"unreadable feature section {bit}: {exc}")
    return f


def _parse_feature(f: Features, bit: int, raw: bytes, endian: str) -> None:
    b = Bytes(raw, endian, f"feature {bit}")
    if bit in STRING_FEATURES:
        setattr(f, STRING_FEATURES[bit], b.string(0)[0])
    elif bit == FEAT_TRACING_DATA:
        f.tracing_data = raw
    elif bit == FEAT_NRCPUS:
        # header.c write_nrcpus: the present CPUs first, then the online ones.
        f.nr_cpus_avail, f.nr_cpus_online = b.u(0, 4), b.u(4, 4)
    elif bit == FEAT_TOTAL_MEM:
        f.total_mem_kb = b.u(0, 8)
    elif bit == FEAT_CMDLINE:
        n, at = b.u(0, 4), 4
        args = []
        for _ in range(min(n, len(raw) // 4)):
            s, at = b.string(at)
            args.append(s)
        f.cmdline = args
    elif bit == FEAT_EVENT_DESC:
        f.event_desc = _event_desc(b, raw, endian)
    elif bit == FEAT_SAMPLE_TIME:
        f.sample_time = (b.u(0, 8), b.u(8, 8))
    elif bit == FEAT_CLOCKID:
        f.clockid_res_ns = b.u(0, 8)
    elif bit == FEAT_CLOCK_DATA:
        f.clock_data = {"version": b.u(0, 4), "clockid": b.u(4, 4), "tod_ns": b.u(8, 8), "clockid_ns": b.u(16, 8)}
    elif bit == FEAT_COMPRESSED:
        f.compressed = {"version": b.u(0, 4), "type": COMPRESSION_TYPES.get(b.u(4, 4), str(b.u(4, 4))),
                        "level": b.u(8, 4), "ratio": b.u(12, 4), "mmap_len": b.u(16, 4)}


def _event_desc(b: Bytes, raw: bytes, endian: str) -> list[tuple[str, list[int]]]:
    """HEADER_EVENT_DESC: u32 count, u32 attr size, then per event the attr, u32 id count, the
    name string and the ids (header.c read_event_desc)."""
    n, asz = b.u(0, 4), b.u(4, 4)
    at = 8
    out = []
    for _ in range(min(n, len(raw) // max(asz, 1))):
        b.need(at, asz)
        at += asz
        nr = b.u(at, 4)
        name, at = b.string(at + 4)
        out.append((name, read_ids(raw, at, nr, endian, "event desc ids")))
        at += 8 * nr
    return out
