"""What a value read from a trace file may be, and how much memory a file may make us allocate.

Every size, offset, count and id a reader takes from a file is checked against these before it
is used: a value outside them is a corrupt file (a `TraceError` naming the problem), never an
index error, an overflow or a multi-gigabyte allocation.
"""
from __future__ import annotations

# CPU ids: the kernel's NR_CPUS is at most 8192 (arch/x86/Kconfig); ids are kept in int32 columns.
MAX_CPUS = 1 << 16
# Event ids: common_type is an unsigned short in every event format.
MAX_EVENT_ID = (1 << 16) - 1
# pids: pid_t is an int; the kernel's PID_MAX_LIMIT is 2^22. The columns are int32.
MAX_PID = (1 << 31) - 1
# Ring-buffer pages: at least a header and a record. A sub-buffer may not be larger than the
# 20-bit write counter (kernel/trace/ring_buffer.c, ring_buffer_subbuf_order_set: "psize >
# RB_WRITE_MASK + 1" is -EINVAL, RB_WRITE_MASK 0xfffff), so 1 MiB; this also bounds the page walk,
# one NumPy step per record slot of the fullest page.
MIN_PAGE_SIZE = 64
MAX_PAGE_SIZE = 1 << 20
# A record lies in one page, so no field of an event format may reach past this.
MAX_RECORD = MAX_PAGE_SIZE
# Timestamps are int64 ns; time offsets beyond +-2^62 ns (146 years) are corrupt.
MAX_TIME_OFFSET = 1 << 62
# Decompressed data: deflate cannot expand more than 1032:1 and trace pages compress far less
# (5-20:1 on the project's recordings), so more than this per compressed byte is a bomb or a lie.
MAX_EXPANSION = 1100
BUDGET_FLOOR = 64 << 20
# One field block gathered at a time (rows x record width) stays below this.
GATHER_BYTES = 16 << 20


def memory_budget(file_size: int) -> int:
    """Bytes of decompressed data a file of `file_size` bytes may justify."""
    return BUDGET_FLOOR + MAX_EXPANSION * max(0, file_size)
