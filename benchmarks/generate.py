"""Generator speed: write a trace.dat of N million events and print events/s.

    python benchmarks/generate.py [--events 10e6] [--out benchmarks/out/big.dat]
"""
from __future__ import annotations

import argparse
import os
import time

from exitreplay.synth.generator import generate
from exitreplay.synth.writer import write_trace

# netio with 8 vCPUs makes about 0.72 million events per traced second.
EVENTS_PER_SECOND_OF_TRACE = 716_000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=float, default=10e6)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "out", "big.dat"))
    ap.add_argument("--version", type=int, default=7)
    args = ap.parse_args()
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    seconds = args.events / EVENTS_PER_SECOND_OF_TRACE
    t0 = time.perf_counter()
    tr = generate("netio", vcpus=8, seconds=seconds, seed=1, isa="svm")
    t1 = time.perf_counter()
    write_trace(tr, args.out, version=args.version)
    t2 = time.perf_counter()
    n = len(tr)
    print(f"events            {n:,}  ({tr.meta.event_counts.get('kvm_exit', 0):,} kvm_exit)")
    print(f"generate          {t1 - t0:.2f} s")
    print(f"encode + write    {t2 - t1:.2f} s  ({os.path.getsize(args.out) / 1e6:.0f} MB, trace.dat v{args.version})")
    print(f"total             {t2 - t0:.2f} s  = {n / (t2 - t0):,.0f} events/s")
    print(f"file              {args.out}")


if __name__ == "__main__":
    main()
