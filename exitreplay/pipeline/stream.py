"""The carried-state fold: StreamAnalysis.feed(window) ... report() (see __init__)."""
from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterable
from typing import Any

import polars as pl

from ..analysis import (
    DEFAULT_BASELINE,
    ISA_KEYS,
    LAT_GROUPS,
    REPLAY_GROUPS,
    Context,
    Report,
    _positive,
    _select_policies,
    assemble,
    host_policies,
    nested_table,
)
from ..episodes import build_episodes
from ..episodes.build import ABSENT, WARN, sync_names
from ..filters import Filters
from ..replay.engine import (
    boundary_frame,
    episode_sums,
    extra_boundaries,
    l1_last,
    l1_loads,
    nested_counts,
    nested_from_counts,
    results_from_sums,
)
from ..replay.policy import Policy, builtin_policies, load_policy
from ..trace import Trace
from ..views import EVENT_OF, KEY_COLUMNS, empty_view, keyed_views, label
from .latency import KEYS
from .partial import FACTS, Partial, Snapshot, add_counts, reclassify
from .view import concat

MAX_TAIL = 8_000_000  # events kept for an exit still open: past this the oldest is closed as open


class StreamAnalysis:
    def __init__(self, policies=None, costs=None, baseline=None, *, filters: Filters | None = None,
                 cpu_mhz=None, tsc_mhz=None, gsbase_method=None, own_ts: tuple[int, int] | None = None,
                 max_tail: int = MAX_TAIL, recent_episodes: bool = False):
        """recent_episodes: each report()'s `episodes` holds the exits owned since the previous
        report() (a live view's interval); otherwise reports carry no episode table."""
        self.policies, self.costs_arg, self.baseline = policies, costs, baseline
        self.flt = filters or Filters()
        self.cpu_mhz, self.tsc_mhz, self.gsbase_method = cpu_mhz, tsc_mhz, gsbase_method
        self.own_ts, self.max_tail = own_ts, max_tail
        self.recent_episodes = recent_episodes
        self.recent: list[pl.DataFrame] = []
        self.tail: Trace | None = None
        self.carry = None
        self.part = Partial()
        self.meta = None
        self.first_ts = self.last_ts = None
        self.events = 0
        self.dropped: list = []
        self.threads = pl.DataFrame()
        self.isa = None
        self.msr_traced = False
        self.late_eps = pl.DataFrame()
        self.l1_before = None
        self._pool = self._pending = None
        user = [p if isinstance(p, Policy) else load_policy(p) for p in policies] if policies else []
        base = baseline if isinstance(baseline, Policy) else load_policy(baseline) if baseline else None
        # Every policy the Report may list is summed from the start: which ones it lists depends
        # on the ISA and on nested exits, known only at the end.
        defaults = [load_policy(n) for n in DEFAULT_BASELINE.values()] if base is None else [base]
        self.all_policies = list({p.name: p for p in [*(builtin_policies() if not user else []), *user,
                                                      *defaults]}.values())

    @property
    def done(self) -> bool:
        """Every exit of the owned time range has ended, and no CPU's state still refers to one of
        them (a return to user mode could yet be attributed to it)."""
        self._drain()
        if self.own_ts is None or self.last_ts is None or self.last_ts < self.own_ts[1]:
            return False
        if self.tail is not None and len(self.tail) and int(self.tail.events.column("ts")[0].as_py()) < self.own_ts[1]:
            return False
        return not self.late_eps.height

    def feed(self, window: Trace) -> None:
        if self.meta is None:
            self._start(window)
        self.meta = window.meta  # the file's warnings are complete in its last window
        self.events += self._owned_events(window)
        self.dropped += [d for d in window.meta.dropped if self.own_ts is None or self.own_ts[0] <= d.ts < self.own_ts[1]]
        window = self._in_window(window)
        view = concat(self.tail, window)
        self.msr_traced |= view.has("kvm_msr")
        if not (view.has("kvm_exit") and view.table("kvm_exit").num_rows) and len(view) <= self.max_tail // 4:
            self.tail = view  # nothing to cut at yet: the view waits for its first exit
            return
        forced = len(view) > self.max_tail
        eps = build_episodes(view, self.carry, final=forced, own=self._own_rows(view))
        self._submit(self._absorb_view, eps, view, forced)
        if eps.cut is None:  # a view with no exits, closed: what it carried stays as it was
            self.tail = None
            return
        self.carry = None if forced else eps.carry
        self.tail = None if forced else view.slice_rows(eps.cut)

    # -- the absorbing thread -------------------------------------------------------------------
    # A view's episodes are summed (_absorb) on a thread while the next view's are built: the
    # fold's carried state (tail, carry) does not depend on the sums, and the sums are added in
    # view order, one view at a time. Much of both runs in NumPy and Polars outside the GIL.
    def _submit(self, fn, *args) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self._drain()
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="exitreplay-absorb")
        self._pending = self._pool.submit(fn, *args)

    def _drain(self) -> None:
        """Wait for the view being summed; its error, if any, is raised here."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def _absorb_view(self, eps, view: Trace, forced: bool) -> None:
        if forced:
            self.part.warnings.append(f"an exit stayed open for more than {self.max_tail} events: the views "
                                      "were closed there (its episode counts as open at the end)")
        self._absorb(self.part, eps, view)

    def _own_rows(self, view: Trace) -> tuple[int, int] | None:
        """The rows of the owned time range in this view (rows follow time)."""
        if self.own_ts is None:
            return None
        import numpy as np

        ts = np.asarray(view.events.column("ts").to_numpy())
        lo, hi = np.searchsorted(ts, self.own_ts[0]), np.searchsorted(ts, self.own_ts[1])
        return view.row_base + int(lo), view.row_base + int(hi) if hi < ts.size else 2**62

    def _owned_events(self, window: Trace) -> int:
        if self.own_ts is None or not len(window):
            if len(window):
                ts = window.events.column("ts")
                self.first_ts = self.first_ts if self.first_ts is not None else int(ts[0].as_py())
                self.last_ts = int(ts[-1].as_py())
            return len(window)
        import numpy as np

        ts = np.asarray(window.events.column("ts").to_numpy())
        self.last_ts = int(ts[-1])  # how far the worker has read (done)
        mine = ts[(ts >= self.own_ts[0]) & (ts < self.own_ts[1])]
        if mine.size:
            self.own_first = int(mine[0]) if getattr(self, "own_first", None) is None else self.own_first
            self.own_last = int(mine[-1])
        return int(mine.size)

    def _start(self, first: Trace) -> None:
        meta = first.meta
        self.raw_tsc = any("raw counter values" in w for w in meta.warnings)
        mhz = _positive(self.cpu_mhz, "--cpu-mhz")
        self.t_mhz = _positive(self.tsc_mhz, "--tsc-mhz")
        if self.raw_tsc:
            # The cost profile's clock is known only at the end: without --cpu-mhz/--tsc-mhz the
            # TSC is taken to run at the default profile's frequency, as analyze() does.
            from ..replay.costs import default_costs

            self.t_mhz = self.t_mhz or mhz or float(default_costs(None, None).cpu_mhz)
        self.ns_per_unit = 1000.0 / self.t_mhz if self.raw_tsc else 1.0
        self.bounds = None
        if self.flt.start is not None or self.flt.end is not None:
            first_ts = int(first.events.column("ts")[0].as_py()) if len(first) else 0
            lo = None if self.flt.start is None else self.flt.start.resolve(first_ts, self.ns_per_unit)
            hi = None if self.flt.end is None else self.flt.end.resolve(first_ts, self.ns_per_unit)
            self.bounds = (lo if lo is not None else first_ts, hi if hi is not None else 2**63 - 1)

    def _in_window(self, window: Trace) -> Trace:
        """The events inside --from/--to (rows kept: they are contiguous)."""
        if self.bounds is None or not len(window):
            return window
        import numpy as np

        ts = np.asarray(window.events.column("ts").to_numpy())
        lo, hi = np.searchsorted(ts, self.bounds[0]), np.searchsorted(ts, self.bounds[1])
        self.in_window = getattr(self, "in_window", 0) + int(hi - lo)
        if hi > lo:
            self.win_first = int(ts[lo]) if getattr(self, "win_first", None) is None else self.win_first
            self.win_last = int(ts[hi - 1])
        return window.slice_rows(window.row_base + int(lo), window.row_base + int(hi))

    def partial(self) -> Snapshot:
        """What this fold found, as plain data that merges with other workers' (merge, finish)."""
        self._drain()
        part = copy.deepcopy(self.part)
        if self.tail is not None and len(self.tail):
            eps = build_episodes(self.tail, self.carry, final=True, own=self._own_rows(self.tail))
            self._absorb(part, eps, self.tail, keep_state=False)
        facts = {k: getattr(self, k, None) for k in FACTS}
        if self.own_ts is not None:
            facts["first_ts"], facts["last_ts"] = getattr(self, "own_first", None), getattr(self, "own_last", None)
        return Snapshot(part, facts)

    def report(self) -> Report:
        self._drain()
        part = copy.deepcopy(self.part)
        recent, self.recent = self.recent, []
        if self.tail is not None and len(self.tail):
            eps = build_episodes(self.tail, self.carry, final=True, own=self._own_rows(self.tail))
            self._absorb(part, eps, self.tail, keep_state=False)
            if self.recent_episodes and eps.table.height:
                recent = [*recent, eps.table]  # still open here: owned again by a later report
        rep = self._finish(part)
        if self.recent_episodes and recent:
            rep.episodes = pl.concat(recent, how="diagonal_relaxed")
        return rep

    # -- one view ------------------------------------------------------------------------------
    def _absorb(self, part: Partial, eps, view: Trace, keep_state: bool = True) -> None:
        for w in eps.warnings:
            # A count's warning appears once, with the total at the end; one about an event the
            # recording lacks, only if no window had it.
            key = counted_warning(w) or next((f"absent:{k}" for k, t in ABSENT.items() if t == w), w)
            if key not in part.warnings:
                part.warnings.append(key)
        if eps.table.height and "cpu" in eps.table.columns:
            part.exit_cpus |= set(eps.table["cpu"].unique().to_list())
        part.seen |= set(view.event_names)
        if view.has("sched_switch"):
            part.sched_cpus |= set(view.table("sched_switch").column("cpu").unique().to_pylist())
        if eps.isa is not None and self.isa is None:
            self.isa = eps.isa
        self.msr_traced |= view.has("kvm_msr")
        threads = eps.threads
        self.threads = threads  # every view's table holds the threads of the views before it
        part.counts.update({k: v for k, v in eps.counts.items()})
        part.sync.update(eps.sync_events)
        ex = eps.extra
        if self.flt.active:
            ex = ex.head(0) if self.flt.per_exit else ex.join(self.flt.threads(threads).select("pid"), on="pid",
                                                               how="semi")
        part.extra.update(extra_boundaries(ex))
        eo = ex.filter(pl.col("uret_prev_pid").is_not_null()).group_by("pid", "uret_prev_pid").len()
        part.extra_others = add_counts(part.extra_others, eo, ["pid", "uret_prev_pid"], "len")
        ep = eps.table
        if not ep.height or "reason" not in ep.columns:
            self._late(part, eps, keep_state)
            return
        ep = self.flt.episodes(ep, threads, strict=False)
        if ep.height and self.ns_per_unit != 1.0:
            ep = ep.with_columns(
                (pl.col("latency_ns") * self.ns_per_unit).round(0).cast(pl.Int64),
                *[(pl.col(c) * self.ns_per_unit).cast(pl.Int64) for c in ("ts", "put_ts")])
        if not ep.height:
            self._late(part, eps, keep_state, ep)
            return
        part.classes.update({str(k): v for k, v in ep.group_by("cls").len().iter_rows()})
        self._add_sums(part, ep)
        part.lat.add(ep)
        located = ep.select("pid", "exit_row", "entry_row", "latency_ns")  # what the views count by
        for kind, kept in keyed_views(located, view, part.views).items():
            part.views[kind].add(kept)
        if self.recent_episodes and keep_state:
            self.recent.append(ep)
        oth = ep.filter(pl.col("uret_prev_pid").is_not_null()).select(
            pl.col("reason").cast(pl.Utf8), pl.col("pid").cast(pl.Int32), pl.col("vcpu").cast(pl.Int32),
            "uret_prev_pid").group_by(KEYS + ["uret_prev_pid"]).len()
        part.others = add_counts(part.others, oth, KEYS + ["uret_prev_pid"], "len")
        nc = nested_counts(ep)
        nc["loads"] = l1_loads(ep, self.l1_before)
        part.nested.update(nc)
        if keep_state:
            self.l1_before = l1_last(ep, self.l1_before)
        self._late(part, eps, keep_state, ep)

    def _add_sums(self, part: Partial, ep: pl.DataFrame) -> None:
        b = boundary_frame(ep)
        per, self.slots = episode_sums(b, host_policies_all(self.all_policies), None, KEYS)
        per = per.with_columns(pl.col("reason").cast(pl.Utf8), pl.col("pid").cast(pl.Int32),
                               pl.col("vcpu").cast(pl.Int32))
        part.sums = per if not part.sums.height else pl.concat([part.sums, per], how="diagonal_relaxed").group_by(
            KEYS).agg(pl.exclude(KEYS).sum())

    def _late(self, part: Partial, eps, keep_state: bool, ep: pl.DataFrame | None = None) -> None:
        """User returns fired for episodes an earlier view owned: their sums change by the
        difference between the episode with its new count and with its old one."""
        late = eps.late
        if late is not None and late.height and self.late_eps.height:
            old = self.late_eps.join(late.select("exit_row"), on="exit_row", how="semi")
            if old.height:
                new = old.join(late, on="exit_row").with_columns(
                    (pl.col("user_returns").cast(pl.Int64) + pl.col("count")).cast(old.schema["user_returns"])
                    .alias("user_returns")).drop("count")
                self._add_sums(part, new)
                part.counts["user_returns"] += int(late.join(old.select("exit_row"), on="exit_row", how="semi")
                                                   ["count"].sum()) if self.own_ts is not None else 0
                neg, _ = episode_sums(boundary_frame(old), host_policies_all(self.all_policies), None, KEYS)
                neg = neg.with_columns(pl.col("reason").cast(pl.Utf8), pl.col("pid").cast(pl.Int32),
                                       pl.col("vcpu").cast(pl.Int32))
                neg = neg.with_columns([(-pl.col(c)) for c in neg.columns if c not in KEYS])
                part.sums = pl.concat([part.sums, neg], how="diagonal_relaxed").group_by(KEYS).agg(
                    pl.exclude(KEYS).sum())
                if keep_state:
                    self.late_eps = pl.concat([self.late_eps.join(new.select("exit_row"), on="exit_row",
                                                                  how="anti"), new], how="diagonal_relaxed")
        if keep_state and eps.carry is not None:
            refs = eps.carry.referenced()
            pool = [self.late_eps] if self.late_eps.height else []
            if ep is not None and ep.height:
                pool.append(ep)
            if pool:
                allp = pl.concat(pool, how="diagonal_relaxed")
                self.late_eps = allp.filter(pl.col("exit_row").is_in(refs.tolist()))

    def _warnings(self, part: Partial) -> list[str]:
        """The views' warnings, those that report a count written with the stream's total."""
        totals = dict(part.counts)
        totals["entries_before_exit"] = totals.get("out_of_order", 0)
        blind = sorted(part.exit_cpus - part.sched_cpus)
        out = []
        for w in part.warnings:
            if w.startswith("absent:"):
                ev = w.split(":", 1)[1]
                if ev not in part.seen or (ev == "kvm_fpu" and totals.get("first_entries_assumed")):
                    out.append(ABSENT[ev])
            elif w == "no_exits":
                if not totals.get("exits"):
                    out.append(WARN[w](sync_names(dict(part.sync))))
            elif w not in WARN:
                out.append(w)
            elif w == "cpus_without_sched_switch":
                if blind and part.sched_cpus:
                    out.append(WARN[w](blind))
            elif totals.get(w):
                out.append(WARN[w](totals[w]))
        return out

    @staticmethod
    def _pairing(part: Partial, meta) -> dict:
        out = dict(part.counts)
        if "out_of_order" in out:
            out["out_of_order"] += int(meta.extra.get("ts_inversions") or 0)
        return out

    # -- the Report ----------------------------------------------------------------------------
    def _finish(self, part: Partial) -> Report:
        if self.meta is None:
            raise ValueError("no window was fed")
        meta = dataclasses.replace(self.meta, first_ts=self.first_ts, last_ts=self.last_ts, dropped=self.dropped,
                                   event_counts={})
        isa_key = ISA_KEYS.get(self.isa) if self.isa is not None else None
        cost = _select_costs_isa(self.costs_arg, self.gsbase_method, isa_key, meta)
        mhz = _positive(self.cpu_mhz, "--cpu-mhz") or float(cost.cpu_mhz)
        has_nested = bool(part.classes.get("nested"))
        pols = _select_policies(self.policies, isa_key, has_nested or _nested_seen(part))
        base_name = self.baseline if self.baseline is not None else DEFAULT_BASELINE.get(isa_key or "svm")
        base = base_name if isinstance(base_name, Policy) else load_policy(base_name)
        warnings = list(meta.warnings) + [w for w in self._warnings(part) if w not in meta.warnings]
        span_ns = int(meta.duration_ns * self.ns_per_unit)
        window = None
        if self.bounds is not None:
            hi = self.bounds[1] if self.flt.end is not None else (self.last_ts or 0) + 1
            window = (self.bounds[0], hi)
            first, last = getattr(self, "win_first", None), getattr(self, "win_last", None)
            span_ns = int((last - first) * self.ns_per_unit) if first is not None else 0
        if self.raw_tsc:
            warnings.append(f"timestamps are TSC counts: durations converted at {self.t_mhz:g} MHz (--tsc-mhz)")
        vm_of_pid = self.threads.select(pl.col("pid").cast(pl.Int32), pl.col("vm").cast(pl.Int32)) \
            if self.threads.height else pl.DataFrame(schema={"pid": pl.Int32, "vm": pl.Int32})
        results = {}
        nested_rows: list[dict] = []
        exits = int(part.sums["exit"].sum()) if part.sums.height else 0
        if not exits and self.flt.active and (self.flt.vm is not None or self.flt.vcpu is not None or self.flt.per_exit):
            from ..errors import UsageError

            self.flt.explain_empty(self.threads)
            raise UsageError(f"no exits match {'; '.join(self.flt.describe())}")
        warnings += [w for w in self.flt.warnings(self.threads) if w not in warnings]
        if exits:
            sums, extra_b = reclassify(part, vm_of_pid)
            per = sums.join(vm_of_pid, on="pid", how="left").drop("pid").group_by(
                ["reason", "vm", "vcpu"]).agg(pl.all().sum())
            results = results_from_sums(per, ["reason", "vm", "vcpu"], self.slots, host_policies(base, pols), cost,
                                        extra=extra_b, span_ns=span_ns, cpus=meta.cpus or 1,
                                        groups=REPLAY_GROUPS, variant="t" if self.msr_traced else "u")
            nested_rows = nested_table(pols, base, cost, lambda p, be: nested_from_counts(part.nested, p, be, cost))
        lat = part.lat.tables(vm_of_pid, LAT_GROUPS) if exits else {k: pl.DataFrame() for k in LAT_GROUPS}
        if exits and not self.msr_traced:
            warnings.append("no kvm_msr recorded: MSR exits of unknown index count as lazy-state syncs (conservative)")
        whole = {"trace_events": self.events, "trace_first_ts": self.first_ts, "trace_last_ts": self.last_ts,
                 "trace_dropped_events": {str(k): v for k, v in meta.dropped_per_cpu.items()}}
        ctx = Context(meta, isa_key, span_ns, base, pols, cost, mhz, self.t_mhz if self.raw_tsc else None, self.flt,
                      window, whole, self.msr_traced)
        vv = lat["latency_vcpu"] if exits else pl.DataFrame()
        facts = {"exits": exits, "timed_exits": int(lat["latency"]["timed"].sum()) if exits else 0,
                 "exit_time_ns": int(lat["latency"]["total_ns"].sum()) if exits else 0,
                 "vcpus": vv.height if exits else self.threads.height,
                 "vms": vv["vm"].n_unique() if exits else (self.threads["vm"].n_unique() if self.threads.height else 0),
                 "events": self.in_window if self.bounds is not None else self.events, "classes": _in_class_order(part.classes),
                 "pairing": self._pairing(part, meta), "sync_events": dict(part.sync)}
        extra = {"percentiles": "within 0.2% (latencies rounded to a 0.2% grid)" if part.lat.rounded else "exact"}
        rep = assemble(ctx, facts, results, lat, nested_rows, warnings, extra_summary=extra)
        if exits:
            rep.event_views = {kind: _event_view(kind, counts) for kind, counts in part.views.items()}
        return rep


def _in_class_order(classes: dict) -> dict:
    from ..episodes.classify import CLASSES

    return {k: classes[k] for k in sorted(classes, key=lambda c: (CLASSES.index(c) if c in CLASSES else len(CLASSES), c))}


def _event_view(kind: str, counts) -> pl.DataFrame:
    if not counts.size:
        return empty_view(kind)
    return label(kind, counts.tables(None, {"v": KEY_COLUMNS[kind]})["v"])


def counted_warning(w: str) -> str | None:
    """The WARN key of a warning that reports a count, None for any other."""
    for key, text in WARN.items():
        if key == "no_exits":
            if w.startswith(text("")):
                return key
            continue
        probe = text([0]) if key == "cpus_without_sched_switch" else text(0)
        head, tail = probe.split("0", 1)
        if w.startswith(head) and w.endswith(tail):
            return key
    return None


def host_policies_all(pols: list[Policy]) -> list[Policy]:
    return [p for p in pols if p.nested == "none"]


def _nested_seen(part: Partial) -> bool:
    return bool(part.nested.get("n"))


def _select_costs_isa(costs, gsbase_method, isa_key, meta):
    from ..replay.costs import CostProfile, default_costs, load_costs

    if isinstance(costs, CostProfile):
        cost = costs
    elif costs and costs != "auto":
        cost = load_costs(costs)
    else:
        model = meta.extra.get("cpu_model") or meta.extra.get("cpudesc")
        cost = default_costs(isa_key, model if isinstance(model, str) else None)
    return cost.with_gsbase_method(gsbase_method) if gsbase_method else cost


def finish(snap: Snapshot) -> Report:
    """The Report of a (merged) snapshot."""
    sa = StreamAnalysis.__new__(StreamAnalysis)
    sa.__dict__.update(snap.facts)
    return sa._finish(copy.deepcopy(snap.part))


def analyze_file(path, *, window_events: int = 1_000_000, progress=None, **kw: Any) -> Report:
    """analyze() of a trace file window by window: memory bounded by the window."""
    from ..episodes import NEEDED_EVENTS
    from ..windows import iter_windows
    from .prefetch import prefetched

    needed = NEEDED_EVENTS | set(EVENT_OF.values())  # the event views' too
    windows = iter_windows(path, window_events=window_events, progress=progress, events=needed)
    return analyze_windows(prefetched(windows, needed), **kw)


def analyze_windows(windows: Iterable[Trace], **kw: Any) -> Report:
    sa = StreamAnalysis(**kw)
    for w in windows:
        sa.feed(w)
    return sa.report()
