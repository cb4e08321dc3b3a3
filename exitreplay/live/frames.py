"""What the live view shows, per interval: the difference of two successive Reports.

A Report counts everything fed so far, so an interval's exits, saved cycles, syncs and
sync-point events are this report's totals minus the previous one's (`Frame.delta`); summed
over every interval they give the last report's totals. Rates divide by the trace time the
interval covers. Quantiles do not subtract: the p50/p99 handling times are those of the
interval's own exits, from the report's episodes with their ts in the interval (the nearest-rank
quantiles of stats.latency_tables, as analyze's); a report without episodes gives its own,
over everything so far (`latency_scope` says which).
"""
from __future__ import annotations

import dataclasses
from typing import Any

import polars as pl

from ..stats import GroupIndex, latency_tables

# Sync-point events the view counts straight from each window, exits or not: what a host whose
# KVM fires no kvm_exit (kvm_pvm) still shows.
SYNC_EVENTS = ("kvm_userspace_exit", "kvm_msr", "kvm_pio", "kvm_mmio", "kvm_fpu", "sched_switch")


@dataclasses.dataclass
class Totals:
    """The cumulative counters of one Report (and of the windows' events)."""

    exits: int = 0
    by_reason: dict[str, int] = dataclasses.field(default_factory=dict)
    by_vcpu: dict[str, int] = dataclasses.field(default_factory=dict)  # "vm/vcpu"
    saved: dict[str, float] = dataclasses.field(default_factory=dict)  # policy -> cycles (typical)
    syncs: dict[str, int] = dataclasses.field(default_factory=dict)
    live_ns: dict[str, int] = dataclasses.field(default_factory=dict)  # guest state live in the host
    ist_off_ns: dict[str, int] = dataclasses.field(default_factory=dict)  # host time with IST off
    causes: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)  # policy -> cause -> n
    sync_events: dict[str, int] = dataclasses.field(default_factory=dict)  # the analysis's, vCPU threads
    events: dict[str, int] = dataclasses.field(default_factory=dict)  # SYNC_EVENTS, every task
    lost: int = 0  # events the ring buffer lost, where a page counted them
    lost_uncounted: int = 0  # losses a page marked without counting them


def _pairs(df, key: str, value: str) -> dict:
    if df.height == 0 or key not in df.columns:
        return {}
    return dict(zip(df[key].to_list(), df[value].to_list()))


def totals_of(report, events: dict[str, int], lost: tuple[int, int] = (0, 0)) -> Totals:
    """The counters of `report`, with `events` (SYNC_EVENTS counted over the windows so far) and
    `lost` (events lost where counted, losses not counted: in the windows so far)."""
    pol = report.policies
    vc = report.latency_vcpu
    by_vcpu = ({f"{vm}/{v}": n for vm, v, n in zip(vc["vm"].to_list(), vc["vcpu"].to_list(), vc["exits"].to_list())}
               if vc.height else {})
    causes: dict[str, dict[str, int]] = {}
    for p, c, n in report.sync_causes.iter_rows() if report.sync_causes.height else ():
        causes.setdefault(p, {})[c] = n
    return Totals(
        exits=int(report.summary.get("exits", 0)), by_reason=_pairs(report.latency, "reason", "exits"),
        by_vcpu=by_vcpu, saved=_pairs(pol, "policy", "saved_cycles_typical"), syncs=_pairs(pol, "policy", "syncs"),
        live_ns=_pairs(pol, "policy", "guest_state_live_ns"), ist_off_ns=_pairs(pol, "policy", "ist_off_ns"),
        causes=causes,
        sync_events=dict(report.summary.get("sync_events") or {}), events=dict(events), lost=lost[0],
        lost_uncounted=lost[1])


def _sub(a: dict, b: dict) -> dict:
    return {k: v - b.get(k, 0) for k, v in a.items()}


def delta(cur: Totals, prev: Totals) -> Totals:
    return Totals(
        exits=cur.exits - prev.exits, by_reason=_sub(cur.by_reason, prev.by_reason),
        by_vcpu=_sub(cur.by_vcpu, prev.by_vcpu), saved=_sub(cur.saved, prev.saved),
        syncs=_sub(cur.syncs, prev.syncs), live_ns=_sub(cur.live_ns, prev.live_ns),
        ist_off_ns=_sub(cur.ist_off_ns, prev.ist_off_ns),
        causes={p: _sub(c, prev.causes.get(p, {})) for p, c in cur.causes.items()},
        sync_events=_sub(cur.sync_events, prev.sync_events), events=_sub(cur.events, prev.events),
        lost=cur.lost - prev.lost, lost_uncounted=cur.lost_uncounted - prev.lost_uncounted)


@dataclasses.dataclass
class Frame:
    """One interval: its counts (`delta`), the totals so far, and what the report says besides."""

    t_s: float  # end of the interval, seconds after the first event
    span_s: float  # trace time the interval covers
    delta: Totals
    total: Totals
    latency: dict[str, tuple[Any, Any]]  # reason -> (p50_ns, p99_ns)
    latency_vcpu: dict[str, tuple[Any, Any]]  # "vm/vcpu" -> (p50_ns, p99_ns)
    baseline: str | None
    cost: str | None
    cpu_mhz: float
    isa: str | None
    no_exits: bool  # the trace so far has no kvm_exit at all
    vcpus: int
    vms: int
    latency_scope: str = "frame"  # or "so far"

    def rate(self, n: float) -> float:
        return n / self.span_s if self.span_s > 0 else 0.0


def _quantiles(df, keys: list[str]) -> dict[str, tuple[Any, Any]]:
    if df.height == 0:
        return {}
    names = ["/".join(str(v) for v in row) for row in df.select(keys).iter_rows()]
    return dict(zip(names, zip(df["p50_ns"].to_list(), df["p99_ns"].to_list())))


def interval_latency(report, lo: int, hi: int) -> tuple[dict, dict] | None:
    """p50/p99 by reason and by VM/vCPU of the exits with lo <= ts < hi; None without episodes."""
    ep = report.episodes
    if ep is None or ep.height == 0 or "ts" not in ep.columns:
        return None if report.summary.get("exits") else ({}, {})
    ep = ep.filter((pl.col("ts") >= lo) & (pl.col("ts") < hi))
    if ep.height == 0:
        return {}, {}
    lat = latency_tables(ep, {"reason": ["reason"], "vcpu": ["vm", "vcpu"]}, GroupIndex(ep, ["reason", "vm", "vcpu"]))
    return _quantiles(lat["reason"], ["reason"]), _quantiles(lat["vcpu"], ["vm", "vcpu"])


def frame_of(report, cur: Totals, prev: Totals, t_s: float, span_s: float, lo: int | None = None,
             hi: int | None = None) -> Frame:
    s = report.summary
    own = interval_latency(report, lo, hi) if lo is not None and hi is not None else None
    if own is None:
        by_reason, by_vcpu = _quantiles(report.latency, ["reason"]), _quantiles(report.latency_vcpu, ["vm", "vcpu"])
    else:
        by_reason, by_vcpu = own
    return Frame(t_s, span_s, delta(cur, prev), cur, by_reason, by_vcpu, s.get("baseline"), s.get("cost_profile"),
                 float(s.get("cpu_mhz") or 0.0), s.get("isa"), not fires_kvm_exit(report),
                 int(s.get("vcpus") or 0), int(s.get("vms") or 0), "frame" if own is not None else "so far")


def fires_kvm_exit(report) -> bool:
    """Whether the source has kvm_exit events at all (a filter that selects no exit still has)."""
    if report.trace is not None:
        return report.trace.has("kvm_exit") and report.trace.table("kvm_exit").num_rows > 0
    return bool(report.summary.get("exits")) or not any(w.startswith("no kvm_exit") for w in report.warnings)
