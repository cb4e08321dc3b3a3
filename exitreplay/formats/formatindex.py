"""A file's event formats by id, each parsed the first time it is asked for.

A host's trace.dat (and perf's tracing data) carries the format of every event the kernel has,
thousands of them, while the data holds a handful of types. Parsing them all cost 0.2-0.4 s per
file; here each text's `name:` and `ID:` lines are read with one regex at open, and the fields
only when a record of that type is decoded (or someone iterates every format).

Same answers as parsing everything up front: an id whose text does not parse is absent (with the
same warning, given when it is first asked for), a later text of an id replaces an earlier one,
iteration keeps the file's order. Texts whose name or id the quick scan cannot read with
certainty (odd line breaks, non-ASCII, several name lines, a bad id) are parsed at once.
"""
from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator, Mapping

import numpy as np

from .eventformat import EventFormat, parse_format
from .limits import MAX_EVENT_ID

_KERNEL_HEAD = re.compile(rb"name: ([^\n]*)\nID: ([0-9]{1,6})\n")
_LINE_KEY = re.compile(rb"\n[ \t]*(?:name|ID):")  # a line parse_format reads as a name or an id
# Bytes that are line breaks or whitespace to str.splitlines()/strip() but not to the regexes.
_ODD = [bytes([b]) for b in b"\r\x0b\x0c\x1c\x1d\x1e\x1f"]


def _plain_ascii(text: bytes) -> bool:
    return text.isascii() and not any(b in text for b in _ODD)  # `in`: a memchr each


def format_head(text: bytes) -> tuple[str, int] | None:
    """(name, id) of a format text as parse_format would read them, or None where unsure."""
    if not _plain_ascii(text):
        return None
    names, ids = _key_lines(text, b"name:"), _key_lines(text, b"ID:")
    if len(names) != 1 or len(ids) != 1:
        return None
    name, ident = names[0].strip(), ids[0].strip()
    if not name or not ident.isdigit() or int(ident) > MAX_EVENT_ID:
        return None
    return name.decode(), int(ident)


def _key_lines(text: bytes, key: bytes) -> list[bytes]:
    """The rest of each line that starts with `key` after spaces and tabs (in a text whose only
    line break is \\n and whose only whitespace besides it is the space and the tab)."""
    out, p = [], text.find(key)
    while p >= 0:
        if not text[text.rfind(b"\n", 0, p) + 1: p].strip(b" \t"):
            end = text.find(b"\n", p)
            out.append(text[p + len(key): end if end >= 0 else len(text)])
        p = text.find(key, p + 1)
    return out


def _heads(texts: list[bytes]) -> list[tuple[str, int] | None]:
    """format_head of every text. The kernel writes each text as "name: X\nID: N\n..."
    (kernel/trace/trace_events.c, f_show): that head is matched at each text's start, and one
    regex pass over all texts counts the lines parse_format would read as a name or an id; a text
    with other such lines, or with bytes this reading cannot vouch for, is read by format_head."""
    n = len(texts)
    blob = b"\n".join([b"", *texts])  # every text starts after a newline
    if not _plain_ascii(blob):
        return [format_head(t) if _plain_ascii(t) else None for t in texts]
    out: list[tuple[str, int] | None] = []
    redo = []
    for i, m in enumerate(map(_KERNEL_HEAD.match, texts)):
        name = m[1].strip() if m is not None else b""
        if name and int(m[2]) <= MAX_EVENT_ID:
            out.append((name.decode(), int(m[2])))
        else:
            out.append(None)
            redo.append(i)
    if len(_LINE_KEY.findall(blob)) != 2 * n:  # a head is two such lines; which texts have more?
        starts = np.cumsum([1] + [len(t) + 1 for t in texts[:-1]])
        at = np.searchsorted(starts, [m.start() + 1 for m in _LINE_KEY.finditer(blob)], side="right") - 1
        redo += np.flatnonzero(np.bincount(at, minlength=n) != 2).tolist()
    for i in set(redo):
        out[i] = format_head(texts[i])
    return out


class FormatIndex(Mapping):
    """{id: EventFormat} over (system, text) pairs; `warnings` gets the unreadable ones."""

    def __init__(self, texts: list[tuple[str, bytes]], page: int, warnings: list[str]):
        self.texts, self.page, self.warnings = texts, page, warnings
        self._parsed: dict[int, EventFormat | None] = {}  # by text index
        heads = _heads([t if isinstance(t, bytes) else bytes(t) for _, t in texts])
        for i in [i for i, h in enumerate(heads) if h is None]:
            fmt = self._parse(i)
            heads[i] = (fmt.name, fmt.id) if fmt is not None else (None, None)
        names, ids = zip(*heads) if heads else ((), ())
        self._names: list[str | None] = list(names)
        self._ids: list[int | None] = list(ids)  # per text: its id (None: unreadable)
        # id -> its texts: the last one (a dict built in C), and all of them for the rare id
        # that several texts give
        self._last: dict[int | None, int] = dict(zip(ids, range(len(ids))))
        self._dups: dict[int, list[int]] = {}
        if len(self._last) != len(ids):
            for i, t in enumerate(ids):
                self._dups.setdefault(t, []).append(i)
            self._dups = {t: v for t, v in self._dups.items() if len(v) > 1 and t is not None}
        self._last.pop(None, None)
        self._name_count = Counter(self._names)
        self._resolved: dict[int, EventFormat | None] = {}
        self._table_names: dict[int, str] | None = None

    def _parse(self, i: int) -> EventFormat | None:
        if i not in self._parsed:
            system, text = self.texts[i]
            try:
                fmt = parse_format(text, system)
                end = max((f.offset + f.size for f in fmt.fields), default=0)
                if end > self.page:
                    raise ValueError(f"{fmt.name}: fields reach byte {end} of a record, beyond a "
                                     f"{self.page}-byte page")
            except ValueError as exc:
                self.warnings.append(f"unreadable event format in system {system}: {exc}")
                fmt = None
            self._parsed[i] = fmt
        return self._parsed[i]

    def get(self, tid: int, default=None) -> EventFormat | None:
        if tid not in self._resolved:
            found = None
            cands = self._dups.get(tid) or ([self._last[tid]] if tid in self._last else [])
            for i in cands:  # the last readable text of an id wins
                fmt = self._parse(i)
                found = fmt if fmt is not None else found
            self._resolved[tid] = found
        got = self._resolved[tid]
        return default if got is None else got

    def __getitem__(self, tid: int) -> EventFormat:
        fmt = self.get(tid)
        if fmt is None:
            raise KeyError(tid)
        return fmt

    def __contains__(self, tid: object) -> bool:
        return isinstance(tid, int) and self.get(tid) is not None

    def __iter__(self) -> Iterator[int]:
        seen: set[int] = set()
        for t in self._ids:
            if t is not None and t not in seen:
                seen.add(t)
                if self.get(t) is not None:
                    yield t

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __bool__(self) -> bool:
        return next(iter(self), None) is not None

    def first(self) -> EventFormat | None:
        """The first readable format in file order (for the common fields every event shares)."""
        return next((self[t] for t in self), None)

    def table_name(self, tid: int) -> str:
        """tracedat.table_names' answer for one id: its name, or system:name where a lower id
        took the name. Where a lower id's name could clash (rare), every format is parsed."""
        fmt = self[tid]
        if ":" not in fmt.name and self._name_count[fmt.name] == 1:  # no other text so named
            return fmt.name
        if self._table_names is None:
            from .tracedat import table_names

            self._table_names = table_names(dict(self.items()))
        return self._table_names[tid]
