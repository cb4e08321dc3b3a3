"""Convert speed and memory: `exitreplay convert` of a trace.dat to Parquet, streamed.

    python benchmarks/convert.py [FILE ...] [--format parquet|arrow]
        (default FILE: benchmarks/out/big.dat from generate.py)

Each conversion runs in its own process; peak memory is that process's maximum RSS (from wait4),
shown against the input file's size and above the interpreter and libraries alone. Conversion
streams the file a chunk at a time, so the peak should not grow with the file: give a second,
larger FILE (e.g. `generate.py /tmp/big2.dat --events 20e6`) to see that.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

CHILD = r"""
import sys, time, json
t0 = time.perf_counter()
from exitreplay.convert import convert_file
t1 = time.perf_counter()
paths, n = convert_file(sys.argv[1], sys.argv[2], sys.argv[3])
print(json.dumps({"events": n, "seconds": time.perf_counter() - t1, "files": len(paths)}))
"""
BASELINE = r"""
import numpy, pyarrow, pyarrow.parquet, polars, exitreplay, exitreplay.convert
"""


def run(code: str, *args: str) -> tuple[str, int]:
    """stdout and peak RSS (kB) of a child Python process."""
    p = subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, text=True)
    out = p.stdout.read()
    _, status, usage = os.wait4(p.pid, 0)
    if status:
        sys.exit(f"child failed with status {status}")
    return out, usage.ru_maxrss


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="*", default=[os.path.join(os.path.dirname(__file__), "out", "big.dat")])
    ap.add_argument("--format", default="parquet", choices=["parquet", "arrow"])
    args = ap.parse_args()
    _, libs_kb = run(BASELINE)
    print(f"interpreter + libraries  {libs_kb / 1e3:,.0f} MB peak RSS")
    for path in args.files:
        if not os.path.exists(path):
            sys.exit(f"{path} not found: run benchmarks/generate.py first")
        size = os.path.getsize(path)
        os.system(f"cat {path} > /dev/null")  # start from a warm page cache
        out_dir = tempfile.mkdtemp(prefix="exitreplay-convert-")
        try:
            t0 = time.perf_counter()
            text, rss_kb = run(CHILD, path, out_dir, args.format)
            wall = time.perf_counter() - t0
            res = json.loads(text)
            written = sum(os.path.getsize(os.path.join(out_dir, f)) for f in os.listdir(out_dir))
        finally:
            shutil.rmtree(out_dir, ignore_errors=True)
        rss_mb, libs_mb = rss_kb / 1e3, libs_kb / 1e3
        print(f"file                     {path} ({size / 1e6:,.0f} MB, {res['events']:,} events)")
        print(f"  convert to {args.format:<8}    {res['seconds']:.1f} s = {res['events'] / res['seconds']:,.0f} events/s "
              f"({wall:.1f} s with start-up), {res['files']} files, {written / 1e6:,.0f} MB written")
        print(f"  peak RSS               {rss_mb:,.0f} MB = {rss_mb / (size / 1e6):.2f} x the file "
              f"({rss_mb - libs_mb:,.0f} MB above the libraries)")


if __name__ == "__main__":
    main()
