"""Hostile trace.dat files: one test per crash class the fuzz campaign found, each on a minimal
file built here that is valid but for the one value the class is about. Every one must end in the
project's one-line error (TraceError) or read with a warning; none may raise anything else or
allocate beyond what the file justifies."""
from __future__ import annotations

import struct
import tracemalloc

import numpy as np
import pytest
from hostile import COMMON, FPU_ID, LOAD, add_option, edit_field, fields, fmt, model, tiny_dat

import exitreplay
from exitreplay.convert import convert_file
from exitreplay.errors import TraceError

OPT_TSC2NSEC, OPT_OFFSET, OPT_HEADER_INFO = 14, 7, 16


def read_all(path):
    with exitreplay.read_trace(path) as tr:
        return tr, {n: tr.raw_table(n) for n in tr.event_names}


def refused(path, *words):
    with pytest.raises(TraceError) as exc:
        read_all(path)
    msg = str(exc.value)
    assert str(path) in msg and all(w in msg for w in words), msg
    return msg


def test_the_minimal_file_is_valid(tmp_path):
    for version, comp in ((6, "none"), (7, "none"), (7, "zstd"), (7, "zlib")):
        tr, tables = read_all(tiny_dat(tmp_path / f"ok-{version}{comp}.dat", version=version, compression=comp,
                                       events_per_cpu=(3, 2)))
        assert len(tr) == 5 and tables["kvm_fpu"].column("load").to_pylist() == [1] * 5
        assert set(tr.events.column("comm").to_pylist()) == {"qemu-system-x86"}


# -- header values used unchecked -------------------------------------------------------------------------
def test_cmdline_pid_beyond_int64_is_skipped(tmp_path):
    p = tiny_dat(tmp_path / "pid.dat", cmdlines=b"9223372036854775808 huge\n18446744073709551621 x\n42 qemu\n")
    tr, _ = read_all(p)  # was OverflowError in the pid -> comm table
    assert set(tr.events.column("comm").to_pylist()) == {"qemu"}
    assert any("2 saved command lines without a valid pid" in w for w in tr.meta.warnings)


def test_cpu_id_beyond_any_cpu(tmp_path):
    p = edit_field(tiny_dat(tmp_path / "cpu.dat"), "cpu", 2**31)
    refused(p, "CPU id 2147483648")  # was an int32 overflow when the CPU column was filled


def test_cpu_listed_twice(tmp_path):
    p = tiny_dat(tmp_path / "cpu2.dat", events_per_cpu=(2, 2))
    edit_field(p, "cpu", 0, which=1)
    refused(p, "a CPU listed twice")


@pytest.mark.parametrize("mult,shift", [(0, 5), (1000, 64), (1000, 2**32 - 1)])
def test_tsc2nsec_that_cannot_convert(tmp_path, mult, shift):
    p = add_option(tiny_dat(tmp_path / "tsc.dat", version=6), OPT_TSC2NSEC, struct.pack("<IIq", mult, shift, -1))
    tr, _ = read_all(p)  # was a NumPy shift by 64+ bits
    assert any("TSC2NSEC option ignored" in w for w in tr.meta.warnings)
    assert len(tr) == 5


def test_time_offset_beyond_any_clock(tmp_path):
    p = add_option(tiny_dat(tmp_path / "off.dat", version=6), OPT_OFFSET, b"99999999999999999999999\0")
    tr, _ = read_all(p)  # was OverflowError converting the offset to int64
    assert any("OFFSET option ignored" in w for w in tr.meta.warnings)


def test_section_option_shorter_than_an_offset(tmp_path):
    p = add_option(tiny_dat(tmp_path / "short.dat"), OPT_HEADER_INFO, b"\1\2\3")
    refused(p, "header_info option", "3 bytes")  # was TypeError (None + int)


def test_section_option_beyond_the_file(tmp_path):
    p = add_option(tiny_dat(tmp_path / "far.dat"), OPT_HEADER_INFO, struct.pack("<Q", 2**40))
    refused(p, "beyond the end of the file")


@pytest.mark.parametrize("comp", ["zstd", "zlib"])
@pytest.mark.parametrize("label", ["usize", "section_usize"])  # a CPU data chunk, a header section
def test_chunk_claiming_gigabytes(tmp_path, comp, label):
    p = edit_field(tiny_dat(tmp_path / f"bomb-{comp}.dat", compression=comp), label, 2**32 - 1)
    tracemalloc.start()
    try:
        refused(p, "more than 1100:1")  # was MemoryError allocating 4 GiB
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 << 20


def test_empty_compressed_chunks(tmp_path):
    """Chunks of 0 bytes would make a file of N bytes a table of N/8 chunks: refused."""
    refused(edit_field(tiny_dat(tmp_path / "c0.dat", compression="zstd"), "csize", 0), "a chunk of 0 bytes")


def test_compressed_chunk_beyond_the_file(tmp_path):
    p = edit_field(tiny_dat(tmp_path / "csize.dat", compression="zstd"), "csize", 2**32 - 1)
    tr, tables = read_all(p)  # read as a chunk cut by the end of the file: what it still gives
    assert any("truncated" in w for w in tr.meta.warnings)
    assert len(tr) <= 5 and set(tables["kvm_fpu"].column("load").to_pylist()) <= {1}


@pytest.mark.parametrize("size", [0, 2, 4097, 2**21, 2**31])
def test_buffer_page_size(tmp_path, size):
    p = edit_field(tiny_dat(tmp_path / f"ps{size}.dat"), "page_size", size, which=1)  # the BUFFER option's
    refused(p, f"page size {size}")  # were ZeroDivisionError, ValueError, MemoryError in the page walk


@pytest.mark.parametrize("text,word", [
    (b"\ttype_len    :    5 bits\n\ttime_delta  :   27 bits\n\tpadding     : type == 40\n", "padding 40"),
    (b"\ttype_len    :    5 bits\n\ttime_delta  :   27 bits\n\ttime_stamp : type == 99999999999\n",
     "time_stamp 99999999999"),
    (b"\tdata max type_len  == 31\n", "data max type_len 31"),
])
def test_header_event_values_beyond_five_bits(tmp_path, text, word):
    refused(tiny_dat(tmp_path / "he.dat", header_event=text), word)  # was IndexError / MemoryError


def test_header_event_is_checked_even_without_data(tmp_path):
    """read_trace and convert give the same answer for a file with no pages to decode."""
    bad = b"\ttype_len    :    5 bits\n\ttime_delta  :   27 bits\n\ttime_extend : type == 99\n"
    p = tiny_dat(tmp_path / "he0.dat", header_event=bad, events_per_cpu=(0,))
    msg = refused(p, "time_extend 99")
    with pytest.raises(TraceError) as exc:
        convert_file(p, tmp_path / "out")  # wrote an empty conversion before
    assert str(exc.value) == msg


@pytest.mark.parametrize("change,word", [
    ((b"commit;\toffset:8;\tsize:8", b"commit;\toffset:8;\tsize:65536"), "65536-byte commit"),  # was a bad dtype
    ((b"data;\toffset:16", b"data;\toffset:5000"), "page data at offset 5000"),  # beyond the page
    ((b"timestamp;\toffset:0", b"timestamp;\toffset:12"), "overlap"),
])
def test_header_page_fields_beyond_the_page(tmp_path, change, word):
    from hostile import HEADER_PAGE

    refused(tiny_dat(tmp_path / "hp.dat", header_page=HEADER_PAGE.replace(*change)), "header_page", word)


# -- event formats used unchecked -------------------------------------------------------------------------
BAD_FORMATS = {
    "huge field size": fmt(fields=b"\tfield:char blob[16];\toffset:8;\tsize:4294967296;\tsigned:0;\n"),
    "field past the page": fmt(fields=b"\tfield:char blob[16];\toffset:8;\tsize:5000;\tsigned:0;\n"),
    "duplicate field names": fmt(fields=LOAD + LOAD),
    "bare __data_loc": fmt(fields=b"\tfield:__data_loc;\toffset:8;\tsize:4;\tsigned:0;\n"),
    "__data_loc of 8 bytes": fmt(fields=b"\tfield:__data_loc char[] s;\toffset:8;\tsize:8;\tsigned:0;\n"),
    "common field as an array": fmt(common=COMMON.replace(b"int common_pid;", b"int common_pid[4];")),
    "common field of 60000 bytes": fmt(common=COMMON.replace(b"common_pid;\toffset:4;\tsize:4", b"common_pid;\toffset:4;\tsize:60000")),
    "id beyond 16 bits": fmt(ident=65536),
    "id not a number": fmt(ident="\u0661\u0662"),
}


@pytest.mark.parametrize("what", list(BAD_FORMATS))
def test_unusable_format_is_skipped_not_used(tmp_path, what):
    p = tiny_dat(tmp_path / "fmt.dat", formats=(BAD_FORMATS[what], fmt("kvm_other", 38)))
    tr, tables = read_all(p)  # were MemoryError (504 GiB gather), KeyError, IndexError, a convert IndexError
    assert any("unreadable event format" in w for w in tr.meta.warnings), tr.meta.warnings
    assert tr.event_names == [f"unknown_{FPU_ID}"] and len(tr) == 5
    _paths, rows = convert_file(p, tmp_path / "out")
    assert rows == 5


def test_wide_field_on_short_records_stays_small(tmp_path):
    """A 4000-byte field declared on 12-byte records (legal for one page, held by no record):
    decoding it must not cost events x 4000 bytes."""
    wide = b"\tfield:char blob[4000];\toffset:8;\tsize:4000;\tsigned:0;\n"
    p = tiny_dat(tmp_path / "wide.dat", formats=(fmt(fields=wide),), events_per_cpu=(20000,))
    tracemalloc.start()
    try:
        _tr, tables = read_all(p)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert tables["kvm_fpu"].column("blob").null_count == 20000
    assert peak < 64 << 20, peak  # the naive gather is 20000 x 4000 = 80 MB for a 300 KB file


def test_field_without_a_type_or_signedness(tmp_path):
    """A field line of a bare name without "signed:" (formats before 2.6.30 lack it): was an
    IndexError guessing the sign from the empty type."""
    f = b"\tfield:load;\toffset:8;\tsize:4;\n"
    _tr, tables = read_all(tiny_dat(tmp_path / "bare.dat", formats=(fmt(fields=f),)))
    assert tables["kvm_fpu"].column("load").to_pylist() == [1] * 5


def test_format_whose_only_field_takes_no_bytes(tmp_path):
    """`char buf[]` of size 0 (a flexible array, as in ftrace's print event) as the only field:
    a gather of width 0 (was TypeError: 'NoneType' object is not subscriptable)."""
    f = b"\tfield:char buf[];\toffset:8;\tsize:0;\tsigned:0;\n"
    _tr, tables = read_all(tiny_dat(tmp_path / "zero.dat", formats=(fmt(fields=f),)))
    assert tables["kvm_fpu"].column("buf").to_pylist() == [""] * 5


def test_field_named_like_a_key_column_keeps_the_keys(tmp_path):
    f = b"\tfield:u32 row;\toffset:8;\tsize:4;\tsigned:0;\n"
    _tr, tables = read_all(tiny_dat(tmp_path / "row.dat", formats=(fmt(fields=f),), body=b"\xff\xff\xff\x7f"))
    t = tables["kvm_fpu"]
    assert t.column("row").to_pylist() == [0, 1, 2, 3, 4] and set(t.column("row_field").to_pylist()) == {2**31 - 1}


def test_events_without_formats_one_answer(tmp_path):
    p = tiny_dat(tmp_path / "nofmt.dat", formats=(b"",))
    msg = refused(p, "has events but no event formats")
    with pytest.raises(TraceError) as exc:
        convert_file(p, tmp_path / "out")  # wrote the events anyway before
    assert str(exc.value) == msg


def test_page_size_lie_between_header_and_pages(tmp_path):
    m = model(events_per_cpu=(50,))
    m.writer_page_size = 8192  # the header says 8 KiB, the pages are 4 KiB
    m.write(tmp_path / "lie.dat")
    tr, _ = read_all(tmp_path / "lie.dat")
    assert len(tr) <= 50


def test_records_of_random_words_never_crash(tmp_path):
    rng = np.random.default_rng(7)
    m = model(events_per_cpu=(30, 30))
    for pages in m.pages:
        pages[16:] = rng.integers(0, 256, pages.size - 16, dtype=np.uint8)
    m.write(tmp_path / "noise.dat")
    read_all(tmp_path / "noise.dat")


def test_walker_finds_the_fields_these_tests_edit(tmp_path):
    data = tiny_dat(tmp_path / "w.dat", compression="zstd").read_bytes()
    for label in ("cpu", "page_size", "usize", "csize", "section_usize", "ptr"):
        assert fields(data, label), label
