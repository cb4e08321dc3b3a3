"""Event formats parsed on demand (formats/formatindex.py): the same formats, names and warnings
as parsing every text up front, with only the types present in the data parsed."""
from __future__ import annotations

import warnings
from pathlib import Path

import pytest

import exitreplay
from exitreplay.formats import formatindex
from exitreplay.formats.eventformat import parse_format
from exitreplay.formats.formatindex import FormatIndex, _heads, format_head
from exitreplay.formats.tracedat import table_names
from exitreplay.formats.tracedat_file import TraceDatFile

ROOT = Path(__file__).resolve().parent.parent
DATS = sorted([*(ROOT / "sample_traces").glob("*.dat"), *(ROOT / "tests" / "data" / "real").glob("*.dat")])


def eager(texts, page):
    """What TraceDatFile.formats was: every text parsed, the last readable one of an id kept."""
    out, warn = {}, []
    for system, text in texts:
        try:
            fmt = parse_format(text, system)
            if max((f.offset + f.size for f in fmt.fields), default=0) > page:
                raise ValueError("beyond the page")
        except ValueError:
            warn.append(system)
            continue
        out[fmt.id] = fmt
    return out, warn


def texts_of(path):
    with TraceDatFile(path) as f:
        return [("ftrace", t) for t in f.ftrace_formats] + [
            (s, t) for s, ts in f.event_format_texts.items() for t in ts]


@pytest.mark.parametrize("path", DATS, ids=lambda p: p.name)
def test_heads_and_formats_equal_parsing_everything(path):
    texts = texts_of(path)
    ref, _ = eager(texts, 1 << 16)
    heads = _heads([t for _, t in texts])
    assert heads == [format_head(t) for _, t in texts]
    assert {h[1] for h in heads if h} == set(ref)
    idx = FormatIndex(texts, 1 << 16, [])
    assert list(idx) == list(ref) and dict(idx.items()) == ref
    names = table_names(ref)
    assert {t: idx.table_name(t) for t in ref} == names


def test_only_present_types_are_parsed(monkeypatch):
    path = ROOT / "tests" / "data" / "real" / "pvm-pio-small.v7.dat"
    calls = []
    real = formatindex.parse_format
    monkeypatch.setattr(formatindex, "parse_format", lambda t, s: calls.append(s) or real(t, s))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tr = exitreplay.read_trace(path)
    assert len(texts_of(path)) > 2000
    # the common fields come from the file's first format; the rest are the types in the data
    assert len(calls) <= len(tr.event_names) + 1
    assert len(tr) == 5222


HEAD = b"name: %s\nID: %s\nformat:\n\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n"
ODD_TEXTS = [
    HEAD % (b"a", b"7"),
    HEAD % (b"b", b"8") + b'print fmt: "name: %s"\n',  # a second "name:" anywhere: parsed for sure
    b"ID: 9\n" + (HEAD % (b"c", b"10")).replace(b"ID: 10\n", b""),  # ID before the name
    HEAD % (b"  d  ", b"11"),
    HEAD % (b"e", b"12") + b"name: e2\n",  # two name lines: the last one counts
    HEAD % (b"f", b"99999"),  # id beyond 16 bits: unreadable
    (HEAD % (b"g", b"13")).replace(b"\n", b"\r\n"),
    HEAD % (b"h\xc3\xa9", b"14"),
    HEAD % (b"a", b"15"),  # a name taken by a lower id
    (HEAD % (b"i", b"16")).replace(b"name: i", b"\tname:i"),
    HEAD % (b"m", b"18"),
    HEAD % (b"m", b"19"),  # a name a lower id took
    HEAD % (b"j", b"7"),  # id 7 again: the later text replaces the earlier
    HEAD % (b"k", b"16") + b"\tfield:char x[8];\toffset:8;\tsize:70000;\tsigned:0;\n",  # unreadable: 16 stays
]


def test_unusual_texts_read_as_parse_format_reads_them():
    texts = [("sys", t) for t in ODD_TEXTS]
    ref, ref_warn = eager(texts, 1 << 16)
    warn: list[str] = []
    idx = FormatIndex(texts, 1 << 16, warn)
    assert dict(idx.items()) == ref and list(idx) == list(ref)
    assert len(warn) == len(ref_warn) == 2
    assert idx[7].name == "j" and idx[16].name == "i"
    assert {t: idx.table_name(t) for t in ref} == table_names(ref)
    assert idx.table_name(15) == "a"  # the other "a" (id 7) was replaced by "j"
    assert idx.table_name(19) == "sys:m"
