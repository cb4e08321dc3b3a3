"""What the three text readers share: lines to columns, fields to typed tables, losses to meta.

A text trace becomes one Polars column of lines. Each reader extracts its line prefix (task, pid,
CPU, flags, timestamp, event) for all lines with one regex; here, each event type's text is parsed
back to the kernel's raw fields: one regex per known print format (plugins.SPECS) over all rows of
that type, then `name=value` text generically (one regex per distinct list of names), and what is
left stays in a `text` column. Python loops run per event type and per print format, never per line.

Types: integers become int64 (uint64 where a column holds values of 2**63 and more), lists of bytes
list<int64>, the rest strings. Timestamps "sec.usec" / "sec.nsec" become integer ns exactly.
"""
from __future__ import annotations

import dataclasses
import functools
import os
import re
from collections.abc import Callable

import numpy as np
import polars as pl
import pyarrow as pa

from ..errors import TraceError
from ..kvm import reasons
from ..schema import TABLE_KEY_COLUMNS
from ..trace import Dropped, Trace, TraceMeta, losses_per_cpu
from . import plugins
from .limits import MAX_CPUS

Progress = Callable[[int, int], None]

INT = pl.Int128  # parse width: holds every signed 64-bit and unsigned 64-bit value
I64_MAX = 2**63 - 1
I64_MIN = -(2**63)
U64_MAX = 2**64 - 1
I32_MIN, I32_MAX = -(2**31), 2**31 - 1
# The largest whole seconds whose "sec.frac" still fits int64 ns.
MAX_SEC = I64_MAX // 1_000_000_000 - 1

# "<CANT FIND FIELD x>": a libtraceevent plugin met a field the event lacks (a newer or older
# kernel layout); libtraceevent then appends the kernel's own print format, which is what follows.
_CANT_FIND = r"^.*<CANT FIND FIELD [^>]*>"
_NAME_VALUE_START = r"^[A-Za-z_]\w*="


# --- lines -----------------------------------------------------------------------------------------
def check_path(path: str | os.PathLike) -> str:
    path = os.fspath(path)
    if not os.path.exists(path):
        raise TraceError(path, "no such file")
    if os.path.isdir(path):
        raise TraceError(path, "is a directory, not a trace file")
    return path


def open_lines(path: str | os.PathLike, progress: Progress | None) -> tuple[str, pl.Series]:
    """A text trace's checked path and its lines; the read is the slow part, so progress is the bytes read."""
    path = check_path(path)
    size = os.path.getsize(path)
    if progress:
        progress(0, size)
    lines = read_lines(path)
    if progress:
        progress(size, size)
    return path, lines


def read_lines(path: str) -> pl.Series:
    """The file's lines (UTF-8, undecodable bytes replaced), split by Polars in one call."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except OSError as exc:
        raise TraceError(path, f"cannot read: {exc.strerror}") from None
    if not raw.strip():
        raise TraceError(path, "empty file")
    text = raw.decode("utf-8", "replace")
    del raw
    return text_lines(text)


def text_lines(text: str) -> pl.Series:
    """Text split at newlines (a carriage return before one dropped), by Polars in one call."""
    return pl.Series("line", [text]).str.split("\n").explode().str.strip_chars_end("\r")


@dataclasses.dataclass
class Head:
    """What a text trace's first lines (`HEAD_LINES`) say about the whole file."""

    source_format: str
    cpus: int | None = None
    warnings: list[str] = dataclasses.field(default_factory=list)
    extra: dict = dataclasses.field(default_factory=dict)
    attrs: dict = dataclasses.field(default_factory=dict)  # TraceMeta attributes: version, tracer


@dataclasses.dataclass
class Scan:
    """A run of a text trace's lines read: its event lines (`prefixed_events`' columns), loss
    markers, line numbers counted from the run's first line."""

    ev: pl.DataFrame
    markers: list[Marker]
    unparsed: int  # lines neither events, blank nor known headers
    out_of_range: int  # event lines skipped (`in_range`)
    warnings: list[str] = dataclasses.field(default_factory=list)  # one per loss line (perf)


HEAD_LINES = 40
MAX_LINE_WARNINGS = 20  # of the loss lines' warnings, the first


def read_text(path: str | os.PathLike, progress: Progress | None, head: Callable[[list[str]], Head],
              scan: Callable[[pl.Series], Scan]) -> Trace:
    """A whole text trace, read by a format's `head` and `scan` (see formats.textstream for windows)."""
    path, lines = open_lines(path, progress)
    h, sc = head(lines.head(HEAD_LINES).to_list()), scan(lines)
    trace = build_trace(path, sc.ev, h.source_format, cpus=h.cpus, markers=sc.markers,
                        warnings=h.warnings + sc.warnings[:MAX_LINE_WARNINGS], extra=h.extra,
                        unparsed_lines=sc.unparsed, out_of_range=sc.out_of_range)
    for k, v in h.attrs.items():
        setattr(trace.meta, k, v)
    return trace


def ts_to_ns(col: pl.Expr) -> pl.Expr:
    """"123.456789" (µs) or "123.456789012" (ns) -> integer ns, by string arithmetic (no float).
    A timestamp without a fraction (a counter clock such as x86-tsc) is kept as that integer.
    Null where the value does not fit int64 ns (the line is then not an event)."""
    sec = col.str.extract(r"^([0-9]+)", 1).cast(pl.Int64, strict=False)
    frac = col.str.extract(r"\.([0-9]+)$", 1)
    frac_ns = frac.str.pad_end(9, "0").str.slice(0, 9).cast(pl.Int64)
    return (pl.when(frac.is_null()).then(sec)
            .when(sec <= MAX_SEC).then(sec * 1_000_000_000 + frac_ns)
            .otherwise(None))


def in_range(ev: pl.DataFrame) -> tuple[pl.DataFrame, int]:
    """Event rows whose ts (ns, already converted), cpu and pid (text) are numbers the columns can
    hold, with cpu and pid as int32; and how many rows were not."""
    ev = ev.with_columns(pl.col("cpu").cast(pl.Int64, strict=False), pl.col("pid").cast(pl.Int64, strict=False))
    ok = (pl.col("ts").is_not_null() & pl.col("cpu").is_between(0, MAX_CPUS - 1)
          & pl.col("pid").is_between(I32_MIN, I32_MAX))
    good = ev.filter(ok)
    return good.with_columns(pl.col("cpu").cast(pl.Int32), pl.col("pid").cast(pl.Int32)), ev.height - good.height


# The latency column ("d..2."): trace_print_lat_fmt() in kernel/trace/trace_output.c renders the
# common_flags bits TRACE_FLAG_IRQS_OFF 0x01, _NEED_RESCHED_LAZY (before 6.13: IRQS_NOSUPPORT) 0x02,
# _NEED_RESCHED 0x04, _HARDIRQ 0x08, _SOFTIRQ 0x10, _PREEMPT_RESCHED 0x20, _NMI 0x40, _BH_OFF 0x80
# (kernel/trace/trace.h) as three letters, then the preempt count's low and high nibbles.
_LAT_IRQS = {".": 0, "d": 0x01, "D": 0x81, "b": 0x80, "X": 0x02}
_LAT_RESCHED = {".": 0, "n": 0x04, "N": 0x24, "p": 0x20, "l": 0x02, "L": 0x22, "b": 0x06, "B": 0x26}
_LAT_HARDSOFT = {".": 0, "h": 0x08, "s": 0x10, "H": 0x18, "z": 0x40, "Z": 0x48}


def latency_columns(lat: pl.Expr) -> tuple[pl.Expr, pl.Expr]:
    """(common_flags, preempt_count) from the latency column; null where the text has none."""
    def char(i: int, table: dict[str, int]) -> pl.Expr:
        return lat.str.slice(i, 1).replace_strict(table, default=None, return_dtype=pl.Int32)

    flags = char(0, _LAT_IRQS) + char(1, _LAT_RESCHED) + char(2, _LAT_HARDSOFT)
    low = lat.str.slice(3, 1).str.replace(r"^\.$", "0").str.to_integer(base=16, strict=False)
    high = (pl.when(lat.str.len_chars() >= 5)
            .then(lat.str.slice(4, 1).str.replace(r"^\.$", "0").str.to_integer(base=16, strict=False))
            .otherwise(0))
    return flags.cast(pl.UInt8, strict=False), (low + high * 16).cast(pl.UInt8, strict=False)


# --- markers of lost events --------------------------------------------------------------------------
@dataclasses.dataclass
class Marker:
    """A line saying events were lost before the next event (of `cpu`, when it names one)."""

    line: int  # line number in the file
    cpu: int | None
    count: int | None


# trace-cmd: "CPU:%d [%lld EVENTS DROPPED]" / "CPU:%d [EVENTS DROPPED]"; the kernel (trace and
# trace_pipe): "CPU:%d [LOST %lu EVENTS]"; also the bare "[N EVENTS DROPPED]".
DROPPED = r"^\s*(?:CPU:\s*(?P<cpu>[0-9]+)\s+)?\[(?:LOST\s+)?(?P<count>[0-9]+)?\s*EVENTS(?:\s+DROPPED)?\]\s*$"
# The kernel's trace file when its ring buffer overran: "##### CPU 2 buffer started ####".
STARTED = r"^#+ CPU (?P<cpu>[0-9]+) buffer started #+\s*$"


def find_markers(lines: pl.Series, pattern: str = DROPPED) -> list[Marker]:
    hits = pl.DataFrame({"line": lines}).with_row_index("n").filter(pl.col("line").str.contains(pattern))
    if not hits.height:
        return []
    g = hits.select(pl.col("n"), pl.col("line").str.extract_groups(pattern)).unnest("line")
    # A count beyond int64 is not a count: the loss is kept, as of unknown size.
    count = (g["count"].cast(pl.Int64, strict=False) if "count" in g.columns
             else pl.Series([None] * g.height, dtype=pl.Int64))
    return [Marker(int(n), checked_cpu(c), None if k is None else int(k))
            for n, c, k in zip(g["n"].to_list(), g["cpu"].cast(pl.Int64, strict=False).to_list(), count.to_list())]


def small_int(digits: str) -> int | None:
    """ASCII digits as an int64, or None when there are more than int64 holds."""
    return int(digits) if len(digits) <= 18 else None


def checked_cpu(cpu: int | None) -> int | None:
    """A CPU number from text, or None when there is none or it is beyond any CPU."""
    return cpu if cpu is not None and 0 <= cpu < MAX_CPUS else None


# --- field parsing --------------------------------------------------------------------------------
@dataclasses.dataclass
class _Part:
    """Rows (positions within one event type) read by one print format: raw strings + kinds."""

    pos: np.ndarray
    raw: dict[str, pl.Series]
    kinds: dict[str, str]
    # Which format read them: ("spec", i) for plugins.SPECS[event][i], ("sig", name, ...) for
    # `name=value` texts with those names (the whole-file survey keeps facts per key).
    key: tuple = ()


def _extract(rest: pl.Series, regex: str) -> tuple[pl.DataFrame, pl.Series]:
    """Named groups of `regex` for every row, and which rows matched (a sentinel group marks it)."""
    ext = pl.DataFrame({"r": rest}).select(pl.col("r").str.extract_groups("^(?P<m__>)" + regex.lstrip("^")))
    ext = ext.unnest("r")
    return ext.drop("m__"), ext["m__"].is_not_null()


def split_fields(event: str, rest: pl.Series) -> tuple[list[_Part], pl.Series]:
    """Parse one event type's texts: known print formats first, then `name=value`; returns the
    parts and a boolean mask of rows left unparsed."""
    rest = rest.str.replace(_CANT_FIND, "").str.strip_chars()
    todo = np.ones(rest.len(), bool)
    parts: list[_Part] = []
    for i, (regex, conv) in enumerate(plugins.SPECS.get(event, [])):
        if not todo.any():
            break
        idx = np.flatnonzero(todo)
        ext, ok = _extract(rest.gather(idx), regex)
        ok_np = ok.to_numpy()
        if not ok_np.any():
            continue
        sub = ext.filter(ok)
        parts.append(_Part(idx[ok_np], {c: sub[c] for c in sub.columns}, conv, ("spec", i)))
        todo[idx[ok_np]] = False
    if todo.any():
        idx = np.flatnonzero(todo)
        for pos, raw, names in _split_name_values(rest.gather(idx)):
            parts.append(_Part(idx[pos], raw, {}, ("sig", *names)))
            todo[idx[pos]] = False
    return parts, pl.Series(todo)


def _split_name_values(rest: pl.Series) -> list[tuple[np.ndarray, dict[str, pl.Series], list[str]]]:
    """`a=1 b=x y c=2` texts: one regex per distinct sequence of names (usually one per event)."""
    frame = pl.DataFrame({"r": rest}).with_row_index("i").filter(pl.col("r").str.contains(_NAME_VALUE_START))
    if not frame.height:
        return []
    frame = frame.with_columns(
        pl.col("r").str.extract_all(r"(?:^|\s)[A-Za-z_]\w*=")
        .list.eval(pl.element().str.strip_chars().str.strip_suffix("=")).list.join(" ").alias("sig"))
    out = []
    for (sig,), grp in frame.group_by(["sig"], maintain_order=True):
        names = sig.split(" ")
        groups, seen = [], {}
        for n in names:
            seen[n] = seen.get(n, 0) + 1
            groups.append(n if seen[n] == 1 else f"{n}_{seen[n]}")
        regex = "^" + " ".join(rf"{re.escape(n)}=(?P<g{k}>.*?)" for k, n in enumerate(names)) + "$"
        ext, ok = _extract(grp["r"], regex)
        if not ok.any():
            continue
        ext = ext.filter(ok)
        out.append((grp["i"].filter(ok).to_numpy(),
                    {g: ext[f"g{k}"] for k, g in enumerate(groups)}, names))
    return out


# --- conversions ------------------------------------------------------------------------------------
def _hex(s: pl.Series) -> pl.Series:
    return s.str.strip_chars().str.replace(r"^(-?)0[xX]", "$1").str.to_integer(base=16, dtype=INT, strict=False)


def _dec(s: pl.Series) -> pl.Series:
    return s.str.strip_chars().str.to_integer(base=10, dtype=INT, strict=False)


def _flag(s: pl.Series, word: str) -> pl.Series:
    return pl.select(pl.when(s.is_null()).then(None).otherwise((s == word).cast(INT))).to_series()


def _present(s: pl.Series) -> pl.Series:
    return (s.is_not_null() & (s != "")).cast(INT)


def _symbol(s: pl.Series, table: dict[str, int]) -> pl.Series:
    named = s.replace_strict(table, default=None, return_dtype=INT)
    return pl.select(pl.coalesce(named, _hex(s))).to_series()


def _states(s: pl.Series, letters: dict[str, int], plus: int | None) -> pl.Series:
    """sched_switch prev_state text ("S", "D|W", "R", "R+", "S|0x400", or a number) -> int.
    Null where the text holds a letter the table does not know."""
    core = s.str.strip_suffix("+") if plus else s
    items = core.str.split("|")
    known = set(letters) | {"R"}
    total = pl.lit(0, INT)
    for letter, bit in letters.items():
        total = total + pl.when(items.list.contains(letter)).then(pl.lit(bit, INT)).otherwise(pl.lit(0, INT))
    hexes = items.list.eval(pl.element().filter(pl.element().str.starts_with("0x"))
                            .str.slice(2).str.to_integer(base=16, dtype=INT, strict=False)).list.sum()
    valid = items.list.eval(pl.element().is_in(list(known)) | pl.element().str.contains(r"^0x[0-9a-fA-F]+$")).list.all()
    value = total + hexes.fill_null(0)
    if plus:
        value = value + pl.when(s.str.ends_with("+")).then(pl.lit(plus, INT)).otherwise(pl.lit(0, INT))
    number = _dec(s)
    return pl.select(pl.when(number.is_not_null()).then(number)
                     .when(valid).then(value).otherwise(None)).to_series()


def _bytes(s: pl.Series) -> pl.Series:
    return (s.str.strip_chars().str.split(" ")
            .list.eval(pl.element().filter(pl.element() != "").str.to_integer(base=16, dtype=pl.Int64, strict=False)))


_ARRAY = r"^ARRAY\[(.*)\]$"


@dataclasses.dataclass
class AutoFacts:
    """What `auto_kind` decides a `name=value` column's type from; facts of parts of a file
    combine (`merge`) into the whole file's, so a window can be typed as the file is."""

    n: int = 0  # values present
    array: bool = True  # every value is "ARRAY[..]"
    hexlike: bool = True  # every value reads as a hex number
    dec: bool = True  # every value reads as a decimal number
    mark: bool = False  # some value says hex ("0x" or a-f digits)

    def merge(self, o: AutoFacts) -> AutoFacts:
        return AutoFacts(self.n + o.n, self.array and o.array, self.hexlike and o.hexlike,
                         self.dec and o.dec, self.mark or o.mark)


_HEXLIKE = r"^-?(?:0[xX])?[0-9a-fA-F]+$"


def _clean(s: pl.Series) -> pl.Series:
    return s.str.strip_chars().str.strip_suffix(",")


def auto_facts(s: pl.Series) -> AutoFacts:
    nnc = _clean(s).drop_nulls()
    if not nnc.len():
        return AutoFacts()
    hexlike = nnc.str.contains(_HEXLIKE)
    return AutoFacts(nnc.len(), bool(nnc.str.contains(_ARRAY).all()), bool(hexlike.all()),
                     bool(nnc.str.contains(r"^-?\d+$").all()),
                     bool((hexlike & nnc.str.contains(r"0[xX]|[a-fA-F]")).any()))


def auto_kind(f: AutoFacts, name: str, hex_field: bool) -> str:
    """A `name=value` column's type: numbers if every value reads as one (hex if the print format
    shows the field in hex, or the text says so with "0x" or a-f digits), byte arrays, else strings."""
    if not f.n or name.endswith(("comm", "name")):
        return "keep"
    if f.array:
        return "bytes"
    if hex_field and f.hexlike:
        return "hex"
    if f.dec:
        return "dec"
    return "hex" if f.hexlike and f.mark else "keep"


AUTO_DTYPES = {"keep": pl.String, "bytes": pl.List(pl.Int64), "hex": INT, "dec": INT}


def apply_auto(s: pl.Series, kind: str) -> pl.Series:
    if kind == "keep":
        return s
    clean = _clean(s)
    if kind == "bytes":
        return _bytes(clean.str.extract(_ARRAY, 1).str.replace_all(",", ""))
    return _hex(clean) if kind == "hex" else _dec(clean)


def _auto(s: pl.Series, name: str, hex_fields: set[str]) -> pl.Series:
    return apply_auto(s, auto_kind(auto_facts(s), name, name in hex_fields))


@dataclasses.dataclass
class IntRange:
    """An Int128 column's extremes, and the largest value a 64-bit field can hold (`narrow`)."""

    hi: int | None = None
    lo: int | None = None
    fit_hi: int | None = None

    @staticmethod
    def of(s: pl.Series) -> IntRange:
        fit = s.filter(s.is_between(I64_MIN, U64_MAX))
        return IntRange(s.max(), s.min(), fit.max())

    def merge(self, o: IntRange) -> IntRange:
        def pick(f, a, b):
            return b if a is None else a if b is None else f(a, b)
        return IntRange(pick(max, self.hi, o.hi), pick(min, self.lo, o.lo), pick(max, self.fit_hi, o.fit_hi))


def narrow(s: pl.Series, rng: IntRange | None = None) -> pl.Series:
    """An Int128 column as int64, or uint64 when it holds values above 2**63 - 1 and none below 0
    (values above that with negatives too: two's complement in int64). Values no 64-bit field
    can hold (above 2**64 - 1, below -2**63) become null. `rng`: the whole file's range of the
    column, when `s` is a window of it (the window then gets the file's type)."""
    if s.dtype != INT:
        return s
    rng = rng if rng is not None else IntRange.of(s)
    hi, lo = rng.hi, rng.lo
    if hi is None or (hi <= I64_MAX and lo >= I64_MIN):
        return s.cast(pl.Int64)
    fits = s.is_between(I64_MIN, U64_MAX)
    if lo >= 0 and hi <= U64_MAX:
        return s.cast(pl.UInt64)
    if lo >= 0 and rng.fit_hi is not None and rng.fit_hi > I64_MAX:
        return pl.select(pl.when(fits).then(s)).to_series().cast(pl.UInt64).alias(s.name)
    wrapped = pl.select(pl.when(~fits).then(None).when(s > I64_MAX).then(s - pl.lit(2**64, INT))
                        .otherwise(s)).to_series()
    return wrapped.cast(pl.Int64, strict=False).alias(s.name)


@dataclasses.dataclass
class IsaContext:
    """The trace's ISA, for exit-reason texts that do not name it (numbers, "UNKNOWN (n)")."""

    isa: int | None


def _reasons(s: pl.Series, ctx: IsaContext) -> tuple[pl.Series, pl.Series]:
    # Exit reasons are 32-bit: a longer number in the text is no reason (nor a name of one).
    s = pl.select(pl.when(s.str.contains(r"[0-9a-fA-F]{9,}")).then(None).otherwise(s)).to_series()
    hit = reasons.lookup_reasons(s)
    isa = hit["isa"].cast(INT)
    if ctx.isa is not None:
        isa = isa.fill_null(ctx.isa)
    code = hit["exit_reason"].cast(INT)
    return code, pl.select(pl.when(code.is_not_null()).then(isa)).to_series()


def auto_columns(part: _Part) -> list[str]:
    """The part's columns typed by their values (`auto_kind`), not by their print format."""
    return [n for n in part.raw if part.kinds.get(n) is None and not n.startswith("_")]


def optional_column(part: _Part, name: str) -> bool:
    """A column the part drops where none of its rows fill it (an optional regex group)."""
    return part.kinds.get(name) in ("d", "x", "s")


def convert_columns(event: str, part: _Part, ctx: IsaContext,
                    auto: dict[str, str] | None = None) -> dict[str, pl.Series]:
    """The part's fields, converted; `auto` gives the `auto_kind` of columns typed by their values
    (a window's columns get the whole file's), else each is decided from its own values."""
    hex_fields = plugins.raw_hex_fields(event)
    cols: dict[str, pl.Series] = {}
    isa: pl.Series | None = None
    for name, s in part.raw.items():
        kind = part.kinds.get(name)
        if name.startswith("_"):
            continue
        if kind is None:
            cols[name] = (apply_auto(s, auto[name]) if auto is not None and name in auto
                          else _auto(s, name, hex_fields))
        elif kind == "s":
            cols[name] = s
        elif kind == "x":
            cols[name] = _hex(s)
        elif kind == "d":
            cols[name] = _dec(s)
        elif kind == "present":
            cols[name] = _present(s)
        elif kind.startswith("="):
            cols[name] = _flag(s, kind[1:])
        elif kind.startswith("@"):
            cols[name] = _symbol(s, plugins.SYMBOLS[kind[1:]])
        elif kind == "kstate":
            cols[name] = _states(s, plugins.KERNEL_STATE_BITS, plugins.TASK_REPORT_MAX)
        elif kind == "pstate":
            cols[name] = _states(s, plugins.PLUGIN_STATE_BITS, None)
        elif kind == "bytes":
            cols[name] = _bytes(s)
        elif kind == "vmc":
            isa = s.replace_strict({"b": reasons.ISA_SVM, "s": reasons.ISA_VMX}, default=None, return_dtype=INT)
        elif kind == "reason":
            cols[name], isa = _reasons(s, ctx)
        elif kind == "uexit":
            cols.update(_userspace_exit(s, part.raw["_paren"]))
        else:
            raise ValueError(f"unknown converter {kind!r} for {event}.{name}")
    if isa is not None:
        cols["isa"] = isa
    return cols


def _convert_part(event: str, part: _Part, ctx: IsaContext, auto: dict[str, str] | None = None) -> pl.DataFrame:
    cols = convert_columns(event, part, ctx, auto)
    # An optional group no row of this format filled is not a field of this layout.
    cols = {k: v for k, v in cols.items() if not (optional_column(part, k) and v.null_count() == v.len())}
    frame = pl.DataFrame({_field_name(k): v for k, v in cols.items()})
    return frame.with_columns(pl.Series("_pos", part.pos, dtype=pl.Int64))


def _userspace_exit(name: pl.Series, paren: pl.Series) -> dict[str, pl.Series]:
    # kvm_userspace_exit prints "restart"/"error" and -errno when errno < 0, else the reason's
    # name and the reason again (errno is 0 then: KVM_RUN's return value is 0 or -errno).
    failed = name.is_in(["restart", "error"])
    num = _dec(paren)
    uniq = name.unique().drop_nulls().to_list()
    table = {u: c for u in uniq if (c := reasons.userspace_exit_code(u)) is not None and I64_MIN <= c <= U64_MAX}
    code = name.replace_strict(table, default=None, return_dtype=INT)
    reason = pl.select(pl.when(failed).then(None).otherwise(pl.coalesce(code, num))).to_series()
    errno = pl.select(pl.when(failed).then(pl.lit(0, INT) - num).otherwise(pl.lit(0, INT))).to_series()
    return {"reason": reason, "errno": errno}


def _field_name(name: str) -> str:
    # A field named like a key column (sched_wakeup's `pid`) keeps its value under another name.
    return f"{name}_field" if name in TABLE_KEY_COLUMNS else name


@dataclasses.dataclass
class TablePlan:
    """An event table's types as the whole file gives them, imposed on a window of it (learnt
    by formats.textsurvey): the `auto_kind` of each part's value-typed columns, the fields in
    order with their types before `narrow`, and the Int128 columns' ranges."""

    auto: dict[tuple, dict[str, str]]
    columns: dict[str, pl.DataType]
    ranges: dict[str, IntRange]


def event_table(event: str, key: pl.DataFrame, rest: pl.Series, ctx: IsaContext,
                parsed: tuple[list[_Part], pl.Series] | None = None, plan: TablePlan | None = None) -> pa.Table:
    """Typed table of one event type: key columns (row, ts, cpu, pid), the raw fields read back
    from the text, and `text` for rows no format could read. `plan`: `rest` is a window of the
    file, typed as the whole file is."""
    parts, left = parsed if parsed is not None else split_fields(event, rest)
    rest = rest.str.strip_chars()
    frames = [_convert_part(event, p, ctx, None if plan is None else plan.auto.get(p.key)) for p in parts]
    if left.any():
        frames.append(pl.DataFrame({"text": rest.filter(left),
                                    "_pos": np.flatnonzero(left.to_numpy()).astype(np.int64)}))
    if frames:
        fields = pl.concat(frames, how="diagonal_relaxed").sort("_pos").drop("_pos")
        if plan is not None:  # the columns other windows have, the file's types
            fields = fields.select([pl.col(c).cast(t) if c in fields.columns else pl.lit(None, t).alias(c)
                                    for c, t in plan.columns.items()])
        fields = fields.with_columns([narrow(fields[c], None if plan is None else plan.ranges.get(c))
                                      for c in fields.columns if fields[c].dtype == INT])
        if "text" in fields.columns:
            fields = fields.select([c for c in fields.columns if c != "text"] + ["text"])
        table = pl.concat([key, fields], how="horizontal")
    else:
        table = key
    return _plain_arrow(table.to_arrow())


def _plain_type(t: pa.DataType) -> pa.DataType:
    if pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return pa.string()
    if pa.types.is_large_list(t) or pa.types.is_list_view(t) or pa.types.is_large_list_view(t):
        return pa.list_(_plain_type(t.value_type))
    return t


def _plain_arrow(table: pa.Table) -> pa.Table:
    """Arrow's plain string and list types, as the trace.dat reader gives them."""
    schema = pa.schema([pa.field(f.name, _plain_type(f.type)) for f in table.schema])
    return table if schema == table.schema else table.cast(schema)


def guess_context(parsed: list[list[_Part]]) -> IsaContext:
    """The ISA named by the reason texts of kvm_exit & co (VMX prints upper case, SVM lower case,
    trace-cmd's plugin EXIT_*), else by a raw `isa=` field."""
    names: set[str] = set()
    raw_isa: dict[int, int] = {}
    for parts in parsed:
        context_facts(parts, names, raw_isa)
    return context_of(names, raw_isa)


def context_facts(parts: list[_Part], names: set[str], raw_isa: dict[int, int]) -> None:
    """Add the parts' reason texts to `names` and their raw `isa=` values to the counts `raw_isa`."""
    for p in parts:
        for name, kind in p.kinds.items():
            if kind == "reason" and name in p.raw:
                names |= set(p.raw[name].unique().drop_nulls().to_list())
        if not p.kinds and "isa" in p.raw:
            vc = _dec(p.raw["isa"]).drop_nulls().cast(pl.Int64, strict=False).drop_nulls().value_counts()
            for v, c in zip(vc[:, 0].to_list(), vc[:, 1].to_list()):
                raw_isa[v] = raw_isa.get(v, 0) + c


def context_of(names: set[str], raw_isa: dict[int, int]) -> IsaContext:
    isa = reasons.guess_isa(names)
    if isa is None and raw_isa:
        top = max(raw_isa.values())
        isa = min(v for v, c in raw_isa.items() if c == top)  # the most frequent; ties: the least
    return IsaContext(isa)


# --- assembly ---------------------------------------------------------------------------------------
def build_trace(path: str, ev: pl.DataFrame, source_format: str, *, cpus: int | None,
                markers: list[Marker], warnings: list[str], extra: dict | None = None,
                unparsed_lines: int = 0, out_of_range: int = 0) -> Trace:
    """`ev`: one row per event line, columns line (number in the file), ts, cpu, pid, comm, system,
    event, flags, preempt_count, rest. Markers name the line they stand on. `out_of_range`: event
    lines dropped because their timestamp, CPU or pid does not fit (see `in_range`)."""
    ev = ev.with_columns(pl.col("event").cast(pl.String))
    # The file is in time order except across CPUs at equal printed times; a stable sort keeps it.
    ev = ev.sort(["ts", "line"], maintain_order=True).with_row_index("row")
    dropped = _dropped(ev, markers) if ev.height else []
    meta = file_meta(path, source_format, events=ev.height, max_cpu=ev["cpu"].max(), cpus=cpus,
                     losses=losses_per_cpu((d.cpu, d.count) for d in dropped), warnings=warnings,
                     extra=extra, unparsed_lines=unparsed_lines, out_of_range=out_of_range)
    meta.dropped = dropped
    by_event = group_events(ev)

    @functools.cache
    def parsed(name: str) -> tuple[list[_Part], pl.Series]:
        return split_fields(name, by_event[name]["rest"])

    @functools.cache
    def context() -> IsaContext:
        return guess_context([parsed(e)[0] for e in plugins.REASON_EVENTS if e in by_event])

    def factory(name: str) -> Callable[[], pa.Table]:
        def build() -> pa.Table:
            grp = by_event[name]
            table = event_table(name, key_frame(grp), grp["rest"], context(), parsed(name))
            if "text" in table.column_names:
                meta.warnings.append(text_warning(name, table.num_rows - table.column("text").null_count,
                                                  table.num_rows))
            return table
        return build

    return Trace(events_table(ev), {name: factory(name) for name in by_event}, meta)


def file_meta(path: str, source_format: str, *, events: int, max_cpu: int | None, cpus: int | None,
              losses: dict[int, int | None], warnings: list[str], extra: dict | None,
              unparsed_lines: int, out_of_range: int) -> TraceMeta:
    """The meta of a text trace of `events` event lines (their largest CPU `max_cpu`), the
    recorder's `losses` per CPU, with the warnings about what was skipped or lost."""
    if out_of_range:
        warnings.append(f"{out_of_range} event lines skipped: timestamp, CPU or pid out of range")
    if events == 0:
        raise TraceError(path, "not a trace: no event lines found")
    if cpus is not None and not 0 < cpus <= MAX_CPUS:
        warnings.append(f"the header's CPU count {cpus} is not a CPU count: ignored")
        cpus = None
    extra = dict(extra or {})
    meta = TraceMeta(path=path, source_format=source_format,
                     cpus=cpus if cpus is not None else int(max_cpu) + 1, warnings=warnings, extra=extra)
    if unparsed_lines:
        extra["unparsed_lines"] = unparsed_lines
        warnings.append(f"{unparsed_lines} lines are neither events nor known headers (skipped)")
    if losses:
        warnings.append("events lost by the recorder: " + ", ".join(
            f"CPU {c}: {v if v is not None else 'unknown number'}" for c, v in sorted(losses.items())))
    return meta


def text_warning(name: str, text_rows: int, rows: int) -> str:
    return f"{name}: {text_rows} of {rows} events kept as text (print format not recognised)"


def events_table(ev: pl.DataFrame) -> pa.Table:
    """The `events` table of event lines in row order."""
    return ev.select(
        pl.col("ts").cast(pl.Int64), pl.col("cpu").cast(pl.Int32), pl.col("pid").cast(pl.Int32),
        pl.col("comm").cast(pl.String), pl.col("system").cast(pl.String), pl.col("event").cast(pl.String),
        pl.col("flags").cast(pl.UInt8), pl.col("preempt_count").cast(pl.UInt8),
    ).to_arrow()


def group_events(ev: pl.DataFrame) -> dict[str, pl.DataFrame]:
    """Event lines (with their `row`) by event name, in row order."""
    return {name: grp.select("row", "ts", "cpu", "pid", "rest")
            for (name,), grp in ev.group_by(["event"], maintain_order=True)}


def key_frame(grp: pl.DataFrame) -> pl.DataFrame:
    return grp.select(pl.col("row").cast(pl.Int64), pl.col("ts").cast(pl.Int64),
                      pl.col("cpu").cast(pl.Int32), pl.col("pid").cast(pl.Int32))


def _dropped(ev: pl.DataFrame, markers: list[Marker]) -> list[Dropped]:
    """Each marker belongs before the next event line (of its CPU, when it names one)."""
    if not markers:
        return []
    lines = ev["line"].to_numpy()
    order = np.argsort(lines, kind="stable")
    lines_sorted = lines[order]
    cpu_sorted = ev["cpu"].to_numpy()[order]
    rows_sorted = ev["row"].to_numpy()[order]
    ts = ev["ts"].to_numpy()
    out = []
    for m in markers:
        k = int(np.searchsorted(lines_sorted, m.line, side="right"))
        cpu = m.cpu
        if cpu is None:
            cpu = int(cpu_sorted[k]) if k < lines_sorted.size else -1
        later = np.flatnonzero(cpu_sorted[k:] == cpu)
        if later.size:
            row = int(rows_sorted[k + later[0]])
            out.append(Dropped(cpu, int(ts[row]), m.count, row))
        else:
            out.append(Dropped(cpu, int(ts.max()), m.count, None))
    out.sort(key=lambda d: (d.ts, d.cpu))
    return out


def not_events(lines: pl.Series, is_event: pl.Series, known: str) -> int:
    """Lines that are neither events, blank, nor match `known` (headers, markers)."""
    other = ~is_event & (lines.str.strip_chars() != "") & ~lines.str.contains(known)
    return int(other.sum())


# --- the "task-pid [cpu] ts: event:" prefix (trace-cmd report and the kernel's own text) ----------
# The task is printed "%16s-%-Nd" (trace_print_context() in kernel/trace/trace_output.c: N = 7;
# trace-cmd report: N = 5): the comm right-aligned in 16 columns, a dash, the pid. The comm may hold
# spaces and dashes and end in one ("async-executor-", a 16-byte name cut to 15), so "x--5" is comm
# "x-", pid 5 or comm "x", pid -5. A padded comm (15 characters or fewer) puts the separating dash
# in column 17, so there the text says which; past 16 columns the pid is the digits after the last
# dash before the CPU column. The kernel adds "(tgid)" with the record-tgid option and the latency
# column ("d..2.", four characters before 5.x) unless irq-info is off.
TASK_PREFIX = (
    r"^(?:(?P<head>\s.{15})-(?P<npid>-[0-9]+)|\s*(?P<comm>.*?)-(?P<pid>[0-9]+))"
    r"\s+(?:\(\s*(?P<tgid>[-0-9]+)\)\s+)?\[(?P<cpu>[0-9]+)\]\s+"
    r"(?:(?P<lat>[.dDbX][.nNpPlLbB][.hHsSzZ][.0-9a-f][.0-9a-f]?)\s+)?"
    r"(?P<ts>[0-9]+(?:\.[0-9]+)?):\s+(?P<event>[\w:-]+):\s?(?P<rest>.*)$"
)


def prefixed_events(lines: pl.Series, prefix: str = TASK_PREFIX) -> tuple[pl.DataFrame, pl.Series, int]:
    """Events of "task-pid [cpu] (lat) ts: event: text" lines, which lines are events, and how
    many event lines were dropped for a timestamp, CPU or pid out of range."""
    frame = pl.DataFrame({"l": lines}).with_row_index("line").select(
        pl.col("line"), pl.col("l").str.extract_groups(prefix)).unnest("l")
    is_event = frame["ts"].is_not_null()
    ev = frame.filter(is_event)
    flags, preempt = latency_columns(pl.col("lat"))
    comm = pl.coalesce(pl.col("head"), pl.col("comm")).str.strip_chars()
    ev = ev.with_columns(
        pl.coalesce(pl.col("npid"), pl.col("pid")).alias("pid"),
        pl.col("event").str.extract(r"^(.+):", 1).alias("system"),
        pl.col("event").str.replace(r"^.+:", ""),
    ).with_columns(
        pl.coalesce(pl.col("system"), pl.col("event").replace_strict(plugins.SYSTEMS, default=None)),
        ts_to_ns(pl.col("ts")).alias("ts"),
        pl.when(comm == "<...>").then(None).otherwise(comm).alias("comm"),
        flags.alias("flags"),
        preempt.alias("preempt_count"),
    )
    ev, bad = in_range(ev)
    return ev.select("line", "ts", "cpu", "pid", "comm", "system", "event", "flags", "preempt_count",
                     "rest"), is_event, bad
