"""Replay speed and memory: every built-in policy over a 10-million-exit trace.

    python benchmarks/replay.py [--exits 10e6] [--profile syscall-heavy] [--vcpus 8]

The trace is generated once, in a child process (the generator needs far more memory than the
replay), and kept as Arrow IPC files in benchmarks/out/replay-<profile>-<exits>/ (gitignored).
This process memory-maps them, as a reader's tables would be held, so only what the analysis
touches becomes resident. Timed apart: the episode table (pairing exits with entries and
attaching every event to its episode), the replay of all built-in host policies (one pass), and
`analyze()` end to end (episodes, replay, latency tables, report). Peak RSS is this process's
maximum resident set size, mapped trace pages included.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import pyarrow as pa

HERE = os.path.dirname(os.path.abspath(__file__))
PROBE_SECONDS = 0.1  # a short run first, to learn how many exits a traced second makes
MARGIN = 1.02  # the probe underestimates long runs a little (start-up is quieter)


def _dir(args) -> str:
    return os.path.join(HERE, "out", f"replay-{args.profile}-{args.vcpus}-{int(args.exits)}")


def generate_to(args) -> None:
    """Child process: generate the trace and write it as Arrow IPC files plus meta.json."""
    from exitreplay.synth.generator import generate

    probe = generate(args.profile, vcpus=args.vcpus, seconds=PROBE_SECONDS, seed=1)
    rate = probe.meta.event_counts["kvm_exit"] / PROBE_SECONDS
    seconds = MARGIN * args.exits / rate
    t0 = time.perf_counter()
    tr = generate(args.profile, vcpus=args.vcpus, seconds=seconds, seed=1)
    t1 = time.perf_counter()
    out = _dir(args)
    os.makedirs(out, exist_ok=True)
    for name, table in [("events", tr.events), *((n, tr.table(n)) for n in tr.event_names)]:
        with pa.OSFile(os.path.join(out, f"{name}.arrow"), "wb") as f, pa.ipc.new_file(f, table.schema) as w:
            w.write_table(table)
    meta = {k: getattr(tr.meta, k) for k in ("source_format", "cpus", "clock", "first_ts", "last_ts", "event_counts")}
    with open(os.path.join(out, "meta.json"), "w") as f:
        json.dump({**meta, "generated_s": t1 - t0, "tables": tr.event_names}, f)


def load(args):
    from exitreplay.trace import Trace, TraceMeta

    out = _dir(args)
    with open(os.path.join(out, "meta.json")) as f:
        meta = json.load(f)

    def mapped(name: str) -> pa.Table:
        return pa.ipc.open_file(pa.memory_map(os.path.join(out, f"{name}.arrow"))).read_all()

    tm = TraceMeta(path=out, **{k: meta[k] for k in ("source_format", "cpus", "clock", "first_ts", "last_ts",
                                                    "event_counts")})
    return Trace(mapped("events"), {n: (lambda n=n: mapped(n)) for n in meta["tables"]}, tm), meta


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--exits", type=float, default=10e6)
    ap.add_argument("--profile", default="syscall-heavy")
    ap.add_argument("--vcpus", type=int, default=8)
    ap.add_argument("--generate-only", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.generate_only:
        generate_to(args)
        return
    if not os.path.exists(os.path.join(_dir(args), "meta.json")):
        print(f"generating the trace in a child process into {_dir(args)} ...", flush=True)
        subprocess.run([sys.executable, __file__, "--generate-only", "--exits", str(args.exits),
                        "--profile", args.profile, "--vcpus", str(args.vcpus)], check=True)

    from exitreplay.analysis import analyze
    from exitreplay.episodes import build_episodes
    from exitreplay.replay.costs import load_costs
    from exitreplay.replay.engine import boundary_frame, extra_boundaries, replay_all
    from exitreplay.replay.policy import builtin_policies

    tr, meta = load(args)
    base_rss = rss_mb()
    t0 = time.perf_counter()
    eps = build_episodes(tr)
    t1 = time.perf_counter()
    n = eps.table.height
    pols = [p for p in builtin_policies() if p.nested == "none"]
    t2 = time.perf_counter()
    b = boundary_frame(eps.table)
    res = replay_all(b, pols, load_costs(), extra=extra_boundaries(eps.extra), msr_traced=True,
                     span_ns=tr.meta.duration_ns, cpus=tr.meta.cpus or 1,
                     groups={"reason": ["reason"], "vcpu": ["vm", "vcpu"]})
    t3 = time.perf_counter()
    del b, eps, res
    t4 = time.perf_counter()
    report = analyze(tr)
    t5 = time.perf_counter()
    print(f"trace              {len(tr):,} events, {n:,} exits, {args.profile} with {args.vcpus} vCPUs "
          f"(generated once in {meta['generated_s']:.0f} s, mapped from {_dir(args)})")
    print(f"episodes           {t1 - t0:.2f} s = {n / (t1 - t0):,.0f} exits/s")
    print(f"replay             {len(pols)} policies in {t3 - t2:.2f} s = {n / (t3 - t2):,.0f} exits/s for all "
          f"policies ({n * len(pols) / (t3 - t2):,.0f} policy-exits/s)")
    print(f"analyze (all)      {t5 - t4:.2f} s end to end = {n / (t5 - t4):,.0f} exits/s "
          f"({report.policies.height} policies, latency tables, report)")
    print(f"peak RSS           {rss_mb():,.0f} MB (of which {base_rss:,.0f} MB before the analysis)")


if __name__ == "__main__":
    main()
