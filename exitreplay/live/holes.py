"""Give back the disk of page files already read: a live `top` runs for hours, its readers'
files (record/pipes.py: every page goes to a file, read back from there) must not grow as long.

fallocate(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE) frees the blocks of a range and leaves the
file's size and the offsets of the pages after it as they were (fs/open.c vfs_fallocate;
include/uapi/linux/falloc.h). A file system without it (EOPNOTSUPP) keeps its bytes: nothing is
lost but disk.
"""
from __future__ import annotations

import ctypes
import os

FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_FL_PUNCH_HOLE = 0x02

_fallocate = None


def _libc_fallocate():
    global _fallocate
    if _fallocate is None:
        fn = ctypes.CDLL(None, use_errno=True).fallocate
        fn.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
        fn.restype = ctypes.c_int
        _fallocate = fn
    return _fallocate


def punch(path: os.PathLike | str, length: int) -> bool:
    """Free bytes [0, length) of the file; False where the file system cannot."""
    if length <= 0:
        return True
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        return _libc_fallocate()(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, length) == 0
    finally:
        os.close(fd)
