"""Each CPU's ring-buffer data in a trace.dat, from whole arrays or a window at a time.

A file's options (before the data) name each CPU's size, first and last timestamps and event
count, and its trace id hashes the data; each CPU's data is one contiguous run of the file. So a
stream written window by window goes first to one spool file per CPU (anonymous, beside the
output): a window's records are cut into pages (the last, unfinished page waits for the next
window: pages.cut_pages) and, in a compressed v7 file, compressed ten pages at a time as trace-cmd
does (lib/trace-cmd/trace-output.c); the file is assembled once the last window is in, the spools
copied in by the kernel (copy_file_range). Arrays given whole (possibly memory-mapped) are read
in bounded pieces, and pieces of a file mapping are dropped from memory once read.
"""
from __future__ import annotations

import hashlib
import mmap
import os
import shutil
import struct
import tempfile
import zlib
from typing import BinaryIO

import numpy as np

from .pages import cut_pages
from .records import Records

PAGES_IN_CHUNK = 10  # trace-cmd compresses CPU data 10 pages at a time
ZSTD_LEVEL = 3
# trace-cmd's zlib uses Z_BEST_COMPRESSION (9); 6 writes the same format in much less time.
ZLIB_LEVEL = 6
PIECE = 64 << 20  # bytes of a given array read at a time
COMPRESSIONS = ("none", "zstd", "zlib")


class Codec:
    """A v7 compression algorithm: its name and version as the file header records them."""

    def __init__(self, name: str):
        self.name = name
        if name == "zstd":
            import zstandard

            self.version = ".".join(map(str, zstandard.ZSTD_VERSION))
            self._zstd = zstandard.ZstdCompressor(level=ZSTD_LEVEL)
        elif name == "zlib":
            self.version = zlib.ZLIB_RUNTIME_VERSION
        else:
            raise ValueError(name)

    def compress(self, data) -> bytes:
        return self._zstd.compress(data) if self.name == "zstd" else zlib.compress(data, ZLIB_LEVEL)

    def block(self, data) -> bytes:
        """A compressed block as the file stores it: compressed size, uncompressed size, data."""
        c = self.compress(data)
        return struct.pack("<II", len(c), len(data)) + c


def codec(compression: str) -> Codec | None:
    return None if compression == "none" else Codec(compression)


class CpuData:
    """What the layout needs of one CPU's data: its digest, first and last timestamps and event
    count; `copy_to` writes it at the file's current position."""

    first_ts = last_ts = count = 0
    digest = b""

    def copy_to(self, fh: BinaryIO) -> None:
        raise NotImplementedError


class SpooledCpu(CpuData):
    """One CPU's data written a window at a time (add), to a spool file until `finish`."""

    def __init__(self, directory: str, comp: Codec | None, page_size: int):
        self.spool = tempfile.TemporaryFile(dir=directory, prefix=".exitreplay-cpu-")  # noqa: SIM115 (closed by close)
        self.comp = comp
        self.page_size = page_size
        self.hash = hashlib.sha256()
        self.carry: Records | None = None  # the records of the unfinished last page
        self.prev_ts: int | None = None  # timestamp of the last record in a page already cut
        self.pending = bytearray()  # compressed files: pages not yet in a 10-page block
        self.blocks = 0

    def add(self, recs: Records, final: bool = False) -> None:
        ts, payload, sizes = recs
        if ts.size:
            self.first_ts = int(ts[0]) if not self.count else self.first_ts
            self.last_ts = int(ts[-1])
            self.count += int(ts.size)
        if self.carry is not None:
            ts, payload, sizes = (np.concatenate([a, b]) for a, b in zip(self.carry, (ts, payload, sizes)))
        pages, used = cut_pages(ts, payload, sizes, self.page_size, prev_ts=self.prev_ts, final=final)
        if used:
            self.prev_ts = int(ts[used - 1])
        nbytes = int(sizes[:used].sum())
        self.carry = (ts[used:], payload[nbytes:], sizes[used:]) if used < ts.size else None
        self._pages(pages)

    def _pages(self, pages: np.ndarray) -> None:
        self.hash.update(memoryview(pages))
        if self.comp is None:
            self.spool.write(memoryview(pages))
            return
        self.pending += memoryview(pages)
        chunk = PAGES_IN_CHUNK * self.page_size
        done = len(self.pending) // chunk * chunk
        for at in range(0, done, chunk):
            self.spool.write(self.comp.block(memoryview(self.pending)[at: at + chunk]))
        self.blocks += done // chunk
        del self.pending[:done]

    def finish(self) -> None:
        """The last page and the last, shorter block."""
        if self.carry is not None:
            self.add((np.zeros(0, np.int64), np.zeros(0, np.uint8), np.zeros(0, np.int64)), final=True)
        if self.comp is not None and self.pending:
            self.spool.write(self.comp.block(bytes(self.pending)))
            self.blocks += 1
            self.pending.clear()
        self.spool.flush()
        self.digest = self.hash.digest()

    def copy_to(self, fh: BinaryIO) -> None:
        if self.comp is not None:
            fh.write(struct.pack("<I", self.blocks))
        _copy_file(self.spool, fh, self.spool.tell())

    def close(self) -> None:
        self.spool.close()


class ArrayCpu(CpuData):
    """One CPU's pages given whole (a NumPy array or memmap), read a piece at a time."""

    def __init__(self, pages: np.ndarray, comp: Codec | None, page_size: int, ts: np.ndarray | None):
        self.pages = np.asarray(pages).reshape(-1).view(np.uint8)
        self.comp = comp
        self.page_size = page_size
        h = hashlib.sha256()
        for piece in _pieces(self.pages, PIECE):
            h.update(piece)
        self.digest = h.digest()
        chunk = PAGES_IN_CHUNK * page_size
        self.blocks = -(-self.pages.size // chunk)
        if ts is not None and ts.size:
            self.first_ts, self.last_ts, self.count = int(ts[0]), int(ts[-1]), int(ts.size)

    def copy_to(self, fh: BinaryIO) -> None:
        if self.comp is None:
            for piece in _pieces(self.pages, PIECE):
                fh.write(piece)
            return
        fh.write(struct.pack("<I", self.blocks))
        chunk = PAGES_IN_CHUNK * self.page_size
        for piece in _pieces(self.pages, max(1, PIECE // chunk) * chunk):
            for at in range(0, len(piece), chunk):
                fh.write(self.comp.block(piece[at: at + chunk]))


def _pieces(a: np.ndarray, step: int):
    """memoryviews of a's bytes, `step` at a time; a file mapping's pages dropped once used."""
    for lo in range(0, a.size, step):
        piece = a[lo: lo + step]
        yield memoryview(np.ascontiguousarray(piece))
        _release(piece)


def _release(a: np.ndarray) -> None:
    """Drop the pages of a slice of a shared file mapping (np.memmap) from this process's memory:
    they stay in the file and the page cache, but no longer count in its RSS."""
    mm, mode = a, None
    while mm is not None and not isinstance(mm, mmap.mmap):
        if mode is None and isinstance(mm, np.memmap):
            mode = mm.mode
        mm = getattr(mm, "base", None)
    if mm is None or mode in (None, "c"):  # copy-on-write ("c"): dropping the pages would drop changes
        return
    start = a.ctypes.data - np.frombuffer(mm, np.uint8).ctypes.data
    lo = start - start % mmap.PAGESIZE
    hi = min(len(mm), start + a.nbytes)
    if hi > lo:
        mm.madvise(mmap.MADV_DONTNEED, lo, hi - lo)


def _copy_file(src: BinaryIO, dst: BinaryIO, size: int) -> None:
    """src's first `size` bytes at dst's position, copied in the kernel where it can."""
    dst.flush()
    at = dst.tell()
    done = 0
    try:
        while done < size:
            n = os.copy_file_range(src.fileno(), dst.fileno(), size - done, done, at + done)
            if n == 0:
                break
            done += n
    except OSError:
        done = 0
    if done < size:
        src.seek(done)
        dst.seek(at + done)
        shutil.copyfileobj(_Limited(src, size - done), dst, 8 << 20)
    dst.seek(at + size)


class _Limited:
    """A reader of at most n bytes of a file."""

    def __init__(self, fh: BinaryIO, n: int):
        self.fh, self.left = fh, n

    def read(self, k: int = -1) -> bytes:
        k = self.left if k < 0 else min(k, self.left)
        data = self.fh.read(k)
        self.left -= len(data)
        return data
