"""Fleets and huge traces: compare's per-trace rows as Parquet, and one trace split in time.

`write_rows` writes compare's table (one row per trace: label, path, cached, error, then every
metric) to Parquet with fixed column types, so a fleet's summary is one file DuckDB or Polars
query directly (`SELECT label, p99_ns FROM 'rows.parquet' ORDER BY p99_ns DESC`). A metric a
trace does not have is null. Re-running compare on the same directory is resumable: results are
cached by content as they arrive, so only the traces not finished before are analyzed again.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

import polars as pl

from .errors import UsageError

ROW_KEYS = {"label": pl.Utf8, "path": pl.Utf8, "cached": pl.Boolean, "error": pl.Utf8}


def check_rows_path(path: str | os.PathLike) -> None:
    p = Path(path)
    if p.is_dir():
        raise UsageError(f"--rows-parquet {p}: is a directory (give a file name)")
    if not p.resolve().parent.is_dir():
        raise UsageError(f"--rows-parquet {p}: folder {p.parent} does not exist")


def rows_table(table: pl.DataFrame) -> pl.DataFrame:
    """Compare's table with its key columns typed and every metric a Float64 (a column that is
    null in every trace would otherwise have no type a Parquet reader can query)."""
    return table.select([pl.col(c).cast(ROW_KEYS.get(c, pl.Float64)) for c in table.columns])


def write_rows(cmp, path: str | os.PathLike) -> Path:
    """The comparison's per-trace rows to `path` (written whole, then renamed into place)."""
    path = Path(path)
    check_rows_path(path)
    fd, tmp = tempfile.mkstemp(dir=path.resolve().parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(tmp, 0o666 & ~umask)  # as any file the user writes, not mkstemp's 0600
        rows_table(cmp.table).write_parquet(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise UsageError(f"--rows-parquet {path}: cannot write it: {exc.strerror}") from None
    return path
