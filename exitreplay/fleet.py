"""Fleets and huge traces: compare's per-trace rows as Parquet, and one trace split in time.

`analyze_split` runs one trace.dat as N time ranges on an engine: the page index
(`formats/pageindex.py`) gives cut times of about equal page counts; worker i builds a
`StreamAnalysis` owning [t_i, t_i+1), feeds it a warm-up window before t_i (the state carried
into the range: open exits, each CPU's task and loaded vCPU) and then its windows until it is
`done` (every exit it owns has ended, which may be past t_i+1), and sends back its `partial()`;
the driver merges the partials and finishes them into the Report one process would give.

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

from . import cache as cache_mod
from .engines import Died, Engine
from .errors import ExitReplayError, UsageError

# Windows a worker reads at a time, and the warm-up before its range (trace clock, ns).
WINDOW_NS = 50_000_000
WARMUP_NS = 200_000_000

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


# -- one trace split in time ------------------------------------------------------------------------------
def _wire_key(path: str, lo: int, hi: int) -> str:
    import hashlib

    return hashlib.sha256(f"split\0{path}\0{lo}\0{hi}".encode()).hexdigest()


def analyze_range(path: str, lo: int, hi: int, index, options: dict, window_ns: int, warmup_ns: int):
    """Worker: the partial result of the exits with lo <= ts < hi, as Arrow IPC bytes when it is
    plain data (else the partial itself)."""
    from .formats.pageindex import WindowReader
    from .pipeline import StreamAnalysis

    sa = StreamAnalysis(**options, own_ts=(lo, hi))
    with WindowReader(path, index) as reader:
        feed_range(sa, reader, lo, hi, window_ns, warmup_ns)
    part, key = sa.partial(), _wire_key(path, lo, hi)
    packed = cache_mod.pack(key, part)
    # Sent as Arrow IPC only if it reads back (every field plain data); else as the object.
    return packed if packed is not None and cache_mod.unpack(key, packed) is not None else part


def feed_range(sa, reader, lo: int, hi: int, window_ns: int, warmup_ns: int) -> int:
    """Feed `sa` the warm-up window before `lo`, then windows from `lo` on until it is done past
    `hi` (or the trace ends); rows are numbered on from window to window, as the fold needs. Returns the
    number of windows fed."""
    from .formats.pageindex import TS_MIN

    fed, base = 0, 0
    if lo != TS_MIN:
        warm = reader.read(max(TS_MIN, lo - warmup_ns), lo)
        sa.feed(warm)
        fed, base = 1, len(warm)
    for a, b in reader.spans(lo, None, window_ns):
        window = reader.read(a, b, base)
        sa.feed(window)
        fed, base = fed + 1, base + len(window)
        # done says nothing is open; the range must also have been read to its end.
        if sa.done and b >= hi:
            break
    return fed


def absolute_filters(filters, reader):
    """--from/--to given from the first event (+5ms) as trace timestamps: a worker's first window
    is not the trace's, so each would resolve them from its own start. The text stays as given."""
    import dataclasses

    from .filters import TimePoint

    rel = [p for p in (filters.start, filters.end) if p is not None and p.relative] if filters else []
    if not rel:
        return filters
    if any("raw counter values" in w for w in reader.dec.warnings):
        raise UsageError("--split/--engine: --from/--to from the first event need ns timestamps; this trace "
                         "counts raw TSC cycles: give them as trace timestamps (1234.5s)")
    first = next((int(w.events.column("ts")[0].as_py()) for w in reader.windows(None, None, WINDOW_NS) if len(w)),
                 None)
    if first is None:
        return filters

    def fix(p):
        return TimePoint(first + p.ns, False, p.text or str(p)) if p is not None and p.relative else p

    return dataclasses.replace(filters, start=fix(filters.start), end=fix(filters.end))


def split_ranges(index, parts: int) -> list[tuple[int, int]]:
    """`parts` consecutive [lo, hi) time ranges covering the trace (fewer when it has fewer pages)."""
    cuts = index.cuts(parts)
    return list(zip(cuts, cuts[1:]))


def analyze_split(path: str | os.PathLike, engine: Engine, parts: int | None = None, *, policies=None,
                  costs=None, baseline=None, filters=None, cpu_mhz=None, tsc_mhz=None,
                  window_ns: int = WINDOW_NS, warmup_ns: int = WARMUP_NS):
    """The Report of one trace.dat analysed as `parts` time ranges (default: one per worker) on
    `engine`; equal to `analysis.analyze` of the whole trace."""
    from .formats.detect import sniff
    from .formats.pageindex import build_index
    from .pipeline import finish, merge

    path = os.fspath(path)
    if sniff(path) != "trace.dat":
        raise UsageError(f"{path}: splitting a trace in time needs a trace.dat (its pages are found by their "
                         "time stamps); analyze this file without --engine/--split")
    parts = parts or engine.workers
    if parts < 1:
        raise UsageError("--split must be at least 1")
    index = build_index(path)
    ranges = split_ranges(index, parts)
    from .formats.pageindex import WindowReader

    with WindowReader(path, index) as reader:
        filters = absolute_filters(filters, reader)
    options = {"policies": policies, "costs": costs, "baseline": baseline, "filters": filters,
               "cpu_mhz": cpu_mhz, "tsc_mhz": tsc_mhz}
    shared = engine.share(index)
    tasks = [(path, lo, hi, shared, options, window_ns, warmup_ns) for lo, hi in ranges]
    partials: list = [None] * len(tasks)
    for i, got in engine.map_unordered(analyze_range, tasks):
        if isinstance(got, Died):
            raise ExitReplayError(f"{path}: time range {i + 1} of {len(tasks)}: {got.why}")
        partials[i] = cache_mod.unpack(_wire_key(path, *ranges[i]), got) if isinstance(got, bytes) else got
        if partials[i] is None:
            raise ExitReplayError(f"{path}: time range {i + 1} of {len(tasks)}: its worker sent back no result")
    return finish(merge(partials))
