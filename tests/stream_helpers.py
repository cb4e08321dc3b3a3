"""Two Reports equal in every count, sum, table and ranking (the streaming fold's contract)."""
from __future__ import annotations

from polars.testing import assert_frame_equal

TABLE_KEYS = {"policies": ["policy"], "ops": ["policy", "op"], "sync_causes": ["policy", "cause"],
              "savings_by_reason": ["policy", "reason"], "savings_by_vcpu": ["policy", "vm", "vcpu"],
              "nested": ["policy"], "latency": ["reason"], "latency_vcpu": ["vm", "vcpu"], "latency_vm": ["vm"],
              "latency_reason_vcpu": ["vm", "vcpu", "reason"], "latency_reason_vm": ["vm", "reason"],
              "costs": ["op"]}
SUMMARY = ("exits", "timed_exits", "exit_time_ns", "events", "span_ns", "vcpus", "vms", "classes", "pairing",
           "sync_events", "isa", "baseline", "policies", "cost_profile", "msr_traced", "trace_events",
           "dropped_events")


def assert_same_report(a, b, what: str = "") -> None:
    for name, keys in TABLE_KEYS.items():
        x, y = getattr(a, name), getattr(b, name)
        assert x.height == y.height, f"{what} {name}: {x.height} rows, streamed {y.height}"
        if not x.height:
            continue
        assert set(x.columns) == set(y.columns), f"{what} {name}: columns differ"
        k = [c for c in keys if c in x.columns]
        try:
            assert_frame_equal(x.sort(k), y.select(x.columns).sort(k), check_dtypes=False, check_exact=False,
                               rel_tol=1e-9, abs_tol=1e-6)
        except AssertionError as e:
            raise AssertionError(f"{what} {name}: {e}") from None
    for k in SUMMARY:
        assert a.summary.get(k) == b.summary.get(k), f"{what} summary[{k}]: {a.summary.get(k)} != {b.summary.get(k)}"
    assert a.warnings == b.warnings, f"{what} warnings: {a.warnings} != {b.warnings}"
    from exitreplay.views import event_view

    for kind in ("ioport", "mmio", "msr", "npf"):
        x, y = event_view(a, kind), event_view(b, kind)
        assert x.height == y.height, f"{what} {kind} view: {x.height} rows, streamed {y.height}"
        if x.height:
            assert_frame_equal(x, y.select(x.columns), check_dtypes=False, check_exact=False, rel_tol=1e-9,
                               abs_tol=1e-6)
    for k in ("ranking_low", "ranking_typical", "ranking_high", "pairs_that_can_swap"):
        assert a.sensitivity.get(k) == b.sensitivity.get(k), f"{what} sensitivity[{k}]"
