"""Generator speed and memory: write trace.dat files of N events each, streamed, and print for each
its events/s and the peak RSS of the process that made it.

    python benchmarks/generate.py [OUT] [--events 1e7 1e8] [--profile netio] [--vcpus 8] [--version 7]
                                  [--compression none]

OUT (default benchmarks/out/big.dat, gitignored, the file benchmarks/ingest.py reads) is the file of
the first size; the others go beside it as big-<N>.dat. Each file is made in its own process
(`exitreplay.synth.synthesize`: generation and writing a time window at a time), its peak RSS
taken with wait4, its wall time including the interpreter's start (about a second). The traced
time is chosen from a short probe run, so the event counts are approximate (a little above N).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)  # the children import the exitreplay of the tree this script is in

PROBE_SECONDS = 0.05  # a short run first, to learn how many events a traced second makes
# The probe underestimates long runs a little (fewer start-up events per second): aim above the target.
MARGIN = 1.05
# In a child process, so that this one stays small: a child's peak RSS (wait4) starts from its
# parent's size at the fork.
CHILD = r"""
import json, sys
from exitreplay.synth.generator import generate
from exitreplay.synth.synthesize import synthesize
a = json.loads(sys.argv[1])
probe = generate(a["profile"], vcpus=a["vcpus"], seconds=a["probe"], seed=1, isa=a["isa"])
seconds = a["margin"] * a["events"] / (len(probe) / a["probe"])
w = synthesize(a["profile"], a["path"], vcpus=a["vcpus"], seconds=seconds, isa=a["isa"], version=a["version"],
               compression=a["compression"])
print(json.dumps({"seconds": seconds, "events": w.events, "kvm_exit": w.event_counts.get("kvm_exit", 0),
                  "cpus": w.cpus}))
"""


def run_measured(cmd: list[str], **kw) -> tuple[float, float, str]:
    """(wall seconds, peak RSS in MB, stdout) of a command, its peak RSS taken with wait4.

    wait4's figure starts from this (small) process's RSS at the spawn, some 15 MB: Linux carries
    the parent's high-water mark over exec."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")])}
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, env=env, **kw)
    out = p.stdout.read()
    _, status, usage = os.wait4(p.pid, 0)
    dt = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode:
        sys.exit(f"{' '.join(cmd[:3])} ... failed with status {p.returncode}")
    return dt, usage.ru_maxrss / 1024, out.decode()


def make_trace(path: str, events: float, profile: str = "netio", vcpus: int = 8, isa: str = "svm",
               version: int = 7, compression: str = "none") -> dict:
    """Write a trace.dat of about `events` events in a child process: what it holds, its wall time and peak RSS."""
    args = {"path": path, "events": events, "profile": profile, "vcpus": vcpus, "isa": isa, "version": version,
            "compression": compression, "probe": PROBE_SECONDS, "margin": MARGIN}
    dt, rss, out = run_measured([sys.executable, "-c", CHILD, json.dumps(args)])
    return {**args, **json.loads(out), "wall": dt, "rss_mb": rss, "bytes": os.path.getsize(path)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", nargs="?", default=os.path.join(HERE, "out", "big.dat"))
    ap.add_argument("--events", type=float, nargs="+", default=[10e6], help="events per file (about)")
    ap.add_argument("--profile", default="netio")
    ap.add_argument("--vcpus", type=int, default=8)
    ap.add_argument("--isa", default="svm")
    ap.add_argument("--version", type=int, default=7)
    ap.add_argument("--compression", default="none")
    args = ap.parse_args()
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    stem, ext = os.path.splitext(args.out)
    print(f"{args.profile}, {args.vcpus} vCPUs, {args.isa}, trace.dat v{args.version} {args.compression}")
    print(f"{'events':>13} {'kvm_exit':>12} {'traced':>9} {'wall':>8} {'events/s':>10} {'peak RSS':>9} "
          f"{'file':>9}")
    for i, n in enumerate(args.events):
        path = args.out if i == 0 else f"{stem}-{n:.0e}{ext}".replace("+", "")
        r = make_trace(path, n, args.profile, args.vcpus, args.isa, args.version, args.compression)
        print(f"{r['events']:>13,} {r['kvm_exit']:>12,} {r['seconds']:>8.2f}s {r['wall']:>7.1f}s "
              f"{r['events'] / r['wall']:>10,.0f} {r['rss_mb']:>6,.0f} MB {r['bytes'] / 1e9:>6.2f} GB  {path}")


if __name__ == "__main__":
    main()
