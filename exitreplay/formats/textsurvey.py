"""The survey of a text trace: what must be known of the whole file before any window is typed.

`read_trace` types each column of a text trace from all its values: a `name=value` field is a number
if every value reads as one, hex if any says so; an integer column is uint64 if it holds values of
2**63 and more; exit-reason numbers take the ISA the whole file names. A window typed from its own
lines would differ from the file (another type, or "10" read as decimal where the file says hex), so
`survey` reads the file once, a chunk of lines at a time, with the readers' own parsing (Polars over
the chunk, the print formats' regexes per event type), and keeps only facts: the header, the counts
and losses, whether the file is in time order, and per event type the facts each column's type is
decided from (`TablePlan`, one per event). The parse pass (formats.textstream) then types every
window as the file.
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator

import numpy as np
import polars as pl

from ..errors import TraceError
from ..trace import Dropped, losses_per_cpu
from . import plugins
from .textcommon import (
    AUTO_DTYPES,
    HEAD_LINES,
    INT,
    MAX_LINE_WARNINGS,
    AutoFacts,
    Head,
    IntRange,
    IsaContext,
    Marker,
    Scan,
    TablePlan,
    _clean,
    _dec,
    _field_name,
    _hex,
    auto_columns,
    auto_facts,
    auto_kind,
    context_facts,
    context_of,
    convert_columns,
    optional_column,
    split_fields,
    text_lines,
)

# Bytes of text read at a time per window event: a line is 60-200 bytes, so a chunk holds about
# a window; within these bounds whatever the window size.
BYTES_PER_EVENT = 64
MIN_CHUNK, MAX_CHUNK = 1 << 20, 64 << 20


def chunk_size(window_events: int) -> int:
    return min(MAX_CHUNK, max(MIN_CHUNK, window_events * BYTES_PER_EVENT))


@dataclasses.dataclass
class Chunk:
    lines: pl.Series
    line_base: int  # the file's line number of its first line
    end: int  # bytes read so far


def chunks(path: str, size: int) -> Iterator[Chunk]:
    """The file's lines, `size` bytes or so at a time, cut after a newline (a UTF-8 character
    never holds one, so each chunk decodes as the whole file does). Line numbers are the file's."""
    base = end = 0
    carry = b""
    seen_text = False
    try:
        with open(path, "rb") as fh:
            while True:
                block = fh.read(size)
                end += len(block)
                seen_text = seen_text or bool(block.strip())
                data = carry + block
                cut = data.rfind(b"\n") + 1 if block else len(data)
                if not block and not data:
                    break
                if cut == 0:  # no newline yet: a longer line
                    carry = data
                    continue
                carry = data[cut:]
                text = data[:cut].decode("utf-8", "replace")
                lines = text_lines(text)
                if text.endswith("\n") and (block or carry):
                    lines = lines.head(lines.len() - 1)  # the next chunk's first line, not an empty one
                yield Chunk(lines, base, end)
                base += lines.len()
                if not block:
                    break
    except OSError as exc:
        raise TraceError(path, f"cannot read: {exc.strerror}") from None
    if not seen_text:
        raise TraceError(path, "empty file")


def globalize(sc: Scan, line_base: int, row_base: int) -> pl.DataFrame:
    """A chunk's event lines with the file's line numbers and rows (the file being in time order,
    rows follow lines)."""
    return sc.ev.with_columns((pl.col("line") + line_base).alias("line"), pl.col("event").cast(pl.String)
                              ).with_row_index("row", offset=row_base)


class MarkerQueue:
    """Loss markers waiting for the next event line (of their CPU, when they name one): the
    streaming form of textcommon._dropped, fed the file's event lines a chunk at a time."""

    def __init__(self) -> None:
        self.pending: list[Marker] = []

    def feed(self, markers: list[Marker], ev: pl.DataFrame) -> list[Dropped]:
        """Add `markers` (the file's line numbers), resolve those `ev` (event lines after them,
        in line order) resolves; the others wait."""
        self.pending += markers
        if not self.pending or not ev.height:
            return []
        lines, cpus = ev["line"].to_numpy(), ev["cpu"].to_numpy()
        rows, ts = ev["row"].to_numpy(), ev["ts"].to_numpy()
        out, still = [], []
        for m in self.pending:
            k = int(np.searchsorted(lines, m.line, side="right"))
            cpu = m.cpu if m.cpu is not None else (int(cpus[k]) if k < lines.size else None)
            later = np.flatnonzero(cpus[k:] == cpu) if cpu is not None else np.empty(0, np.int64)
            if later.size:
                i = k + int(later[0])
                out.append(Dropped(cpu, int(ts[i]), m.count, int(rows[i])))
            else:
                still.append(Marker(m.line, cpu, m.count))
        self.pending = still
        return out

    def rest(self, last_ts: int) -> list[Dropped]:
        """Markers no event line follows: at the trace's end (CPU -1 where none is known)."""
        out = [Dropped(-1 if m.cpu is None else m.cpu, last_ts, m.count, None) for m in self.pending]
        self.pending = []
        return out


@dataclasses.dataclass
class _Col:
    """One column of one part (a print format or a `name=value` list) of one event type."""

    optional: bool  # dropped where no row fills it (textcommon.optional_column)
    auto: AutoFacts | None = None  # a column typed by its values: the facts
    dec: IntRange = dataclasses.field(default_factory=IntRange)  # ... its range read as decimal
    hex: IntRange = dataclasses.field(default_factory=IntRange)  # ... and as hex
    dtype: pl.DataType | None = None  # a column typed by its print format: the type
    filled: bool = False
    rng: IntRange = dataclasses.field(default_factory=IntRange)


@dataclasses.dataclass
class _Event:
    rows: int = 0
    text_rows: int = 0
    parts: dict[tuple, dict[str, _Col]] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Survey:
    head: Head
    in_order: bool = True
    events: int = 0
    max_cpu: int | None = None
    last_ts: int | None = None
    unparsed: int = 0
    out_of_range: int = 0
    warnings: list[str] = dataclasses.field(default_factory=list)  # the loss lines'
    losses: dict[int, int | None] = dataclasses.field(default_factory=dict)
    tables: dict[str, _Event] = dataclasses.field(default_factory=dict)
    reason_names: set[str] = dataclasses.field(default_factory=set)
    raw_isa: dict[int, int] = dataclasses.field(default_factory=dict)

    @property
    def context(self) -> IsaContext:
        return context_of(self.reason_names, self.raw_isa)

    def plans(self) -> dict[str, TablePlan]:
        return {name: _plan(name, e) for name, e in self.tables.items()}

    def text_warnings(self) -> dict[str, tuple[int, int]]:
        """Event types some of whose lines no format read: (lines kept as text, lines)."""
        return {n: (e.text_rows, e.rows) for n, e in self.tables.items() if e.text_rows}


def survey(path: str, head: Callable[[list[str]], Head], scan: Callable[[pl.Series], Scan], size: int,
           read: Callable[[int], None] | None = None, tables: set[str] | None = None) -> Survey:
    """The facts of the whole text file (a format's `head` and `scan`), read `size` bytes at a time
    (`read`: called with the bytes read so far; `tables`: the event types whose tables will be
    built, None for all; the exit reasons' are always read, for the ISA). Stops early when the file is not in time order (the caller then reads it whole)."""
    first: list[str] = []
    sv = Survey(Head(""))
    queue = MarkerQueue()
    for ch in chunks(path, size):
        if len(first) < HEAD_LINES:
            first += ch.lines.head(HEAD_LINES - len(first)).to_list()
        if not _learn(sv, scan(ch.lines), ch.line_base, queue, tables):
            sv.in_order = False
            return sv
        if read:
            read(ch.end)
    sv.head = head(first)
    _add_losses(sv, queue.rest(sv.last_ts or 0))
    return sv


def _learn(sv: Survey, sc: Scan, line_base: int, queue: MarkerQueue, tables: set[str] | None) -> bool:
    """Add one chunk's facts; False if its events are not in time order (after the file's so far)."""
    ev = globalize(sc, line_base, sv.events)
    if ev.height:
        ts = ev["ts"]
        if (sv.last_ts is not None and ts[0] < sv.last_ts) or bool((ts.diff().drop_nulls() < 0).any()):
            return False
        sv.last_ts = int(ts[-1])
        top = int(ev["cpu"].max())
        sv.max_cpu = top if sv.max_cpu is None else max(sv.max_cpu, top)
    sv.events += ev.height
    sv.unparsed += sc.unparsed
    sv.out_of_range += sc.out_of_range
    sv.warnings += sc.warnings[:MAX_LINE_WARNINGS - len(sv.warnings)]
    _add_losses(sv, queue.feed(file_markers(sc, line_base), ev))
    for (name,), grp in ev.group_by(["event"], maintain_order=True):
        if tables is None or name in tables or name in plugins.REASON_EVENTS:
            _learn_event(sv, name, grp["rest"])
    return True


def file_markers(sc: Scan, line_base: int) -> list[Marker]:
    return [dataclasses.replace(m, line=m.line + line_base) for m in sc.markers]


def _add_losses(sv: Survey, drops: list[Dropped]) -> None:
    if drops:
        sv.losses = losses_per_cpu([*sv.losses.items(), *((d.cpu, d.count) for d in drops)])


def _learn_event(sv: Survey, name: str, rest: pl.Series) -> None:
    e = sv.tables.setdefault(name, _Event())
    parts, left = split_fields(name, rest)
    e.rows += rest.len()
    e.text_rows += int(left.sum())
    if name in plugins.REASON_EVENTS:
        context_facts(parts, sv.reason_names, sv.raw_isa)
    for p in parts:
        autos = auto_columns(p)
        cols = convert_columns(name, p, IsaContext(None), dict.fromkeys(autos, "keep"))
        known = e.parts.setdefault(p.key, {})
        for c, s in cols.items():
            col = known.setdefault(c, _Col(optional_column(p, c)))
            if c in autos:  # the raw text: how it reads decides the type
                col.auto = auto_facts(s).merge(col.auto) if col.auto else auto_facts(s)
                clean = _clean(s)
                col.dec, col.hex = col.dec.merge(IntRange.of(_dec(clean))), col.hex.merge(IntRange.of(_hex(clean)))
            else:
                col.dtype = col.dtype or s.dtype
                col.filled = col.filled or s.null_count() < s.len()
                if s.dtype == INT:
                    col.rng = col.rng.merge(IntRange.of(s))


def _plan(name: str, e: _Event) -> TablePlan:
    """The table's whole-file types: the frames read_trace would concatenate, empty, concatenated
    the same way (so Polars' own rules give the columns' order and common types)."""
    hex_fields = plugins.raw_hex_fields(name)
    specs = sorted(k for k in e.parts if k[0] == "spec")
    keys = specs + [k for k in e.parts if k[0] != "spec"]  # print formats in order, then name=value lists as met
    auto: dict[tuple, dict[str, str]] = {}
    ranges: dict[str, IntRange] = {}
    frames = []
    for key in keys:
        cols: dict[str, pl.Series] = {}
        kinds = auto.setdefault(key, {})
        for c, col in e.parts[key].items():
            if col.auto is not None:
                kinds[c] = kind = auto_kind(col.auto, c, c in hex_fields)
                dtype, rng = AUTO_DTYPES[kind], col.hex if kind == "hex" else col.dec
            elif col.optional and not col.filled:
                continue
            else:
                dtype, rng = col.dtype, col.rng
            out = _field_name(c)
            cols[out] = pl.Series(out, [], dtype)
            if dtype == INT:
                ranges[out] = ranges.get(out, IntRange()).merge(rng)
        frames.append(pl.DataFrame(cols).with_columns(pl.Series("_pos", [], pl.Int64)))
    if e.text_rows:
        frames.append(pl.DataFrame({"text": pl.Series([], dtype=pl.String), "_pos": pl.Series([], dtype=pl.Int64)}))
    if not frames:
        return TablePlan(auto, {}, ranges)
    schema = dict(pl.concat(frames, how="diagonal_relaxed").drop("_pos").schema)
    if "text" in schema:
        schema["text"] = schema.pop("text")
    return TablePlan(auto, schema, ranges)


def file_size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError as exc:
        raise TraceError(path, f"cannot read: {exc.strerror}") from None
