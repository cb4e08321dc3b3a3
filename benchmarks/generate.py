"""Generator speed: write a trace.dat of about N million events and print events/s.

    python benchmarks/generate.py [OUT] [--events 10e6] [--profile netio] [--version 7]

OUT defaults to benchmarks/out/big.dat (gitignored), the file benchmarks/ingest.py reads.
Generation (plans, scheduling, events) and encoding + writing are timed apart.
"""
from __future__ import annotations

import argparse
import os
import resource
import time

from exitreplay.synth.generator import generate
from exitreplay.synth.writer import write_trace

HERE = os.path.dirname(os.path.abspath(__file__))
PROBE_SECONDS = 0.05  # a short run first, to learn how many events a traced second makes
# The probe underestimates long runs a little (fewer start-up events per second): aim above the target.
MARGIN = 1.05


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", nargs="?", default=os.path.join(HERE, "out", "big.dat"))
    ap.add_argument("--events", type=float, default=10e6, help="events to write (at least, approximately)")
    ap.add_argument("--profile", default="netio")
    ap.add_argument("--vcpus", type=int, default=8)
    ap.add_argument("--isa", default="svm")
    ap.add_argument("--version", type=int, default=7)
    ap.add_argument("--compression", default="none")
    args = ap.parse_args()
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    probe = generate(args.profile, vcpus=args.vcpus, seconds=PROBE_SECONDS, seed=1, isa=args.isa)
    seconds = MARGIN * args.events / (len(probe) / PROBE_SECONDS)
    t0 = time.perf_counter()
    tr = generate(args.profile, vcpus=args.vcpus, seconds=seconds, seed=1, isa=args.isa)
    t1 = time.perf_counter()
    write_trace(tr, args.out, version=args.version, compression=args.compression)
    t2 = time.perf_counter()
    n = len(tr)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"profile           {args.profile}, {args.vcpus} vCPUs, {tr.meta.cpus} CPUs, {seconds:.2f} s traced")
    print(f"events            {n:,}  ({tr.meta.event_counts.get('kvm_exit', 0):,} kvm_exit)")
    print(f"generate          {t1 - t0:.2f} s  ({n / (t1 - t0):,.0f} events/s)")
    print(f"encode + write    {t2 - t1:.2f} s  ({os.path.getsize(args.out) / 1e6:,.0f} MB, trace.dat "
          f"v{args.version} {args.compression})")
    print(f"total             {t2 - t0:.2f} s  = {n / (t2 - t0):,.0f} events/s")
    print(f"peak RSS          {rss:,.0f} MB")
    print(f"file              {args.out}")


if __name__ == "__main__":
    main()
