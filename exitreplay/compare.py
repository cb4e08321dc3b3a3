"""compare: the same metrics for many traces, deltas against a reference, CI gates.

Traces are analyzed in parallel processes; each result (a small summary, not the episodes) is
cached by the file's content hash and the policy/cost options, so a second run is immediate.
"""
from __future__ import annotations

import dataclasses
import glob
import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from . import cache as cache_mod
from .errors import ExitReplayError, UsageError
from .gate import Gate

TRACE_SUFFIXES = (".dat", ".txt", ".trace", ".report", ".perf")
LATENCY_SAMPLE = 20_000  # per reason, for the significance tests


@dataclasses.dataclass
class TraceResult:
    label: str
    path: str
    metrics: dict[str, float | None]
    reasons: dict[str, int]
    latencies: dict[str, np.ndarray]  # per reason, a sample of exit->entry ns
    policies: list[dict]
    warnings: list[str]
    cached: bool = False
    error: str | None = None


@dataclasses.dataclass
class Comparison:
    table: pl.DataFrame  # one row per trace
    deltas: pl.DataFrame  # label, metric, value, ref, abs, rel, p_value
    reference: str | None
    results: list[TraceResult]
    gate_failures: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {"reference": self.reference, "traces": self.table.to_dicts(), "deltas": self.deltas.to_dicts(),
                "gate_failures": self.gate_failures}


def expand(inputs: Sequence[str], labels: Sequence[str] = ()) -> list[tuple[str, str]]:
    """TRACE, DIR or GLOB arguments plus NAME=PATH labels -> [(label, path)]."""
    out: list[tuple[str, str]] = []
    for item in inputs:
        if os.path.isdir(item):
            files = sorted(str(p) for p in Path(item).iterdir() if p.is_file() and p.suffix in TRACE_SUFFIXES)
        elif any(ch in item for ch in "*?["):
            files = sorted(glob.glob(item))
        else:
            files = [item]
        if not files:
            raise UsageError(f"{item}: no trace files there")
        out += [(os.path.basename(f), f) for f in files]
    for lab in labels:
        name, sep, path = lab.partition("=")
        if not sep or not name or not path:
            raise UsageError(f"--label {lab!r}: use NAME=PATH")
        out.append((name, path))
    seen = set()
    for name, _ in out:
        if name in seen:
            raise UsageError(f"two traces are labelled {name!r}: use --label NAME=PATH")
        seen.add(name)
    return out


def _summarize(label: str, path: str, options: dict) -> TraceResult:
    """Worker: read and analyze one trace; keep only what compare needs."""
    from .analysis import analyze
    from .reader import read_trace

    try:
        tr = read_trace(path)
        r = analyze(tr, options.get("policies") or None, options.get("costs"), options.get("baseline"),
                    cpu_mhz=options.get("cpu_mhz"))
    except ExitReplayError as exc:
        return TraceResult(label, path, {}, {}, {}, [], [], error=str(exc))
    s = r.summary
    ep = r.episodes
    lat = ep["latency_ns"].drop_nulls() if ep.height else pl.Series([], dtype=pl.Int64)
    metrics: dict[str, float | None] = {
        "events": s["events"], "exits": s["exits"], "exits_per_s": s["exits_per_s"],
        "exit_time_ns": s["exit_time_ns"],
        "p50_ns": float(lat.quantile(0.5, "nearest")) if lat.len() else None,
        "p90_ns": float(lat.quantile(0.9, "nearest")) if lat.len() else None,
        "p99_ns": float(lat.quantile(0.99, "nearest")) if lat.len() else None,
        "mean_ns": float(lat.mean()) if lat.len() else None,
    }
    for row in r.policies.to_dicts():
        p = row["policy"]
        metrics[f"{p}:saved_cycles"] = row["saved_cycles_typical"]
        metrics[f"{p}:vmload_vmsave_avoided"] = row["vmload_vmsave_avoided"]
        metrics[f"{p}:ist_off_ns"] = row["ist_off_ns"]
        metrics[f"{p}:exits_per_sync"] = row["mean_exits_between_syncs"]
    reasons = dict(r.latency.select("reason", "exits").iter_rows()) if r.latency.height else {}
    for reason, n in reasons.items():
        metrics[f"exits:{reason}"] = n
        metrics[f"share:{reason}"] = n / s["exits"] * 100 if s["exits"] else None
    rng = np.random.default_rng(0)
    samples = {}
    if ep.height:
        for reason, grp in ep.filter(pl.col("latency_ns").is_not_null()).group_by("reason"):
            v = grp["latency_ns"].to_numpy()
            samples[reason[0]] = v if v.size <= LATENCY_SAMPLE else rng.choice(v, LATENCY_SAMPLE, replace=False)
    return TraceResult(label, path, metrics, reasons, samples, r.policies.to_dicts(), r.warnings)


def _significance(a: np.ndarray, b: np.ndarray) -> float | None:
    """Two-sided Mann-Whitney U p-value of two latency samples (None when too small to say)."""
    if a.size < 8 or b.size < 8:
        return None
    from scipy.stats import mannwhitneyu

    return float(mannwhitneyu(a, b, alternative="two-sided").pvalue)


def compare(traces: Sequence[tuple[str, str]], *, policies: Sequence[str] | None = None,
            baseline: str | None = None, costs: str | None = None, cpu_mhz: float | None = None,
            reference: str | None = None, gates: Sequence[Gate] = (), jobs: int | None = None,
            cache_dir: str | os.PathLike | None = None, use_cache: bool = True,
            progress: Callable[[int, int], None] | None = None) -> Comparison:
    if not traces:
        raise UsageError("no traces to compare")
    for _, p in traces:
        if not os.path.exists(p):
            raise UsageError(f"{p}: no such file")
    options = {"policies": list(policies or []), "baseline": baseline, "costs": costs, "cpu_mhz": cpu_mhz}
    cdir = Path(cache_dir) if cache_dir else cache_mod.default_dir()
    results: dict[str, TraceResult] = {}
    todo = []
    keys = {}
    for label, path in traces:
        k = cache_mod.key(path, options)
        keys[label] = k
        hit = cache_mod.load(cdir, k) if use_cache else None
        if hit is not None:
            hit.label, hit.path, hit.cached = label, path, True
            results[label] = hit
        else:
            todo.append((label, path))
    done = len(results)
    if progress:
        progress(done, len(traces))
    if todo:
        workers = max(1, min(jobs or os.cpu_count() or 1, len(todo)))
        if workers == 1:
            outs = (_summarize(lab, p, options) for lab, p in todo)
            for res in outs:
                results[res.label] = res
                done += 1
                if progress:
                    progress(done, len(traces))
        else:
            # spawn, not fork: forking a process whose Polars/Arrow thread pools are running can
            # leave a child waiting forever on a lock held by a thread that was not copied.
            ctx = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
                futs = [pool.submit(_summarize, lab, p, options) for lab, p in todo]
                for f in as_completed(futs):
                    res = f.result()
                    results[res.label] = res
                    done += 1
                    if progress:
                        progress(done, len(traces))
        for lab, _ in todo:
            if results[lab].error is None and use_cache:
                cache_mod.store(cdir, keys[lab], results[lab])
    ordered = [results[lab] for lab, _ in traces]
    failed = [r for r in ordered if r.error]
    if failed and len(failed) == len(ordered):
        raise ExitReplayError("; ".join(r.error for r in failed))

    rows = []
    for r in ordered:
        rows.append({"label": r.label, "path": r.path, "cached": r.cached, "error": r.error,
                     **{k: v for k, v in r.metrics.items()}})
    table = pl.DataFrame(rows, infer_schema_length=None)
    ref = reference or ordered[0].label
    if ref not in results:
        raise UsageError(f"--reference {ref!r} is not one of the labels: {', '.join(results)}")
    base = results[ref]
    drows = []
    gate_failures = []
    for r in ordered:
        if r.label == ref or r.error:
            continue
        for m, v in r.metrics.items():
            rv = base.metrics.get(m)
            p_value = None
            if m.startswith("exits:"):
                reason = m.split(":", 1)[1]
                if reason in r.latencies and reason in base.latencies:
                    p_value = _significance(r.latencies[reason], base.latencies[reason])
            elif m in ("p50_ns", "p90_ns", "p99_ns", "mean_ns"):
                a = np.concatenate(list(r.latencies.values())) if r.latencies else np.empty(0)
                b = np.concatenate(list(base.latencies.values())) if base.latencies else np.empty(0)
                p_value = _significance(a, b)
            drows.append({"label": r.label, "metric": m, "value": v, "ref": rv,
                          "abs": None if v is None or rv is None else v - rv,
                          "rel": None if v is None or not rv else (v - rv) / abs(rv), "p_value": p_value})
        for g in gates:
            trip = g.check(r.metrics.get(g.metric), base.metrics.get(g.metric))
            if trip is None and g.metric not in r.metrics:
                gate_failures.append(f"{r.label}: metric {g.metric!r} not available")
            elif trip:
                gate_failures.append(f"{r.label}: {g.text} (value {r.metrics.get(g.metric)}, "
                                     f"reference {base.metrics.get(g.metric)})")
    schema = {"label": pl.Utf8, "metric": pl.Utf8, "value": pl.Float64, "ref": pl.Float64, "abs": pl.Float64,
              "rel": pl.Float64, "p_value": pl.Float64}
    deltas = pl.DataFrame(drows, schema=schema) if drows else pl.DataFrame(schema=schema)
    return Comparison(table, deltas, ref, ordered, gate_failures)
