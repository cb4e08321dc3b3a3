"""Memory of generating and writing a trace.dat: bounded by a window, not by the trace.

Peak RSS of a subprocess that writes a trace 10 times larger than another: the whole-trace path
needed about 330 bytes per event (3.3 GB for 10 M), so the larger one would take some 600 MB
more; a window of 50 k events keeps the two within a generous 150 MB. The peak is the child's
own VmHWM (/proc/self/status, printed as it exits): the ru_maxrss that wait4 reports starts from
the parent's RSS when the child was spawned (Linux carries the old memory's high-water mark over
exec), which would measure pytest, not the child.
"""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np

PEAK = ("import atexit; atexit.register(lambda: print(next(int(x.split()[1]) for x in open('/proc/self/status') "
        "if x.startswith('VmHWM:'))))\n")
SYNTH = PEAK + ("import sys; from exitreplay.synth.synthesize import synthesize; "
                "w = synthesize('netio', sys.argv[1], vcpus=8, seconds=float(sys.argv[2]), window_events=50_000); "
                "print(w.events)")
WRITE_MAPPED = PEAK + ("import sys, numpy as np; from exitreplay.synth.templates import load_template; "
                       "from exitreplay.synth.writer import write_tracedat; "
                       "maps = [np.memmap(p, np.uint8, mode='r') for p in sys.argv[2:]]; "
                       "write_tracedat(sys.argv[1], maps, load_template(), compression='none')")


def _run(args: list[str]) -> tuple[float, str]:
    """(peak RSS in MB, what it printed before) of a Python subprocess printing its VmHWM last."""
    p = subprocess.run([sys.executable, *args], capture_output=True, text=True, check=False)
    assert p.returncode == 0, p.stderr
    *out, peak_kb = p.stdout.split()
    return int(peak_kb) / 1024, " ".join(out)


def test_peak_memory_does_not_grow_with_the_number_of_events(tmp_path):
    small_rss, small = _run(["-c", SYNTH, str(tmp_path / "small.dat"), "0.25"])
    big_rss, big = _run(["-c", SYNTH, str(tmp_path / "big.dat"), "2.5"])
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
    rss, _ = _run(["-c", WRITE_MAPPED, str(tmp_path / "out.dat"), *files])
    assert rss < 250, rss
    assert os.path.getsize(tmp_path / "out.dat") > 3 * (128 << 20)
