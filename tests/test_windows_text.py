"""iter_windows over the text formats (trace-cmd report, ftrace text, perf script): streamed in two
passes (formats.textsurvey, formats.textstream), the windows, concatenated, are read_trace's tables,
schema and values, with the file's meta; typed as the whole file is, whatever a window holds.

The oracle is read_trace (checked against trace-cmd report and perf script elsewhere). Most tests
read the file in small chunks (`chunked`), so that windows, chunks and markers fall across each
other, and forbid the read-whole fallback (`streamed`), so that the stream itself is what is checked.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import pytest
from conftest import trace_cmd_report
from test_windows import assert_same

import exitreplay
from exitreplay import windows
from exitreplay.errors import TraceError
from exitreplay.formats import textsurvey
from exitreplay.formats.detect import sniff
from exitreplay.kvm import reasons
from exitreplay.windows import concat_windows, iter_windows

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "traces"
TEXT_FORMATS = {"trace-cmd-report", "ftrace-text", "perf-script"}
COMMITTED = sorted({p.name: p for d in (ROOT / "sample_traces", ROOT / "tests" / "data" / "real", SHARED)
                    if d.is_dir() for p in d.iterdir() if p.suffix == ".txt" and p.stat().st_size < 4 << 20
                    and sniff(p) in TEXT_FORMATS}.values())
# trace-cmd report of exit traces (the committed text files have no kvm_exit): default and raw.
EXIT_SAMPLES = ["svm-mixed.v7zstd.dat", "vmx-mixed.v6.dat", "svm-nested.v7.dat", "vmx-netio.v6.dat"]


def read(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return exitreplay.read_trace(path)


@pytest.fixture
def streamed(monkeypatch):
    """The windows come from the stream: the read-whole fallback fails the test."""
    def whole(*a, **k):
        raise AssertionError("read whole, not streamed")
        yield
    monkeypatch.setattr(windows, "_read_and_slice", whole)


@pytest.fixture
def chunked(monkeypatch):
    """Chunks of about 32 KiB: a 500 KB file is 15 of them."""
    monkeypatch.setattr(textsurvey, "MIN_CHUNK", 32768)
    monkeypatch.setattr(textsurvey, "BYTES_PER_EVENT", 0)


@pytest.fixture(scope="module")
def exit_texts(tmp_path_factory):
    out = {}
    d = tmp_path_factory.mktemp("reports")
    for name in EXIT_SAMPLES:
        for opts in ((), ("-R", "-t")):
            p = d / f"{name}{''.join(opts)}.txt"
            p.write_text(trace_cmd_report(ROOT / "sample_traces" / name, *opts))
            out[p.name] = p
    return out


def check(path, sizes, names=None):
    trace = read(path)
    for size in sizes:
        wins = assert_same(trace, iter_windows(path, window_events=size, events=names), names)
        assert [len(w) for w in wins[:-1]] == [size] * (len(wins) - 1) and 0 < len(wins[-1]) <= size
        for w in wins:  # every window typed as the file, even for the columns it has no value in
            for name in w.event_names:
                assert w.table(name).schema == trace.table(name).schema, (path.name, size, name)
        last = wins[-1].meta
        assert (last.cpus, last.version, last.tracer, last.extra) == (
            trace.meta.cpus, trace.meta.version, trace.meta.tracer, trace.meta.extra)
        assert sum(sum(w.meta.event_counts.values()) for w in wins) == len(trace)
    return trace


@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_committed_text_windows_are_read_trace(path, streamed, chunked):
    check(path, (1000, 2345, 10**9))


@pytest.mark.parametrize("name", [f"{n}{o}.txt" for n in EXIT_SAMPLES for o in ("", "-R-t")])
def test_exit_trace_reports(trace_cmd, exit_texts, name, streamed, chunked):
    check(exit_texts[name], (999, 10**9))


def test_default_chunks(trace_cmd, exit_texts, streamed):
    """The chunk size iter_windows picks (one chunk for these files)."""
    check(exit_texts["svm-mixed.v7zstd.dat-R-t.txt"], (1000, 10**9))


def test_tiny_windows(tmp_path, streamed, monkeypatch):
    """Windows of 1 and 7 events over chunks of a few lines (a window costs some milliseconds)."""
    monkeypatch.setattr(textsurvey, "MIN_CHUNK", 700)
    monkeypatch.setattr(textsurvey, "BYTES_PER_EVENT", 0)
    for src in ("pvm-longmode-msr.report.txt", "pvm-guest.lost-zstd.perf-data.perf-script.txt",
                "pvm-pio-small.ftrace.txt"):
        lines = (ROOT / "tests" / "data" / "real" / src).read_text().splitlines()[:130]
        p = tmp_path / src
        p.write_text("\n".join(lines) + "\n")
        check(p, (1, 7))


def test_events_selects_the_tables(trace_cmd, exit_texts, streamed, chunked):
    check(exit_texts["vmx-mixed.v6.dat.txt"], (500,), names={"kvm_exit", "sched_switch"})


def _with_markers(tmp_path) -> Path:
    """The real report with loss markers of each form, one before the first event, one after the last."""
    src = (ROOT / "tests" / "data" / "real" / "pvm-pio-small.report.txt").read_text().splitlines()
    body = src[:1] + ["CPU:1 [3 EVENTS DROPPED]"] + src[1:]
    for at in range(40, len(body), 97):
        body[at:at] = [["CPU:0 [12 EVENTS DROPPED]", "CPU:1 [EVENTS DROPPED]", "[5 EVENTS DROPPED]",
                        "CPU:0 [LOST 7 EVENTS]"][at % 4]]
    body += ["CPU:1 [9 EVENTS DROPPED]", "[2 EVENTS DROPPED]"]
    p = tmp_path / "dropped.txt"
    p.write_text("\n".join(body) + "\n")
    return p


def test_losses_land_in_their_window(tmp_path, streamed, chunked):
    path = _with_markers(tmp_path)
    trace = read(path)
    assert len(trace.meta.dropped) > 40 and any(d.row is None for d in trace.meta.dropped)
    for size in (5, 50, 777, 10**9):
        wins = assert_same(trace, iter_windows(path, window_events=size))
        for w in wins:
            assert all(w.row_base <= d.row < w.row_base + len(w) for d in w.meta.dropped if d.row is not None)
        assert all(d.row is not None for w in wins[:-1] for d in w.meta.dropped)
        assert wins[-1].meta.warnings == trace.meta.warnings  # the losses per CPU, in read_trace's order


def test_perf_lost_lines_and_buffer_started(tmp_path, streamed, chunked):
    """perf's LOST lines (more than the 20 whose warnings read_trace keeps); the kernel's "buffer
    started" lines."""
    lines = (ROOT / "tests" / "data" / "real" / "pvm-pio-small.perf-script.txt").read_text().splitlines()
    for at in range(50, len(lines), 100):
        lines[at:at] = [f"            perf     0 [00{at % 2}]     0.000000: PERF_RECORD_LOST lost {at}"]
    perf = tmp_path / "lost.txt"
    perf.write_text("\n".join(lines) + "\n")
    assert len(read(perf).meta.dropped) > 20
    check(perf, (100, 10**9))
    lines = (ROOT / "tests" / "data" / "real" / "pvm-pio-small.ftrace.txt").read_text().splitlines()
    lines[300:300] = ["##### CPU 1 buffer started ####"]
    p = tmp_path / "started.txt"
    p.write_text("\n".join(lines) + "\n")
    assert read(p).meta.dropped
    check(p, (100, 10**9))


def _report(tmp_path, body: list[str], name="t.txt") -> Path:
    p = tmp_path / name
    p.write_text("cpus=2\n" + "\n".join(body) + "\n")
    return p


def _line(i: int, event: str, text: str, cpu: int = 0) -> str:
    return f"     qemu-system-x86-4242  [{cpu:03d}]  {8565 + i // 1000}.{i % 1000:03d}500: {event}: {text}"


def test_a_late_value_types_the_whole_column(tmp_path, streamed, chunked):
    """`name=value` fields typed by every value in the file: hex where a late value says so (an
    early window's "10" is then 0x10), uint64 where a late value is 2**63 or more, text where a
    late value is no number, a column only late lines have."""
    n = 3000
    body = [_line(i, "my_event", f"val=10 big={i} word={i} off=-{i}") for i in range(n)]
    body += [_line(n, "my_event", f"val=a big={2**64 - 1} word=x7 off=-1"),
             _line(n + 1, "my_event", "val=10 big=1 word=1 off=-1 late=5")]  # another part of the table
    path = _report(tmp_path, body)
    trace = check(path, (250, 10**9))
    t = trace.table("my_event")
    assert t.column("val")[0].as_py() == 16 and str(t.schema.field("big").type) == "uint64"
    assert t.column("word").type == "string" and t.column("off")[1].as_py() == -1
    first = next(iter_windows(path, window_events=100)).table("my_event")
    assert first.column("val")[0].as_py() == 16 and first.column("late").null_count == first.num_rows


def test_a_late_reason_name_sets_every_windows_isa(tmp_path, streamed, chunked):
    """Exit reasons printed as numbers take the ISA the file names somewhere, here at its end."""
    n = 2000
    body = [_line(i, "kvm_exit", f"reason {i % 40} rip 0x{0xffff0000 + i:x} info 0 0", cpu=i % 2) for i in range(n)]
    body += [_line(n, "kvm_exit", "reason hlt rip 0xffff0000 info 0 0")]
    path = _report(tmp_path, body)
    trace = check(path, (300, 10**9))
    isa = trace.table("kvm_exit").column("isa")
    assert isa.null_count == 0 and set(isa.to_pylist()) == {reasons.guess_isa({"hlt"})}


def test_not_in_time_order_is_read_whole(tmp_path, monkeypatch):
    """read_trace sorts a text by time: one out of order is read whole and sliced (same windows)."""
    lines = (ROOT / "tests" / "data" / "real" / "pvm-longmode-msr.report.txt").read_text().splitlines()
    lines[500], lines[4000] = lines[4000], lines[500]
    p = tmp_path / "unsorted.txt"
    p.write_text("\n".join(lines) + "\n")
    calls = []
    real = windows._read_and_slice

    def whole(*a, **k):
        calls.append(a)
        return real(*a, **k)
    monkeypatch.setattr(windows, "_read_and_slice", whole)
    monkeypatch.setattr(textsurvey, "MIN_CHUNK", 16384)
    check(p, (1000,))
    assert calls


@pytest.mark.parametrize("text, message", [
    ("", "empty file"), ("  \n\n \t\n", "only blank lines"),
    ("cpus=2\nnothing here\n", "no event lines"),
])
def test_bad_files_are_the_readers_errors(tmp_path, text, message):
    p = tmp_path / "bad.txt"
    p.write_text(text)
    with pytest.raises(TraceError, match=message):
        read(p)
    with pytest.raises(TraceError, match=message):
        list(iter_windows(p, window_events=10))


def test_hostile_texts_stream_as_read_trace(tmp_path, streamed, monkeypatch):
    """The hostile inputs of test_hostile_text, and lines split across chunks: CRLF line ends,
    undecodable bytes, a line longer than a chunk, no newline at the end. Either both give the
    same TraceError or the same tables."""
    from test_hostile_text import BAD_PREFIX, SOURCES, first_event_line

    monkeypatch.setattr(textsurvey, "MIN_CHUNK", 64)
    monkeypatch.setattr(textsurvey, "BYTES_PER_EVENT", 0)
    cases = {}
    for src, text in SOURCES.items():
        line = first_event_line(text)
        for what, f in BAD_PREFIX.items():
            cases[f"{src}-{what}"] = text.replace(line, f(line)).encode()
        cases[f"{src}-crlf"] = text.replace("\n", "\r\n").encode()
        cases[f"{src}-bytes"] = text.replace("load", "lo\xff\xfead").encode("latin-1")
        cases[f"{src}-long"] = text.replace("load", "load " + "x" * 500).encode()
        cases[f"{src}-no-newline"] = text.rstrip("\n").encode()
        cases[f"{src}-only-bad"] = "\n".join(BAD_PREFIX["cpu beyond int32"](ln) for ln in text.splitlines()).encode()
    def whole(p):
        trace = read(p)
        return trace, {n: trace.table(n) for n in trace.event_names}

    for what, data in cases.items():
        p = tmp_path / f"{what}.txt"
        p.write_bytes(data)
        try:
            trace, _ = whole(p)
        except TraceError as exc:
            with pytest.raises(TraceError) as got:
                concat_windows(iter_windows(p, window_events=2))
            assert str(got.value) == str(exc), what
            continue
        assert_same(trace, iter_windows(p, window_events=2))
        events, _, _ = concat_windows(iter_windows(p, window_events=1))
        assert events.num_rows == len(trace), what
