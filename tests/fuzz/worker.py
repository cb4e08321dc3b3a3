"""The fuzz worker: `python -m tests.fuzz.worker`, driven by `harness.Worker` over JSON lines.

It builds the seeds itself (the same bytes every time), so the parent sends input indices, not
inputs; its real stdout is kept for the replies and fd 1 goes to stderr, so nothing the code
under test prints can corrupt the protocol.
"""
from __future__ import annotations

import dataclasses
import functools
import gc
import json
import os
import sys
import tempfile
from pathlib import Path

from .corpus import build_seeds
from .harness import Legs, Outcome, WarningCounter, limit_data, per_cpu, read_all, run_input, site_of
from .mutate import Mutator

HOST_SEED = "svm-nested-linux4.19"  # a small trace with exits, for the policy and cost inputs


def main() -> None:
    reply = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    init = json.loads(sys.stdin.readline())
    corpus = Path(init["corpus"])
    (corpus / "seeds").mkdir(parents=True, exist_ok=True)
    seeds = build_seeds(corpus / "seeds")
    mut = Mutator(seeds, init["campaign"])
    workdir = Path(tempfile.mkdtemp(prefix="work-", dir=corpus))
    host_path = str(next(corpus / "seeds" / s.name for s in seeds if HOST_SEED in s.name))

    @functools.cache
    def host():
        from exitreplay import read_trace

        return read_trace(host_path)

    @functools.cache
    def full(si: int):
        p = workdir / f"full-{si}.dat"
        p.write_bytes(seeds[si].data)
        return per_cpu(read_all(str(p))[0])

    # Warm up (imports, first-call caches) before the memory limit and the first measurement.
    from exitreplay import analyze

    analyze(host())
    counter = WarningCounter()
    gc.collect()
    gc.freeze()  # the libraries' objects: not walked again by every collection
    limit_data()
    reply.write(json.dumps({"ready": True}) + "\n")
    for line in sys.stdin:
        msg = json.loads(line)
        i = msg["index"]
        try:
            inp = mut.make(i)
        except Exception as exc:  # the fuzzer's own bug: reported, not blamed on exitreplay
            out = Outcome(i, "harness", f"{type(exc).__name__}: {exc}"[:300], site_of(exc))
            reply.write(json.dumps(dataclasses.asdict(out)) + "\n")
            continue
        legs = Legs(i, init["analyze_every"], init["convert_every"], init["cli_every"])
        ctx = {"host": host, "full": full(inp.truncated_from) if inp.truncated_from is not None else None}
        out = run_input(inp, legs, ctx, workdir, host_path, cli_timeout=120, counter=counter)
        reply.write(json.dumps(dataclasses.asdict(out)) + "\n")


if __name__ == "__main__":
    main()
