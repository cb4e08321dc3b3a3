"""perf.data ingest speed: exitreplay.read_trace against `perf script` on the same file, one run each.

    python benchmarks/perfdata.py [FILE] [--seconds S] [--vcpus N]

Without FILE a perf.data is generated first (`exitreplay synth netio --output-format perf`, sized
by --seconds and --vcpus) into benchmarks/out/. exitreplay runs in its own process and is timed to
a complete decode (the events table and every per-event table); `perf script` is timed to the end
of its output, read from a pipe and counted line by line. Both start from a warm page cache.
Give FILE to time a real recording (a compressed or pipe-mode one works the same).
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from ingest import CHILD, LAZY, child  # noqa: E402  (the same child processes as benchmarks/ingest.py)


def make(path: str, seconds: float, vcpus: int) -> None:
    from exitreplay.synth import generate
    from exitreplay.synth.perfdata_writer import write_perfdata

    t0 = time.perf_counter()
    tr = generate("netio", vcpus=vcpus, seconds=seconds, seed=1, isa="svm")
    n = write_perfdata(tr, path)
    print(f"generated            {n:,} events into {path} in {time.perf_counter() - t0:.1f} s")


def run_perf_script(path: str) -> tuple[float, int]:
    t0 = time.perf_counter()
    with open(os.devnull, "w") as null:
        p = subprocess.Popen(["perf", "script", "-i", path], stdout=subprocess.PIPE, stderr=null)
        lines = 0
        for chunk in iter(lambda: p.stdout.read(1 << 20), b""):
            lines += chunk.count(b"\n")
        p.wait()
    return time.perf_counter() - t0, lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("file", nargs="?")
    ap.add_argument("--seconds", type=float, default=2.0, help="traced time of the generated file")
    ap.add_argument("--vcpus", type=int, default=8, help="vCPUs of the generated file")
    args = ap.parse_args()
    path = args.file
    if path is None:
        os.makedirs(os.path.join(os.path.dirname(__file__), "out"), exist_ok=True)
        path = os.path.join(os.path.dirname(__file__), "out", f"netio-{args.vcpus}x{args.seconds:g}s.perf.data")
        if not os.path.exists(path):
            make(path, args.seconds, args.vcpus)
    size = os.path.getsize(path)
    os.system(f"cat {path} > /dev/null")
    mine = child(CHILD, path)
    lazy = child(LAZY, path)
    print(f"file                 {path} ({size / 1e6:.0f} MB)")
    print(f"exitreplay           {mine['events']:,} events in {mine['seconds']:.2f} s = "
          f"{mine['events'] / mine['seconds']:,.0f} events/s (every table decoded), peak RSS "
          f"{mine['maxrss_kb'] / 1e3:,.0f} MB")
    print(f"  read_trace only    {lazy['events'] / lazy['seconds']:,.0f} events/s ({lazy['seconds']:.2f} s)")
    if shutil.which("perf") is None:
        print("perf not installed: no comparison")
        return
    dt, lines = run_perf_script(path)
    print(f"perf script          {lines:,} lines in {dt:.2f} s = {lines / dt:,.0f} events/s")
    print(f"speed-up             {mine['events'] / mine['seconds'] / (lines / dt):.1f}x with every table decoded, "
          f"{lazy['events'] / lazy['seconds'] / (lines / dt):.1f}x for read_trace alone")


if __name__ == "__main__":
    main()
