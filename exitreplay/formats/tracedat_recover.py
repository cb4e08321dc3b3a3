"""Finding a v7 file's CPU data when the options that locate it are gone (a cut file).

trace-cmd writes a v7 file as: the header sections, the first options section, the buffer's
flyrecord section (a section header, padding to a page, then each CPU's data page-aligned, one
CPU after another), and only then the options section with the BUFFER option that gives each
CPU's offset and size (trace-cmd lib/trace-cmd/trace-output.c, tcmd_out_write_cpu_data). A file
cut anywhere in its data therefore still holds, before the cut, everything needed except those
offsets, and they can be found again:

1. The flyrecord section is the first section after the ones the first options section names
   (sections follow each other; trace-cmd finds its strings section the same way). Its header
   gives its size, so its end is known when the cut came later than the data.
2. Compressed data describes itself: per CPU a chunk count, then (compressed size, uncompressed
   size, data) per chunk; the next CPU starts at the next page boundary.
3. Uncompressed data is whole pages. Within one CPU the page header time stamps never decrease
   (pages leave the ring buffer in the order they were written); each CPU starts again from the
   start of the recording, so a time stamp that goes back marks the next CPU. At most one
   boundary per CPU the file recorded is taken, the largest steps back first.
4. CPU numbers: trace-cmd omits CPUs that recorded nothing (a 20-CPU host may list 4). The
   CPUSTAT options, which come before the data, say which CPUs saw events; blocks are given those
   numbers in order. Without them blocks are numbered 0, 1, ... and a warning says so.

Every complete event before the cut is then read as in a v6 file, with a warning.
"""
from __future__ import annotations

import re
from typing import TYPE_CHECKING

import numpy as np

from ..errors import TraceError
from . import limits

if TYPE_CHECKING:
    from .tracedat_file import Buffer, TraceDatFile

SECTION_BUFFER = 3  # TRACECMD_OPTION_BUFFER: the id of a flyrecord section too
MAX_SECTIONS = 1000
_STAT = re.compile(r"^([a-z ]+):\s*(\d+)\s*$", re.M)
# CPUSTAT counters that are non-zero on a CPU whose ring buffer held events.
_ACTIVE = ("entries", "overrun", "commit overrun", "bytes", "dropped events", "read events")


def locate_buffer(tdf: TraceDatFile, lost: str) -> Buffer:
    from .tracedat_file import Buffer, CpuData

    start, end = _flyrecord(tdf, lost)
    ps = tdf.page_size
    data_at = start + (-start % ps)
    cut = tdf.file_size < end
    end = min(end, tdf.file_size)
    blocks = _compressed_blocks(tdf, data_at, end) if tdf.compression != "none" else _page_runs(tdf, data_at, end)
    ids, how = _cpu_ids(tdf, len(blocks))
    cpus = [CpuData(cpu, off, size) for cpu, (off, size) in zip(ids, blocks)]
    if cut and cpus:
        tdf.truncated_cpus.add(cpus[-1].cpu)
    tdf.warnings.append(f"truncated file: {lost}, so the CPU data was located without its BUFFER option: {len(cpus)} CPU "
                        f"block(s) from offset {data_at}, CPU numbers {how}")
    clock = tdf.trace_clock_option()
    return Buffer("", clock, ps, cpus, section_offset=start - 16)


def _flyrecord(tdf: TraceDatFile, lost: str) -> tuple[int, int]:
    """(first byte after the flyrecord section header, end of the section as its header says)."""
    pos = max(_section_end(tdf, off) for off in tdf.sections.values())
    for _ in range(MAX_SECTIONS):
        if pos + 16 > tdf.file_size:
            break
        sid, size = tdf.section_header(pos)
        if sid == SECTION_BUFFER:
            return pos + 16, pos + 16 + size if size else tdf.file_size
        pos += 16 + size
    raise TraceError(tdf.path, f"truncated file: {lost}, and no CPU data follows the header sections")


def _section_end(tdf: TraceDatFile, off: int) -> int:
    _sid, size = tdf.section_header(off)
    return off + 16 + size


def _compressed_blocks(tdf: TraceDatFile, at: int, end: int) -> list[tuple[int, int]]:
    """(offset, size) of each CPU's chunk table and chunks, up to the cut."""
    ps, blocks = tdf.page_size, []
    while at + 4 <= end and len(blocks) < limits.MAX_CPUS:
        pos = at + 4
        count = tdf.u32(at)
        for _ in range(count):
            if pos + 8 > end:
                break
            pos += 8 + tdf.u32(pos)
        blocks.append((at, min(pos, end) - at))
        at = pos + (-pos % ps)
    return blocks


def _page_runs(tdf: TraceDatFile, at: int, end: int) -> list[tuple[int, int]]:
    """(offset, size) of each CPU's pages, split where the page time stamps go back."""
    ps = tdf.page_size
    n = -(-(end - at) // ps) if end > at else 0
    if n == 0:
        return []
    stamps = tdf.page_stamps(at, end)  # a page cut before its time stamp joins the run before it
    back = np.flatnonzero(stamps[1:] < stamps[:-1]) + 1
    most = max(1, _expected_cpus(tdf)) - 1
    if back.size > most:  # the largest steps back are CPU boundaries; smaller ones a clock's jitter
        step = (stamps[back - 1] - stamps[back]).astype(np.float64)
        back = np.sort(back[np.argsort(-step, kind="stable")[:most]])
    bounds = [0, *back.tolist(), n]
    return [(at + a * ps, min(end, at + b * ps) - (at + a * ps)) for a, b in zip(bounds, bounds[1:])]


def _cpustats(tdf: TraceDatFile) -> dict[int, dict[str, int]]:
    from .tracedat_file import OPT_CPUSTAT

    out: dict[int, dict[str, int]] = {}
    for raw in tdf.option_values(OPT_CPUSTAT):
        text = raw.rstrip(b"\0").decode("utf-8", "replace")
        m = re.match(r"\s*CPU:\s*(\d+)", text)
        if m and int(m[1]) < limits.MAX_CPUS:
            out[int(m[1])] = {k: int(v) for k, v in _STAT.findall(text)}
    return out


def _expected_cpus(tdf: TraceDatFile) -> int:
    stats = _cpustats(tdf)
    active = [c for c, st in stats.items() if any(st.get(k, 0) for k in _ACTIVE)]
    return len(active) or len(stats) or tdf.cpus or limits.MAX_CPUS


def _cpu_ids(tdf: TraceDatFile, nblocks: int) -> tuple[list[int], str]:
    stats = _cpustats(tdf)
    if nblocks and len(stats) == nblocks:
        return sorted(stats), "from the CPUSTAT options (one block per CPU)"
    active = sorted(c for c, st in stats.items() if any(st.get(k, 0) for k in _ACTIVE))
    if nblocks and len(active) >= nblocks:
        return active[:nblocks], "from the CPUSTAT options of the CPUs that saw events"
    return list(range(nblocks)), "unknown (numbered in file order)"
