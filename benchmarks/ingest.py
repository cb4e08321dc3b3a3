"""Ingest speed and memory: exitreplay.read_trace against `trace-cmd report` on the same file.

    python benchmarks/ingest.py [FILE] [--repeat N]   (default: benchmarks/out/big.dat from generate.py)
    python benchmarks/ingest.py --real                (every real recording: the fixed cost)

--real runs each reader once per real trace.dat (tests/data/real/, ../shared/traces/) and prints
events/s for both and the ratio. exitreplay is timed from the read_trace call to every table
decoded, in a process that has already imported its modules and read the file once (so imports
and the page cache are not counted, as trace-cmd's are not: it is a compiled program whose start
is a few ms); the event-format parse cache is emptied before the timed read, so the formats are
parsed as in a fresh process. The first call in a fresh process (imports included) is printed too.

Each reader runs in its own process; peak memory is that process's maximum RSS. exitreplay is
timed to a complete decode (the events table and every typed per-event table) and, separately,
to `read_trace` alone (per-type tables decode on first use). The RSS includes the pages of the
trace file that the reader has mapped and touched, as it reads through a memory map.

Every measurement runs N times (default 2), each in a fresh process, and the fastest run of each
reader is reported, trace-cmd's included: the machine is shared, and the fastest run is the one
least disturbed by other work. Peak RSS is the largest over the runs.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

CHILD = r"""
import sys, time, json, resource
t0 = time.perf_counter()
import exitreplay
t1 = time.perf_counter()
tr = exitreplay.read_trace(sys.argv[1])
arrow = tr.events.nbytes + sum(tr.table(n).nbytes for n in tr.event_names)
t2 = time.perf_counter()
print(json.dumps({"events": len(tr), "seconds": t2 - t1, "import": t1 - t0, "arrow_bytes": arrow,
                  "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""
LAZY = CHILD.replace("sum(tr.table(n).nbytes for n in tr.event_names)", "0")
BASELINE = r"""
import sys, resource, json
import numpy, pyarrow, polars, exitreplay
print(json.dumps({"maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def child(code: str, *args: str) -> dict:
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def best(code: str, path: str, repeat: int) -> dict:
    runs = [child(code, path) for _ in range(repeat)]
    fastest = min(runs, key=lambda r: r["seconds"])
    return {**fastest, "maxrss_kb": max(r["maxrss_kb"] for r in runs),
            "slowest": max(r["seconds"] for r in runs)}


def run_trace_cmd(path: str) -> tuple[float, int, int]:
    """trace-cmd report to a pipe we count lines from; its own peak RSS from wait4."""
    t0 = time.perf_counter()
    with open(os.devnull, "w") as null:
        p = subprocess.Popen(["trace-cmd", "report", "-i", path], stdout=subprocess.PIPE, stderr=null)
        lines = 0
        for chunk in iter(lambda: p.stdout.read(1 << 20), b""):
            lines += chunk.count(b"\n")
        _, _, usage = os.wait4(p.pid, 0)
    dt = time.perf_counter() - t0
    return dt, lines - 1, usage.ru_maxrss  # minus the cpus= header


REAL = r"""
import sys, time, json, gc
t0 = time.perf_counter()
import exitreplay
from exitreplay.formats import eventformat
t1 = time.perf_counter()

def full(path):
    tr = exitreplay.read_trace(path)
    for n in tr.event_names:
        tr.table(n)
    return tr

tr = full(sys.argv[1])
t2 = time.perf_counter()
wall = cpu = lazy = float("inf")
for _ in range(int(sys.argv[2])):
    eventformat._parse_format.cache_clear()
    gc.collect()
    w, c = time.perf_counter(), time.process_time()
    tr = full(sys.argv[1])
    wall, cpu = min(wall, time.perf_counter() - w), min(cpu, time.process_time() - c)
    eventformat._parse_format.cache_clear()
    gc.collect()
    c = time.process_time()
    exitreplay.read_trace(sys.argv[1])
    lazy = min(lazy, time.process_time() - c)
print(json.dumps({"events": len(tr), "seconds": wall, "cpu": cpu, "lazy_cpu": lazy, "first": t2 - t1,
                  "import": t1 - t0}))
"""
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REAL_DIRS = (os.path.join(ROOT, "tests", "data", "real"), os.path.join(ROOT, "..", "shared", "traces"))


def real_files() -> list[str]:
    out = []
    for d in REAL_DIRS:
        if os.path.isdir(d):
            out += sorted(os.path.join(d, f) for f in os.listdir(d) if f.endswith(".dat"))
    return out


def trace_cmd_best(path: str, repeat: int) -> tuple[float, float, int]:
    """Fastest wall time, least CPU time (user + system) and events of `trace-cmd report`."""
    wall = cpu = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        with open(os.devnull, "w") as null:
            p = subprocess.Popen(["trace-cmd", "report", "-i", path], stdout=subprocess.PIPE, stderr=null)
            out = p.stdout
            lines = sum(chunk.count(b"\n") for chunk in iter(lambda out=out: out.read(1 << 20), b""))
            _, _, usage = os.wait4(p.pid, 0)
        wall, cpu = min(wall, time.perf_counter() - t0), min(cpu, usage.ru_utime + usage.ru_stime)
    return wall, cpu, lines - 1  # minus the cpus= header


def real_mode(repeat: int) -> None:
    if not shutil.which("trace-cmd"):
        sys.exit("trace-cmd not installed: nothing to compare with")
    print(f"best of {repeat} runs each; events/s by wall time, and by CPU time (user + system, all threads)")
    print(f"{'':49}{'ratio':>7} {'cpu ratio':>9} {'cpu ratio':>10}")
    print(f"{'file':32} {'events':>6} {'exitreplay':>10} {'trace-cmd':>9} {'(wall)':>6} {'':>9} "
          f"{'read_trace':>10} {'1st':>5}")
    worst = worst_cpu = worst_lazy = float("inf")
    for path in real_files():
        os.system(f"cat '{path}' > /dev/null")
        mine = child(REAL, path, str(repeat))
        wall, cpu, lines = trace_cmd_best(path, repeat)
        ours, theirs = mine["events"] / mine["seconds"], lines / wall
        ratio, cpu_ratio = ours / theirs, (mine["events"] / mine["cpu"]) / (lines / cpu)
        lazy_ratio = (mine["events"] / mine["lazy_cpu"]) / (lines / cpu)
        worst, worst_cpu, worst_lazy = min(worst, ratio), min(worst_cpu, cpu_ratio), min(worst_lazy, lazy_ratio)
        name = os.path.join(os.path.basename(os.path.dirname(path)), os.path.basename(path))
        print(f"{name[-32:]:32} {mine['events']:>6,} {ours:>10,.0f} {theirs:>9,.0f} {ratio:>5.1f}x "
              f"{cpu_ratio:>8.1f}x {lazy_ratio:>9.1f}x {mine['first']:>4.2f}s")
    print(f"lowest ratios: {worst:.1f}x by wall time, {worst_cpu:.1f}x by CPU time, {worst_lazy:.1f}x for")
    print("read_trace alone by CPU time. exitreplay: read_trace and every table, in a process that")
    print("has imported it and read the file once, formats parsed anew; read_trace: the events")
    print("table (per-event tables decode on first use); 1st: a fresh process's first")
    print("read_trace, imports included.")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("file", nargs="?", default=os.path.join(os.path.dirname(__file__), "out", "big.dat"))
    ap.add_argument("--repeat", type=int, default=2, help="runs per reader; the fastest is reported")
    ap.add_argument("--real", action="store_true", help="every real recording, one run each")
    args = ap.parse_args()
    if args.real:
        real_mode(args.repeat)
        return
    path = args.file
    if not os.path.exists(path):
        sys.exit(f"{path} not found: run benchmarks/generate.py first")
    size = os.path.getsize(path)
    os.system(f"cat {path} > /dev/null")  # both readers start from a warm page cache
    base = child(BASELINE)
    mine = best(CHILD, path, args.repeat)
    lazy = best(LAZY, path, args.repeat)
    print(f"file                 {path} ({size / 1e6:.0f} MB), fastest of {args.repeat} runs each")
    print(f"exitreplay           {mine['events']:,} events in {mine['seconds']:.2f} s = "
          f"{mine['events'] / mine['seconds']:,.0f} events/s (all tables decoded; slowest run "
          f"{mine['slowest']:.2f} s; import {mine['import']:.1f} s)")
    print(f"  read_trace only    {lazy['events'] / lazy['seconds']:,.0f} events/s "
          f"({lazy['seconds']:.2f} s, slowest {lazy['slowest']:.2f} s: events table; per-type tables decode "
          "on first use)")
    arrow_mb = mine["arrow_bytes"] / 1e6
    peak_mb = mine["maxrss_kb"] / 1e3
    libs_mb = base["maxrss_kb"] / 1e3
    print(f"  peak RSS           {peak_mb:,.0f} MB (of which {libs_mb:,.0f} MB is the interpreter and libraries);"
          f" Arrow tables {arrow_mb:,.0f} MB; (peak - libraries) / Arrow = {(peak_mb - libs_mb) / arrow_mb:.2f}")
    if shutil.which("trace-cmd"):
        runs = [run_trace_cmd(path) for _ in range(args.repeat)]
        dt, lines, _ = min(runs)
        rss = max(r[2] for r in runs)
        print(f"trace-cmd report     {lines:,} events in {dt:.2f} s = {lines / dt:,.0f} events/s "
              f"(slowest run {max(r[0] for r in runs):.2f} s), peak RSS {rss / 1e3:,.0f} MB")
        print(f"speed-up             {mine['events'] / mine['seconds'] / (lines / dt):.1f}x with every table decoded, "
              f"{lazy['events'] / lazy['seconds'] / (lines / dt):.1f}x for read_trace alone")
    else:
        print("trace-cmd not installed: no comparison")


if __name__ == "__main__":
    main()
