"""A Trace (the reader's model) -> each CPU's records: timestamps, payloads laid out by the
template's formats, sizes; and the task names trace-cmd lists as saved_cmdlines.

Whole columns at a time: the payloads of one event type are encoded as one block
(payloads.encode_payloads), then scattered, a 32-bit word at a time, into each CPU's stream.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import UsageError
from ..trace import Trace
from .pages import encode_pages
from .payloads import encode_payloads, payload_size
from .templates import Template

Records = tuple[np.ndarray, np.ndarray, np.ndarray]  # one CPU's ts (int64), payload bytes (uint8), sizes


def payload_blocks(trace: Trace, template: Template) -> tuple[list[tuple[np.ndarray, np.ndarray]], np.ndarray]:
    """Each event type's rows and (rows, payload size) block of kernel trace records, and every
    event's payload size: what a ring buffer or a perf sample's RAW part carries."""
    ev = trace.events
    n = ev.num_rows
    fmts = template.formats
    missing = sorted(set(trace.event_names) - set(fmts))
    if missing:
        raise UsageError(f"template {template.name} has no format for: {', '.join(missing)}")
    pid_all = ev.column("pid").to_numpy()
    flags_all = ev.column("flags").fill_null(0).to_numpy(zero_copy_only=False)
    pc_all = ev.column("preempt_count").fill_null(0).to_numpy(zero_copy_only=False)
    sizes = np.zeros(n, dtype=np.int64)
    blocks = []
    for name in trace.event_names:
        t = trace.table(name)
        rows = t.column("row").to_numpy()
        fmt = fmts[name]
        # A field named like a key column (sched_waking's pid) is that column: the field wins, as in the reader.
        cols = {f.name: t.column(f.name) for f in fmt.own_fields if f.name in t.column_names}
        blocks.append((rows, encode_payloads(fmt, rows.size, cols, pid_all[rows], flags_all[rows], pc_all[rows])))
        sizes[rows] = payload_size(fmt)
    return blocks, sizes


def encode_records(trace: Trace, template: Template) -> list[Records]:
    """Per CPU (index = CPU; as many as trace.meta.cpus at least) its events in time order."""
    ev = trace.events
    n = ev.num_rows
    blocks, sizes = payload_blocks(trace, template)
    cpu = ev.column("cpu").to_numpy()
    ts = ev.column("ts").to_numpy()
    n_cpus = int(max(trace.meta.cpus or 0, (int(cpu.max()) + 1) if n else 1))
    # Lay the payloads out CPU by CPU in time order, so each CPU's stream is one contiguous slice.
    # Payloads are whole 32-bit words: scatter words, not bytes.
    order = np.argsort(cpu.astype(np.int16) if n_cpus < 2**15 else cpu, kind="stable")  # int16: a radix sort
    bounds = np.searchsorted(cpu[order], np.arange(n_cpus + 1))
    words = sizes // 4
    pos = np.empty(n, dtype=np.int64)
    pos[order] = np.concatenate([[0], np.cumsum(words[order])])[:-1]
    flat = np.zeros(int(words.sum()), dtype=np.uint32)
    for rows, block in blocks:
        w = block.shape[1] // 4
        flat[(pos[rows][:, None] + np.arange(w)[None, :]).reshape(-1)] = \
            np.ascontiguousarray(block).view(np.uint32).reshape(-1)
    stream = flat.view(np.uint8)
    out = []
    for c in range(n_cpus):
        rows = order[bounds[c]: bounds[c + 1]]
        lo = int(pos[rows[0]]) * 4 if rows.size else 0
        hi = lo + int(sizes[rows].sum())
        out.append((ts[rows], stream[lo:hi], sizes[rows]))
    return out


def encode_trace(trace: Trace, template: Template, page_size: int = 4096) -> tuple[list[np.ndarray],
                                                                                   list[np.ndarray]]:
    """Per-CPU pages and timestamps of a Trace, payloads laid out by the template's formats."""
    recs = encode_records(trace, template)
    return [encode_pages(*r, page_size) for r in recs], [r[0] for r in recs]


def task_names(trace: Trace) -> dict[int, str]:
    """pid -> comm of the tasks with events, as first seen (the idle task 0 and nameless ones left out)."""
    pid = trace.events.column("pid").to_numpy()
    upid, first = np.unique(pid, return_index=True)
    comm = trace.events.column("comm").take(pa.array(first)).cast(pa.string())
    names = pc.fill_null(comm, "").to_pylist()
    return {p: c for p, c in zip(upid.tolist(), names) if p > 0 and c}


def cmdlines(names: dict[int, str]) -> bytes:
    """saved_cmdlines text: "pid comm" per task, by pid."""
    return "".join(f"{p} {names[p]}\n" for p in sorted(names)).encode()
