"""`top --batch json|csv`: one line per interval, for logging (as `kvm_stat -l` does).

Every count is the interval's own (the difference of two successive reports), so a column summed
over the lines gives the totals of `analyze` on the same trace; `t_s` is the interval's end in
seconds after the first event and `span_s` the trace time it covers.

JSON lines carry everything, keyed by name. CSV has one column per reason, policy and event seen
so far; when a new one turns up the header line is printed again before the row that has it (a
reader starts a new table at each line beginning with `t_s,`), as kvm_stat repeats its header.
"""
from __future__ import annotations

import csv
import io
import json
from typing import Any

from .frames import Frame


def _num(x: float) -> float | int:
    """Integers stay integers (counts), the rest keep their digits (cycles can be fractional)."""
    return int(x) if float(x).is_integer() else float(x)


def json_record(f: Frame) -> dict[str, Any]:
    d = f.delta
    return {
        "t_s": round(f.t_s, 9), "span_s": round(f.span_s, 9), "exits": d.exits,
        "exits_per_s": round(f.rate(d.exits), 3),
        "exits_by_reason": d.by_reason, "exits_by_vcpu": d.by_vcpu,
        "p50_ns": {k: v[0] for k, v in f.latency.items()}, "p99_ns": {k: v[1] for k, v in f.latency.items()},
        "latency_scope": f.latency_scope,
        "baseline": f.baseline,
        "saved_cycles": {k: _num(v) for k, v in d.saved.items()},
        "syncs": d.syncs, "guest_state_live_ns": d.live_ns, "ist_off_ns": d.ist_off_ns,
        "sync_causes": d.causes,
        "sync_events": d.sync_events, "events": d.events, "lost_events": d.lost,
        "lost_uncounted": d.lost_uncounted,
    }


def json_line(f: Frame) -> str:
    return json.dumps(json_record(f), separators=(",", ":"))


class CsvLines:
    """Rows with a header that grows (printed again when it does)."""

    def __init__(self):
        self.columns: list[str] = []

    @staticmethod
    def values(f: Frame) -> dict[str, Any]:
        d = f.delta
        row: dict[str, Any] = {"t_s": round(f.t_s, 9), "span_s": round(f.span_s, 9), "exits": d.exits,
                               "lost_events": d.lost, "lost_uncounted": d.lost_uncounted}
        row.update({f"exits:{k}": v for k, v in d.by_reason.items()})
        row.update({f"saved_cycles:{k}": _num(v) for k, v in d.saved.items()})
        row.update({f"syncs:{k}": v for k, v in d.syncs.items()})
        row.update({f"sync_events:{k}": v for k, v in d.sync_events.items()})
        row.update({f"events:{k}": v for k, v in d.events.items()})
        return row

    def lines(self, f: Frame) -> list[str]:
        row = self.values(f)
        out = []
        new = [k for k in row if k not in self.columns]
        if new or not self.columns:
            self.columns += new
            out.append(self._fmt(self.columns))
        out.append(self._fmt([row.get(c, 0) for c in self.columns]))
        return out

    @staticmethod
    def _fmt(values: list) -> str:
        buf = io.StringIO()
        csv.writer(buf, lineterminator="").writerow(values)
        return buf.getvalue()
