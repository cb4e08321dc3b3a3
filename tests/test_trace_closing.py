"""Files are closed deterministically: read_trace of a compressed file keeps nothing open, an
uncompressed one keeps its map until the Trace is closed (`with read_trace(p) as t:`) or freed,
and no path, including every error path, leaves a file for the garbage collector (the fuzz
campaign counted ~77,000 ResourceWarnings before). The oracle is the process's own table of
open files and mappings, /proc/self/fd and /proc/self/maps."""
from __future__ import annotations

import gc
import os
import warnings

import pytest
from conftest import REAL, SAMPLES
from hostile import edit_field, tiny_dat

import exitreplay
from exitreplay.convert import convert_file
from exitreplay.errors import TraceError

pytestmark = pytest.mark.filterwarnings("error::ResourceWarning")


def open_files(path) -> int:
    """How often `path` is open or mapped in this process."""
    real = os.path.realpath(path)
    fds = sum(1 for fd in os.listdir("/proc/self/fd") if _link(f"/proc/self/fd/{fd}") == real)
    with open("/proc/self/maps") as fh:
        maps = sum(1 for line in fh if line.rstrip("\n").endswith(real))
    return fds + maps


def _link(p: str) -> str | None:
    try:
        return os.readlink(p)
    except OSError:
        return None


def test_compressed_trace_holds_nothing_open():
    p = REAL / "pvm-pio-small.v7zstd.dat"
    tr = exitreplay.read_trace(p)
    assert open_files(p) == 0
    assert tr.table("kvm_pio").num_rows > 0


def test_uncompressed_trace_is_released_by_close_and_by_with():
    p = REAL / "pvm-pio-small.v7.dat"
    tr = exitreplay.read_trace(p)
    assert open_files(p) > 0  # the tables not decoded yet read from the map
    pio = tr.table("kvm_pio")
    tr.close()
    assert open_files(p) == 0 and tr.closed
    assert tr.table("kvm_pio") is pio  # decoded before: still there
    with pytest.raises(TraceError, match="closed"):
        tr.table("sched_switch")
    with exitreplay.read_trace(p) as tr2:
        assert tr2.table("sched_switch").num_rows > 0
    assert open_files(p) == 0


def test_a_trace_freed_without_close_releases_its_file():
    p = REAL / "pvm-longmode-msr.v6.dat"
    tr = exitreplay.read_trace(p)
    assert open_files(p) > 0
    del tr
    assert open_files(p) == 0  # reference counting, not a later collection


def bad_files(tmp):
    """Files that fail at each stage of opening a trace.dat."""
    yield tiny_dat(tmp / "ok.dat")
    (tmp / "empty.dat").write_bytes(b"")
    yield tmp / "empty.dat"
    data = (SAMPLES / "svm-idle.v7.dat").read_bytes()
    (tmp / "v9.dat").write_bytes(data[:10] + b"9" + data[11:])
    yield tmp / "v9.dat"
    (tmp / "cut.dat").write_bytes(data[:3000])
    yield tmp / "cut.dat"
    yield edit_field(tiny_dat(tmp / "cpu.dat"), "cpu", 2**31)
    yield edit_field(tiny_dat(tmp / "bomb.dat", compression="zstd"), "usize", 2**32 - 1)
    yield tiny_dat(tmp / "nofmt.dat", formats=(b"",))


def test_no_path_leaves_a_file_to_the_garbage_collector(tmp_path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for p in bad_files(tmp_path):
            for run, args in ((exitreplay.read_trace, (p,)), (convert_file, (p, tmp_path / "out"))):
                try:
                    tr = run(*args)
                except TraceError:
                    continue
                if hasattr(tr, "event_names"):
                    [tr.table(n) for n in tr.event_names]
                del tr
            assert open_files(p) == 0, p
        for p in [*sorted(REAL.glob("*")), *sorted(SAMPLES.glob("*.dat"))][:12]:
            if p.suffix in (".dat", ".txt"):
                exitreplay.read_trace(p)
        gc.collect()
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []
