"""Minimal trace.dat files for the hostile-input tests, built here from a few bytes of intent.

`tiny_dat` writes one event format, a handful of records and a command line with the project's
trace.dat writer (v6, v7, v7+zstd or v7+zlib); `edit_field` and `add_option` then change one
value the fuzzer's layout walker locates (a CPU id, a page size, a chunk size) or insert one
option with every later file offset moved along, so each test's input differs from a valid file
in exactly the way its crash class needs.
"""
from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
from fuzz.corpus import DatModel
from fuzz.layout import Layout, walk
from fuzz.mutate import insert

from exitreplay.synth.pages import encode_pages
from exitreplay.synth.templates import HEADER_EVENT_TEXT

HEADER_PAGE = (b"\tfield: u64 timestamp;\toffset:0;\tsize:8;\tsigned:0;\n"
               b"\tfield: local_t commit;\toffset:8;\tsize:8;\tsigned:1;\n"
               b"\tfield: int overwrite;\toffset:8;\tsize:1;\tsigned:1;\n"
               b"\tfield: char data;\toffset:16;\tsize:4080;\tsigned:0;\n")
COMMON = (b"\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n"
          b"\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;\n"
          b"\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;\n"
          b"\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n")
FPU_ID = 37
LOAD = b"\tfield:u32 load;\toffset:8;\tsize:4;\tsigned:0;\n"


def fmt(name: str = "kvm_fpu", ident: int | str = FPU_ID, fields: bytes = LOAD, common: bytes = COMMON) -> bytes:
    """An event format text as the kernel prints it."""
    return (f"name: {name}\nID: {ident}\nformat:\n".encode() + common + b"\n" + fields
            + b'\nprint fmt: "load=%u", REC->load\n')


def record(type_id: int, pid: int, body: bytes = b"\1\0\0\0") -> bytes:
    return struct.pack("<HBBi", type_id, 0, 0, pid) + body + b"\0" * (-len(body) % 4)


def model(*, formats: tuple[bytes, ...] = (), events_per_cpu: tuple[int, ...] = (5,), type_id: int = FPU_ID,
          pid: int = 42, body: bytes = b"\1\0\0\0", cmdlines: bytes = b"42 qemu-system-x86\n",
          header_page: bytes = HEADER_PAGE, header_event: bytes = HEADER_EVENT_TEXT, version: int = 7,
          compression: str = "none", clock: str = "local") -> DatModel:
    """`events_per_cpu[c]` records of `type_id` on CPU c, 1 µs apart, each `body` after the common fields."""
    pages = []
    for cpu, n in enumerate(events_per_cpu):
        rec = record(type_id, pid, body)
        ts = 1_000_000_000 + cpu * 100 + 1000 * np.arange(n, dtype=np.int64)
        pages.append(encode_pages(ts, np.frombuffer(rec * n, np.uint8), np.full(n, len(rec)), 4096))
    events = {"kvm": list(formats or (fmt(),))}
    return DatModel(header_page, header_event, [], events, cmdlines, pages, version=version,
                    compression=compression, clock=clock)


def tiny_dat(path: Path, **kw) -> Path:
    model(**kw).write(path)
    return path


def fields(data: bytes, label: str) -> list:
    return [f for f in walk(data).fields if f.label == label]


def edit_field(path: Path, label: str, value: int, which: int = 0) -> Path:
    """Set the `which`-th field the layout walker labels `label` to `value`, in place."""
    data = bytearray(path.read_bytes())
    f = fields(bytes(data), label)[which]
    data[f.offset: f.offset + f.width] = (value & ((1 << (8 * f.width)) - 1)).to_bytes(f.width, "little")
    path.write_bytes(bytes(data))
    return path


def add_option(path: Path, oid: int, payload: bytes, which: int = 0) -> Path:
    """Insert option `oid` at the start of the `which`-th options list, offsets moved along."""
    data = path.read_bytes()
    lay: Layout = walk(data)
    at, size_field = lay.option_lists[which]
    path.write_bytes(insert(data, lay, at, struct.pack("<HI", oid, len(payload)) + payload, size_field))
    return path
