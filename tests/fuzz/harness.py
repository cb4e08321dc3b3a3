"""Running inputs and sorting their outcomes.

Inputs run in a worker process (`worker.py`) so a hang or a crash of the interpreter costs one
input, not the campaign. The worker runs each input through `read_trace` with every table
decoded, and on some inputs `analyze`, `convert` and the CLI (`python -m exitreplay`); it limits
its data segment (RLIMIT_DATA) so a runaway allocation fails instead of swapping the machine, and
it measures each input's peak resident memory (VmHWM, reset before every input).

Outcomes: "ok" (read), "clean" (the project's one-line error, ExitReplayError), "crash" (any
other exception, or a traceback from the CLI), "memory" (MemoryError, an allocation the limit
refused, or a peak above `memory_budget`), "hang" (no answer within the time limit), "property"
(a truncated file whose events are not a prefix, per CPU, of the uncut file's; convert and
read_trace disagreeing; an output file hidden or outside the output directory), "harness" (the
fuzzer itself failed to make the input: a bug here, not in exitreplay).
"""
from __future__ import annotations

import dataclasses
import gc
import json
import os
import select
import subprocess
import sys
import time
import traceback
import warnings
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from .corpus import ROOT

MiB = 1 << 20
# The data segment a worker may grow by beyond what it holds after warming up.
DATA_LIMIT = 2048 * MiB
STATUSES = ("ok", "clean", "crash", "memory", "hang", "property", "harness")


def memory_budget(input_size: int) -> int:
    """Peak resident memory an input may add: a fixed allowance for the libraries' working sets
    plus a multiple of the input (decompressed pages, per-event arrays, Arrow tables)."""
    return 256 * MiB + 256 * input_size


@dataclasses.dataclass
class Outcome:
    index: int
    status: str
    detail: str = ""
    site: str = ""
    ops: list[str] = dataclasses.field(default_factory=list)
    seconds: float = 0.0
    peak_mib: float = 0.0
    resource_warnings: int = 0
    kind: str = ""


def site_of(exc: BaseException) -> str:
    """The innermost frame in exitreplay (file:line function), else the innermost frame."""
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if "/exitreplay/" in f.filename]
    f = (ours or frames or [None])[-1]
    if f is None:
        return "?"
    name = f.filename.split("/exitreplay/")[-1] if "/exitreplay/" in f.filename else os.path.basename(f.filename)
    return f"{name}:{f.lineno} {f.name}"


# -- in the worker ---------------------------------------------------------------------------------------
def _status_kb(key: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def reset_peak() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
    except OSError:
        pass


def limit_data() -> None:
    import resource

    cur = _status_kb("VmData") * 1024
    resource.setrlimit(resource.RLIMIT_DATA, (cur + DATA_LIMIT, cur + DATA_LIMIT))


class Legs:
    """What one worker does with an input beyond reading it (decided by the input index)."""

    def __init__(self, index: int, analyze_every: int, convert_every: int, cli_every: int):
        self.analyze = analyze_every > 0 and index % analyze_every == 0
        self.convert = convert_every > 0 and index % convert_every == 1
        self.cli = cli_every > 0 and index % cli_every == 2


def read_all(path: str):
    """read_trace with every table decoded; the Trace is closed before returning its events."""
    from exitreplay import read_trace

    tr = read_trace(path)
    with tr if hasattr(tr, "__enter__") else _nullctx(tr):
        for name in tr.event_names:
            (tr.raw_table if hasattr(tr, "raw_table") else tr.table)(name)
        return tr.events, tr.meta


class _nullctx:
    def __init__(self, obj):
        self.obj = obj

    def __enter__(self):
        return self.obj

    def __exit__(self, *a):
        return False


def per_cpu(events) -> dict[int, list[tuple]]:
    cols = [events.column(c).to_pylist() for c in ("ts", "cpu", "pid", "event", "comm", "flags")]
    out: dict[int, list[tuple]] = {}
    for ts, cpu, pid, ev, comm, flags in zip(*cols):
        out.setdefault(cpu, []).append((ts, pid, ev, comm, flags))
    return out


def prefix_problem(cut: dict[int, list], full: dict[int, list]) -> str | None:
    for cpu, evs in cut.items():
        ref = full.get(cpu, [])
        if evs != ref[: len(evs)]:
            k = next((i for i, (a, b) in enumerate(zip(evs, ref)) if a != b), len(ref))
            return f"CPU {cpu}: event {k} of the cut file differs from the uncut file's ({len(evs)} vs {len(ref)} events)"
    return None


def exercise(path: str, kind: str, legs: Legs, ctx: dict, workdir: Path) -> str | None:
    """Run one input; returns a broken-property message, raises what the code under test raised."""
    from exitreplay import analyze

    if kind in ("policy", "costs"):
        from exitreplay.replay.costs import load_costs
        from exitreplay.replay.policy import load_policy

        (load_policy if kind == "policy" else load_costs)(path)
        if legs.analyze:
            host = ctx["host"]()
            analyze(host, [path] if kind == "policy" else ["kvm-today"], costs=path if kind == "costs" else None)
        return None
    from exitreplay import read_trace
    from exitreplay.errors import ExitReplayError

    try:
        events, _meta = read_all(path)
    except ExitReplayError as exc:
        problem = _convert_agrees(path, legs, workdir, exc, None)
        if problem:
            return problem
        raise
    problem = _convert_agrees(path, legs, workdir, None, events.num_rows)
    if problem is None and ctx.get("full") is not None:
        problem = prefix_problem(per_cpu(events), ctx["full"])
    if legs.analyze:
        tr = read_trace(path)
        with tr if hasattr(tr, "__enter__") else _nullctx(tr):
            analyze(tr)
    return problem


def _convert_agrees(path: str, legs: Legs, workdir: Path, read_error, rows: int | None) -> str | None:
    """convert (streamed in small windows) must refuse what read_trace refuses and write what it reads."""
    if not legs.convert:
        return None
    from exitreplay.convert import convert_file
    from exitreplay.errors import ExitReplayError

    out = workdir / "out"
    _rmtree(out)
    try:
        _paths, written = convert_file(path, out, chunk_bytes=1 << 14)
    except ExitReplayError as exc:
        if read_error is not None or "cannot convert event type" in str(exc):  # a hostile name
            return None
        return f"convert refused what read_trace read: {exc}"
    if read_error is not None:
        return f"convert wrote {written} events where read_trace said: {read_error}"
    if written != rows:
        return f"convert wrote {written} events, read_trace read {rows}"
    for p in out.iterdir():
        if p.name.startswith(".") or p.resolve().parent != out.resolve():
            return f"convert wrote {p.name!r}"
    return None


def _rmtree(p: Path) -> None:
    import shutil

    shutil.rmtree(p, ignore_errors=True)


def cli_check(path: str, kind: str, index: int, workdir: Path, host_path: str, timeout: float) -> str | None:
    """Run the CLI on the input; a traceback or a status other than 0, 1 or 2 is a crash."""
    if kind == "policy":
        args = ["analyze", host_path, "--policy", path]
    elif kind == "costs":
        args = ["analyze", host_path, "--cost-profile", path]
    else:
        args = [["info", path], ["analyze", path], ["convert", path, "-o", str(workdir / "cli-out")]][index % 3]
    try:
        proc = subprocess.run([sys.executable, "-m", "exitreplay", *args], capture_output=True, text=True,
                              errors="replace", timeout=timeout, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return "cli: timed out"
    if "Traceback" in proc.stderr or proc.returncode not in (0, 1, 2):
        tail = [ln for ln in proc.stderr.splitlines() if ln.strip()][-1:] or [""]
        return f"cli {args[0]}: status {proc.returncode}: {tail[0][:200]}"
    return None


class WarningCounter:
    """Counts ResourceWarnings however late they come (a file freed after its input finished)."""

    def __init__(self):
        self.resource = 0
        warnings.simplefilter("always")
        warnings.showwarning = self._show

    def _show(self, message, category, *args, **kwargs) -> None:
        if issubclass(category, ResourceWarning):
            self.resource += 1

    def take(self) -> int:
        n, self.resource = self.resource, 0
        return n


def run_input(inp, legs: Legs, ctx: dict, workdir: Path, host_path: str, cli_timeout: float,
              counter: WarningCounter) -> Outcome:
    from exitreplay.errors import ExitReplayError

    path = workdir / {"policy": "input.toml", "costs": "input.toml", "dat": "input.dat", "perf": "input.perf.data"}.get(
        inp.kind, "input.txt")
    path.write_bytes(inp.data)
    out = Outcome(inp.index, "ok", ops=list(inp.ops), kind=inp.kind)
    base = _status_kb("VmRSS")
    reset_peak()
    t0 = time.perf_counter()
    try:
        problem = exercise(str(path), inp.kind, legs, ctx, workdir)
        if problem:
            out.status, out.detail = "property", problem
    except ExitReplayError as exc:
        out.status, out.detail = "clean", str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
    except MemoryError as exc:
        out.status, out.detail, out.site = "memory", f"MemoryError: {exc}"[:300], site_of(exc)
    except RecursionError as exc:
        out.status, out.detail, out.site = "crash", f"RecursionError: {exc}"[:300], site_of(exc)
    except Exception as exc:
        out.status, out.detail, out.site = "crash", f"{type(exc).__name__}: {exc}"[:300], site_of(exc)
    out.seconds = time.perf_counter() - t0
    out.peak_mib = max(0, _status_kb("VmHWM") - base) / 1024
    if inp.index % 100 == 99:
        gc.collect()  # objects in cycles: their ResourceWarnings count too (against this input)
    out.resource_warnings = counter.take()
    if out.status in ("ok", "clean") and out.peak_mib * MiB > memory_budget(len(inp.data)):
        out.status, out.detail = "memory", f"peak {out.peak_mib:.0f} MiB over the budget for {len(inp.data)} bytes"
    if legs.cli and out.status in ("ok", "clean"):
        problem = cli_check(str(path), inp.kind, inp.index, workdir, host_path, cli_timeout)
        if problem:
            out.status, out.detail, out.site = "crash", problem, "cli"
    return out


# -- in the parent ---------------------------------------------------------------------------------------
class Worker:
    """A worker process answering one input at a time over pipes (JSON lines)."""

    def __init__(self, campaign: int, legs: dict, corpus_dir: Path):
        self.campaign, self.legs, self.corpus_dir = campaign, legs, corpus_dir
        self.proc: subprocess.Popen | None = None
        self.stderr_path = corpus_dir / "worker.stderr"

    def start(self) -> None:
        env = dict(os.environ, PYTHONWARNINGS="ignore")
        self.err = open(self.stderr_path, "w")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.fuzz.worker"], cwd=ROOT, env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.err, text=True)
        self._send({"cmd": "init", "campaign": self.campaign, "corpus": str(self.corpus_dir), **self.legs})
        reply = self._recv(300)
        if not reply:
            raise RuntimeError(f"fuzz worker did not start: {self._stderr_tail()}")

    def _send(self, msg: dict) -> None:
        assert self.proc and self.proc.stdin
        self.proc.stdin.write(json.dumps(msg) + "\n")
        self.proc.stdin.flush()

    def _recv(self, timeout: float) -> dict | None:
        """The next reply; None on timeout; {} when the worker closed its end (it died)."""
        assert self.proc and self.proc.stdout
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            return None
        line = self.proc.stdout.readline()
        return json.loads(line) if line else {}

    def _stderr_tail(self) -> str:
        self.err.flush()
        lines = [ln for ln in self.stderr_path.read_text(errors="replace").splitlines() if ln.strip()]
        return lines[-1][:300] if lines else ""

    def run(self, index: int, timeout: float) -> Outcome:
        if self.proc is None:
            self.start()
        try:
            self._send({"cmd": "run", "index": index})
        except (BrokenPipeError, OSError):
            reply = {}
        else:
            reply = self._recv(timeout)
        if reply:
            return Outcome(**reply)
        tail = self._stderr_tail()
        self.stop()
        if reply is None:
            return Outcome(index, "hang", f"no answer in {timeout:g} s")
        status = "memory" if "memory allocation" in tail or "MemoryError" in tail else "crash"
        return Outcome(index, status, f"worker died: {tail}", "worker")

    def stop(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
            for f in (self.proc.stdin, self.proc.stdout):
                if f:
                    f.close()
            self.proc = None
            self.err.close()


@dataclasses.dataclass
class Summary:
    inputs: int = 0
    counts: Counter = dataclasses.field(default_factory=Counter)
    sites: dict[str, Outcome] = dataclasses.field(default_factory=dict)  # first outcome per (status, site)
    site_counts: Counter = dataclasses.field(default_factory=Counter)
    resource_warnings: int = 0
    slowest: float = 0.0
    peak_mib: float = 0.0
    seconds: float = 0.0
    kind_seconds: Counter = dataclasses.field(default_factory=Counter)
    kinds: Counter = dataclasses.field(default_factory=Counter)
    truncations: int = 0  # inputs that are a seed cut short (checked for the exact-prefix property)

    def add(self, o: Outcome) -> None:
        self.inputs += 1
        self.truncations += len(o.ops) == 1 and o.ops[0].startswith("truncate@")
        self.kinds[o.kind] += 1
        self.kind_seconds[o.kind] += o.seconds
        self.counts[o.status] += 1
        self.resource_warnings += o.resource_warnings
        self.slowest = max(self.slowest, o.seconds)
        self.peak_mib = max(self.peak_mib, o.peak_mib)
        if o.status not in ("ok", "clean"):
            key = f"{o.status} {o.site or o.detail[:80]}"
            self.site_counts[key] += 1
            self.sites.setdefault(key, o)

    def report(self) -> str:
        lines = [f"inputs {self.inputs} in {self.seconds:.0f} s: " + ", ".join(
            f"{s} {self.counts.get(s, 0)}" for s in STATUSES),
            f"truncations {self.truncations}; ResourceWarnings {self.resource_warnings}; slowest input {self.slowest:.2f} s; "
            f"largest peak {self.peak_mib:.0f} MiB; mean ms per input: " + ", ".join(
                f"{k} {1000 * self.kind_seconds[k] / n:.0f} ({n})" for k, n in sorted(self.kinds.items()))]
        for key, o in sorted(self.sites.items()):
            lines.append(f"  {self.site_counts[key]:6d}x {key}: {o.detail[:160]} (input {o.index}: {' '.join(o.ops)[:120]})")
        return "\n".join(lines)

    def failures(self) -> int:
        return sum(self.counts.get(s, 0) for s in ("crash", "memory", "hang", "property", "harness"))


def campaign(n: int, *, campaign: int = 0, start: int = 0, timeout: float = 60.0, analyze_every: int = 5,
             convert_every: int = 7, cli_every: int = 0, corpus_dir: Path, log: Callable[[Outcome], None] | None = None,
             progress_every: int = 0) -> Summary:
    """Run inputs start..start+n-1 of a campaign; one worker, restarted after any death."""
    corpus_dir.mkdir(parents=True, exist_ok=True)
    w = Worker(campaign, {"analyze_every": analyze_every, "convert_every": convert_every, "cli_every": cli_every},
               corpus_dir)
    s = Summary()
    t0 = time.perf_counter()
    try:
        for i in range(start, start + n):
            o = w.run(i, timeout)
            s.add(o)
            if log:
                log(o)
            if o.status in ("memory",) and o.site != "worker":
                w.stop()  # a fresh worker: the next input's peak is its own
            if progress_every and s.inputs % progress_every == 0:
                s.seconds = time.perf_counter() - t0
                print(s.report().splitlines()[0], file=sys.stderr, flush=True)
    finally:
        w.stop()
    s.seconds = time.perf_counter() - t0
    return s
