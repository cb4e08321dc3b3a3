"""Event `format` texts built from a kernel source tree, for kernels we have no recording of.

The kernel prints `events/<system>/<event>/format` from its TRACE_EVENT definitions: the fields of
`TP_STRUCT__entry` after the common `struct trace_entry` fields, laid out as the C compiler lays
out the struct, and `print fmt:` as the stringified `TP_printk` arguments after macro expansion
(include/trace/trace_events.h: `"\\"" fmt "\\", " __stringify(args)`, with `__entry` defined as
`REC`). `build_formats` does the same from the headers of a given tree, so a template for an old
kernel says what that kernel would have said, not what we guess. Used once, by
`exitreplay.synth.templates.build_template_from_source`, to make the shipped `linux-4.19` template
(see docs/templates.md); nothing at run time depends on a kernel tree.

Scope: x86-64 (8-byte longs, signed `char`, natural alignment), TRACE_EVENT,
DECLARE_EVENT_CLASS + DEFINE_EVENT/DEFINE_EVENT_PRINT, and `__field`/`__field_ext`/`__array`/
`__string` entries, which covers the kvm and sched systems.
"""
from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

# -- a small C preprocessor: tokens, #define, expansion, stringification -----------------------

_TOKEN = re.compile(
    r"""(?P<ws>[ \t\r\n\f\v]+|/\*.*?\*/|//[^\n]*)
      |(?P<str>"(?:\\.|[^"\\\n])*")
      |(?P<chr>'(?:\\.|[^'\\\n])*')
      |(?P<num>\.?\d(?:[eEpP][+-]|[\w.])*)
      |(?P<id>[A-Za-z_]\w*)
      |(?P<op>\.\.\.|<<=|>>=|->|\+\+|--|<<|>>|<=|>=|==|!=|&&|\|\||\#\#|[-+*/%&|^!~<>=?:;,.()\[\]{}\#])
      |(?P<other>.)""",
    re.DOTALL | re.VERBOSE,
)


@dataclasses.dataclass(frozen=True)
class Tok:
    kind: str  # id, num, str, chr, op, other
    text: str
    white: bool  # preceded by white space (decides the spaces of a stringification)
    hide: frozenset = frozenset()  # macros that must not expand this token again


def tokenize(text: str) -> list[Tok]:
    text = text.replace("\\\n", "")
    out: list[Tok] = []
    white = False
    for m in _TOKEN.finditer(text):
        kind = m.lastgroup
        if kind == "ws":
            white = True
            continue
        out.append(Tok(kind, m.group(), white))
        white = False
    return out


@dataclasses.dataclass
class Macro:
    name: str
    params: list[str] | None  # None: object-like
    variadic: bool
    body: list[Tok]


def read_macros(files: Iterable[Path]) -> dict[str, Macro]:
    """Every `#define` of the files (conditionals ignored: the last definition wins)."""
    macros: dict[str, Macro] = {}
    for path in files:
        text = Path(path).read_text(errors="replace").replace("\\\n", "")
        text = re.sub(r"/\*.*?\*/", " ", text, flags=re.DOTALL)
        for line in text.splitlines():
            m = re.match(r"\s*#\s*define\s+([A-Za-z_]\w*)(\()?(.*)$", line)
            if not m:
                continue
            name, paren, rest = m.group(1), m.group(2), m.group(3)
            params = None
            variadic = False
            if paren:
                close = rest.index(")")
                plist = [p.strip() for p in rest[:close].split(",") if p.strip()]
                rest = rest[close + 1:]
                params = []
                for p in plist:
                    if p == "...":
                        params.append("__VA_ARGS__")
                        variadic = True
                    elif p.endswith("..."):
                        params.append(p[:-3].strip())
                        variadic = True
                    else:
                        params.append(p)
            body = tokenize(rest)
            if body:
                body[0] = dataclasses.replace(body[0], white=False)
            macros[name] = Macro(name, params, variadic, body)
    return macros


def _split_args(toks: Sequence[Tok]) -> list[list[Tok]]:
    """Top-level comma split of the tokens between a call's parentheses."""
    args: list[list[Tok]] = [[]]
    depth = 0
    for t in toks:
        if t.text in "([{" and t.kind == "op":
            depth += 1
        elif t.text in ")]}" and t.kind == "op":
            depth -= 1
        if t.text == "," and t.kind == "op" and depth == 0:
            args.append([])
            continue
        args[-1].append(t)
    return args


def _find_close(toks: Sequence[Tok], open_at: int) -> int:
    depth = 0
    for i in range(open_at, len(toks)):
        t = toks[i]
        if t.kind == "op" and t.text == "(":
            depth += 1
        elif t.kind == "op" and t.text == ")":
            depth -= 1
            if depth == 0:
                return i
    raise ValueError("unbalanced parentheses")


def _stringize(toks: Sequence[Tok]) -> str:
    parts = []
    for i, t in enumerate(toks):
        if i and t.white:
            parts.append(" ")
        parts.append(t.text)
    return "".join(parts)


def _c_string(text: str) -> str:
    """The C literal text of a stringified token run (quotes and backslashes escaped)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


class Preprocessor:
    def __init__(self, macros: dict[str, Macro]):
        self.macros = macros

    def expand(self, toks: Sequence[Tok]) -> list[Tok]:
        out: list[Tok] = []
        toks = list(toks)
        i = 0
        while i < len(toks):
            t = toks[i]
            m = self.macros.get(t.text) if t.kind == "id" and t.text not in t.hide else None
            if m is None:
                out.append(t)
                i += 1
                continue
            if m.params is None:
                body = self._subst(m, [], t)
                toks[i: i + 1] = body
                continue
            if i + 1 >= len(toks) or toks[i + 1].text != "(":
                out.append(t)
                i += 1
                continue
            close = _find_close(toks, i + 1)
            args = _split_args(toks[i + 2: close])
            if args == [[]]:
                args = []
            body = self._subst(m, args, t)
            toks[i: close + 1] = body
        return out

    def _subst(self, m: Macro, args: list[list[Tok]], name_tok: Tok) -> list[Tok]:
        params = m.params or []
        if m.variadic and len(args) > len(params):
            head = args[: len(params) - 1]
            rest: list[Tok] = []
            for j, a in enumerate(args[len(params) - 1:]):
                if j:
                    rest.append(Tok("op", ",", False))
                rest.extend(a)
            args = head + [rest]
        while len(args) < len(params):
            args.append([])
        amap = dict(zip(params, args))
        hide = name_tok.hide | {m.name}
        body = m.body
        out: list[Tok] = []
        i = 0
        while i < len(body):
            t = body[i]
            if t.kind == "op" and t.text == "#" and i + 1 < len(body) and body[i + 1].text in amap:
                s = _c_string(_stringize(amap[body[i + 1].text]))
                out.append(Tok("str", s, t.white))
                i += 2
                continue
            if i + 2 < len(body) and body[i + 1].text == "##":
                left = amap.get(t.text, [t]) if t.kind == "id" else [t]
                right_t = body[i + 2]
                right = amap.get(right_t.text, [right_t]) if right_t.kind == "id" else [right_t]
                lt = left[-1] if left else None
                rt = right[0] if right else None
                merged = (lt.text if lt else "") + (rt.text if rt else "")
                pieces = list(left[:-1]) + tokenize(merged)[:1] + list(right[1:])
                if pieces:
                    pieces[0] = dataclasses.replace(pieces[0], white=t.white)
                out.extend(pieces)
                i += 3
                continue
            if t.kind == "id" and t.text in amap:
                arg = self.expand(amap[t.text])
                if arg:
                    arg = [dataclasses.replace(arg[0], white=t.white)] + arg[1:]
                out.extend(arg)
                i += 1
                continue
            out.append(t)
            i += 1
        out = [dataclasses.replace(x, hide=x.hide | hide) for x in out]
        if out:
            out[0] = dataclasses.replace(out[0], white=name_tok.white)
        return out


# -- TRACE_EVENT definitions -> format texts --------------------------------------------------

# x86-64 scalar types: size, signed (char is signed on x86 before Linux 6.2's -funsigned-char).
_TYPES = {
    "char": (1, True), "signed char": (1, True), "unsigned char": (1, False), "u8": (1, False),
    "__u8": (1, False), "s8": (1, True), "__s8": (1, True), "bool": (1, False), "_Bool": (1, False),
    "short": (2, True), "unsigned short": (2, False), "u16": (2, False), "__u16": (2, False),
    "s16": (2, True), "__s16": (2, True),
    "int": (4, True), "unsigned int": (4, False), "unsigned": (4, False), "u32": (4, False),
    "__u32": (4, False), "s32": (4, True), "__s32": (4, True), "pid_t": (4, True),
    "long": (8, True), "unsigned long": (8, False), "ulong": (8, False), "u64": (8, False),
    "__u64": (8, False), "s64": (8, True), "__s64": (8, True), "long long": (8, True),
    "unsigned long long": (8, False), "gva_t": (8, False), "gpa_t": (8, False), "gfn_t": (8, False),
    "hpa_t": (8, False), "size_t": (8, False), "loff_t": (8, True), "u64 *": (8, False),
}
COMMON = [("unsigned short", "common_type", 2, False), ("unsigned char", "common_flags", 1, False),
          ("unsigned char", "common_preempt_count", 1, False), ("int", "common_pid", 4, True)]


@dataclasses.dataclass
class EventDef:
    system: str
    name: str
    entries: list[Tok]  # TP_STRUCT__entry contents
    printk: list[Tok]  # TP_printk contents


def _type_info(ctype: str) -> tuple[int, bool]:
    key = " ".join(ctype.replace("const ", "").split())
    if key.endswith("*"):
        return 8, False
    if key in _TYPES:
        return _TYPES[key]
    raise ValueError(f"unknown C type {ctype!r}")


def parse_events(path: Path, system: str) -> list[EventDef]:
    """TRACE_EVENT / DECLARE_EVENT_CLASS + DEFINE_EVENT(_PRINT) definitions of one header."""
    toks = tokenize(Path(path).read_text(errors="replace"))
    classes: dict[str, EventDef] = {}
    events: list[EventDef] = []
    i = 0
    while i < len(toks):
        t = toks[i]
        if t.kind == "id" and t.text in ("TRACE_EVENT", "DECLARE_EVENT_CLASS", "DEFINE_EVENT",
                                          "DEFINE_EVENT_PRINT") and i + 1 < len(toks) and toks[i + 1].text == "(":
            close = _find_close(toks, i + 1)
            args = _split_args(toks[i + 2: close])
            kind = t.text
            i = close + 1
            if kind in ("TRACE_EVENT", "DECLARE_EVENT_CLASS"):
                name = args[0][0].text
                entries = printk = None
                for a in args[1:]:
                    if a and a[0].text == "TP_STRUCT__entry":
                        entries = a[2:-1]
                    elif a and a[0].text == "TP_printk":
                        printk = a[2:-1]
                if entries is None or printk is None:
                    continue
                ev = EventDef(system, name, entries, printk)
                if kind == "TRACE_EVENT":
                    events.append(ev)
                else:
                    classes[name] = ev
            else:
                cls = classes.get(args[0][0].text)
                if cls is None:
                    continue
                printk = cls.printk
                if kind == "DEFINE_EVENT_PRINT":
                    pa = args[4]
                    printk = pa[2:-1] if pa and pa[0].text == "TP_printk" else printk
                events.append(EventDef(system, args[1][0].text, cls.entries, printk))
            continue
        i += 1
    return events


def _fields(ev: EventDef, pp: Preprocessor) -> list[tuple[str, str, int, int, bool]]:
    """(type as printed, name, offset, size, signed) of the event's own fields, C struct layout."""
    out = []
    off = 8  # after struct trace_entry
    i = 0
    items = ev.entries
    while i < len(items):
        t = items[i]
        if t.kind == "id" and i + 1 < len(items) and items[i + 1].text == "(":
            close = _find_close(items, i + 1)
            args = _split_args(items[i + 2: close])
            i = close + 1
            kind = t.text
            ctype = _stringize(args[0]) if args else ""
            if kind in ("__field", "__field_ext"):
                size, signed = _type_info(ctype)
                align, shown, name = size, ctype, args[1][0].text
            elif kind == "__array":
                esize, signed = _type_info(ctype)
                n = int(_stringize(pp.expand(args[2])), 0)
                size, align, name = esize * n, esize, args[1][0].text
                shown = f"{ctype}[{n}]"
            elif kind == "__string":
                size, align, signed, name = 4, 4, True, args[0][0].text
                shown = "__data_loc char[]"
            else:
                raise ValueError(f"{ev.name}: unsupported entry {kind}")
            off = (off + align - 1) // align * align
            out.append((shown, name, off, size, signed))
            off += size
            continue
        i += 1
    return out


def _print_fmt(ev: EventDef, pp: Preprocessor) -> str:
    args = _split_args(ev.printk)
    fmt_toks = args[0]
    fmt = "".join(_unescape(t.text[1:-1]) for t in fmt_toks if t.kind == "str")
    rest: list[Tok] = []
    for j, a in enumerate(args[1:]):
        if j:
            rest.append(Tok("op", ",", False))
        rest.extend(a)
    if rest:
        rest[0] = dataclasses.replace(rest[0], white=False)
    expanded = pp.expand(rest)
    return f'"{fmt}", ' + _stringize(expanded)


def _unescape(s: str) -> str:
    return s.replace('\\"', '"').replace("\\\\", "\\")


def format_text(ev: EventDef, event_id: int, pp: Preprocessor, char_signed: bool = True) -> str:
    """The text the kernel prints in events/<system>/<name>/format (kernel/trace/trace_events.c f_show)."""
    lines = [f"name: {ev.name}", f"ID: {event_id}", "format:"]
    for ctype, name, size, signed in ((c, n, s, g) for c, n, s, g in COMMON):
        off = {"common_type": 0, "common_flags": 2, "common_preempt_count": 3, "common_pid": 4}[name]
        lines.append(f"\tfield:{ctype} {name};\toffset:{off};\tsize:{size};\tsigned:{int(signed)};")
    lines.append("")
    for shown, name, off, size, signed in _fields(ev, pp):
        if "[" in shown and not shown.startswith("__data_loc"):
            base, arr = shown.split("[", 1)
            signed = signed if char_signed or base.strip() != "char" else False
            decl = f"{base} {name}[{arr}"
        else:
            decl = f"{shown} {name}"
        lines.append(f"\tfield:{decl};\toffset:{off};\tsize:{size};\tsigned:{int(signed)};")
    lines.append("")
    lines.append(f"print fmt: {_print_fmt(ev, pp)}")
    return "\n".join(lines) + "\n"


def build_formats(tree: Path, headers: dict[str, list[str]], macro_files: Sequence[str],
                  first_ids: dict[str, int], only: dict[str, Sequence[str]] | None = None
                  ) -> dict[str, list[tuple[str, str]]]:
    """{system: [(event name, format text)]} for the TRACE_EVENTs of `headers` in kernel tree `tree`.

    `first_ids` numbers each system's events in definition order from the given ID: the kernel
    assigns IDs at boot in registration order, which the source does not fix.
    """
    tree = Path(tree)
    macros = read_macros([tree / f for f in macro_files] + [tree / h for hs in headers.values() for h in hs])
    # The print-fmt stage of include/trace/trace_events.h.
    macros["__entry"] = Macro("__entry", None, False, [Tok("id", "REC", False)])
    for name in ("__print_flags", "__print_symbolic", "__print_hex", "__print_array", "__get_str",
                 "__get_dynamic_array", "TP_printk", "__print_symbolic_u64", "__print_hex_str"):
        macros.pop(name, None)
    pp = Preprocessor(macros)
    out: dict[str, list[tuple[str, str]]] = {}
    for system, files in headers.items():
        evs = [e for f in files for e in parse_events(tree / f, system)]
        if only and system in only:
            want = set(only[system])
            evs = [e for e in evs if e.name in want]
        eid = first_ids[system]
        texts = []
        for e in evs:
            texts.append((e.name, format_text(e, eid, pp)))
            eid += 1
        out[system] = texts
    return out
