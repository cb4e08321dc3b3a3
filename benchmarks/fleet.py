"""Fleet: a 20-trace `compare` on the local process pool and on Ray, on this machine's cores.

    python benchmarks/fleet.py [--dir /tmp/exitreplay-fleet] [--traces 20] [--seconds 0.2] [--jobs N]

The traces are generated (five profiles, both ISAs, a seed each, so every trace is its own
content) once into --dir and reused. Each engine runs the same compare with the cache off:
in this process alone (one job), the local spawn pool (--jobs, default the CPU count) and a
local Ray instance of as many CPUs. It prints wall time and traces/s for each, Ray's start-up
separately (a cluster that is already up does not pay it), and checks that every engine gives
the same table.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # the exitreplay of the tree this script is in

PROFILES = ["netio", "idle", "cpu", "syscall-heavy", "mixed"]


def make_traces(directory: str, n: int, seconds: float) -> list[str]:
    from exitreplay.synth.synthesize import synthesize

    os.makedirs(directory, exist_ok=True)
    paths = []
    for i in range(n):
        profile, isa = PROFILES[i % len(PROFILES)], ("svm", "vmx")[(i // len(PROFILES)) % 2]
        path = os.path.join(directory, f"fleet-{i:02d}-{profile}-{isa}-{seconds:g}s.dat")
        if not os.path.exists(path):
            synthesize(profile, path + ".tmp", vcpus=4, seconds=seconds, seed=100 + i, isa=isa)
            os.replace(path + ".tmp", path)
        paths.append(path)
    return paths


def timed(label: str, fn):
    t = time.perf_counter()
    out = fn()
    return label, time.perf_counter() - t, out


def window_figures(path: str) -> None:
    """What a split worker pays: the page index, and one window of 1% of the trace against the
    whole file read."""
    from exitreplay.formats.pageindex import build_index, read_window
    from exitreplay.reader import read_trace

    _, t_full, full = timed("read", lambda: read_trace(path))
    _, t_index, index = timed("index", lambda: build_index(path))
    ts = full.events.column("ts")
    t0, t1 = int(ts[len(full) // 2].as_py()), int(ts[len(full) // 2 + len(full) // 100].as_py())
    _, t_win, win = timed("window", lambda: read_window(path, t0, t1, index))
    print(f"{os.path.basename(path)} ({len(full):,} events, {index.pages:,} pages): read_trace {t_full:.3f}s, "
          f"page index {t_index:.3f}s, a 1% window ({len(win):,} events) {t_win:.3f}s")


def split_figures(path: str, ray_engine, jobs: int) -> None:
    """One trace analysed whole (streamed), and split in `jobs` time ranges on each engine."""
    from exitreplay.engines import LocalEngine
    from exitreplay.fleet import analyze_split
    from exitreplay.pipeline.stream import analyze_file

    runs = [timed("streamed, one process", lambda: analyze_file(path)),
            timed(f"--split {jobs}, local pool", lambda: analyze_split(path, LocalEngine(jobs), jobs)),
            timed(f"--split {jobs}, ray", lambda: analyze_split(path, ray_engine, jobs))]
    same = {r[2].summary["exits"] for r in runs}
    print(f"analyze {os.path.basename(path)}: " + ", ".join(f"{lab} {dt:.2f}s" for lab, dt, _ in runs)
          + f" ({'same exits' if len(same) == 1 else 'EXITS DIFFER'})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", default="/tmp/exitreplay-fleet")
    ap.add_argument("--traces", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=0.2, help="traced seconds per generated trace")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()

    from exitreplay.compare import compare
    from exitreplay.engines import RayEngine

    paths = make_traces(args.dir, args.traces, args.seconds)
    events = 0
    from exitreplay.reader import read_trace

    for p in paths:
        events += len(read_trace(p))
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"{len(paths)} traces, {events:,} events in all, {os.cpu_count()} CPUs (load average {load}), "
          f"--jobs {args.jobs}")
    runs = [timed("in-process (1 job)", lambda: compare(paths, jobs=1, use_cache=False)),
            timed(f"local pool ({args.jobs} jobs)", lambda: compare(paths, jobs=args.jobs, use_cache=False))]
    t = time.perf_counter()
    try:
        import ray

        ray.init(num_cpus=args.jobs, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    except ImportError:
        print("ray is not installed (pip install 'exitreplay[ray]'): Ray not measured")
        ray = None
    if ray is not None:
        start = time.perf_counter() - t
        with RayEngine() as eng:
            runs.append(timed(f"ray ({args.jobs} CPUs)", lambda: compare(paths, engine=eng, use_cache=False)))
            split_figures(max(paths, key=os.path.getsize), eng, args.jobs)
        ray.shutdown()
    print(f"{'engine':<24} {'wall':>8} {'traces/s':>9} {'events/s':>11}")
    for label, dt, _ in runs:
        print(f"{label:<24} {dt:>7.2f}s {len(paths) / dt:>9.2f} {events / dt:>11,.0f}")
    if ray is not None:
        print(f"{'  ray start-up':<24} {start:>7.2f}s (not in the figure above)")
    window_figures(max(paths, key=os.path.getsize))
    first = runs[0][2].table.drop("cached")
    same = all(r[2].table.drop("cached").equals(first, null_equal=True) for r in runs[1:])
    print("every engine gives the same table:", "yes" if same else "NO")
    if not same:
        sys.exit(1)


if __name__ == "__main__":
    main()
