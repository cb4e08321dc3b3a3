"""Scale: `trace-cmd report` and `exitreplay analyze` on 10^6, 10^7 and 10^8-event traces, in one run.

    python benchmarks/scale.py [--dir /tmp] [--sizes 1e6 1e7 1e8] [--window-events auto|N|0]
                               [--profile netio] [--vcpus 8] [--isa svm]

The traces are made by the streaming generator (benchmarks/generate.py: bounded memory at any
size) and cached by name in --dir (exitreplay-scale-<profile>-<vcpus>-<isa>-<N>.dat): a second run
reuses them. For each size it prints events/s and peak RSS (wait4) of trace-cmd report and of
exitreplay analyze, each in its own process.

`exitreplay analyze` runs as a user runs it: a trace.dat over 256 MB is analysed in windows of
250,000 events (the carried-state fold, exitreplay/pipeline/), smaller ones in memory;
`--window-events N` forces windows of N for every size (0: in memory), so the figures show that
peak RSS follows the window, not the trace.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys

from generate import make_trace, run_measured
from ingest import run_trace_cmd


def cached_trace(directory: str, events: float, profile: str, vcpus: int, isa: str) -> dict:
    """The trace of about `events` events, made unless already in the directory (with its .json)."""
    path = os.path.join(directory, f"exitreplay-scale-{profile}-{vcpus}-{isa}-{events:.0e}.dat".replace("+", ""))
    meta = path + ".json"
    if os.path.exists(path) and os.path.exists(meta):
        with open(meta) as f:
            return {**json.load(f), "made": False}
    r = make_trace(path, events, profile, vcpus, isa)
    with open(meta, "w") as f:
        json.dump(r, f)
    return {**r, "made": True}


def measure_analyze(path: str, window: str) -> tuple[float, float]:
    """(wall seconds, peak RSS MB) of `exitreplay analyze` with every built-in policy and table."""
    dt, rss, _ = run_measured([sys.executable, "-m", "exitreplay", "analyze", path, "--format", "json",
                               "--window-events", window])
    return dt, rss


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", default="/tmp", help="where the traces are made and cached (default /tmp)")
    ap.add_argument("--sizes", type=float, nargs="+", default=[1e6, 1e7, 1e8], help="events per trace")
    ap.add_argument("--window-events", default="auto",
                    help="passed to analyze: auto (windows above 256 MB), N, or 0 (whole trace in memory)")
    ap.add_argument("--profile", default="netio")
    ap.add_argument("--vcpus", type=int, default=8)
    ap.add_argument("--isa", default="svm")
    args = ap.parse_args()
    if not shutil.which("trace-cmd"):
        sys.exit("trace-cmd not found: it is the yardstick here")
    os.makedirs(args.dir, exist_ok=True)
    print(f"{args.profile}, {args.vcpus} vCPUs, {args.isa}; traces in {args.dir}; RSS: peak, MB")
    print(f"{'':>12} | {'trace-cmd report':^24} | {'exitreplay analyze':^24} |")
    print(f"{'events':>12} | {'s':>6} {'events/s':>10} {'RSS':>6} | {'s':>6} {'events/s':>10} {'RSS':>6} | ratio")
    for n in args.sizes:
        t = cached_trace(args.dir, n, args.profile, args.vcpus, args.isa)
        if t["made"]:
            print(f"  made {t['path']}: {t['wall']:.0f} s, {t['events'] / t['wall']:,.0f} events/s, "
                  f"peak RSS {t['rss_mb']:,.0f} MB")
        events = t["events"]
        os.system(f"cat {t['path']} > /dev/null")  # both start from a warm page cache
        tc_s, lines, tc_kb = run_trace_cmd(t["path"])
        if lines != events:
            print(f"  trace-cmd printed {lines:,} events of {events:,}")
        tc_rate = events / tc_s
        row = f"{events:>12,} | {tc_s:>6.1f} {tc_rate:>10,.0f} {tc_kb / 1024:>6,.0f} | "
        an_s, an_rss = measure_analyze(t["path"], args.window_events)
        an_rate = events / an_s
        print(row + f"{an_s:>6.1f} {an_rate:>10,.0f} {an_rss:>6,.0f} | {an_rate / tc_rate:>4.1f}x")
    print("ratio: analyze events/s over trace-cmd report's. Wall times include starting the process.")


if __name__ == "__main__":
    main()
