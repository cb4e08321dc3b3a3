"""`analyze(trace, ...) -> Report`: the library call behind `exitreplay analyze`.

No printing here: renderers (render.py, the charts) take the Report.
"""
from __future__ import annotations

import dataclasses
import itertools
import os
from collections.abc import Callable, Sequence
from typing import Any

import polars as pl

from .episodes import Episodes, build_episodes
from .errors import UsageError
from .filters import Filters
from .kvm import reasons
from .replay.costs import LEVELS, CostProfile, default_costs, load_costs
from .replay.engine import PolicyResult, boundary_frame, extra_boundaries, replay_all, replay_nested
from .replay.policy import OPERATIONS, Policy, builtin_policies, load_policy
from .stats import GroupIndex, latency_tables
from .trace import Trace

ISA_KEYS = {reasons.ISA_SVM: "svm", reasons.ISA_VMX: "vmx"}
DEFAULT_BASELINE = {"svm": "kvm-today", "vmx": "vmx-uret"}
PROGRESS_STEPS = 5


@dataclasses.dataclass(repr=False)
class Report:
    """What `analyze()` found in one trace: `summary` (capture, selection, pairing, baseline,
    costs, filters), `warnings`, Polars tables (`latency*` per reason/vCPU/VM, `policies` one row
    per policy, `ops`, `sync_causes`, `savings_by_*`, `nested`, `costs`), `sensitivity` (does the
    ranking survive the cost ranges) and `episodes` (one row per exit). `TABLES` names the
    tables; `event_view(kind)` gives the perf-kvm-stat style ioport/mmio/msr/npf tables.
    docs/model.md describes every column."""

    summary: dict[str, Any]
    warnings: list[str]
    latency: pl.DataFrame  # per exit reason
    latency_vcpu: pl.DataFrame  # per VM and vCPU
    latency_vm: pl.DataFrame
    policies: pl.DataFrame  # one row per policy
    ops: pl.DataFrame  # policy, op, executed, baseline, avoided
    sync_causes: pl.DataFrame  # policy, cause, count
    savings_by_reason: pl.DataFrame
    savings_by_vcpu: pl.DataFrame
    nested: pl.DataFrame
    costs: pl.DataFrame  # the cost profile with sources
    sensitivity: dict[str, Any]
    episodes: pl.DataFrame = dataclasses.field(repr=False)  # for charts; not serialized
    latency_reason_vcpu: pl.DataFrame = dataclasses.field(default_factory=pl.DataFrame)  # per vCPU and reason
    latency_reason_vm: pl.DataFrame = dataclasses.field(default_factory=pl.DataFrame)  # per VM and reason
    trace: Trace | None = dataclasses.field(default=None, repr=False)  # the (windowed) trace, for event views
    # The event views of a streamed Report (no episodes or trace kept): kind -> table.
    event_views: dict[str, pl.DataFrame] = dataclasses.field(default_factory=dict, repr=False)

    TABLES = ("latency", "latency_vcpu", "latency_vm", "latency_reason_vcpu", "latency_reason_vm", "policies",
              "ops", "sync_causes", "savings_by_reason", "savings_by_vcpu", "nested", "costs")

    def __repr__(self) -> str:
        s = self.summary
        return (f"<Report {s.get('path')}: {s.get('exits', 0)} exits, {self.policies.height} policies against "
                f"{s.get('baseline')}; tables: {', '.join(self.TABLES)}>")

    def event_view(self, kind: str):
        """Exits by I/O port, MMIO address, MSR or NPF region (kind: vmexit, ioport, mmio, msr, npf)."""
        from .views import event_view

        return event_view(self, kind)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"summary": self.summary, "warnings": self.warnings,
                               "sensitivity": self.sensitivity}
        for name in self.TABLES:
            out[name] = getattr(self, name).to_dicts()
        return out


def _select_policies(policies: Sequence[str | Policy] | None, isa_key: str | None, has_nested: bool
                     ) -> list[Policy]:
    if policies:
        out = [p if isinstance(p, Policy) else load_policy(p) for p in policies]
    else:
        out = []
        for p in builtin_policies():
            if p.nested != "none":
                if has_nested:
                    out.append(p)
            elif isa_key is None or p.isa in (isa_key, "any"):
                out.append(p)
    seen: dict[str, str] = {}
    for p in out:
        where = p.path or "built-in"
        if p.name in seen and seen[p.name] != where:
            raise UsageError(f"two policies are named {p.name!r} ({seen[p.name]} and {where}): rename one")
        seen[p.name] = where
    return list({p.name: p for p in out}.values())


def _positive(value: float | None, option: str) -> float | None:
    if value is None:
        return None
    if not value > 0 or value == float("inf"):
        raise UsageError(f"{option} must be a positive number of MHz, not {value:g}")
    return float(value)


def analyze(trace: Trace | str | os.PathLike, policies: Sequence[str | Policy] | None = None,
            costs: str | CostProfile | None = None, baseline: str | Policy | None = None, *,
            vcpu: int | None = None, vm: int | None = None, start_ns: int | None = None,
            end_ns: int | None = None, cpu_mhz: float | None = None, tsc_mhz: float | None = None,
            progress: Callable[[int, int], None] | None = None, filters: Filters | None = None,
            gsbase_method: str | None = None) -> Report:
    """Replay each policy on the trace's real exit sequence and compare it with the baseline.

    trace: a Trace or a path to read. policies: built-in names, .toml paths or Policy objects
    (default: every built-in that fits the trace's ISA, plus the nested ones on nested traces).
    costs: a cost profile name, .toml path or CostProfile (default, or "auto": the profile for the
    trace's CPU model where its metadata names one, else for its ISA: zen on SVM, intel on VMX).
    gsbase_method: "msr" or "fsgsbase", how the GS base switch is priced (default: the
    profile's, i.e. what its CPU family has). start_ns/end_ns are
    offsets from the first event, in ns. cpu_mhz converts cycles to time (default: the cost
    profile's); tsc_mhz converts raw x86-tsc timestamps to ns when the file has no TSC2NSEC
    (default: cpu_mhz). progress(done, total) is called as the work advances. filters: a
    Filters (window, VM, vCPU, host CPUs, reasons); vcpu/vm/start_ns/end_ns are set into it.
    """
    if not isinstance(trace, Trace):
        from .reader import read_trace

        trace = read_trace(trace)
    step = (lambda i: progress(i, PROGRESS_STEPS)) if progress else (lambda i: None)
    cost = _select_costs(trace, costs, gsbase_method)
    mhz = _positive(cpu_mhz, "--cpu-mhz") or float(cost.cpu_mhz)
    t_mhz = _positive(tsc_mhz, "--tsc-mhz")
    flt = (filters or Filters()).merged(**vars(Filters.from_offsets(vcpu, vm, start_ns, end_ns)))
    whole = {"trace_events": len(trace), "trace_first_ts": trace.meta.first_ts, "trace_last_ts": trace.meta.last_ts,
             "trace_dropped_events": {str(k): v for k, v in trace.meta.dropped_per_cpu.items()}}
    warnings = list(trace.meta.warnings)

    # Raw TSC timestamps: times given and shown in ns are converted at the TSC frequency.
    raw_tsc = any("raw counter values" in w for w in trace.meta.warnings)
    ns_per_unit = 1.0
    if raw_tsc:
        t_mhz = t_mhz or mhz
        ns_per_unit = 1000.0 / t_mhz
        warnings.append(f"timestamps are TSC counts: durations converted at {t_mhz:g} MHz (--tsc-mhz)")
    trace, window = flt.window(trace, ns_per_unit)
    eps: Episodes = build_episodes(trace)
    step(1)
    warnings += [w for w in eps.warnings if w not in warnings]
    ep = eps.table

    ep = flt.episodes(ep, eps.threads)
    warnings += flt.warnings(eps.threads)
    if ep.height:
        if ns_per_unit != 1.0:
            ep = ep.with_columns(
                (pl.col("latency_ns") * ns_per_unit).round(0).cast(pl.Int64),
                *[(pl.col(c) * ns_per_unit).cast(pl.Int64) for c in ("ts", "put_ts")])
    span_ns = int(eps.span_ns * ns_per_unit)
    isa_key = ISA_KEYS.get(eps.isa) if eps.isa is not None else None
    has_nested = bool(ep.height) and bool(ep["nested"].any())
    pols = _select_policies(policies, isa_key, has_nested)
    base_name = baseline if baseline is not None else DEFAULT_BASELINE.get(isa_key or "svm", "kvm-today")
    base = base_name if isinstance(base_name, Policy) else load_policy(base_name)
    if base.nested != "none":
        raise UsageError(f"the baseline {base.name!r} is a nested policy: use a host policy (kvm-today, vmx-uret)")
    for p in [base, *pols]:
        if isa_key and p.isa not in (isa_key, "any"):
            msg = (f"policy {p.name} is for {p.isa.upper()} but this trace is {isa_key.upper()}: "
                   "its numbers describe that ISA's switching applied to these exits")
            if msg not in warnings:
                warnings.append(msg)

    msr_traced = trace.has("kvm_msr")
    if ep.height and not msr_traced:
        warnings.append("no kvm_msr recorded: MSR exits of unknown index count as lazy-state syncs (conservative)")
    cpus = trace.meta.cpus or 1
    # KVM_RUN starts before a thread's first exit and the user returns they arm, of the selected
    # threads only; exits picked by host CPU or reason own none of them.
    ex_rows = eps.extra
    if flt.active:
        ex_rows = ex_rows.head(0) if flt.per_exit else ex_rows.join(
            flt.threads(eps.threads).select("pid"), on="pid", how="semi")
    extra = extra_boundaries(ex_rows)
    b = boundary_frame(ep) if ep.height else ep
    step(2)

    host = host_policies(base, pols)
    results: dict[str, PolicyResult] = {}
    nested_rows = []
    # One grouping of the episodes by reason, VM and vCPU serves every per-group table.
    index = GroupIndex(ep, ["reason", "vm", "vcpu"]) if ep.height else None
    if ep.height:
        results = replay_all(b, host, cost, extra=extra, msr_traced=msr_traced, span_ns=span_ns,
                             cpus=cpus, groups=REPLAY_GROUPS, index=index)
        del b  # the boundary columns are summed: free them before the latency tables
        nested_rows = nested_table(pols, base, cost, lambda p, be: replay_nested(ep, p, be, cost))
    step(3)

    lat = latency_tables(ep, LAT_GROUPS, index) if ep.height else {k: pl.DataFrame() for k in LAT_GROUPS}
    step(4)
    if index is not None:
        n_vcpus, n_vms = index.frame.select("vm", "vcpu").unique().height, index.frame["vm"].n_unique()
    else:
        n_vcpus = eps.threads.height
        n_vms = eps.threads["vm"].n_unique() if eps.threads.height else 0
    ctx = Context(trace.meta, isa_key, span_ns, base, pols, cost, mhz, t_mhz if raw_tsc else None, flt, window,
                  whole, msr_traced)
    facts = {"exits": int(ep.height), "timed_exits": int(ep["latency_ns"].count()) if ep.height else 0,
             "exit_time_ns": int(ep["latency_ns"].drop_nulls().sum()) if ep.height else 0,
             "vcpus": int(n_vcpus), "vms": int(n_vms), "events": len(trace),
             "classes": {str(k): v for k, v in ep.group_by("cls").len().sort("cls").iter_rows()} if ep.height else {},
             "pairing": eps.counts, "sync_events": eps.sync_events}
    step(5)
    return assemble(ctx, facts, results, lat, nested_rows, warnings, episodes=ep, trace=trace,
                    extra_summary={"percentiles": "exact"})


REPLAY_GROUPS = {"reason": ["reason"], "vcpu": ["vm", "vcpu"]}
LAT_GROUPS = {"latency": ["reason"], "latency_vcpu": ["vm", "vcpu"], "latency_vm": ["vm"],
              "latency_reason_vcpu": ["vm", "vcpu", "reason"], "latency_reason_vm": ["vm", "reason"]}


def host_policies(base: Policy, pols: list[Policy]) -> list[Policy]:
    return [base, *[p for p in pols if p.name != base.name and p.nested == "none"]]


def nested_table(pols: list[Policy], base: Policy, cost: CostProfile, run) -> list[dict]:
    """One row per nested policy; run(policy, baseline exit cycles) gives replay_nested's dict."""
    base_exit = {lvl: sum(base.count("exit", op) * cost.cycles(op, lvl) for op in OPERATIONS) for lvl in LEVELS}
    rows = []
    for p in pols:
        if p.nested != "none":
            nres = run(p, base_exit)
            rows.append({"policy": p.name, "mode": p.nested,
                         **{k: v for k, v in nres.items() if not isinstance(v, dict)},
                         **{f"l0_cycles_saved_{k}": v for k, v in nres["l0_cycles_saved"].items()},
                         **{f"native_cycles_added_{k}": v for k, v in nres["native_cycles_added"].items()}})
    return rows


@dataclasses.dataclass
class Context:
    """What the tables are computed against (the settings and the file's facts)."""
    meta: Any
    isa_key: str | None
    span_ns: int
    base: Policy
    pols: list[Policy]
    cost: CostProfile
    mhz: float
    tsc_mhz: float | None
    flt: Filters
    window: tuple[int, int] | None
    whole: dict[str, Any]
    msr_traced: bool


def assemble(ctx: Context, facts: dict[str, Any], results: dict[str, PolicyResult], lat: dict[str, pl.DataFrame],
             nested_rows: list[dict], warnings: list[str], *, episodes: pl.DataFrame | None = None,
             trace: Trace | None = None, extra_summary: dict[str, Any] | None = None) -> Report:
    """The Report from the replay results and latency tables (the last stage of the pipeline)."""
    base, cost, mhz = ctx.base, ctx.cost, ctx.mhz
    total_exit_ns = facts["exit_time_ns"]
    rows, op_rows, cause_rows, by_reason, by_vcpu = [], [], [], [], []
    deltas: dict[str, dict[str, float]] = {}
    base_res = results.get(base.name)
    for name, r in results.items():
        delta = {op: base_res.ops[op] - r.ops[op] for op in OPERATIONS}
        deltas[name] = delta
        saved = _saved_range(delta, cost)
        saved_ns = saved["typical"] * 1000.0 / mhz
        exits = int(r.boundaries["exit"])
        gs = r.ops["gsbase"] * cost.cycles("gsbase")
        rows.append({
            "policy": name, "isa": r.policy.isa, "baseline": name == base.name, "kernel": r.policy.kernel,
            **{op: r.ops[op] for op in OPERATIONS},
            "vmload_vmsave_avoided": delta["vmload"] + delta["vmsave"],
            "ops_avoided": sum(delta.values()),
            "cycles_typical": r.cycles["typical"],
            "saved_cycles_low": saved["low"], "saved_cycles_typical": saved["typical"],
            "saved_cycles_high": saved["high"],
            "saved_ns_typical": saved_ns,
            "saved_per_exit_cycles": saved["typical"] / exits if exits else 0.0,
            # What the GS base switch a Linux host needs costs, against what the deferral saves
            # before paying for it.
            "gsbase_cycles_typical": gs, "gsbase_cycles_per_exit": gs / exits if exits else 0.0,
            "saved_before_gsbase_cycles_typical": saved["typical"] + gs - base_res.ops["gsbase"] * cost.cycles("gsbase"),
            "share_of_exit_time_pct": saved_ns / total_exit_ns * 100 if total_exit_ns else None,
            "syncs": r.syncs, "mean_exits_between_syncs": exits / r.syncs if r.syncs else None,
            "ist_off_ns": r.ist_off_ns, "ist_off_scope": r.ist_off_scope,
            "guest_state_live_ns": r.guest_state_live_ns,
        })
        for op in OPERATIONS:
            op_rows.append({"policy": name, "op": op, "executed": r.ops[op], "baseline": base_res.ops[op],
                            "avoided": delta[op]})
        for cause, cnt in r.sync_causes.items():
            cause_rows.append({"policy": name, "cause": cause, "count": cnt})
        for group, keys, frames, lt in (("reason", ["reason"], by_reason, lat["latency"]),
                                        ("vcpu", ["vm", "vcpu"], by_vcpu, lat["latency_vcpu"])):
            g = base_res.by_group[group].join(r.by_group[group], on=keys, suffix="_p")
            g = g.select(*keys, (pl.col("cycles_typical") - pl.col("cycles_typical_p")).alias("saved_cycles_typical"))
            g = g.join(lt.select(*keys, "exits", pl.col("total_ns").alias("exit_ns")), on=keys, how="left")
            frames.append(g.with_columns(pl.lit(name).alias("policy")))

    policies_df = pl.DataFrame(rows) if rows else pl.DataFrame(schema={"policy": pl.Utf8})
    sens = _sensitivity(policies_df, deltas, cost) if rows else {}
    if rows:
        policies_df = policies_df.with_columns(
            pl.col("saved_cycles_typical").rank("min", descending=True).cast(pl.Int32).alias("rank"))

    def _fin(frames: list[pl.DataFrame], keys: list[str]) -> pl.DataFrame:
        if not frames:
            return pl.DataFrame()
        df = pl.concat(frames, how="diagonal_relaxed")
        return df.with_columns(
            (pl.col("saved_cycles_typical") * 1000.0 / mhz).alias("saved_ns_typical"),
            (pl.col("saved_cycles_typical") * 1000.0 / mhz / pl.col("exit_ns") * 100).alias("share_pct"),
        ).select("policy", *keys, "exits", "exit_ns", "saved_cycles_typical", "saved_ns_typical", "share_pct"
                 ).sort(["policy", "exits", *keys], descending=[False, True] + [False] * len(keys))

    meta = ctx.meta
    summary = {
        "path": meta.path, "format": meta.source_format, "version": meta.version,
        "compression": meta.compression, "clock": meta.clock, "cpus": meta.cpus,
        "isa": ctx.isa_key, "events": facts["events"], "span_ns": ctx.span_ns,
        "exits": facts["exits"], "timed_exits": facts["timed_exits"],
        "exit_time_ns": total_exit_ns, "msr_traced": ctx.msr_traced,
        "exits_per_s": facts["exits"] / (ctx.span_ns / 1e9) if ctx.span_ns else None,
        "vcpus": facts["vcpus"], "vms": facts["vms"], "classes": facts["classes"],
        "dropped_events": dict(ctx.whole["trace_dropped_events"]),
        "pairing": facts["pairing"], "sync_events": facts["sync_events"],
        "baseline": base.name, "policies": [p.name for p in ctx.pols], "cost_profile": cost.name,
        "gsbase_method": cost.gsbase_method, "cpu_mhz": mhz,
        "tsc_mhz": ctx.tsc_mhz,
        "filters": ctx.flt.to_dict(), **ctx.whole,
        "window": None if ctx.window is None else {"from_ts": ctx.window[0], "to_ts": ctx.window[1]},
        **(extra_summary or {}),
    }
    costs_df = pl.DataFrame([{"op": op, "low": c.low, "typical": c.typical, "high": c.high, "source": c.source}
                             for op, c in cost.ops.items()])
    return Report(
        summary=summary, warnings=warnings,
        latency=lat["latency"], latency_vcpu=lat["latency_vcpu"], latency_vm=lat["latency_vm"],
        latency_reason_vcpu=lat["latency_reason_vcpu"], latency_reason_vm=lat["latency_reason_vm"],
        policies=policies_df, ops=pl.DataFrame(op_rows), sync_causes=pl.DataFrame(cause_rows),
        savings_by_reason=_fin(by_reason, ["reason"]), savings_by_vcpu=_fin(by_vcpu, ["vm", "vcpu"]),
        nested=pl.DataFrame(nested_rows), costs=costs_df, sensitivity=sens,
        episodes=episodes if episodes is not None else pl.DataFrame(), trace=trace,
    )




def _select_costs(trace: Trace, costs: str | CostProfile | None, gsbase_method: str | None) -> CostProfile:
    """The cost profile: given, or the one for the trace's CPU model / ISA."""
    if isinstance(costs, CostProfile):
        cost = costs
    elif costs and costs != "auto":
        cost = load_costs(costs)
    else:
        isa = None
        if trace.has("kvm_exit") and "isa" in trace.table("kvm_exit").column_names:
            vals = trace.table("kvm_exit").column("isa").drop_null()
            isa = ISA_KEYS.get(int(vals[0].as_py())) if len(vals) else None
        model = trace.meta.extra.get("cpu_model") or trace.meta.extra.get("cpudesc")
        cost = default_costs(isa, model if isinstance(model, str) else None)
    return cost.with_gsbase_method(gsbase_method) if gsbase_method else cost


def _saved_range(delta: dict[str, float], cost: CostProfile) -> dict[str, float]:
    """A range, not three points: avoided operations at their cheapest and added ones at their
    dearest give the low end; the reverse gives the high end."""
    return {
        "low": sum(d * (cost.cycles(op, "low") if d > 0 else cost.cycles(op, "high")) for op, d in delta.items()),
        "typical": sum(d * cost.cycles(op, "typical") for op, d in delta.items()),
        "high": sum(d * (cost.cycles(op, "high") if d > 0 else cost.cycles(op, "low")) for op, d in delta.items()),
    }


def _sensitivity(policies_df: pl.DataFrame, deltas: dict[str, dict[str, float]], cost: CostProfile
                 ) -> dict[str, Any]:
    """Does the ranking by cycles saved survive the cost uncertainty?

    The rankings at all-low, all-typical and all-high costs, and an exact test over every
    combination of per-operation costs within [low, high]: the difference between two policies'
    savings is linear in the costs, so its extremes lie at corners of that box, one per sign of
    each operation's count difference. A pair whose difference can change sign can swap.
    """
    sens: dict[str, Any] = {}
    for lvl in LEVELS:
        saved = {p: sum(d * cost.cycles(op, lvl) for op, d in deltas[p].items()) for p in deltas}
        sens[f"ranking_{lvl}"] = sorted(saved, key=lambda p: (-saved[p], p))
    sens["ranking_stable"] = sens["ranking_low"] == sens["ranking_typical"] == sens["ranking_high"]
    order = sens["ranking_typical"]
    swaps = []
    for a, b in itertools.combinations(order, 2):
        diff = {op: deltas[a][op] - deltas[b][op] for op in OPERATIONS}
        if not any(diff.values()):
            continue
        lo = sum(d * (cost.cycles(op, "low") if d > 0 else cost.cycles(op, "high")) for op, d in diff.items())
        hi = sum(d * (cost.cycles(op, "high") if d > 0 else cost.cycles(op, "low")) for op, d in diff.items())
        if lo < 0 < hi or (lo < 0 and hi <= 0):
            driver = max(diff, key=lambda op: abs(diff[op]) * (cost.cycles(op, "high") - cost.cycles(op, "low")))
            swaps.append({"above": a, "below": b, "margin_min_cycles": lo, "margin_max_cycles": hi,
                          "driver": driver})
    sens["pairs_that_can_swap"] = swaps
    sens["ranking_robust"] = not swaps
    return sens
