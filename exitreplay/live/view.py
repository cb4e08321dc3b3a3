"""The live screen: one Frame as rich renderables that fit the terminal (80 columns at most).

Top to bottom: what is watched and when; exits/s by reason and by VM/vCPU side by side (p50 and
p99 handling time of the frame's exits); each policy's saving per second against the baseline,
its syncs per second and its exposure (CPU time with the guest's state live in the host, and
with IST off, as a share of the interval); sync points by cause (the baseline's and the best
other policy's) beside the sync-point events seen; a key line. Rows beyond the terminal's height
are cut, the busiest kept.
"""
from __future__ import annotations

import dataclasses

from rich.console import Group
from rich.table import Table
from rich.text import Text

from .frames import Frame

MAX_WIDTH = 80
SORTS = ("exits/s", "p50", "p99", "name")  # `s` steps through them
SORT_KEYS = {"e": "exits/s", "5": "p50", "9": "p99", "n": "name"}
NUM_COLS = 7 + 6 + 6 + 3 * 2  # an exits table's number columns and the padding before each


@dataclasses.dataclass
class ViewState:
    sort: str = "exits/s"
    source: str = ""
    status: str = ""  # e.g. "replay ended"

    def key(self, ch: str) -> bool:
        """Apply a key; True when it changed the view."""
        if ch == "s":
            self.sort = SORTS[(SORTS.index(self.sort) + 1) % len(SORTS)]
            return True
        if ch in SORT_KEYS:
            self.sort = SORT_KEYS[ch]
            return True
        return False


def si(x: float) -> str:
    """A rate in 5 characters or fewer: 950, 12.3k, 4.56M."""
    a = abs(x)
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if a >= div:
            v = x / div
            return f"{v:.3g}{unit}" if a < 100 * div else f"{v:.0f}{unit}"
    return f"{x:.0f}" if a >= 10 or x == int(x) else f"{x:.1f}"


def us(ns) -> str:
    if ns is None:
        return "-"
    v = ns / 1000
    return f"{v:.1f}" if v < 1000 else si(v)


def _cut(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _sorted(counts: dict[str, int], lat: dict, sort: str) -> list[str]:
    keys = set(counts) | set(lat)
    if sort == "name":
        return sorted(keys)
    col = {"p50": 0, "p99": 1}.get(sort)
    if col is None:
        return sorted(keys, key=lambda k: (-counts.get(k, 0), k))
    return sorted(keys, key=lambda k: (-((lat.get(k) or (0, 0))[col] or 0), -counts.get(k, 0), k))


def _table(*cols: tuple[str, int, str]) -> Table:
    t = Table(box=None, pad_edge=False, padding=(0, 1), show_edge=False, header_style="bold")
    for name, width, justify in cols:
        t.add_column(name, width=width, justify=justify, no_wrap=True, overflow="ellipsis")
    return t


def exits_table(f: Frame, title: str, counts: dict[str, int], lat: dict, sort: str, rows: int, width: int) -> Table:
    name = width - NUM_COLS  # a table is its columns plus 2 of padding between each two
    t = _table((title, name, "left"), ("exits/s", 7, "right"), ("p50µs", 6, "right"), ("p99µs", 6, "right"))
    keys = [k for k in _sorted(counts, lat, sort) if counts.get(k, 0) or lat.get(k)]
    for k in keys[:rows]:
        p50, p99 = lat.get(k) or (None, None)
        t.add_row(_cut(k, name), si(f.rate(counts.get(k, 0))), us(p50), us(p99))
    if not keys:
        t.add_row("(none)", "", "", "")
    return t


def policy_table(f: Frame, rows: int) -> Table:
    """Saving per second against the baseline, syncs per second, and the exposure: CPU time with
    the guest's state live in the host and with IST off, as a share of the interval (per CPU)."""
    t = _table(("policy vs " + _cut(f.baseline or "-", 12), 22, "left"), ("saved Mcyc/s", 12, "right"),
               ("µs/s", 8, "right"), ("syncs/s", 7, "right"), ("live %CPU", 9, "right"), ("IST off %CPU", 12, "right"))
    d = f.delta
    names = sorted(d.saved, key=lambda p: (-d.saved[p], p))
    for p in names[:rows]:
        saved = d.saved[p]
        us_s = f.rate(saved) / f.cpu_mhz if f.cpu_mhz else 0.0
        mark = "*" if p == f.baseline else " "
        t.add_row(_cut(mark + p, 22), f"{f.rate(saved) / 1e6:.3f}", f"{us_s:.1f}", si(f.rate(d.syncs.get(p, 0))),
                  _pct(f, d.live_ns.get(p, 0)), _pct(f, d.ist_off_ns.get(p, 0)))
    return t


def _pct(f: Frame, ns: float) -> str:
    return f"{f.rate(ns) / 1e9 * 100:.1f}%"


def causes_table(f: Frame, rows: int, width: int) -> Table:
    d = f.delta
    base = f.baseline
    # Beside the baseline: the policy that saves most against it (the least loss, if all lose).
    best = max((p for p in d.saved if p != base), key=lambda p: (d.saved[p], p), default=None)
    name = width - 20
    t = _table(("sync cause", name, "left"), (_cut(base or "-", 8), 8, "right"), (_cut(best or "-", 8), 8, "right"))
    names = sorted((c for c in set(d.causes.get(base, {})) | set(d.causes.get(best, {}))
                    if d.causes.get(base, {}).get(c) or d.causes.get(best, {}).get(c)),
                   key=lambda c: (-d.causes.get(base, {}).get(c, 0), -d.causes.get(best, {}).get(c, 0), c))
    for c in names[:rows]:
        t.add_row(_cut(c, name), si(f.rate(d.causes.get(base, {}).get(c, 0))),
                  si(f.rate(d.causes.get(best, {}).get(c, 0))))
    if not names:
        t.add_row("(none)", "", "")
    return t


def events_table(f: Frame, rows: int, width: int) -> Table:
    name = width - 20
    t = _table(("sync-point events", name, "left"), ("/s", 8, "right"), ("total", 8, "right"))
    names = [k for k in sorted(f.total.events, key=lambda k: (-f.delta.events.get(k, 0), k))]
    for k in names[:rows]:
        t.add_row(_cut(k, name), si(f.rate(f.delta.events.get(k, 0))), si(f.total.events.get(k, 0)))
    for k in ("preemptions", "blockings"):
        if k in f.total.sync_events and len(t.rows) < rows:
            t.add_row(f"vCPU {k}", si(f.rate(f.delta.sync_events.get(k, 0))), si(f.total.sync_events[k]))
    if not t.rows:
        t.add_row("(none)", "", "")
    return t


def side_by_side(left: Table, right: Table, half: int) -> Table:
    g = Table.grid(padding=(0, 2))
    g.add_column(width=half - 2, no_wrap=True)
    g.add_column(width=half, no_wrap=True)
    g.add_row(left, right)
    return g


def _n(n: int, what: str) -> str:
    return f"{n} {what}" + ("" if n == 1 else "s")


def header(f: Frame | None, st: ViewState, width: int) -> Text:
    if f is None:
        return Text(_cut(f"exitreplay top · {st.source} · waiting for the first interval", width))
    end = " · ended" if st.status == "ended" else ""
    frames = f"{f.span_s * 1e3:.3g} ms" if f.span_s < 1 else f"{f.span_s:.3g} s"
    line1 = f"exitreplay top · {st.source} · +{f.t_s:.2f} s · {frames} frames{end}"
    if f.no_exits:
        line2 = "no kvm_exit events (a KVM such as kvm_pvm fires none): sync-point events only"
    else:
        line2 = (f"{si(f.rate(f.delta.exits))} exits/s · {f.total.exits:,} exits · {_n(f.vcpus, 'vCPU')} in {_n(f.vms, 'VM')}"
                 f" · {f.isa or '?'} · {f.cost} {f.cpu_mhz:g} MHz"
                 + (" · p50/p99 so far" if f.latency_scope != "frame" else ""))
    if f.total.lost or f.total.lost_uncounted:  # first, so a narrow terminal does not cut it off
        line2 = f"lost {f.total.lost:,}{'+' if f.total.lost_uncounted else ''} events · " + line2
    return Text("\n".join(_cut(x, width) for x in (line1, line2)))


def footer(st: ViewState, width: int) -> Text:
    keys = f"q quit · sort by {st.sort}: s next, e exits/s, 5 p50, 9 p99, n name"
    return Text(_cut(keys, width), style="reverse")


def render(f: Frame | None, st: ViewState, width: int, height: int):
    """The whole screen for a terminal of width x height."""
    width = min(width, MAX_WIDTH)
    half = width // 2
    parts = [header(f, st, width)]
    if f is not None:
        room = max(height - 9, 6)  # lines left for table rows: headers, gaps and key line take 9
        npol = len(f.delta.saved)
        pol_rows = min(npol, max(2, room // 3)) if not f.no_exits else 0
        low = max(2, min(8, (room - pol_rows) // 3))
        top_rows = max(2, room - pol_rows - low)
        if not f.no_exits:
            parts += [Text(""), side_by_side(
                exits_table(f, "exit reason", f.delta.by_reason, f.latency, st.sort, top_rows, half - 2),
                exits_table(f, "VM/vCPU", f.delta.by_vcpu, f.latency_vcpu, st.sort, top_rows, half), half)]
            parts += [Text(""), policy_table(f, pol_rows)]
            parts += [Text(""), side_by_side(causes_table(f, low, half - 2), events_table(f, low, half), half)]
        else:
            parts += [Text(""), events_table(f, room, width)]
    parts.append(footer(st, width))
    return Group(*parts)
