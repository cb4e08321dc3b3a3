"""Export a Trace to Parquet or Arrow IPC: one file per event type plus `events` and `meta.json`.

Tables are written in row-group slices, so no writer holds more than one slice of output beyond
the decoded trace itself, and each event type is decoded, written and dropped in turn.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from .errors import UsageError
from .trace import Trace

ROW_GROUP = 1 << 20
FORMATS = ("parquet", "arrow")


def _safe(name: str) -> str:
    return re.sub(r"[^\w.-]", "_", name)


def _write(table: pa.Table, path: Path, fmt: str) -> None:
    if fmt == "parquet":
        with pq.ParquetWriter(path, table.schema, compression="zstd") as w:
            for batch in table.to_batches(max_chunksize=ROW_GROUP):
                w.write_batch(batch)
    else:
        with pa.OSFile(str(path), "wb") as sink, ipc.new_file(sink, table.schema) as w:
            for batch in table.to_batches(max_chunksize=ROW_GROUP):
                w.write_batch(batch)


def convert(trace: Trace, out_dir: str | os.PathLike, fmt: str = "parquet") -> list[Path]:
    """Write `events`, one file per event type, and `meta.json` into out_dir; return the paths."""
    if fmt not in FORMATS:
        raise UsageError(f"unknown output format {fmt!r} (choose from {', '.join(FORMATS)})")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ext = ".parquet" if fmt == "parquet" else ".arrow"
    written = []
    p = out / f"events{ext}"
    _write(trace.events, p, fmt)
    written.append(p)
    for name in trace.event_names:
        p = out / f"{_safe(name)}{ext}"
        _write(trace.table(name), p, fmt)
        trace._cache.pop(name, None)  # decoded, written: let it go
        written.append(p)
    p = out / "meta.json"
    p.write_text(json.dumps(trace.meta.to_dict(), indent=2, default=str))
    written.append(p)
    return written
