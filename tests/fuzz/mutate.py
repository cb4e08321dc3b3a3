"""Structure-aware mutations, deterministic per (campaign seed, input index).

A trace.dat input goes through two layers: edits of its model before it is written (format texts,
header texts, command lines, pages, CPUs, clock, page size, container), then edits of the written
bytes at the fields `layout.walk` finds (sizes, offsets, counts, ids, page headers, record
headers), options inserted with the file's offsets moved along, splices from other seeds, bit
flips and truncation. A pure truncation is marked so the harness can check the exact-prefix
property against the uncut seed. Text and TOML inputs get line- and token-level edits.
"""
from __future__ import annotations

import dataclasses
import random
import re
import struct

import numpy as np

from .corpus import CONTAINERS, DatModel, Seed
from .layout import Field, Layout, walk

U = {1: 0xFF, 2: 0xFFFF, 4: 0xFFFFFFFF, 8: 0xFFFFFFFFFFFFFFFF}
HOSTILE_NAMES = ["x" * 300, "../../x", ".hidden", "</script><img src=x onerror=alert(1)>", "a:b", "events",
                 "", "a/b", "CON", "kvm_exit", "sched_switch", "\u00e9v\u00e9nement", "nul\x00name"]
HUGE = ["99999999999999999999", "18446744073709551616", "-9223372036854775809", "9223372036854775808",
        "340282366920938463463374607431768211457", "1" * 400, "-1", "0", "\u0661\u0662\u0663", "\uff11\uff12",
        "4294967296", "2147483648", "1e400", "0x" + "f" * 40, "nan"]


@dataclasses.dataclass
class Input:
    index: int
    kind: str  # "dat", "perf", "text", "policy", "costs"
    data: bytes
    seed: int  # index of the seed it came from
    ops: list[str]
    truncated_from: int | None = None  # seed index, when the input is that seed cut short


def _u(v: int, width: int) -> bytes:
    return (v & U[width]).to_bytes(width, "little")


class Mutator:
    def __init__(self, seeds: list[Seed], campaign: int = 0):
        self.seeds = seeds
        self.campaign = campaign
        self.by_kind = {k: [i for i, s in enumerate(seeds) if s.kind == k]
                        for k in ("dat", "perf", "text", "policy", "costs")}
        self._layouts: dict[int, Layout] = {}

    def layout(self, i: int, walker=walk) -> Layout:
        if i not in self._layouts:
            self._layouts[i] = walker(self.seeds[i].data)
        return self._layouts[i]

    def make(self, index: int) -> Input:
        rng = random.Random(f"{self.campaign}:{index}")
        r = rng.random()
        kind = "dat" if r < 0.45 else "perf" if r < 0.65 else "text" if r < 0.87 else rng.choice(["policy", "costs"])
        si = rng.choice(self.by_kind[kind])
        seed = self.seeds[si]
        if kind == "dat":
            return self._dat(index, si, seed, rng)
        if kind == "perf":
            return self._perf(index, si, seed, rng)
        if kind == "text":
            data, ops = text_mutations(seed.data, rng, [self.seeds[i].data for i in self.by_kind["text"]])
            return Input(index, kind, data, si, ops)
        data, ops = toml_mutations(seed.data, rng)
        return Input(index, kind, data, si, ops)

    # -- trace.dat -------------------------------------------------------------------------------
    def _dat(self, index: int, si: int, seed: Seed, rng: random.Random) -> Input:
        if rng.random() < 0.12:
            cut = truncation_point(seed.data, self.layout(si), rng)
            return Input(index, "dat", seed.data[:cut], si, [f"truncate@{cut}"], truncated_from=si)
        ops: list[str] = []
        data = seed.data
        if rng.random() < 0.5:
            model = seed.model.copy()
            for _ in range(rng.choice([1, 1, 2, 3])):
                ops.append(model_mutation(model, rng, self))
            data = _write(model)
            if data is None:
                ops.append("write-failed")
                data = seed.data
        lay = walk(data) if ops else self.layout(si)
        for _ in range(rng.choice([0, 1, 1, 2, 3]) if ops else rng.choice([1, 1, 2, 3])):
            data, op = container_mutation(data, lay, rng, self)
            ops.append(op)
            if op.startswith(("insert", "delete", "truncate")):
                lay = walk(data)
        return Input(index, "dat", data, si, ops)

    # -- perf.data -------------------------------------------------------------------------------
    def _perf(self, index: int, si: int, seed: Seed, rng: random.Random) -> Input:
        from . import perflayout, perfmutate

        lay = self.layout(si, perflayout.walk)
        if rng.random() < 0.1:
            cut = truncation_point(seed.data, lay, rng)
            return Input(index, "perf", seed.data[:cut], si, [f"truncate@{cut}"])
        ops: list[str] = []
        data = seed.data
        others = [self.seeds[i] for i in self.by_kind["perf"] if i != si]
        if rng.random() < 0.6:
            model = seed.model.copy()
            for _ in range(rng.choice([1, 1, 2, 3])):
                ops.append(perfmutate.model_mutation(model, rng, self, [o.model for o in others]))
            data = model.write()
            lay = perflayout.walk(data)
        for _ in range(rng.choice([0, 1, 1, 2]) if ops else rng.choice([1, 1, 2, 3])):
            data, op = perfmutate.container_mutation(data, lay, rng, [o.data for o in others])
            ops.append(op)
            if op.startswith(("insert", "delete", "truncate")):
                lay = perflayout.walk(data)
        return Input(index, "perf", data, si, ops)

    def other_dat(self, rng: random.Random) -> Seed:
        return self.seeds[rng.choice(self.by_kind["dat"])]


def _write(model: DatModel) -> bytes | None:
    import os
    import tempfile

    fd, name = tempfile.mkstemp(suffix=".dat")
    os.close(fd)
    try:
        model.write(name)
        with open(name, "rb") as fh:
            return fh.read()
    except Exception:  # the writer refusing a mutated model is not what we test
        return None
    finally:
        for p in (name, name + ".part"):
            if os.path.exists(p):
                os.unlink(p)


# -- model mutations -----------------------------------------------------------------------------------
_NUM_KEY = re.compile(rb"(offset|size|signed):\s*(-?\d+)")
_FIELD_LINE = re.compile(rb"^\s*field:[^\n]*$", re.M)


def _pick_format(model: DatModel, rng: random.Random) -> tuple[str, int] | None:
    where = [(s, i) for s, texts in model.events.items() for i in range(len(texts))]
    where += [("\0ftrace", i) for i in range(len(model.ftrace))]
    return rng.choice(where) if where else None


def _get(model: DatModel, at: tuple[str, int]) -> bytes:
    return model.ftrace[at[1]] if at[0] == "\0ftrace" else model.events[at[0]][at[1]]


def _set(model: DatModel, at: tuple[str, int], text: bytes) -> None:
    if at[0] == "\0ftrace":
        model.ftrace[at[1]] = text
    else:
        model.events[at[0]][at[1]] = text


def _number(rng: random.Random, page: int = 4096) -> bytes:
    return str(rng.choice([0, 1, 2, 3, 7, 15, 16, 60000, 65535, 65536, 2**31, 2**32, 2**40, 2**63, 2**64 + 1,
                           10**30, page, page - 1, page + 4, rng.randrange(1 << 16)])).encode()


def _sub_nth(pattern: re.Pattern, text: bytes, rng: random.Random, repl) -> bytes:
    hits = list(pattern.finditer(text))
    if not hits:
        return text
    m = rng.choice(hits)
    return text[: m.start()] + repl(m) + text[m.end():]


def model_mutation(model: DatModel, rng: random.Random, mut: Mutator) -> str:
    op = rng.choice(["fmt_number", "fmt_number", "fmt_id", "fmt_name", "fmt_decl", "fmt_decl", "fmt_dup_field",
                     "fmt_line", "fmt_drop", "header_page", "header_event", "cmdlines", "cpus", "pages",
                     "clock", "container", "page_size", "common_field"])
    at = _pick_format(model, rng)
    if (op.startswith("fmt") or op == "common_field") and at is None:
        op = "cmdlines"
    if op == "fmt_number":
        _set(model, at, _sub_nth(_NUM_KEY, _get(model, at), rng,
                                 lambda m: m[1] + b":" + (b"-" if rng.random() < 0.1 else b"") + _number(rng)))
    elif op == "fmt_id":
        val = rng.choice([b"0", b"65535", b"65536", b"4294967296", b"-5", b"abc", b"99999999999999999999", b""])
        _set(model, at, re.sub(rb"ID:\s*\S*", b"ID: " + val, _get(model, at), count=1))
    elif op == "fmt_name":
        name = rng.choice(HOSTILE_NAMES).encode("utf-8", "surrogatepass")
        _set(model, at, re.sub(rb"name:[^\n]*", lambda m: b"name: " + name, _get(model, at), count=1))
    elif op == "fmt_decl":
        decl = rng.choice([b"int {n}[16]", b"char {n}[0]", b"__data_loc char[] {n}", b"__data_loc {n}", b"__data_loc",
                           b"__rel_loc u8[] {n}", b"unsigned long {n}[999999999]", b"struct foo {n}", b"int",
                           b"", b"char {n}[]", b"u64 {n}[4294967296]", b"__data_loc u32[] {n}"])

        def repl(m):
            name = re.search(rb"(\w+)\s*(?:\[[^\]]*\])?\s*;", m[0])
            n = name[1] if name else b"x"
            return re.sub(rb"field:[^;]*;", b"field:" + decl.replace(b"{n}", n) + b";", m[0], count=1)
        _set(model, at, _sub_nth(_FIELD_LINE, _get(model, at), rng, repl))
    elif op == "common_field":
        text = _get(model, at)
        choice = rng.choice([(rb"(field:\s*)int common_pid;", rb"\1int common_pid[4];"),
                             (rb"(common_pid;\s*offset:\d+;\s*size:)\d+", rb"\g<1>60000"),
                             (rb"(common_type;\s*offset:)\d+", rb"\g<1>4000"),
                             (rb"(field:\s*)unsigned short common_type;", rb"\1__data_loc char[] common_type;"),
                             (rb"(common_flags;\s*offset:\d+;\s*size:)\d+", rb"\g<1>4294967296")])
        _set(model, at, re.sub(choice[0], choice[1], text, count=1))
    elif op == "fmt_dup_field":
        text = _get(model, at)
        lines = _FIELD_LINE.findall(text)
        if lines:
            line = rng.choice(lines)
            _set(model, at, text.replace(line, line + b"\n" + line, 1))
    elif op == "fmt_line":
        lines = _get(model, at).split(b"\n")
        k = rng.randrange(len(lines))
        if rng.random() < 0.5:
            del lines[k]
        else:
            lines.insert(k, rng.choice([b"\tfield:int x;\toffset:a;\tsize:b;", b"ID:", b"name:", b"format:",
                                        b"\tfield:int y;\toffset:8;\tsize:4;\tsigned:9999999999999999999;",
                                        b"print fmt: " + b"%" * 1000, bytes(rng.randrange(256) for _ in range(20))]))
        _set(model, at, b"\n".join(lines))
    elif op == "fmt_drop":
        if rng.random() < 0.3:
            model.events, model.ftrace = {}, []
        elif at[0] == "\0ftrace":
            del model.ftrace[at[1]]
        else:
            del model.events[at[0]][at[1]]
    elif op == "header_page":
        model.header_page = _sub_nth(_NUM_KEY, model.header_page, rng, lambda m: m[1] + b":" + _number(rng))
        if rng.random() < 0.2:
            model.header_page = re.sub(rb"[^\n]*commit[^\n]*\n", b"", model.header_page)
    elif op == "header_event":
        model.header_event = _sub_nth(re.compile(rb"(\d+)"), model.header_event, rng,
                                      lambda m: rng.choice([b"0", b"6", b"31", b"32", b"40", b"200", b"99999999999"]))
    elif op == "cmdlines":
        extra = rng.choice([b"9223372036854775808 big\n", b"18446744073709551621 huge\n", b"-9223372036854775809 neg\n",
                            b"abc def\n", b"1" * 50 + b" long\n", b"4242 " + b"\xff\xfe" * 10 + b"\n",
                            b"0 swapper\n", b"99999999 x\n", b"4194304 limit\n", b"-1 minus\n", b"12 " + b"c" * 5000 + b"\n"])
        model.cmdlines = extra + model.cmdlines if rng.random() < 0.5 else model.cmdlines + extra
    elif op == "cpus":
        pages = model.pages
        c = rng.choice(["drop", "many", "empty", "swap", "dup"])
        if c == "drop" and pages:
            del pages[rng.randrange(len(pages))]
        elif c == "many":
            model.pages = [pages[i % len(pages)] if pages else np.empty(0, np.uint8) for i in range(rng.choice([16, 64, 300]))]
        elif c == "empty":
            model.pages = [np.empty(0, np.uint8) for _ in range(rng.choice([0, 1, 3]))]
        elif c == "swap" and len(pages) > 1:
            pages.reverse()
        elif pages:
            pages.append(pages[0].copy())
    elif op == "pages":
        _page_mutation(model, rng, mut)
    elif op == "clock":
        model.clock = rng.choice(["x86-tsc", "counter", "", "c" * 300, "[weird]", "mono"])
    elif op == "container":
        model.version, model.compression = rng.choice(CONTAINERS)
    elif op == "page_size":
        model.writer_page_size = rng.choice([64, 128, 1024, 8192, 4100, 65536])
    return op


def _page_mutation(model: DatModel, rng: random.Random, mut: Mutator) -> None:
    if not model.pages:
        return
    c = rng.randrange(len(model.pages))
    data = model.pages[c]
    ps = model.page_size
    n = data.size // ps
    kind = rng.choice(["reverse", "dup", "cut", "zero", "foreign", "commit", "word"])
    if kind == "reverse" and n > 1:  # whole pages reversed; a part page (an earlier cut) stays last
        data = np.concatenate([data[: n * ps].reshape(n, ps)[::-1].reshape(-1), data[n * ps:]])
    elif kind == "dup" and n:
        data = np.concatenate([data, data[:ps]])
    elif kind == "cut" and data.size:
        data = data[: rng.randrange(data.size)].copy()
    elif kind == "zero" and n:
        k = rng.randrange(n)
        data[k * ps: (k + 1) * ps] = 0
    elif kind == "foreign":
        other = mut.other_dat(rng).model
        if other is not None and other.pages:
            src = rng.choice(other.pages)
            data = np.concatenate([data, src[: ps * 2]])
    elif kind == "commit" and n:
        k = rng.randrange(n)
        val = rng.choice([0, ps, ps * 2, (1 << 31) | 100, (1 << 30) | (1 << 31) | 200, (1 << 27) - 1, 4])
        data[k * ps + 8: k * ps + 16] = np.frombuffer(_u(val, 8), np.uint8)
    elif kind == "word" and data.size >= 32:
        at = rng.randrange(16, data.size - 4) & ~3
        data[at: at + 4] = np.frombuffer(_u(rng.choice([0, 29, 30, 31, 28, 0xFFFFFFFF, 31 | (1 << 31)]), 4), np.uint8)
    model.pages[c] = data


# -- container mutations ---------------------------------------------------------------------------------
def _value_for(f: Field, old: int, size: int, page: int, rng: random.Random) -> int:
    common = [0, 1, U[f.width], 1 << (8 * f.width - 1), old + 1, old - 1, old * 2, rng.randrange(U[f.width] + 1)]
    special = {
        "ptr": [size, size - 1, size + 1, old + page, old - page, old + 16, old - 16, 2**63, 10],
        "size": [size, old + 1, old - 1, 7, 2**32 - 1, 2**63, old * 1000, old // 2],
        "count": [2, 255, 65536, 2**31, 2**32 - 1],
        "cpu": [2**31, 2**32 - 1, 5000, 1],
        "page_size": [0, 1, 63, 64, 4095, 4097, 8192, 2**24, 2**31],
        "commit": [page, page * 2, (1 << 31) | (old & 0xFFFF), (1 << 30) | (1 << 31) | (old & 0xFFFF), old + 4],
        "record": [old & ~31, (old & ~31) | 29, (old & ~31) | 30, (old & ~31) | 31, (old & ~31) | 28, old | 0xFFFFFFE0],
        "length": [0, 1, 3, 4, 5, page, 2**31],
        "timestamp": [old - 1000, 2**63 - 1, 0, old + 2**40],
        "long_size": [0, 4, 8, 16],
        "endian": [0, 1],
        "csize": [old + 1, old - 1, size, 2**32 - 1, 0],
        "usize": [old + 1, old - 1, old * 1000, 2**32 - 1, 0, 40960 * 100],
        "section_csize": [old + 1, old - 1, size, 2**32 - 1, 0],
        "section_usize": [old + 1, old - 1, old * 1000, 2**32 - 1, 0],
        "id": list(range(26)) + [9999],
        "flags": [0, 1, 2, 3],
        "extend": [0, 2**32 - 1, 1],
    }.get(f.label, [])
    return rng.choice(special + common)


def truncation_point(data: bytes, lay: Layout, rng: random.Random) -> int:
    data_regions = [r for r in lay.regions if r.label in ("page", "chunk")]
    r = rng.random()
    if data_regions and r < 0.6:
        reg = rng.choice(data_regions)
        return reg.offset + rng.randrange(reg.length + 1)
    if lay.regions and r < 0.8:
        reg = rng.choice(lay.regions)
        return min(len(data), reg.offset + rng.choice([0, 1, 15, 16, 17, reg.length]))
    return rng.randrange(len(data) + 1)


def _option(lay: Layout, rng: random.Random, size: int) -> bytes:
    oid = rng.choice([14, 14, 7, 8, 3, 16, 17, 18, 21, 4, 1, 12, 13, 9999, 2, 5])
    if oid == 14:  # TSC2NSEC: mult, shift, offset
        body = struct.pack("<IIq", rng.choice([0, 1, 2**32 - 1, 1000]), rng.choice([0, 31, 32, 63, 64, 200, 2**32 - 1]),
                           rng.choice([0, -1, 2**63 - 1, -(2**63)]))[: rng.choice([16, 16, 8, 3])]
    elif oid == 7:  # OFFSET
        body = rng.choice([b"99999999999999999999999\0", b"-5\0", _u(2**63, 8), b"0x" + b"f" * 30 + b"\0", b"\0"])
    elif oid == 8:
        body = rng.choice([_u(2**32 - 1, 4), _u(0, 4), b"\1\0", _u(70000, 4)])
    elif oid == 3:
        if lay.version == 6:
            body = _u(rng.choice([0, size, size // 2, 2**63]), 8) + b"inst\0"
        else:
            cpus = rng.choice([0, 1, 2, 70000])
            body = (_u(rng.choice([0, size // 2]), 8) + b"inst\0local\0" + struct.pack("<II", rng.choice([0, 4096, 2**31]),
                    cpus) + b"".join(struct.pack("<IQQ", rng.choice([0, 2**31]), size // 2, 4096) for _ in range(min(cpus, 3))))
    elif oid in (16, 17, 18, 21):
        body = rng.choice([b"", b"\1\2\3", _u(0, 8), _u(size + 100, 8), _u(2**63, 8)])
    else:
        body = bytes(rng.randrange(256) for _ in range(rng.choice([0, 3, 8, 40])))
    declared = len(body) if rng.random() < 0.85 else rng.choice([len(body) + 100, 2**32 - 1, 1 << 20])
    return struct.pack("<HI", oid, declared) + body


def insert(data: bytes, lay: Layout, at: int, blob: bytes, size_field: int | None) -> bytes:
    """`blob` inserted at `at`, every file offset beyond it moved along, and the enclosing
    section's size (the u64 at `size_field`, if any) grown by its length."""
    buf = bytearray(data)
    for f in lay.fields:
        if f.label == "ptr" and f.offset + f.width <= len(buf):
            v = int.from_bytes(buf[f.offset: f.offset + f.width], "little")
            if v >= at:
                buf[f.offset: f.offset + f.width] = _u(v + len(blob), f.width)
    if size_field is not None:
        old = int.from_bytes(buf[size_field: size_field + 8], "little")
        buf[size_field: size_field + 8] = _u(old + len(blob), 8)
    buf[at:at] = blob
    return bytes(buf)


def container_mutation(data: bytes, lay: Layout, rng: random.Random, mut: Mutator) -> tuple[bytes, str]:
    op = rng.choice(["field"] * 6 + ["truncate", "flip", "splice", "insert_option", "insert_option", "delete"])
    buf = bytearray(data)
    if op == "field" and lay.fields:
        f = rng.choice(lay.fields)
        old = int.from_bytes(buf[f.offset: f.offset + f.width], "little")
        new = _value_for(f, old, len(buf), lay.page_size, rng)
        buf[f.offset: f.offset + f.width] = _u(new, f.width)
        return bytes(buf), f"field:{f.label}@{f.offset}={new & U[f.width]:#x}"
    if op == "truncate":
        cut = truncation_point(data, lay, rng)
        return data[:cut], f"truncate@{cut}"
    if op == "splice":
        other = mut.other_dat(rng)
        olay = walk(other.data)
        mine = [r for r in lay.regions if r.label != "section"]
        if mine and olay.regions:
            dst = rng.choice(mine)
            same = [r for r in olay.regions if r.label == dst.label] or olay.regions
            src = rng.choice(same)
            piece = other.data[src.offset: src.offset + min(src.length, dst.length)]
            buf[dst.offset: dst.offset + len(piece)] = piece
            return bytes(buf), f"splice:{dst.label}@{dst.offset}<-{other.name}"
    if op == "insert_option" and lay.option_lists:
        at, size_field = rng.choice(lay.option_lists)
        opt = _option(lay, rng, len(buf))
        return insert(data, lay, at, opt, size_field), f"insert_option:{int.from_bytes(opt[:2], 'little')}@{at}"
    if op == "delete" and len(buf) > 64:
        at = rng.choice([f.offset for f in lay.fields] or [rng.randrange(len(buf))])
        n = rng.choice([1, 2, 4, 8, 16, 100])
        del buf[at: at + n]
        return bytes(buf), f"delete:{n}@{at}"
    for _ in range(rng.choice([1, 2, 4, 8])):
        if buf:
            i = rng.randrange(len(buf))
            buf[i] = buf[i] ^ (1 << rng.randrange(8)) if rng.random() < 0.7 else rng.randrange(256)
    return bytes(buf), "flip"


# -- text ------------------------------------------------------------------------------------------------
_TOKEN = re.compile(rb"-?\d+(?:\.\d+)?|[A-Za-z_][\w:/<>.-]*|\[\d+\]")
MARKERS = [b"CPU:3 [LOST 18446744073709551616 EVENTS]", b"CPU:99999999999 [LOST 5 EVENTS]",
           b"[LOST 99999999999999999999999 EVENTS]", b"##### CPU 99999999999 buffer started ####",
           b"CPU:1 [EVENTS DROPPED]", b"CPU:0 [9223372036854775808 EVENTS DROPPED]", b"cpus=99999999999999",
           b"cpus=0", b"# entries-in-buffer/entries-written: 5/99999999999999999999999   #P:99999999999",
           b"# tracer: nop", b"version = 99999999999999999999", b"PERF_RECORD_LOST lost 99999999999999999999999 [3]",
           b"CPU 99999999999999 is empty"]


def text_mutations(data: bytes, rng: random.Random, others: list[bytes]) -> tuple[bytes, list[str]]:
    lines = data.split(b"\n")
    ops = []
    for _ in range(rng.choice([1, 1, 2, 3, 5])):
        op = rng.choice(["token", "token", "token", "marker", "delete", "dup", "shuffle", "splice", "bytes", "cut",
                         "long", "field_names"])
        ops.append(op)
        k = rng.randrange(len(lines)) if lines else 0
        if op == "token" and lines:
            hits = list(_TOKEN.finditer(lines[k]))
            if hits:
                m = rng.choice(hits)
                new = rng.choice(HUGE + HOSTILE_NAMES + ["", " ", "-", ":", "[", "]"]).encode("utf-8", "surrogatepass")
                lines[k] = lines[k][: m.start()] + new + lines[k][m.end():]
        elif op == "marker":
            lines.insert(k, rng.choice(MARKERS))
        elif op == "delete" and lines:
            del lines[k: k + rng.choice([1, 1, 5, 50])]
        elif op == "dup" and lines:
            lines[k:k] = [lines[k]] * rng.choice([1, 2, 100])
        elif op == "shuffle":
            rng.shuffle(lines)
        elif op == "splice":
            other = rng.choice(others).split(b"\n")
            j = rng.randrange(len(other))
            lines[k:k] = other[j: j + rng.choice([1, 5, 20])]
        elif op == "bytes" and lines:
            b = bytearray(lines[k])
            for _ in range(rng.choice([1, 3])):
                b.insert(rng.randrange(len(b) + 1), rng.choice([0, 0xFF, 0xC3, 0x0D, 0x09, 0x80]))
            lines[k] = bytes(b)
        elif op == "cut":
            joined = b"\n".join(lines)
            lines = joined[: rng.randrange(len(joined) + 1)].split(b"\n")
        elif op == "long" and lines:
            lines[k] = lines[k] + b" x=" + b"9" * rng.choice([30, 1000, 100000])
        elif op == "field_names" and lines:
            lines[k] = lines[k] + rng.choice([b" row=1 ts=2 cpu=3 pid=4", b" a=1 a=2 a=3", b" exit_reason=",
                                              b" reason=" + b"Z" * 50, b" =5", b" isa=99999999999999999999"])
    return b"\n".join(lines), ops


# -- TOML ------------------------------------------------------------------------------------------------
_TOML_VALUE = re.compile(rb"^(\s*[\w.\"-]+\s*=\s*)(.*)$", re.M)


def toml_mutations(data: bytes, rng: random.Random) -> tuple[bytes, list[str]]:
    ops = []
    for _ in range(rng.choice([1, 1, 2, 3])):
        op = rng.choice(["value", "value", "value", "deep", "key", "table", "delete", "bytes", "cut"])
        ops.append(op)
        if op == "value":
            new = rng.choice([b"1" * 400, b"-1", b"1e309", b"nan", b"inf", b"-inf", b'"string"', b"[]", b"{}", b"true",
                              b"0", b'"' + b"x" * 10000 + b'"', b"[1, 2, 3]", b"{ a = 1 }", b"1.5", b"9999999999999999999",
                              b'"../../etc/passwd"', b'"</script>"'])
            data = _sub_nth(_TOML_VALUE, data, rng, lambda m, new=new: m[1] + new)
        elif op == "deep":
            n = rng.choice([100, 1000, 5000, 20000])
            deep = rng.choice([b"x = " + b"[" * n + b"]" * n, b"x = " + b"{a = " * n + b"1" + b"}" * n,
                               b"[" + b".".join([b"a"] * n) + b"]"])
            data = deep + b"\n" + data if rng.random() < 0.5 else data + b"\n" + deep
        elif op == "key":
            data = _sub_nth(_TOML_VALUE, data, rng, lambda m: rng.choice([b"unknown_key = ", b"name = ", b"isa = ",
                                                                           b"cpu_mhz = "]) + m[2])
        elif op == "table":
            data += rng.choice([b"\n[ops.exit]\nvmload = 1\n", b"\n[ops]\n", b"\n[lazy]\nmsrs = 7\n", b"\n[[ops]]\n",
                                b"\n[ops.vmload]\nlow = -1\ntypical = 1e308\nhigh = 1e309\nsource = 5\n"])
        elif op == "delete":
            lines = data.split(b"\n")
            if lines:
                del lines[rng.randrange(len(lines))]
            data = b"\n".join(lines)
        elif op == "bytes" and data:
            b = bytearray(data)
            b[rng.randrange(len(b))] = rng.choice([0, 0xFF, 0x22, 0x5B, 0x3D])
            data = bytes(b)
        elif op == "cut":
            data = data[: rng.randrange(len(data) + 1)]
    return data, ops
