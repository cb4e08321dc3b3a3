"""compare: the same metrics for many traces, deltas against a reference, CI gates.

Rates are compared, not totals: traces differ in length, so savings are µs per second of trace
(`<policy>:saved_us_per_s`) and cycles per exit, reasons exits per second (`exits_per_s:<reason>`);
the totals are kept too. Each latency delta carries its own test: a pooled-quantile test (Mood's
median test generalised to q: how many of each trace's exits lie above the pooled q-quantile, a 2x2
table, Fisher's exact test) for p50/p90/p99, Welch's t-test for the mean; P(slower) is
Mann-Whitney's U / (n1 n2), the chance a random exit of the trace is slower than one of the reference.

Traces are analyzed in parallel processes; each result (a small summary, not the episodes) is
cached by the file's content hash, the policy/cost file contents and the code, so a second run is
immediate. Metric names: the headline ones (`exits_per_s`, `p99_ns`, ...), `<metric>:<reason>`
for a reason (`exits:hlt`, `share:hlt`, `p99_ns:hlt`) and `<policy>:<metric>` for a policy
(`ist-off:saved_cycles`). docs/compare.md lists them.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import glob
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from . import cache as cache_mod
from .callmodule import make_callable
from .engines import Died, Engine, check_engine, make_engine
from .errors import ExitReplayError, UsageError
from .filters import Filters
from .gate import Gate

TRACE_SUFFIXES = (".dat", ".txt", ".trace", ".report", ".perf")
LATENCY_SAMPLE = 20_000  # per reason and overall, for the significance tests
HEADLINE = ("events", "exits", "exits_per_s", "exit_time_ns", "p50_ns", "p90_ns", "p99_ns", "mean_ns")
LATENCY_METRICS = ("p50_ns", "p90_ns", "p99_ns", "mean_ns")
REASON_METRICS = ("exits", "exits_per_s", "share", *LATENCY_METRICS)
QUANTILE_OF = {"p50_ns": 0.5, "p90_ns": 0.9, "p99_ns": 0.99}
# Report.policies column -> compare metric suffix.
POLICY_METRICS = {
    "vmload_vmsave_avoided": "vmload_vmsave_avoided", "ops_avoided": "ops_avoided",
    "saved_cycles_low": "saved_cycles_low", "saved_cycles_typical": "saved_cycles",
    "saved_cycles_high": "saved_cycles_high", "share_of_exit_time_pct": "share_of_exit_time_pct",
    "syncs": "syncs", "mean_exits_between_syncs": "exits_per_sync", "ist_off_ns": "ist_off_ns",
    "guest_state_live_ns": "guest_state_live_ns", "saved_per_exit_cycles": "saved_cycles_per_exit",
    # per second of trace and shares of CPU time (rates.py)
    "saved_us_per_s": "saved_us_per_s", "saved_us_per_s_low": "saved_us_per_s_low",
    "saved_us_per_s_high": "saved_us_per_s_high", "saved_cpu_pct": "saved_cpu_pct", "syncs_per_s": "syncs_per_s",
    "ist_off_pct": "ist_off_pct", "guest_state_live_pct": "guest_state_live_pct",
}
ALL = "*"  # key of the all-reasons latency sample
# Above this many traces the latency samples stay in the cache until the deltas need them.
SPILL_ABOVE = 64


@dataclasses.dataclass
class TraceResult:
    label: str
    path: str
    metrics: dict[str, float | None]
    reasons: dict[str, int]
    latencies: dict[str, np.ndarray]  # a sample of exit->entry ns per reason, and ALL
    policies: list[dict]
    warnings: list[str]
    cached: bool = False
    error: str | None = None


@dataclasses.dataclass
class Comparison:
    table: pl.DataFrame  # one row per trace
    deltas: pl.DataFrame  # label, metric, value, ref, abs, rel, p_value, p_slower
    reference: str | None
    results: list[TraceResult]
    gate_failures: list[str]
    errors: list[str] = dataclasses.field(default_factory=list)  # traces that could not be analyzed

    def to_dict(self) -> dict[str, Any]:
        return {"reference": self.reference, "traces": self.table.to_dicts(), "deltas": self.deltas.to_dicts(),
                "gate_failures": self.gate_failures, "errors": self.errors}


def _unique_labels(paths: list[str]) -> list[str]:
    """Base names, or as many trailing path parts as it takes to tell equal base names apart."""
    parts = [Path(os.path.abspath(p)).parts for p in paths]
    labels = [p[-1] for p in parts]
    depth = 1
    while len(set(labels)) < len(labels) and depth < max(len(p) for p in parts):
        depth += 1
        dup = {lab for lab in labels if labels.count(lab) > 1}
        labels = [os.path.join(*p[-depth:]) if lab in dup else lab for lab, p in zip(labels, parts)]
    return labels


def expand(inputs: Sequence[str], labels: Sequence[str] = ()) -> list[tuple[str, str]]:
    """TRACE, DIR or GLOB arguments plus NAME=PATH labels -> [(label, path)], in the order given."""
    paths: list[str] = []
    for item in inputs:
        if os.path.isdir(item):
            files = sorted(str(p) for p in Path(item).iterdir()
                           if p.is_file() and not p.name.startswith(".") and p.suffix in TRACE_SUFFIXES)
            if not files:
                raise UsageError(f"{item}: no trace files in this directory (looked for {', '.join(TRACE_SUFFIXES)})")
        elif any(ch in item for ch in "*?["):
            files = sorted(f for f in glob.glob(item, recursive=True) if os.path.isfile(f))
            if not files:
                raise UsageError(f"{item}: no file matches")
        else:
            files = [item]
        paths += files
    named: dict[str, str] = {}
    for lab in labels:
        name, sep, path = lab.partition("=")
        if not sep or not name or not path:
            raise UsageError(f"--label {lab!r}: use NAME=PATH")
        if name in named:
            raise UsageError(f"--label {name!r} given twice")
        named[name] = path
    # The same file twice (a glob and its own name, or a --label for a listed file) is one trace.
    seen, unique = set(), []
    labelled = {os.path.realpath(p) for p in named.values()}
    for p in paths:
        rp = os.path.realpath(p)
        if rp not in seen and rp not in labelled:
            seen.add(rp)
            unique.append(p)
    out = list(zip(_unique_labels(unique), unique)) + list(named.items())
    taken: set[str] = set()
    for name, _ in out:
        if name in taken:
            raise UsageError(f"two traces are labelled {name!r}: use --label NAME=PATH")
        taken.add(name)
    return out


def _quantiles(lat: pl.Series) -> dict[str, float | None]:
    if not lat.len():
        return {m: None for m in LATENCY_METRICS}
    return {"p50_ns": float(lat.quantile(0.5, "nearest")), "p90_ns": float(lat.quantile(0.9, "nearest")),
            "p99_ns": float(lat.quantile(0.99, "nearest")), "mean_ns": float(lat.mean())}


def _sample(values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return values if values.size <= LATENCY_SAMPLE else rng.choice(values, LATENCY_SAMPLE, replace=False)


def summarize(report, label: str, path: str) -> TraceResult:
    """What compare keeps of one Report: flat metrics and latency samples."""
    from .rates import policy_rates

    s = report.summary
    ep = report.episodes
    span_s = (s.get("span_ns") or 0) / 1e9
    lat = ep["latency_ns"].drop_nulls() if ep.height else pl.Series([], dtype=pl.Int64)
    metrics: dict[str, float | None] = {"events": s["events"], "exits": s["exits"], "exits_per_s": s["exits_per_s"],
                                        "exit_time_ns": s["exit_time_ns"], **_quantiles(lat)}
    reasons: dict[str, int] = {}
    for row in report.latency.to_dicts() if report.latency.height else []:
        reason = row["reason"]
        reasons[reason] = row["exits"]
        metrics[f"exits:{reason}"] = row["exits"]
        metrics[f"exits_per_s:{reason}"] = row["exits"] / span_s if span_s else None
        metrics[f"share:{reason}"] = row["exits_pct"]
        for m in LATENCY_METRICS:
            metrics[f"{m}:{reason}"] = row[m]
    for row in policy_rates(report).to_dicts():
        for col, suffix in POLICY_METRICS.items():
            metrics[f"{row['policy']}:{suffix}"] = row.get(col)
    # A fixed seed: the same trace gives the same sample, so cached and fresh results agree.
    rng = np.random.default_rng(0)
    samples = {}
    timed = ep.filter(pl.col("latency_ns").is_not_null()) if ep.height else ep
    if timed.height:
        samples[ALL] = _sample(timed["latency_ns"].to_numpy(), rng)
        for (reason,), grp in timed.group_by("reason"):
            samples[reason] = _sample(grp["latency_ns"].to_numpy(), rng)
    return TraceResult(label, path, metrics, reasons, samples, report.policies.to_dicts(), report.warnings)


def _summarize(label: str, path: str, options: dict) -> TraceResult:
    """Worker: read and analyze one trace. Errors come back as text so one bad file does not
    stop a batch (and a worker never prints a traceback)."""
    from .analysis import analyze
    from .reader import read_trace

    try:
        tr = read_trace(path)
        r = analyze(tr, options.get("policies") or None, options.get("costs"), options.get("baseline"),
                    cpu_mhz=options.get("cpu_mhz"), filters=options.get("filters"))
        return summarize(r, label, path)
    except ExitReplayError as exc:
        return TraceResult(label, path, {}, {}, {}, [], [], error=str(exc))
    except Exception as exc:  # noqa: BLE001 - a reader/analysis bug on one file, reported as that file's error
        return TraceResult(label, path, {}, {}, {}, [], [],
                           error=f"{path}: cannot analyze ({type(exc).__name__}: {exc}; please report this)")


def _enough(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    return a is not None and b is not None and a.size >= 8 and b.size >= 8


def p_slower(a: np.ndarray | None, b: np.ndarray | None) -> float | None:
    """Mann-Whitney U / (n1 n2): P(a random exit of `a` is slower than one of `b`), ties half."""
    if not _enough(a, b):
        return None
    from scipy.stats import mannwhitneyu

    return float(mannwhitneyu(a, b, alternative="two-sided").statistic) / (a.size * b.size)


def quantile_test(a: np.ndarray | None, b: np.ndarray | None, q: float) -> float | None:
    """Two-sided p that `a` and `b` share their q-quantile: exits above the pooled q-quantile in each,
    a 2x2 table, Fisher's exact test (Mood's median test at q = 0.5). None below 8 exits a side."""
    if not _enough(a, b):
        return None
    from scipy.stats import fisher_exact

    cut = np.quantile(np.concatenate([a, b]), q, method="inverted_cdf")
    above_a, above_b = int((a > cut).sum()), int((b > cut).sum())
    table = [[above_a, a.size - above_a], [above_b, b.size - above_b]]
    return float(fisher_exact(table).pvalue)


def welch_test(a: np.ndarray | None, b: np.ndarray | None) -> float | None:
    """Two-sided p of Welch's t-test on the means (None below 8 exits a side or with no spread)."""
    if not _enough(a, b):
        return None
    if a.std() == 0 and b.std() == 0:
        return 1.0 if a.mean() == b.mean() else 0.0
    from scipy.stats import ttest_ind

    return float(ttest_ind(a.astype(float), b.astype(float), equal_var=False).pvalue)


def _significance(metric: str, a: np.ndarray | None, b: np.ndarray | None
                  ) -> tuple[str | None, float | None, float | None]:
    """(the test, its p-value, P(slower)) of one latency metric."""
    if metric == "mean_ns":
        return "welch-t", welch_test(a, b), p_slower(a, b)
    q = QUANTILE_OF[metric]
    return f"quantile(q={q:g})", quantile_test(a, b, q), p_slower(a, b)


def _check_options(policies, baseline, costs) -> None:
    """Bad policy/cost arguments fail once, here, not once per trace in the workers."""
    from .replay.costs import load_costs
    from .replay.policy import load_policy

    for p in [*(policies or []), *([baseline] if baseline else [])]:
        load_policy(p)
    if costs and costs != "auto":
        load_costs(costs)


class _Spilled(Mapping):
    """A result's latency samples left in its cache entry and read back when the deltas test
    them, so a fleet of thousands of traces does not hold every trace's samples at once."""

    def __init__(self, cdir: Path, key: str, names: list[str]):
        self.cdir, self.key, self.names = cdir, key, names

    def _samples(self) -> dict[str, np.ndarray]:
        return _entry_samples(self.cdir, self.key)

    def __getitem__(self, name: str) -> np.ndarray:
        return self._samples()[name]

    def __iter__(self):
        return iter(self.names)

    def __len__(self) -> int:
        return len(self.names)


@functools.lru_cache(maxsize=2)  # the reference's and the trace's being compared with it
def _entry_samples(cdir: Path, key: str) -> dict[str, np.ndarray]:
    hit = cache_mod.load(cdir, key)
    if not isinstance(hit, TraceResult):
        raise ExitReplayError(f"the results cache entry {key[:12]} in {cdir} went away during the run: run again")
    return hit.latencies


def _spill(res: TraceResult, cdir: Path, key: str) -> TraceResult:
    """res with its samples read from its cache entry on demand (if the entry is there)."""
    if res.latencies and (cdir / f"{key}{cache_mod.SUFFIX}").is_file():
        res.latencies = _Spilled(cdir, key, list(res.latencies))
    return res


def _task(label: str, path: str, options: dict, key: str) -> bytes | TraceResult:
    """Worker: one trace's result as the bytes of its cache entry (Arrow IPC: data, not objects),
    or the result itself if it is not plain data."""
    res = _summarize(label, path, options)
    return cache_mod.pack(key, res) or res


def _analyze_all(todo, options, keys, engine, progress, done, total, keep) -> dict[str, TraceResult]:
    """Each trace of `todo` on the engine; `keep(label, result, packed)` runs as each one arrives
    (so an interrupted batch keeps what it finished)."""
    out: dict[str, TraceResult] = {}
    for i, got in engine.map_unordered(_task, [(lab, p, options, keys[lab]) for lab, p in todo]):
        lab, p = todo[i]
        packed = got if isinstance(got, bytes) else None
        res = cache_mod.unpack(keys[lab], packed) if packed is not None else got
        if isinstance(res, Died) or not isinstance(res, TraceResult):
            why = res.why if isinstance(res, Died) else "its worker sent back no result"
            res = TraceResult(lab, p, {}, {}, {}, [], [], error=f"{p}: {why}")
        res.label, res.path = lab, p
        out[lab] = res
        keep(lab, res, packed)
        done += 1
        if progress:
            progress(done, total)
    return out


def _filled(r: TraceResult, reasons: set[str]) -> dict[str, float | None]:
    """A reason this trace never exits for has 0 exits and a 0% share (and no latency)."""
    m = dict(r.metrics)
    for reason in reasons:
        m.setdefault(f"exits:{reason}", 0)
        m.setdefault(f"share:{reason}", 0.0)
        m.setdefault(f"exits_per_s:{reason}", 0.0)
    return m


def _metric_order(names: set[str]) -> list[str]:
    def rank(m: str) -> tuple:
        if m in HEADLINE:
            return (0, HEADLINE.index(m), "")
        head, _, tail = m.partition(":")
        if head in REASON_METRICS:
            return (1, tail, REASON_METRICS.index(head))
        return (2, head, tail)
    return sorted(names, key=rank)


def _deltas(ordered: list[TraceResult], base: TraceResult, filled: dict[str, dict], names: list[str]
            ) -> pl.DataFrame:
    rows = []
    for r in ordered:
        if r is base or r.error:
            continue
        mine, ref_m = filled[r.label], filled[base.label]
        for m in names:
            v, rv = mine.get(m), ref_m.get(m)
            if v is None and rv is None:
                continue
            head, _, tail = m.partition(":")
            test = p_value = slower = None
            if head in LATENCY_METRICS:
                key = tail or ALL
                test, p_value, slower = _significance(head, r.latencies.get(key), base.latencies.get(key))
            rows.append({"label": r.label, "metric": m, "value": v, "ref": rv,
                         "abs": None if v is None or rv is None else v - rv,
                         "rel": None if v is None or not rv else (v - rv) / abs(rv),
                         "test": test if p_value is not None else None, "p_value": p_value, "p_slower": slower})
    schema = {"label": pl.Utf8, "metric": pl.Utf8, "value": pl.Float64, "ref": pl.Float64, "abs": pl.Float64,
              "rel": pl.Float64, "test": pl.Utf8, "p_value": pl.Float64, "p_slower": pl.Float64}
    return pl.DataFrame(rows, schema=schema)


def _gates(gates: Sequence[Gate], ordered: list[TraceResult], base: TraceResult, filled: dict[str, dict]
           ) -> list[str]:
    known = set().union(*(filled[r.label] for r in ordered if not r.error))
    failures = []
    for g in gates:
        if g.metric not in known:
            raise UsageError(f"--fail-if {g.text!r}: no metric {g.metric!r} in these results "
                             f"(e.g. {', '.join(HEADLINE)}; docs/compare.md lists them all)")
        for r in ordered:
            # A change against the reference is always 0 for the reference itself.
            if r.error or (r is base and g.mode != "value"):
                continue
            v, rv = filled[r.label].get(g.metric), filled[base.label].get(g.metric)
            trip = g.check(v, rv)
            if trip is None:
                why = "no value" if v is None else "no reference value" if rv is None else "reference is 0"
                failures.append(f"{r.label}: {g.text}: cannot be evaluated ({why})")
            elif trip:
                failures.append(f"{r.label}: {g.text} (value {v:g}" + ("" if g.mode == "value" else
                                                                       f", reference {rv:g}") + ")")
    return failures


def compare(traces: Sequence[tuple[str, str] | str | os.PathLike], *, policies: Sequence[str] | None = None,
            baseline: str | None = None, costs: str | None = None, cpu_mhz: float | None = None,
            reference: str | None = None, gates: Sequence[Gate] = (), jobs: int | None = None,
            cache_dir: str | os.PathLike | None = None, use_cache: bool = True,
            progress: Callable[[int, int], None] | None = None, filters: Filters | None = None,
            engine: str | Engine = "local", address: str | None = None) -> Comparison:
    """Analyze every trace ((label, path) pairs, or paths, directories and globs), tabulate, and
    compare each with the reference (default: the first trace that could be read and has exits).
    filters (window, VM, vCPU, host CPUs, reasons) apply to every trace. Traces that fail are
    listed in `errors`; if all fail, or the reference does, it raises. `engine`: "local" (a
    process pool of `jobs`), "ray" (a local Ray instance, or the cluster at `address`) or an
    Engine. Each result is cached as it arrives, so an interrupted run resumes where it stopped."""
    if not traces:
        raise UsageError("no traces to compare")
    plain = [os.fspath(t) for t in traces if not isinstance(t, tuple)]
    traces = [t for t in traces if isinstance(t, tuple)] + (expand(plain) if plain else [])
    labels = [lab for lab, _ in traces]
    if reference is not None and reference not in labels:
        raise UsageError(f"--reference {reference!r} is not one of the labels: {', '.join(labels)}")
    for _, p in traces:
        if not os.path.exists(p):
            raise UsageError(f"{p}: no such file")
        if os.path.isdir(p):
            raise UsageError(f"{p}: is a directory")
    if jobs is not None and jobs < 1:
        raise UsageError("--jobs must be at least 1")
    if not isinstance(engine, Engine):
        check_engine(engine, address)
    _check_options(policies, baseline, costs)
    options = {"policies": list(policies or []), "baseline": baseline, "costs": costs, "cpu_mhz": cpu_mhz}
    if filters is not None and filters.active:
        options["filters"] = filters  # in the cache key only when set, so older entries stay valid
    cdir = Path(cache_dir) if cache_dir else cache_mod.default_dir()
    results: dict[str, TraceResult] = {}
    todo, keys = [], {}
    for label, path in traces:
        keys[label] = k = cache_mod.key(path, options, cdir)
        hit = cache_mod.load(cdir, k) if use_cache else None
        if isinstance(hit, TraceResult):
            hit.label, hit.path, hit.cached = label, path, True
            results[label] = _spill(hit, cdir, k) if len(traces) > SPILL_ABOVE else hit
        else:
            todo.append((label, path))
    if progress:
        progress(len(results), len(traces))
    if todo:
        def keep(lab: str, res: TraceResult, packed: bytes | None) -> None:
            if res.error is None and use_cache:
                cache_mod.store_bytes(cdir, keys[lab], packed or cache_mod.pack(keys[lab], res))
                if len(traces) > SPILL_ABOVE:
                    _spill(res, cdir, keys[lab])

        with contextlib.ExitStack() as stack:
            eng = engine if isinstance(engine, Engine) else stack.enter_context(make_engine(engine, jobs, address))
            results.update(_analyze_all(todo, options, keys, eng, progress, len(results), len(traces), keep))
    return tabulate([results[lab] for lab in labels], reference, gates)


def tabulate(ordered: list[TraceResult], reference: str | None = None, gates: Sequence[Gate] = ()) -> Comparison:
    """The table, the deltas against the reference (default: the first good result with exits) and
    the gates."""
    errors = [r.error for r in ordered if r.error]
    ok = [r for r in ordered if not r.error]
    if not ok:
        raise ExitReplayError("no trace could be analyzed: " + "; ".join(errors))
    by_label = {r.label: r for r in ordered}
    if reference is not None and reference not in by_label:
        raise UsageError(f"--reference {reference!r} is not one of the labels: {', '.join(by_label)}")
    # A trace without exits makes a poor yardstick (every change against it is undefined).
    ref = reference or next((r.label for r in ok if r.metrics.get("exits")), ok[0].label)
    base = by_label[ref]
    if base.error:
        raise ExitReplayError(f"the reference trace could not be analyzed: {base.error}")

    all_reasons = set().union(*(r.reasons for r in ok))
    filled = {r.label: _filled(r, all_reasons) if not r.error else {} for r in ordered}
    names = _metric_order(set().union(*(filled[r.label] for r in ok)))
    rows = [{"label": r.label, "path": r.path, "cached": r.cached, "error": r.error,
             **{m: filled[r.label].get(m) for m in names}} for r in ordered]
    table = pl.DataFrame(rows, infer_schema_length=None)
    deltas = _deltas(ordered, base, filled, names)
    return Comparison(table, deltas, ref, ordered, _gates(gates, ordered, base, filled), errors)


make_callable(__name__, "compare")  # exitreplay.compare(...) is compare(...), module imported or not
