"""`convert`: Parquet and Arrow IPC files read back equal to `read_trace`, row for row, for real
recordings and generated multi-CPU traces; the streamed trace.dat path gives the same result
however small its chunks; losses, clock steps back and truncation survive conversion."""
from __future__ import annotations

import json
import re
import struct
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import DAT_VARIANTS, REAL, RECORDINGS
from pyarrow import ipc
from test_tracedat_oracle import oracle_events

import exitreplay
from exitreplay.convert import TraceDatStream, convert, convert_file
from exitreplay.errors import TraceWarning
from exitreplay.formats.tracedat_file import TraceDatFile
from exitreplay.synth.generator import generate
from exitreplay.synth.writer import write_trace

EXT = {"parquet": ".parquet", "arrow": ".arrow"}
PAGE = 4096


def read_back(path, fmt):
    return pq.read_table(path) if fmt == "parquet" else ipc.open_file(str(path)).read_all()


def file_name(name: str) -> str:
    return re.sub(r"[^\w.-]", "_", name)


def columns(table) -> dict[str, list]:
    return {c: table.column(c).to_pylist() for c in table.column_names}


def assert_converted_equals(out, fmt, trace):
    """Every file in `out` equals the Trace: same files, schemas, values and row numbers."""
    ext = EXT[fmt]
    names = sorted(p.name for p in out.iterdir() if p.suffix == ext)
    assert names == sorted([f"events{ext}"] + [file_name(n) + ext for n in trace.event_names])
    ev = read_back(out / f"events{ext}", fmt)
    # `row` in front (what every table's row refers to); ts says its unit.
    assert ev.column("row").to_pylist() == list(range(len(trace)))
    assert ev.schema.field("ts").metadata[b"unit"] == b"ns"
    ev = ev.drop(["row"])
    assert ev.schema.remove_metadata().equals(trace.events.schema) or \
        pa.schema([f.remove_metadata() for f in ev.schema]).equals(trace.events.schema)
    assert columns(ev) == columns(trace.events)
    for name in trace.event_names:
        got, want = read_back(out / (file_name(name) + ext), fmt), trace.table(name)
        assert got.schema.equals(want.schema), name
        assert columns(got) == columns(want), name
    meta = json.loads((out / "meta.json").read_text())
    assert meta["exitreplay_version"] == exitreplay.__version__ and meta["schema_version"] == 2
    assert meta["units"]["ts"] == "ns"
    for k in ("exitreplay_version", "schema_version", "units", "isa"):
        meta.pop(k)
    assert meta == json.loads(json.dumps(trace.meta.to_dict(), default=str))


@pytest.mark.parametrize("fmt", ["parquet", "arrow"])
@pytest.mark.parametrize("variant", DAT_VARIANTS)
@pytest.mark.parametrize("name", RECORDINGS)
def test_real_recordings_convert_row_for_row(tmp_path, name, variant, fmt):
    path = REAL / f"{name}.{variant}.dat"
    trace = exitreplay.read_trace(path)
    paths, n = convert_file(path, tmp_path, fmt)
    assert n == len(trace) > 5000
    assert set(paths) == set(tmp_path.iterdir())
    assert_converted_equals(tmp_path, fmt, trace)


@pytest.mark.parametrize("variant", DAT_VARIANTS)
def test_converted_events_match_trace_cmd(trace_cmd, tmp_path, variant):
    """The written events file against the independent reader: ts to the ns, CPU, pid, event."""
    path = REAL / f"pvm-longmode-msr.{variant}.dat"
    convert_file(path, tmp_path, "parquet", chunk_bytes=2 * PAGE)
    ev = pq.read_table(tmp_path / "events.parquet").to_pydict()
    got = list(zip(ev["ts"], ev["cpu"], ev["pid"], ev["event"]))
    assert got == [(ts, cpu, pid, e) for ts, cpu, pid, e, _, _ in oracle_events(path)]


@pytest.mark.parametrize("chunk", [PAGE, 3 * PAGE, 64 * PAGE])
def test_tiny_chunks_give_the_same_files(tmp_path, chunk):
    """One page per CPU per chunk: hundreds of windows, the same rows as one big chunk."""
    path = REAL / "pvm-pio-small.v7zstd.dat"
    stream = TraceDatStream(str(path), chunk)
    windows = sum(1 for _ in stream.windows())
    assert windows > (20 if chunk <= 3 * PAGE else 1)
    convert_file(path, tmp_path, "parquet", chunk_bytes=chunk)
    assert_converted_equals(tmp_path, "parquet", exitreplay.read_trace(path))


@pytest.mark.parametrize("version,compression,fmt", [(7, "zstd", "parquet"), (6, "none", "arrow"),
                                                     (7, "none", "parquet")])
def test_generated_multi_cpu_trace(tmp_path, version, compression, fmt):
    gen = generate("mixed", vcpus=4, seconds=0.02, seed=5, isa="svm")
    path = tmp_path / "g.dat"
    write_trace(gen, path, version=version, compression=compression)
    assert gen.meta.cpus >= 4
    out = tmp_path / "out"
    convert_file(path, out, fmt, chunk_bytes=2 * PAGE * gen.meta.cpus)
    trace = exitreplay.read_trace(path)
    assert_converted_equals(out, fmt, trace)
    # And against the events the generator wrote, independently of the reader.
    ev = read_back(out / f"events{EXT[fmt]}", fmt).to_pydict()
    want = gen.events.to_pydict()
    for col in ("ts", "cpu", "pid", "event"):
        assert ev[col] == want[col], col
    exits = read_back(out / f"kvm_exit{EXT[fmt]}", fmt)
    for col in ("row", "exit_reason", "info1", "info2"):
        assert exits.column(col).to_pylist() == gen.table("kvm_exit").column(col).to_pylist(), col


def with_losses(src, dst):
    """A copy of a v6 recording whose ring buffer flagged losses: counted (the count stored after
    the page's data) on CPU 0 and CPU 1, flagged only on CPU 1."""
    f = TraceDatFile(src)
    data = bytearray(src.read_bytes())
    room = f.page_size - f.header_page.data_offset
    plan = {0: [(True, 77)], 1: [(False, None), (True, 5)]}
    done = []
    for cd in f.buffers[0].cpus:
        todo = list(plan.get(cd.cpu, []))
        for page in range(2, cd.size // f.page_size):
            if not todo:
                break
            at = cd.offset + page * f.page_size
            commit = struct.unpack_from("<Q", data, at + 8)[0]
            length = commit & ((1 << 27) - 1)
            stored, count = todo[0]
            if stored and length + 8 > room:
                continue
            commit |= 1 << 31
            if stored:
                commit |= 1 << 30
                struct.pack_into("<Q", data, at + f.header_page.data_offset + length, count)
            struct.pack_into("<Q", data, at + 8, commit)
            done.append((cd.cpu, page, count))
            todo.pop(0)
    dst.write_bytes(bytes(data))
    return done


def test_losses_are_kept_with_their_rows(trace_cmd, tmp_path):
    src = tmp_path / "lost.dat"
    marked = with_losses(REAL / "pvm-longmode-msr.v6.dat", src)
    assert len(marked) == 3
    trace = exitreplay.read_trace(src)
    assert sorted((d.cpu, d.count or -1) for d in trace.meta.dropped) == sorted((c, n or -1) for c, _, n in marked)
    # trace-cmd prints each loss just before the first event after it.
    report = subprocess.run(["trace-cmd", "report", "-i", str(src)], capture_output=True, text=True, check=True).stdout
    lines = [ln for ln in report.splitlines() if not ln.startswith("cpus=")]
    printed = []
    events_before = 0
    for ln in lines:
        m = re.match(r"\s*CPU:(\d+) \[(?:(\d+) )?EVENTS DROPPED\]", ln)
        if m:
            printed.append((int(m[1]), None if m[2] is None else int(m[2]), events_before))
        elif ln.strip():
            events_before += 1
    assert printed == [(d.cpu, d.count, d.row) for d in trace.meta.dropped]
    for fmt in ("parquet", "arrow"):
        out = tmp_path / fmt
        convert_file(src, out, fmt, chunk_bytes=2 * PAGE)
        assert_converted_equals(out, fmt, trace)


def test_clock_going_back_keeps_per_cpu_order(trace_cmd, tmp_path):
    """A page stamped earlier than the one before it: events keep their CPU's order, as trace-cmd
    merges (the CPU whose next event is earliest goes first), also when streamed."""
    src = REAL / "pvm-pio-small.v6.dat"
    f = TraceDatFile(src)
    data = bytearray(src.read_bytes())
    at = f.buffers[0].cpus[0].offset + 5 * f.page_size
    struct.pack_into("<Q", data, at, struct.unpack_from("<Q", data, at)[0] - 3_000_000)
    path = tmp_path / "back.dat"
    path.write_bytes(bytes(data))
    trace = exitreplay.read_trace(path)
    ev = trace.events.to_pydict()
    assert any(b < a for a, b in zip(ev["ts"], ev["ts"][1:]))
    assert list(zip(ev["ts"], ev["cpu"], ev["event"])) == [(t, c, e) for t, c, _, e, _, _ in oracle_events(path)]
    out = tmp_path / "out"
    convert_file(path, out, "parquet", chunk_bytes=PAGE)
    assert_converted_equals(out, "parquet", trace)


@pytest.mark.parametrize("damage", ["cut mid-page", "cut before the last CPU", "corrupt page"])
def test_damaged_trace_converts_what_is_there(tmp_path, damage):
    """v6 only: a v7 file keeps its buffer table after the data, so a cut there loses the table."""
    src = REAL / "pvm-longmode-msr.v6.dat"
    f = TraceDatFile(src)
    data = bytearray(src.read_bytes())
    first, last = sorted(f.buffers[0].cpus, key=lambda c: c.offset)[::len(f.buffers[0].cpus) - 1]
    if damage == "cut mid-page":
        data = data[: last.offset + 3 * f.page_size + 1000]
    elif damage == "cut before the last CPU":
        data = data[: first.offset + 5 * f.page_size + 2000]
    else:  # a commit length larger than the page, on CPU 0's second page
        at = f.buffers[0].cpus[0].offset + f.page_size + 8
        data[at: at + 8] = (0x7FFFFF).to_bytes(8, "little")
    path = tmp_path / "damaged.dat"
    path.write_bytes(bytes(data))
    with pytest.warns(TraceWarning, match="truncated|corrupt"):
        trace = exitreplay.read_trace(path)
    assert 0 < len(trace) < len(exitreplay.read_trace(src))
    for chunk in (PAGE, 16 << 20):
        with pytest.warns(TraceWarning, match="truncated|corrupt"):
            convert_file(path, tmp_path / f"out{chunk}", "parquet", chunk_bytes=chunk)
        assert_converted_equals(tmp_path / f"out{chunk}", "parquet", trace)


def test_text_input_converts_whole(tmp_path):
    path = REAL / "pvm-pio-small.report.txt"
    _, n = convert_file(path, tmp_path, "arrow")
    trace = exitreplay.read_trace(path)
    assert n == len(trace)
    assert_converted_equals(tmp_path, "arrow", trace)


def test_convert_of_a_decoded_trace(tmp_path):
    trace = exitreplay.read_trace(REAL / "pvm-longmode-msr.v7.dat")
    paths = convert(trace, tmp_path, "parquet")
    assert paths[-1].name == "meta.json" and len(paths) == len(trace.event_names) + 2
    assert_converted_equals(tmp_path, "parquet", exitreplay.read_trace(REAL / "pvm-longmode-msr.v7.dat"))


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "exitreplay", *args], capture_output=True, text=True, check=False)


def test_cli_convert(tmp_path):
    src = REAL / "pvm-pio-small.v7.dat"
    proc = run_cli("convert", str(src), "-o", str(tmp_path / "o"), "--format", "arrow", "--progress")
    assert proc.returncode == 0, proc.stderr
    assert "5,222 events" in proc.stdout
    assert_converted_equals(tmp_path / "o", "arrow", exitreplay.read_trace(src))


@pytest.mark.parametrize("kind", ["file", "under-file", "format"])
def test_bad_output_is_a_one_line_error(tmp_path, kind):
    src = REAL / "pvm-pio-small.v7.dat"
    blocker = tmp_path / "taken"
    blocker.write_text("not a directory")
    out = {"file": blocker, "under-file": blocker / "sub", "format": tmp_path / "o"}[kind]
    args = ["convert", str(src), "-o", str(out)] + (["--format", "csv"] if kind == "format" else [])
    proc = run_cli(*args)
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert ("csv" in lines[0]) if kind == "format" else (str(out) in lines[0])
    assert blocker.read_text() == "not a directory"


def test_events_without_a_format(tmp_path):
    """Records whose type id has no format (late in the trace, so a streamed Arrow file meets them
    after writing its first rows): kept as unknown_<id>, with no system, in both formats."""
    from exitreplay.formats.ringbuffer import decode_pages

    src = REAL / "pvm-longmode-msr.v6.dat"
    f = TraceDatFile(src)
    data = bytearray(src.read_bytes())
    for cd, picks, new_id in [(f.buffers[0].cpus[0], [5, 3000], 65000), (f.buffers[0].cpus[1], [2500], 64999)]:
        arr, off, _ = f.cpu_data(cd.cpu)
        ev = decode_pages(arr, f.page_size, f.header_page, "little", 8, cd.cpu, f.header_event, base_offset=off)
        for i in picks:
            struct.pack_into("<H", data, int(ev.offset[i]), new_id)
    path = tmp_path / "unknown.dat"
    path.write_bytes(bytes(data))
    trace = exitreplay.read_trace(path)
    assert {"unknown_65000", "unknown_64999"} <= set(trace.event_names)
    assert trace.table("unknown_65000").num_rows == 2
    ev = trace.events.to_pydict()
    assert {s for s, e in zip(ev["system"], ev["event"]) if e.startswith("unknown_")} == {None}
    for fmt in ("parquet", "arrow"):
        for chunk in (PAGE, 16 << 20):
            out = tmp_path / f"{fmt}-{chunk}"
            convert_file(path, out, fmt, chunk_bytes=chunk)
            assert_converted_equals(out, fmt, trace)
        out = tmp_path / f"{fmt}-decoded"
        convert(trace, out, fmt)
        assert_converted_equals(out, fmt, trace)
