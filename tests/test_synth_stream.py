"""Writing a trace.dat a window at a time: the same bytes as the whole trace written at once, read
by trace-cmd as the events generated; pages given as memory-mapped files written alike."""
from __future__ import annotations

import numpy as np
import pytest
from synth_helpers import assert_trace_cmd_reads, table_rows

import exitreplay
from exitreplay.errors import UsageError
from exitreplay.synth import cpudata
from exitreplay.synth.generator import generate, generate_windows
from exitreplay.synth.records import cmdlines, encode_trace, task_names
from exitreplay.synth.synthesize import synthesize
from exitreplay.synth.templates import load_template
from exitreplay.synth.writer import write_trace, write_tracedat, write_windows

CASES = [("mixed", "svm", 6, "none", "linux-6.18"), ("netio", "vmx", 7, "none", "linux-6.18"),
         ("nested", "svm", 7, "zstd", "linux-4.19"), ("syscall-heavy", "vmx", 7, "zstd", "linux-6.18"),
         ("idle", "svm", 7, "zlib", "linux-6.18")]


@pytest.mark.parametrize("profile,isa,version,compression,template", CASES)
def test_windows_written_one_by_one_make_the_bytes_of_the_whole_trace(trace_cmd, tmp_path, profile, isa, version,
                                                                       compression, template):
    args = {"vcpus": 2, "seconds": 0.05 if profile == "idle" else 0.01, "seed": 9, "isa": isa, "template": template}
    whole = generate(profile, **args)
    write_trace(whole, tmp_path / "whole.dat", version=version, compression=compression)
    expected = (tmp_path / "whole.dat").read_bytes()
    # Windows far shorter than a page of events, and windows of many pages.
    for window_ns in (50_021, 2_000_003):
        out = tmp_path / f"w{window_ns}.dat"
        written = write_windows(generate_windows(profile, window_ns=window_ns, **args), out, version=version,
                                compression=compression)
        assert written.events == len(whole) and written.cpus == whole.meta.cpus
        assert out.read_bytes() == expected, window_ns
    back = exitreplay.read_trace(out)
    assert (back.meta.version, back.meta.compression) == (version, compression)
    assert table_rows(back) == table_rows(whole)
    if compression != "zlib":  # trace-cmd 3.1.6 here is built with zstd only
        assert assert_trace_cmd_reads(whole, out, load_template(template)) == len(whole)


def test_synthesize_writes_what_generate_makes(tmp_path):
    seen = []
    w = synthesize("mixed", tmp_path / "s.dat", vcpus=2, seconds=0.02, seed=3, compression="zstd", window_events=400,
                   progress=lambda done, events: seen.append((done, events)))
    write_trace(generate("mixed", vcpus=2, seconds=0.02, seed=3), tmp_path / "g.dat", compression="zstd")
    assert (tmp_path / "s.dat").read_bytes() == (tmp_path / "g.dat").read_bytes()
    assert len(seen) > 10 and seen[-1] == (1.0, w.events)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_a_run_without_events_writes_an_empty_trace(trace_cmd, tmp_path):
    w = synthesize("idle", tmp_path / "e.dat", seconds=1e-7)
    assert w.events == 0
    assert len(exitreplay.read_trace(tmp_path / "e.dat")) == 0


def test_bad_versions_and_compressions_are_refused_before_any_work(tmp_path):
    for version, compression in ((5, "none"), (7, "lz4"), (6, "zlib")):
        with pytest.raises(UsageError):
            write_windows(iter(()), tmp_path / "x.dat", version=version, compression=compression)
    with pytest.raises(UsageError, match="no events"):
        write_windows(iter(()), tmp_path / "x.dat")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("compression", ["none", "zstd"])
def test_pages_in_memory_mapped_files_are_written_like_arrays(trace_cmd, tmp_path, monkeypatch, compression):
    """write_tracedat of per-CPU page files mapped with np.memmap, read a few pages at a time:
    the same file as from arrays, and trace-cmd prints the events."""
    tr = generate("netio", vcpus=3, seconds=0.01, seed=2)
    tpl = load_template("linux-6.18")
    pages, stamps = encode_trace(tr, tpl)
    maps = []
    for c, p in enumerate(pages):
        f = tmp_path / f"cpu{c}.raw"
        f.write_bytes(p.tobytes())
        maps.append(np.memmap(f, np.uint8, mode="r") if p.size else p)
    monkeypatch.setattr(cpudata, "PIECE", 3 * 4096)
    kw = {"version": 7, "compression": compression, "cmdlines": cmdlines(task_names(tr)), "cpu_ts": stamps,
          "uname": tr.meta.uname}
    write_tracedat(tmp_path / "mapped.dat", maps, tpl, **kw)
    write_tracedat(tmp_path / "arrays.dat", pages, tpl, **kw)
    assert (tmp_path / "mapped.dat").read_bytes() == (tmp_path / "arrays.dat").read_bytes()
    write_trace(tr, tmp_path / "trace.dat", compression=compression)
    assert (tmp_path / "mapped.dat").read_bytes() == (tmp_path / "trace.dat").read_bytes()
    assert assert_trace_cmd_reads(tr, tmp_path / "mapped.dat", tpl) == len(tr)


def test_recorded_statistics_and_writer_name_are_written_as_given(tmp_path):
    """What a recorder passes: each CPU's CPUSTAT text as the kernel printed it, and its own name."""
    tr = generate("idle", vcpus=2, seconds=0.01, seed=2)
    pages, _ = encode_trace(tr, load_template())
    stats = [f"CPU: {c}\nentries: 7\noverrun: 3\n".encode() + b"\0" for c in range(len(pages))]
    write_tracedat(tmp_path / "r.dat", pages, load_template(), cpu_stats=stats, writer="exitreplay 9 record")
    raw = (tmp_path / "r.dat").read_bytes()
    assert all(s in raw for s in stats) and b"exitreplay 9 record\0" in raw
    assert len(exitreplay.read_trace(tmp_path / "r.dat")) == len(tr)
