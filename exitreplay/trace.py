"""`Trace`: the one object every reader returns (events, typed per-event tables, metadata)."""
from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from .errors import TraceError, UsageError
from .schema import TABLE_KEY_COLUMNS, conform_events

# Key columns of every per-event table and their types.
KEY_TYPES = dict(zip(TABLE_KEY_COLUMNS, (pa.int64(), pa.int64(), pa.int32(), pa.int32())))
_row = functools.partial(pa.scalar, type=pa.int64())  # a row number as the row column's type
_VCPU = {"vcpu_id": ("int", False)}
# The fields the analysis reads (episodes/), by event: kind ("int", "str" or "bytes") and whether the
# event is useless to it without the field. `Trace.table` guarantees them, so a hostile or
# unparsed file gives a TraceError, not a KeyError or a cast failure deep in the analysis.
ANALYSIS_FIELDS: dict[str, dict[str, tuple[str, bool]]] = {
    "kvm_exit": {"exit_reason": ("int", True), "isa": ("int", False), "info1": ("int", False), **_VCPU},
    "kvm_userspace_exit": {"reason": ("int", True), **_VCPU},
    "sched_switch": {"prev_pid": ("int", True), "next_pid": ("int", True), "prev_state": ("int", True),
                     "next_comm": ("str", False)},
    "kvm_msr": {"ecx": ("int", True), "write": ("int", True), **_VCPU},
    "kvm_fpu": {"load": ("int", True), **_VCPU},
    "kvm_emulate_insn": {"insn": ("bytes", False), "len": ("int", False), "flags": ("int", False), **_VCPU},
    **{name: dict(_VCPU) for name in ("kvm_entry", "kvm_pio", "kvm_mmio", "kvm_vcpu_wakeup")},
}


@dataclasses.dataclass
class Dropped:
    """Events the recorder lost on one CPU, just before the event at `ts`.

    `count` is None when the ring buffer only flagged a loss without counting it.
    `row` is the index in `Trace.events` of the first event after the loss (None past the end).
    """

    cpu: int
    ts: int
    count: int | None
    row: int | None = None


def losses_per_cpu(losses: Iterable[tuple[int, int | None]]) -> dict[int, int | None]:
    """(cpu, count) losses summed per CPU; None where at least one loss was not counted."""
    out: dict[int, int | None] = {}
    for cpu, count in losses:
        prev = out.get(cpu, 0)
        out[cpu] = None if prev is None or count is None else prev + count
    return out


@dataclasses.dataclass
class TraceMeta:
    path: str | None
    source_format: str  # one of schema.SOURCE_FORMATS
    version: int | None = None  # trace.dat file version (6, 7)
    compression: str | None = None  # "none", "zstd", "zlib"
    cpus: int | None = None
    clock: str | None = None  # trace clock: "local", "x86-tsc", ...
    page_size: int | None = None
    endian: str | None = None  # "little" / "big"
    long_size: int | None = None
    uname: str | None = None
    tracer: str | None = None
    first_ts: int | None = None
    last_ts: int | None = None
    event_counts: dict[str, int] = dataclasses.field(default_factory=dict)
    dropped: list[Dropped] = dataclasses.field(default_factory=list)
    warnings: list[str] = dataclasses.field(default_factory=list)
    # Everything else a format records (options, tsc2nsec, buffers/instances, cpustat text...).
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def duration_ns(self) -> int:
        if self.first_ts is None or self.last_ts is None:
            return 0
        return self.last_ts - self.first_ts

    @property
    def dropped_per_cpu(self) -> dict[int, int | None]:
        """Total lost events per CPU; None where at least one loss was not counted."""
        return losses_per_cpu((d.cpu, d.count) for d in self.dropped)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["duration_ns"] = self.duration_ns
        d["dropped_per_cpu"] = {str(k): v for k, v in self.dropped_per_cpu.items()}
        return d


TableSource = pa.Table | Callable[[], pa.Table]


class Trace:
    """A recorded trace as Arrow tables.

    - `events`: one row per event (see `schema.EVENTS_SCHEMA`), in timestamp order.
    - `table(name)`: the typed table of one event type, joined to `events` by its `row` column.
    - `meta`: where it came from and what was lost.

    Per-event tables may be built lazily (a reader passes a callable), so asking for `kvm_exit`
    does not decode `sched_switch`. A Trace read from a file may keep it open for those tables:
    `close()` (or `with read_trace(path) as trace:`) releases it; tables decoded before stay.

    A window of a longer trace (exitreplay.windows, the streaming analysis) keeps the file's row
    numbers: `row_base` is the row of its first event, so a table's `row` r is `events[r - row_base]`.
    """

    def __init__(self, events: pa.Table, tables: Mapping[str, TableSource], meta: TraceMeta,
                 close: Callable[[], None] | None = None, row_base: int = 0):
        self.events = conform_events(events)
        # A window of a longer trace (windows.iter_windows) keeps the file's row numbers: its
        # tables' `row` r is the event at events[r - row_base].
        self.row_base = row_base
        self._sources: dict[str, TableSource] = dict(tables)
        self._cache: dict[str, pa.Table] = {}
        self.meta = meta
        self._close = close
        self.closed = False
        if not meta.event_counts and self.events.num_rows:
            meta.event_counts = _value_counts(self.events.column("event"))
        if meta.first_ts is None and self.events.num_rows:
            meta.first_ts = int(self.events.column("ts")[0].as_py())
            meta.last_ts = int(self.events.column("ts")[-1].as_py())

    def __repr__(self) -> str:
        return (
            f"Trace({self.meta.path!r}, {self.meta.source_format}, {self.events.num_rows} events, "
            f"{len(self._sources)} event types)"
        )

    def __len__(self) -> int:
        return self.events.num_rows

    @property
    def event_names(self) -> list[str]:
        return sorted(self._sources)

    def has(self, name: str) -> bool:
        return name in self._sources

    def __enter__(self) -> Trace:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Release the file behind the tables not decoded yet (they can no longer be read)."""
        if self.closed:
            return
        self.closed = True
        self._sources = {k: v for k, v in self._sources.items() if not callable(v)} | {
            k: _closed for k, v in self._sources.items() if callable(v)}
        close, self._close = self._close, None
        if close is not None:
            close()

    def table(self, name: str) -> pa.Table:
        """Typed table of one event type (columns `row`, `ts`, `cpu`, `pid`, then its fields).

        An event type absent from the trace gives a KeyError naming the ones present. The fields
        the analysis reads (`ANALYSIS_FIELDS`) are integers or strings as it expects, or the call
        raises a TraceError naming the file and the field.
        """
        if name not in self._cache:
            self._cache[name] = self._conform(name, self.raw_table(name))
        return self._cache[name]

    def raw_table(self, name: str) -> pa.Table:
        """The table as its reader built it (key columns checked, fields as decoded)."""
        if name in self._cache:
            return self._cache[name]
        try:
            src = self._sources[name]
        except KeyError:
            raise KeyError(
                f"no {name!r} events in this trace (it has: {', '.join(self.event_names) or 'none'})"
            ) from None
        if src is _closed:
            raise TraceError(self.meta.path, f"the trace is closed: its {name} table was not read before")
        return self._keys(name, src() if callable(src) else src)

    def _keys(self, name: str, tbl: pa.Table) -> pa.Table:
        for col, typ in KEY_TYPES.items():
            if col not in tbl.column_names:
                raise TraceError(self.meta.path, f"table {name!r} lacks its {col} column")
            if tbl.column(col).type != typ:
                try:
                    tbl = tbl.set_column(tbl.column_names.index(col), col, tbl.column(col).cast(typ))
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                    raise TraceError(self.meta.path, f"table {name!r}: its {col} column is not {typ}") from None
        rows = tbl.column("row")
        base = self.row_base
        # NumPy's min/max: a compute call costs more than the scan on a small table.
        at = rows.to_numpy() if tbl.num_rows and not rows.null_count else np.array([base])
        if rows.null_count or at.min() < base or at.max() >= base + max(self.events.num_rows, 1):
            raise TraceError(self.meta.path, f"table {name!r}: rows outside the trace's {self.events.num_rows} events")
        return tbl

    def _conform(self, name: str, tbl: pa.Table) -> pa.Table:
        for field, (kind, required) in ANALYSIS_FIELDS.get(name, {}).items():
            if field not in tbl.column_names:
                if required:
                    raise TraceError(self.meta.path, f"{name} events have no {field} field "
                                                     "(their format or text lacks it): they cannot be analyzed")
                continue
            col = _as_kind(tbl.column(field), kind)
            want = {"int": "an integer", "str": "text", "bytes": "bytes"}[kind]
            if col is None and required:
                raise TraceError(self.meta.path, f"{name} events: the {field} field is {tbl.column(field).type}, "
                                                 f"not {want}")
            i = tbl.column_names.index(field)
            if col is None:
                self.meta.warnings.append(f"{name}: the {field} field is {tbl.column(field).type}, not {want}: ignored")
                tbl = tbl.remove_column(i)
            else:
                tbl = tbl.set_column(i, field, col)
        return tbl

    def tables(self, names: Iterable[str] | None = None) -> dict[str, pa.Table]:
        return {n: self.table(n) for n in (names if names is not None else self.event_names)}

    def df(self, name: str | None = None) -> pl.DataFrame:
        """Polars view (zero-copy where Arrow allows) of `events` or of one event table."""
        return pl.from_arrow(self.events if name is None else self.table(name))  # type: ignore[return-value]

    def slice_rows(self, lo: int, hi: int | None = None) -> Trace:
        """The events with lo <= row < hi, keeping the file's row numbers (row_base)."""
        base, n = self.row_base, len(self)
        hi = base + n if hi is None else hi
        lo, hi = max(lo, base), min(hi, base + n)
        if lo <= base and hi >= base + n:
            return self
        hi = max(hi, lo)
        tables: dict[str, TableSource] = {}
        for name in self._sources:
            t = _rows_between(self.table(name), lo, hi)
            if t.num_rows:
                tables[name] = t
        meta = dataclasses.replace(self.meta, event_counts={}, first_ts=None, last_ts=None,
                                   dropped=[d for d in self.meta.dropped if d.row is not None and lo <= d.row < hi])
        return Trace(self.events.slice(lo - base, hi - lo), tables, meta, row_base=lo)

    def slice_time(self, start_ns: int | None = None, end_ns: int | None = None) -> Trace:
        """A Trace restricted to start_ns <= ts < end_ns (rows renumbered)."""
        ts = self.events.column("ts")
        mask = pc.and_(
            pc.greater_equal(ts, start_ns if start_ns is not None else -(2**63)),
            pc.less(ts, end_ns if end_ns is not None else 2**63 - 1),
        )
        import numpy as np

        keep = np.flatnonzero(mask.to_numpy(zero_copy_only=False))
        if keep.size == self.events.num_rows:
            return self
        lo = int(keep[0]) if keep.size else 0
        hi = int(keep[-1]) + 1 if keep.size else 0
        events = self.events.slice(lo, hi - lo)
        tables: dict[str, TableSource] = {}
        for name in self._sources:
            t = self.table(name)
            r = t.column("row")
            m = pc.and_(pc.greater_equal(r, _row(lo)), pc.less(r, _row(hi)))
            t = t.filter(m)
            t = t.set_column(0, "row", pc.subtract(t.column("row"), _row(lo)))
            if t.num_rows:
                tables[name] = t
        meta = dataclasses.replace(
            self.meta,
            event_counts={},
            first_ts=None,
            last_ts=None,
            dropped=[
                dataclasses.replace(d, row=None if d.row is None else d.row - lo)
                for d in self.meta.dropped
                if d.row is not None and lo <= d.row < hi
            ],
        )
        return Trace(events, tables, meta)


def _rows_between(t: pa.Table, lo: int, hi: int) -> pa.Table:
    """The rows of t with lo <= row < hi: a zero-copy slice where the rows are in order (the
    readers' tables are; a check costs less than the copy a filter makes), else a filter."""
    rows = t.column("row").to_numpy()
    if rows.size < 2 or bool((rows[1:] >= rows[:-1]).all()):
        i, j = np.searchsorted(rows, [lo, hi], "left").tolist()
        return t.slice(i, j - i)
    # Typed scalars: a Python int is converted anew on every call (pyarrow tries an import for
    # it each time), a cost that adds up over a stream's many views.
    r = t.column("row")
    return t.filter(pc.and_(pc.greater_equal(r, _row(lo)), pc.less(r, _row(hi))))


def _closed() -> pa.Table:  # marks a table whose file was closed before it was read
    raise AssertionError("unreachable")


def _as_kind(col: pa.ChunkedArray, kind: str) -> pa.ChunkedArray | None:
    """The column as an integer, string or bytes column, or None when it holds something else."""
    t = col.type
    if kind == "bytes":  # raw bytes, or a list of byte values (kvm/x86insn.py byte_matrix)
        listed = pa.types.is_list(t) or pa.types.is_large_list(t)
        return col if pa.types.is_binary(t) or (listed and pa.types.is_integer(t.value_type)) else None
    if kind == "str":
        if pa.types.is_string(t):
            return col
        return col.cast(pa.string()) if pa.types.is_large_string(t) else None
    if pa.types.is_integer(t):
        # Nulls are filled with -1 or 0 downstream: an unsigned column with nulls becomes int64
        # (two's complement for values above 2^63, which no field the analysis compares holds).
        return col.cast(pa.int64(), safe=False) if col.null_count and pa.types.is_unsigned_integer(t) else col
    if pa.types.is_boolean(t):
        return col.cast(pa.int8())
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        try:
            return col.cast(pa.int64())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return None
    return None


def _value_counts(col: pa.ChunkedArray) -> dict[str, int]:
    """Rows per value, in order of first appearance; counted on dictionary indices, not strings."""
    out: dict[str, int] = {}
    for chunk in col.chunks:
        if pa.types.is_dictionary(chunk.type):
            names = chunk.dictionary.to_pylist()
            pairs = [(names[s["values"]], s["counts"]) for s in pc.value_counts(chunk.indices).to_pylist()
                     if s["values"] is not None]
        else:
            pairs = [(s["values"], s["counts"]) for s in pc.value_counts(chunk).to_pylist()]
        for name, n in pairs:
            out[str(name)] = out.get(str(name), 0) + int(n)
    return out


def require_columns(table: pa.Table, columns: Iterable[str], what: str) -> None:
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise UsageError(f"{what} lacks columns: {', '.join(missing)}")
