"""Shared machinery of the text readers: whole-column regex extraction with Polars.

A text trace is read into one Polars column of lines; the line prefix (task, pid, CPU, flags,
timestamp, event) is extracted for all lines by one regex, and each event type's fields by one
regex per print format. Python loops run per event type, never per line.
"""
from __future__ import annotations

import os
import re
from collections.abc import Callable

import polars as pl
import pyarrow as pa

from ..errors import TraceError
from ..kvm import reasons
from ..trace import Dropped, Trace, TraceMeta
from .plugins import KERNEL_STATE_BITS, PLUGIN_STATE_BITS, RENAMES, SPECS

# Dropped-event markers: trace-cmd "CPU:N [N EVENTS DROPPED]", ftrace "CPU:N [LOST N EVENTS]".
DROPPED_RE = r"CPU:\s*(\d+)\s+\[(?:LOST\s+)?(\d+)?\s*EVENTS(?:\s+DROPPED)?\]"
NAME_VALUE_RE = re.compile(r"(\w+)=")


def read_lines(path: str) -> pl.Series:
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except OSError as exc:
        raise TraceError(path, f"cannot open: {exc.strerror}") from None
    text = raw.decode("utf-8", "replace")
    return pl.Series("line", text.splitlines(), dtype=pl.Utf8)


def ts_to_ns(col: pl.Expr) -> pl.Expr:
    """"123.456789" (µs) or "123.456789012" (ns) -> integer ns, exactly (no float)."""
    sec = col.str.extract(r"^(\d+)\.", 1).cast(pl.Int64)
    frac = col.str.extract(r"\.(\d+)$", 1)
    frac_ns = frac.str.pad_end(9, "0").str.slice(0, 9).cast(pl.Int64)
    return sec * 1_000_000_000 + frac_ns


def _hex(col: pl.Expr) -> pl.Expr:
    # Addresses (guest RIPs) use all 64 bits: parse unsigned.
    return col.str.replace(r"^0x", "").str.to_integer(base=16, dtype=pl.UInt64, strict=False)


def _states(col: pl.Expr, table: dict[str, int]) -> pl.Expr:
    """'S', 'D|W', 'R', 'R+' -> the numeric prev_state."""
    expr = pl.lit(0, dtype=pl.Int64)
    for letter, bit in table.items():
        expr = expr + pl.when(col.str.contains(rf"(^|\|){re.escape(letter)}($|\||\+)")).then(bit).otherwise(0)
    if table is KERNEL_STATE_BITS:
        expr = expr + pl.when(col.str.ends_with("+")).then(256).otherwise(0)
    # Numeric states (raw output) pass through.
    return pl.when(col.str.contains(r"^-?\d+$")).then(col.cast(pl.Int64, strict=False)).otherwise(expr)


def _convert(name: str, kind: str, isa: int | None) -> pl.Expr:
    c = pl.col(name)
    if kind == "s":
        return c
    if kind == "d":
        return c.cast(pl.Int64, strict=False)
    if kind == "x":
        return _hex(c)
    if kind == "kernel_state":
        return _states(c, KERNEL_STATE_BITS)
    if kind == "plugin_state":
        return _states(c, PLUGIN_STATE_BITS)
    if kind == "present":
        return c.is_not_null() & (c != "")
    if kind == "write_flag":
        return (c == "write").cast(pl.UInt32)
    if kind == "load_flag":
        return (c == "load").cast(pl.UInt32)
    if kind == "wait_flag":
        return c == "wait"
    if kind == "valid_flag":
        return c == "valid"
    if kind == "yn":
        return c == "y"
    if kind in ("exit_reason", "uexit"):
        return c  # names -> codes once per distinct value, in _parse_specs
    raise ValueError(kind)


def _map_unique(series: pl.Series, fn: Callable[[str], int | None]) -> pl.Series:
    """Apply a Python function once per distinct value (reason names: a few dozen per trace)."""
    uniq = series.unique().drop_nulls().to_list()
    table = {u: fn(u) for u in uniq}
    return series.replace_strict(table, default=None, return_dtype=pl.Int64)


def _isa_of(frames: pl.DataFrame) -> int | None:
    names: set[str] = set()
    for ev in ("kvm_exit", "kvm_nested_vmexit"):
        sub = frames.filter(pl.col("event") == ev)
        if sub.height:
            names |= set(sub["rest"].str.extract(r"reason:? (\S+)", 1).drop_nulls().unique().to_list())
    return reasons.guess_isa(names) if names else None


def _parse_specs(event: str, rest: pl.Series, isa: int | None) -> tuple[dict[str, pl.Series], pl.Series]:
    """Fields of one event type. Returns (columns, mask of rows parsed)."""
    n = rest.len()
    parsed = pl.Series([False] * n)
    cols: dict[str, pl.Series] = {}
    for regex, conv in SPECS.get(event, []):
        todo = ~parsed
        if not todo.any():
            break
        ext = pl.DataFrame({"rest": rest}).select(pl.col("rest").str.extract_groups(regex)).unnest("rest")
        ok = todo & ext[ext.columns[0]].is_not_null()
        if not ok.any():
            continue
        out = ext.with_columns([_convert(g, conv.get(g, "s"), isa).alias(g) for g in ext.columns])
        for g in ext.columns:
            kind = conv.get(g, "s")
            if kind == "exit_reason":
                series = _map_unique(ext[g], lambda s: reasons.exit_reason_code(isa or 0, s))
            elif kind == "uexit":
                series = _map_unique(ext[g], lambda s: reasons.userspace_exit_code(s)
                                     if s not in ("restart", "error") else None)
            else:
                series = out[g]
            name = RENAMES.get(g, g)
            if name in cols:
                cols[name] = pl.select(pl.when(ok).then(series).otherwise(cols[name])).to_series()
            else:
                cols[name] = pl.select(pl.when(ok).then(series).otherwise(None)).to_series()
        parsed = parsed | ok
    if event == "kvm_exit" and "exit_reason" in cols and isa is not None:
        cols["isa"] = pl.select(pl.when(parsed).then(pl.lit(isa, pl.UInt32))).to_series()
    if event == "kvm_userspace_exit" and "errno" in cols and "reason" in cols:
        # The print is "reason NAME (reason)" when errno >= 0 (KVM sets 0 then), and
        # "restart|error (-errno)" otherwise.
        bad = cols["reason"].is_null() & parsed
        cols["errno"] = pl.select(pl.when(bad).then(-cols["errno"]).otherwise(pl.when(parsed).then(0))
                                  ).to_series()
    return cols, parsed


def _hex_fields(event: str) -> set[str]:
    """Fields the event's print format shows in hex: raw `-R` output prints them in hex too."""
    return {g for _, conv in SPECS.get(event, []) for g, kind in conv.items() if kind == "x"}


def _parse_name_values(rest: pl.Series, event: str = "") -> tuple[dict[str, pl.Series], pl.Series]:
    """Generic `a=1 b=2` texts: the field names of the first row, one regex for all rows."""
    hex_fields = _hex_fields(event)
    first = rest.drop_nulls()
    if first.len() == 0:
        return {}, pl.Series([False] * rest.len())
    names = NAME_VALUE_RE.findall(first[0])
    if not names or not first[0].lstrip().startswith(names[0] + "="):
        return {}, pl.Series([False] * rest.len())
    regex = "^" + " ".join(rf"{re.escape(n)}=(?P<{n}>.*?)" for n in names) + "$"
    try:
        ext = pl.DataFrame({"rest": rest}).select(pl.col("rest").str.extract_groups(regex)).unnest("rest")
    except Exception:
        return {}, pl.Series([False] * rest.len())
    ok = ext[ext.columns[0]].is_not_null()
    cols = {}
    for n in ext.columns:
        s = ext[n]
        nn = s.drop_nulls()
        if n in hex_fields and nn.len() and nn.str.contains(r"^(0x)?[0-9a-fA-F]+$").all():
            s = ext.select(_hex(pl.col(n)).alias(n)).to_series()
        elif nn.len() and nn.str.contains(r"^-?\d+$").all():
            v = s.cast(pl.Int64, strict=False)
            if v.null_count() > s.null_count():  # beyond int64: unsigned 64-bit
                v = s.cast(pl.UInt64, strict=False)
            s = v
        elif nn.len() and nn.str.contains(r"^0x[0-9a-fA-F]+$").all():
            s = _hex(pl.col(n)).alias(n)
            s = ext.select(s).to_series()
        cols[RENAMES.get(n, n) if n in ("row", "ts", "cpu", "pid") else n] = s
    return cols, ok


def build_trace(path: str, df: pl.DataFrame, source_format: str, *, cpus: int | None,
                dropped_rows: list[tuple[int, int | None, int]], warnings: list[str],
                extra: dict | None = None) -> Trace:
    """df: one row per event with ts, cpu, pid, comm, event, system, flags (may be null), rest.

    dropped_rows: (cpu, count|None, index of the first event after the marker in df order).
    """
    if df.height == 0:
        raise TraceError(path, "not a trace: no events found")
    df = df.with_row_index("_line")
    df = df.sort(["ts", "_line"], maintain_order=True)
    line_to_row = df["_line"].arg_sort()  # position in df for each original index
    df = df.drop("_line").with_row_index("row")
    isa = _isa_of(df)

    events = df.select(
        pl.col("ts").cast(pl.Int64), pl.col("cpu").cast(pl.Int32), pl.col("pid").cast(pl.Int32),
        pl.col("comm"), pl.col("system"), pl.col("event"), pl.col("flags").cast(pl.UInt8),
        pl.col("preempt_count").cast(pl.UInt8),
    ).to_arrow()

    tables: dict[str, pa.Table] = {}
    unparsed: dict[str, int] = {}
    for (event,), grp in df.group_by(["event"], maintain_order=True):
        key = grp.select(pl.col("row").cast(pl.Int64), pl.col("ts").cast(pl.Int64),
                         pl.col("cpu").cast(pl.Int32), pl.col("pid").cast(pl.Int32))
        rest = grp["rest"]
        cols, ok = _parse_specs(event, rest, isa)
        if not cols:
            cols, ok = _parse_name_values(rest, event)
        else:
            left = ~ok
            if left.any():  # raw `-R` lines of an event that also has a spec
                c2, ok2 = _parse_name_values(rest.filter(left), event)
                if c2 and ok2.all():
                    for k, v in c2.items():
                        full = pl.Series(k, [None] * rest.len(), dtype=v.dtype)
                        full = full.scatter(left.arg_true(), v)
                        cols[k] = pl.select(pl.when(ok).then(cols[k]).otherwise(full)).to_series() \
                            if k in cols else full
                    ok = ok | left
        frame = key.with_columns([s.alias(k) for k, s in cols.items()]) if cols else key
        if not ok.all():
            unparsed[event] = int((~ok).sum())
            frame = frame.with_columns(pl.when(~ok).then(rest).otherwise(None).alias("text"))
        tables[event] = frame.to_arrow()
    if unparsed:
        warnings.append("fields kept as text (print format not parsed): " + ", ".join(
            f"{k} ({v})" for k, v in sorted(unparsed.items())))

    ts = df["ts"]
    dropped = []
    for cpu, count, idx in dropped_rows:
        if idx < df.height:
            row = int(line_to_row[idx]) if idx < line_to_row.len() else None
            # The marker precedes the first later event of that CPU.
            later = df.filter((pl.col("cpu") == cpu) & (pl.col("row") >= (row or 0)))
            r = int(later["row"][0]) if later.height else None
            dropped.append(Dropped(cpu, int(ts[r]) if r is not None else int(ts[-1]), count, r))
        else:
            dropped.append(Dropped(cpu, int(ts[-1]), count, None))
    meta = TraceMeta(path=path, source_format=source_format, cpus=cpus or int(df["cpu"].max()) + 1,
                     dropped=dropped, warnings=warnings, extra=extra or {})
    return Trace(events, tables, meta)


def dropped_markers(lines: pl.Series, event_mask: pl.Series) -> list[tuple[int, int | None, int]]:
    """(cpu, count, number of event lines before the marker) for every dropped-events line."""
    frame = pl.DataFrame({"line": lines, "is_event": event_mask})
    frame = frame.with_columns(pl.col("is_event").cast(pl.Int64).cum_sum().alias("events_before"))
    hits = frame.filter(pl.col("line").str.contains(DROPPED_RE))
    out = []
    for line, before in zip(hits["line"].to_list(), hits["events_before"].to_list()):
        m = re.search(DROPPED_RE, line)
        out.append((int(m[1]), int(m[2]) if m[2] else None, int(before)))
    return out


def check_exists(path: str | os.PathLike) -> str:
    path = os.fspath(path)
    if not os.path.exists(path):
        raise TraceError(path, "no such file")
    return path
