"""`python -m tests.fuzz --inputs N`: a long fuzz campaign; prints the figures and each failure site.

Examples (from the project root):

    python -m tests.fuzz --inputs 200000 --log fuzz.jsonl       # the README's campaign
    python -m tests.fuzz --replay 1234 --out bad.dat            # write input 1234 to a file
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
from pathlib import Path

from .harness import campaign


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.fuzz", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--inputs", type=int, default=10000, help="inputs to run (default 10000)")
    ap.add_argument("--campaign", type=int, default=1, help="campaign seed: the same seed gives the same inputs")
    ap.add_argument("--start", type=int, default=0, help="first input index")
    ap.add_argument("--timeout", type=float, default=60, help="seconds before an input counts as a hang")
    ap.add_argument("--analyze-every", type=int, default=5, help="run analyze on every Nth input (0: never)")
    ap.add_argument("--convert-every", type=int, default=7, help="run convert on every Nth input (0: never)")
    ap.add_argument("--cli-every", type=int, default=200, help="run the CLI on every Nth input (0: never)")
    ap.add_argument("--log", help="append every failing outcome (JSON lines) to this file")
    ap.add_argument("--replay", type=int, help="write input N to --out and stop")
    ap.add_argument("--out", help="where --replay writes the input")
    ap.add_argument("--work", help="working directory (default: a temporary one)")
    args = ap.parse_args(argv)
    work = Path(args.work or tempfile.mkdtemp(prefix="exitreplay-fuzz-"))
    if args.replay is not None:
        from .corpus import build_seeds
        from .mutate import Mutator

        (work / "seeds").mkdir(parents=True, exist_ok=True)
        inp = Mutator(build_seeds(work / "seeds"), args.campaign).make(args.replay)
        Path(args.out or f"fuzz-{args.replay}.{inp.kind}").write_bytes(inp.data)
        print(f"input {args.replay}: {inp.kind} from seed {inp.seed}: {' '.join(inp.ops)}")
        return 0
    log = open(args.log, "a") if args.log else None  # noqa: SIM115 (closed below)

    def record(o) -> None:
        if log and o.status not in ("ok", "clean"):
            log.write(json.dumps(dataclasses.asdict(o)) + "\n")
            log.flush()

    try:
        s = campaign(args.inputs, campaign=args.campaign, start=args.start, timeout=args.timeout,
                     analyze_every=args.analyze_every, convert_every=args.convert_every, cli_every=args.cli_every,
                     corpus_dir=work, log=record, progress_every=1000)
    finally:
        if log:
            log.close()
    print(s.report())
    return 1 if s.failures() else 0


if __name__ == "__main__":
    sys.exit(main())
