"""Replay speed: all built-in policies over a large generated exit sequence.

    python benchmarks/replay.py [--exits 10e6]

Builds the episode table once (timed apart), then replays every built-in policy; prints exits/s
and the peak RSS.
"""
from __future__ import annotations

import argparse
import resource
import time

from exitreplay.analysis import analyze
from exitreplay.episodes import build_episodes
from exitreplay.replay.engine import boundary_frame, replay
from exitreplay.replay.costs import load_costs
from exitreplay.replay.policy import builtin_policies
from exitreplay.synth.generator import generate

# syscall-heavy with 8 vCPUs: about 0.15 million exits per traced second.
EXITS_PER_SECOND_OF_TRACE = 152_000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--exits", type=float, default=10e6)
    args = ap.parse_args()
    t0 = time.perf_counter()
    tr = generate("syscall-heavy", vcpus=8, seconds=args.exits / EXITS_PER_SECOND_OF_TRACE, seed=1)
    t1 = time.perf_counter()
    eps = build_episodes(tr)
    t2 = time.perf_counter()
    n = eps.table.height
    b = boundary_frame(eps.table)
    costs = load_costs()
    pols = [p for p in builtin_policies() if p.nested == "none"]
    t3 = time.perf_counter()
    for p in pols:
        replay(b, p, costs, first_loads=eps.counts["first_entries"], msr_traced=True,
               span_ns=tr.meta.duration_ns, cpus=tr.meta.cpus or 1)
    t4 = time.perf_counter()
    print(f"trace              {len(tr):,} events, {n:,} exits (generated in {t1 - t0:.1f} s)")
    print(f"episodes           {t2 - t1:.2f} s = {n / (t2 - t1):,.0f} exits/s")
    print(f"replay             {len(pols)} policies in {t4 - t3:.2f} s = {n * len(pols) / (t4 - t3):,.0f} "
          f"policy-exits/s ({n / (t4 - t3):,.0f} exits/s for all policies)")
    t5 = time.perf_counter()
    analyze(tr)
    t6 = time.perf_counter()
    print(f"analyze (all)      {t6 - t5:.2f} s end to end (episodes, every policy, tables)")
    print(f"peak RSS           {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3:,.0f} MB")


if __name__ == "__main__":
    main()
