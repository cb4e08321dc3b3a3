"""perf.data's data section: where every record starts, found for all records at once, and the
PERF_RECORD_COMPRESSED stream unpacked.

Records lie end to end, each starting with `struct perf_event_header` (u32 type, u16 misc, u16 size),
so finding them is a chain walk: next = this + size. The walk is done in NumPy by pointer jumping
over a chunk of the data: every 8-byte slot of the chunk gets "the slot of the next record if a
record started here"; squaring that map L times gives a jump of 2^L records, so the chain is
followed 2^L records per Python step, then filled in with 2^L - 1 vectorized steps. Kernel and perf
records are all multiples of 8 bytes; a record that is not (or a chunk's last record) ends the
chunk, and the next chunk starts exactly where it ends, so any size is still read correctly.

Two user record types carry data after their `size` bytes (tools/perf/util/session.c
`perf_session__process_user_event`): HEADER_TRACING_DATA (u32 size at +8) and AUXTRACE (u64 at +8).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import numpy as np

# Record types (include/uapi/linux/perf_event.h; perf's own from tools/lib/perf/include/perf/event.h)
REC_MMAP, REC_LOST, REC_COMM, REC_EXIT, REC_FORK, REC_SAMPLE = 1, 2, 3, 4, 7, 9
REC_LOST_SAMPLES = 13
USER_TYPE_START = 64
REC_HEADER_ATTR = 64
REC_HEADER_TRACING_DATA = 66
REC_FINISHED_ROUND = 68
REC_ID_INDEX = 69
REC_AUXTRACE = 71
REC_EVENT_UPDATE = 78
REC_HEADER_FEATURE = 80
REC_COMPRESSED = 81
REC_FINISHED_INIT = 82
REC_COMPRESSED2 = 83  # perf 6.15 on: a u64 data size before the zstd bytes
HEADER_SIZE = 8
JUMP_LEVELS = 6  # 64 records per Python step
MAX_CHUNK_SLOTS = 1 << 19  # 4 MiB of data per chunk
MIN_CHUNK_SLOTS = 64
FIRST_CHUNK_SLOTS = 4096
# Output buffer of the zstd stream: the decoder returns once its input is used up or this is full,
# so it must hold all a record's data can produce (perf's records are under 64 KiB compressed).
WRITE_SIZE = 16 << 20


@dataclasses.dataclass
class Walk:
    """Records found in data[start:end]: their offsets, and why the walk stopped early if it did."""

    offsets: np.ndarray  # int64, in stream order
    stop: int  # where the last complete record ends
    problem: str | None  # None, "truncated" (a record runs past the end) or "corrupt" (size < 8)


def _u(bytes2d: np.ndarray, lo: int, n: int, big: bool) -> np.ndarray:
    """Unsigned n-byte integers from columns lo..lo+n of a (rows, >= lo+n) uint8 block."""
    out = np.zeros(bytes2d.shape[0], dtype=np.int64)
    cols = range(lo, lo + n) if big else range(lo + n - 1, lo - 1, -1)
    for c in cols:
        out = (out << 8) | bytes2d[:, c]
    return out


def extra_bytes(data: np.ndarray, at: np.ndarray, rtype: np.ndarray, big: bool) -> np.ndarray:
    """Bytes that follow records of the two types whose payload is outside their `size`."""
    out = np.zeros(at.size, dtype=np.int64)
    for t, n in ((REC_HEADER_TRACING_DATA, 4), (REC_AUXTRACE, 8)):
        sel = np.flatnonzero(rtype == t)
        if sel.size:
            pos = at[sel] + HEADER_SIZE
            ok = pos + n <= data.size
            idx = np.minimum(pos[:, None] + np.arange(n), data.size - 1)
            val = _u(data[idx], 0, n, big)
            # A u64 past 2^63 reads negative in int64: past the end either way.
            out[sel] = np.where(ok & (val >= 0), np.minimum(val, 1 << 62), 1 << 62)
    return out


def _strided(data: np.ndarray, start: int, count: int, dtype: str) -> np.ndarray:
    """The `dtype` word at start + 8k for k < count, as a view (no copy; may be unaligned)."""
    return np.ndarray((count,), dtype=np.dtype(dtype), buffer=data, offset=start, strides=(8,))


def _chunk(data: np.ndarray, s: int, slots: int, big: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The slots s + 8k where a record could start (size >= 8 and a multiple of 8: inside a record
    most words fail that, so the jumping below works on few), each one's step in bytes, and each
    one's next candidate (len(cand) where the chain leaves the chunk or the lattice)."""
    e = ">" if big else "<"
    size = _strided(data, s + 6, slots, e + "u2")
    ok = (size >= HEADER_SIZE) & ((size & 7) == 0)
    ok[0] = True  # the chunk starts at a record by construction (a bad one ends the walk there)
    cand = np.flatnonzero(ok)
    step = size[cand].astype(np.int64)
    rtype = _strided(data, s, slots, e + "u4")[cand]
    special = np.flatnonzero((rtype == REC_HEADER_TRACING_DATA) | (rtype == REC_AUXTRACE))
    if special.size:
        step[special] += extra_bytes(data, s + 8 * cand[special], rtype[special], big)
    index = np.full(slots + 1, cand.size, dtype=np.intp)
    index[cand] = np.arange(cand.size, dtype=np.intp)
    target = np.minimum(cand + (step >> 3), slots)
    nxt = np.append(index[target], cand.size)
    nxt[:-1][((step & 7) != 0) | (step < HEADER_SIZE)] = cand.size
    return cand, step, nxt


def _follow(nxt: np.ndarray, n: int) -> np.ndarray:
    """Indices of the chain from index 0 while it stays among the n candidates (pointer jumping;
    a chunk of a few candidates, as off-lattice records leave, is stepped through directly)."""
    if n <= 1 << JUMP_LEVELS:
        chain, k = [0], int(nxt[0])
        while k != n:
            chain.append(k)
            k = int(nxt[k])
        return np.array(chain, dtype=np.intp)
    jump = nxt
    for _ in range(JUMP_LEVELS):
        jump = jump[jump]
    anchors = [0]
    k = int(jump[0])
    while k != n:
        anchors.append(k)
        k = int(jump[k])
    cur = np.array(anchors, dtype=np.intp)
    rows = [cur]
    for _ in range((1 << JUMP_LEVELS) - 1):
        cur = nxt[cur]
        rows.append(cur)
    chain = np.stack(rows, axis=1).reshape(-1)
    return chain[chain < n]


def walk(data: np.ndarray, start: int, end: int, big: bool = False) -> Walk:
    """Offsets of the records laid end to end from `start` up to `end` in `data` (uint8)."""
    res = Walk(np.empty(0, np.int64), start, None)
    res.offsets = _cat(list(walk_chunks(data, start, end, big, res)))
    return res


def walk_chunks(data: np.ndarray, start: int, end: int, big: bool, res: Walk) -> Iterator[np.ndarray]:
    """`walk` a chunk at a time (at most MAX_CHUNK_SLOTS * 8 bytes each): yields each chunk's record
    offsets; where and why the walk stopped is set in `res` (stop, problem) when it ends."""
    end = min(end, data.size)
    s = start
    slots = FIRST_CHUNK_SLOTS
    while s < end:
        if end - s < HEADER_SIZE:
            res.stop, res.problem = s, "truncated"
            return
        k = min(slots, (end - s) // 8)
        cand, step, nxt = _chunk(data, s, k, big)
        chain = _follow(nxt, cand.size)
        last = int(chain[-1])
        at = (s + 8 * cand[chain]).astype(np.int64, copy=False)
        size = int(_strided(data, int(at[-1]) + 6, 1, (">" if big else "<") + "u2")[0])
        nxt_s = int(at[-1]) + int(step[last])
        if size < HEADER_SIZE or nxt_s > end:
            if at.size > 1:
                yield at[:-1]
            res.stop, res.problem = int(at[-1]), "corrupt" if size < HEADER_SIZE else "truncated"
            return
        yield at
        # Few records per chunk means off-lattice sizes: smaller chunks waste less.
        slots = min(MAX_CHUNK_SLOTS, 2 * k) if chain.size * 64 >= k else max(MIN_CHUNK_SLOTS, k // 8)
        s = nxt_s
    res.stop, res.problem = s, None


def _cat(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts).astype(np.int64, copy=False) if parts else np.empty(0, np.int64)


class BudgetExceeded(Exception):
    pass


class _Sink:
    """Collects decompressed bytes, refusing to hold more than `budget`."""

    def __init__(self, budget: int):
        self.parts: list[bytes] = []
        self.size = 0
        self.budget = budget

    def write(self, b) -> int:
        self.size += len(b)
        if self.size > self.budget:
            raise BudgetExceeded
        self.parts.append(bytes(b))
        return len(b)


def decompress(data: np.ndarray, offsets: np.ndarray, rtype: np.ndarray, size: np.ndarray, big: bool,
               budget: int) -> tuple[bytes, np.ndarray, str | None]:
    """The zstd stream of every COMPRESSED record, in order, decompressed as one stream (perf record
    compresses its whole session as one stream, flushed at every record: util/zstd.c), the
    decompressed length available after each record, and zstd's complaint if the stream breaks
    (what came before is kept; the ends of the records after the break are the last length).

    Raises BudgetExceeded past `budget` bytes."""
    import zstandard

    sink = _Sink(budget)
    writer = zstandard.ZstdDecompressor().stream_writer(sink, write_size=WRITE_SIZE)
    ends = np.empty(offsets.size, dtype=np.int64)
    problem = None
    for i, (o, t, n) in enumerate(zip(offsets.tolist(), rtype.tolist(), size.tolist())):
        lo, hi = o + HEADER_SIZE, o + n
        if t == REC_COMPRESSED2:
            dsz = int(_u(data[lo: lo + 8].reshape(1, 8), 0, 8, big)[0])
            lo, hi = lo + 8, min(hi, lo + 8 + dsz)
        if problem is None:
            try:
                writer.write(memoryview(data[lo:hi]))
            except zstandard.ZstdError as exc:
                problem = str(exc)
        ends[i] = sink.size
    return b"".join(sink.parts), ends, problem
