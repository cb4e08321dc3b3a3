"""`analyze(trace, ...) -> Report`: the library call behind `exitreplay analyze`.

No printing here: renderers (render.py, the charts) take the Report.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import polars as pl

from .episodes import Episodes, build_episodes
from .errors import UsageError
from .kvm import reasons
from .replay.costs import LEVELS, CostProfile, load_costs
from .replay.engine import PolicyResult, boundary_frame, replay, replay_nested
from .replay.policy import OPERATIONS, Policy, builtin_policies, load_policy
from .stats import latency_table
from .trace import Trace

ISA_KEYS = {reasons.ISA_SVM: "svm", reasons.ISA_VMX: "vmx"}
DEFAULT_BASELINE = {"svm": "kvm-today", "vmx": "vmx-uret"}


@dataclasses.dataclass
class Report:
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

    TABLES = ("latency", "latency_vcpu", "latency_vm", "policies", "ops", "sync_causes", "savings_by_reason",
              "savings_by_vcpu", "nested", "costs")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"summary": self.summary, "warnings": self.warnings,
                               "sensitivity": self.sensitivity}
        for name in self.TABLES:
            out[name] = getattr(self, name).to_dicts()
        return out


def _select_policies(policies: Sequence[str | Policy] | None, isa_key: str | None, has_nested: bool
                     ) -> list[Policy]:
    if policies:
        return [p if isinstance(p, Policy) else load_policy(p) for p in policies]
    out = []
    for p in builtin_policies():
        if p.nested != "none":
            if has_nested:
                out.append(p)
        elif isa_key is None or p.isa in (isa_key, "any"):
            out.append(p)
    return out


def analyze(trace: Trace, policies: Sequence[str | Policy] | None = None, costs: str | CostProfile | None = None,
            baseline: str | Policy | None = None, *, vcpu: int | None = None, vm: int | None = None,
            start_ns: int | None = None, end_ns: int | None = None, cpu_mhz: float | None = None,
            tsc_mhz: float | None = None, progress: Callable[[int, int], None] | None = None) -> Report:
    """Replay each policy on the trace's real exit sequence and compare it with the baseline.

    start_ns/end_ns are offsets from the first event. cpu_mhz converts cycles to time (default:
    the cost profile's); tsc_mhz converts raw x86-tsc timestamps to ns when the file has no
    TSC2NSEC (default: cpu_mhz).
    """
    cost = costs if isinstance(costs, CostProfile) else load_costs(costs or "epyc")
    mhz = float(cpu_mhz or cost.cpu_mhz)
    if mhz <= 0:
        raise UsageError("--cpu-mhz must be positive")
    warnings = list(trace.meta.warnings)
    if start_ns is not None or end_ns is not None:
        t0 = trace.meta.first_ts or 0
        trace = trace.slice_time(None if start_ns is None else t0 + start_ns, None if end_ns is None else t0 + end_ns)
    eps: Episodes = build_episodes(trace)
    if progress:
        progress(1, 3)
    warnings += [w for w in eps.warnings if w not in warnings]
    ep = eps.table

    # Raw TSC timestamps: turn durations into ns so times and cycles mean what they say.
    raw_tsc = any("raw counter values" in w for w in trace.meta.warnings)
    ns_per_unit = 1.0
    if raw_tsc:
        t_mhz = float(tsc_mhz or mhz)
        ns_per_unit = 1000.0 / t_mhz
        warnings.append(f"timestamps are TSC counts: durations converted at {t_mhz:g} MHz (--tsc-mhz)")
    if ep.height:
        if vcpu is not None:
            ep = ep.filter(pl.col("vcpu") == vcpu)
        if vm is not None:
            ep = ep.filter((pl.col("vm") == vm) | (pl.col("pid") == vm))
        if (vcpu is not None or vm is not None) and ep.height == 0:
            raise UsageError(f"no exits for vcpu={vcpu} vm={vm} (vCPUs: "
                             f"{eps.threads.select('vm', 'vcpu', 'pid').to_dicts()})")
        if ns_per_unit != 1.0:
            scale = [c for c in ("latency_ns",) if c in ep.columns]
            ep = ep.with_columns([(pl.col(c) * ns_per_unit).round(0).cast(pl.Int64) for c in scale])
            for c in ("ts", "entry_ts", "put_ts", "userspace_ts", "sched_ts"):
                if c in ep.columns:
                    ep = ep.with_columns((pl.col(c) * ns_per_unit).cast(pl.Int64))
    span_ns = int(eps.span_ns * ns_per_unit)
    isa_key = ISA_KEYS.get(eps.isa) if eps.isa is not None else None
    has_nested = bool(ep.height) and bool(ep["nested"].any())
    pols = _select_policies(policies, isa_key, has_nested)
    base_name = baseline if baseline is not None else DEFAULT_BASELINE.get(isa_key or "svm", "kvm-today")
    base = base_name if isinstance(base_name, Policy) else load_policy(base_name)
    for p in pols:
        if isa_key and p.isa not in (isa_key, "any"):
            warnings.append(f"policy {p.name} is for {p.isa.upper()} but this trace is {isa_key.upper()}: "
                            "its numbers describe that ISA's switching applied to these exits")

    msr_traced = trace.has("kvm_msr")
    if ep.height and not msr_traced:
        warnings.append("no kvm_msr recorded: MSR exits of unknown index count as lazy-state syncs (conservative)")
    cpus = trace.meta.cpus or 1
    first_loads = eps.counts.get("first_entries", 0) if vcpu is None and vm is None else 0
    total_exit_ns = int(ep["latency_ns"].drop_nulls().sum()) if ep.height else 0
    b = boundary_frame(ep) if ep.height else ep

    results: dict[str, PolicyResult] = {}
    nested_rows = []
    if ep.height:
        for p in [base, *[p for p in pols if p.name != base.name]]:
            if p.nested != "none":
                continue
            results[p.name] = replay(b, p, cost, first_loads=first_loads, msr_traced=msr_traced,
                                     span_ns=span_ns, cpus=cpus)
        base_exit = {lvl: sum(base.count("exit", op) * cost.cycles(op, lvl) for op in OPERATIONS) for lvl in LEVELS}
        for p in pols:
            if p.nested != "none":
                nres = replay_nested(ep, p, base_exit, cost)
                nested_rows.append({"policy": p.name, **{k: v for k, v in nres.items() if not isinstance(v, dict)},
                                    **{f"l0_cycles_saved_{k}": v for k, v in nres["l0_cycles_saved"].items()},
                                    **{f"native_cycles_added_{k}": v for k, v in nres["native_cycles_added"].items()}})
    if progress:
        progress(2, 3)

    rows, op_rows, cause_rows, by_reason, by_vcpu = [], [], [], [], []
    base_res = results.get(base.name)
    for name, r in results.items():
        if base_res is None:
            break
        delta = {op: base_res.ops[op] - r.ops[op] for op in OPERATIONS}
        # A range, not three points: avoided operations at their cheapest and added ones at their
        # dearest give the low end; the reverse gives the high end.
        saved = {
            "low": sum(d * (cost.cycles(op, "low") if d > 0 else cost.cycles(op, "high")) for op, d in delta.items()),
            "typical": sum(d * cost.cycles(op, "typical") for op, d in delta.items()),
            "high": sum(d * (cost.cycles(op, "high") if d > 0 else cost.cycles(op, "low")) for op, d in delta.items()),
        }
        saved_ns = saved["typical"] * 1000.0 / mhz
        exits = int(r.boundaries["exit"])
        rows.append({
            "policy": name, "isa": r.policy.isa, "baseline": name == base.name,
            "vmload": r.ops["vmload"], "vmsave": r.ops["vmsave"], "ltr": r.ops["ltr"], "wrmsr": r.ops["wrmsr"],
            "rdmsr": r.ops["rdmsr"], "seg_reload": r.ops["seg_reload"], "ist_toggle": r.ops["ist_toggle"],
            "vmload_vmsave_avoided": delta["vmload"] + delta["vmsave"],
            "ops_avoided": sum(delta.values()),
            "cycles_typical": r.cycles["typical"],
            "saved_cycles_low": saved["low"], "saved_cycles_typical": saved["typical"],
            "saved_cycles_high": saved["high"],
            "saved_ns_typical": saved_ns,
            "saved_per_exit_cycles": saved["typical"] / exits if exits else 0.0,
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
        diff = (base_res.per_episode_typical - r.per_episode_typical).alias("saved")
        attr = ep.select("reason", "vm", "vcpu", "latency_ns").with_columns(diff)
        g = attr.group_by("reason").agg(pl.len().alias("exits"), pl.col("saved").sum().alias("saved_cycles_typical"),
                                        pl.col("latency_ns").sum().alias("exit_ns"))
        by_reason.append(g.with_columns(pl.lit(name).alias("policy")))
        g = attr.group_by(["vm", "vcpu"]).agg(pl.len().alias("exits"), pl.col("saved").sum().alias("saved_cycles_typical"),
                                              pl.col("latency_ns").sum().alias("exit_ns"))
        by_vcpu.append(g.with_columns(pl.lit(name).alias("policy")))

    policies_df = pl.DataFrame(rows) if rows else pl.DataFrame(schema={"policy": pl.Utf8})
    sens: dict[str, Any] = {}
    if rows:
        for lvl in LEVELS:
            order = policies_df.sort(f"saved_cycles_{lvl}", descending=True)["policy"].to_list()
            sens[f"ranking_{lvl}"] = order
        sens["ranking_stable"] = sens["ranking_low"] == sens["ranking_typical"] == sens["ranking_high"]
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
                 ).sort(["policy", "exits"], descending=[False, True])

    n_vcpus = ep.select(pl.struct("vm", "vcpu").n_unique()).item() if ep.height else eps.threads.height
    summary = {
        "path": trace.meta.path, "format": trace.meta.source_format, "version": trace.meta.version,
        "compression": trace.meta.compression, "clock": trace.meta.clock, "cpus": trace.meta.cpus,
        "isa": isa_key, "events": len(trace), "span_ns": span_ns,
        "exits": int(ep.height), "timed_exits": int(ep["latency_ns"].count()) if ep.height else 0,
        "exit_time_ns": total_exit_ns,
        "exits_per_s": ep.height / (span_ns / 1e9) if span_ns else None,
        "vcpus": int(n_vcpus), "vms": int(eps.threads["vm"].n_unique()) if eps.threads.height else 0,
        "classes": dict(ep.group_by("cls").len().iter_rows()) if ep.height else {},
        "dropped_events": {str(k): v for k, v in trace.meta.dropped_per_cpu.items()},
        "pairing": eps.counts, "sync_events": eps.sync_events,
        "baseline": base.name, "cost_profile": cost.name, "cpu_mhz": mhz,
        "filters": {"vcpu": vcpu, "vm": vm, "from_ns": start_ns, "to_ns": end_ns},
    }
    costs_df = pl.DataFrame([{"op": op, "low": c.low, "typical": c.typical, "high": c.high, "source": c.source}
                             for op, c in cost.ops.items()])
    lat_vcpu = latency_table(ep, ["vm", "vcpu"]) if ep.height else pl.DataFrame()
    if progress:
        progress(3, 3)
    return Report(
        summary=summary, warnings=warnings,
        latency=latency_table(ep, ["reason"]) if ep.height else pl.DataFrame(),
        latency_vcpu=lat_vcpu, latency_vm=latency_table(ep, ["vm"]) if ep.height else pl.DataFrame(),
        policies=policies_df, ops=pl.DataFrame(op_rows), sync_causes=pl.DataFrame(cause_rows),
        savings_by_reason=_fin(by_reason, ["reason"]), savings_by_vcpu=_fin(by_vcpu, ["vm", "vcpu"]),
        nested=pl.DataFrame(nested_rows), costs=costs_df, sensitivity=sens, episodes=ep,
    )
