"""Memory of generating and writing a trace.dat: bounded by a window, not by the trace.

Peak RSS of a subprocess (os.wait4) that writes a trace 10 times larger than another: the
whole-trace path needed about 330 bytes per event (3.3 GB for 10 M), so the larger one would
take some 600 MB more; a window of 50 k events keeps the two within a generous 150 MB.
"""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np

SYNTH = ("import sys; from exitreplay.synth.synthesize import synthesize; "
         "w = synthesize('netio', sys.argv[1], vcpus=8, seconds=float(sys.argv[2]), window_events=50_000); "
         "print(w.events)")
WRITE_MAPPED = ("import sys, numpy as np; from exitreplay.synth.templates import load_template; "
                "from exitreplay.synth.writer import write_tracedat; "
                "maps = [np.memmap(p, np.uint8, mode='r') for p in sys.argv[2:]]; "
                "write_tracedat(sys.argv[1], maps, load_template(), compression='none')")


def _run(args: list[str], tmp_path) -> tuple[float, str]:
    """(peak RSS in MB, stdout) of a Python subprocess, reaped with os.wait4 for its rusage."""
    out, err = tmp_path / "stdout", tmp_path / "stderr"
    with open(out, "w") as o, open(err, "w") as e:
        p = subprocess.Popen([sys.executable, *args], stdout=o, stderr=e)
        _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    assert p.returncode == 0, err.read_text()
    return usage.ru_maxrss / 1024, out.read_text()


def test_peak_memory_does_not_grow_with_the_number_of_events(tmp_path):
    small_rss, small = _run(["-c", SYNTH, str(tmp_path / "small.dat"), "0.25"], tmp_path)
    big_rss, big = _run(["-c", SYNTH, str(tmp_path / "big.dat"), "2.5"], tmp_path)
    assert int(big) > 9 * int(small) > 1_500_000
    assert big_rss < small_rss + 150 and big_rss < 1024, (small_rss, big_rss)


def test_memory_mapped_pages_are_not_kept_in_memory(tmp_path):
    """write_tracedat of 384 MB of pages in mapped files: RSS stays far below the data's size."""
    files = []
    for c in range(3):
        f = tmp_path / f"cpu{c}.raw"
        m = np.memmap(f, np.uint8, mode="w+", shape=(128 << 20,))
        m[::4096] = 1  # every page written (a sparse file would read back as nothing)
        m.flush()
        del m
        files.append(str(f))
    rss, _ = _run(["-c", WRITE_MAPPED, str(tmp_path / "out.dat"), *files], tmp_path)
    assert rss < 250, rss
    assert os.path.getsize(tmp_path / "out.dat") > 3 * (128 << 20)
