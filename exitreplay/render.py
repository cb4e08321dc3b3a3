"""Render a Report for people (terminal tables, Markdown) and machines (JSON, CSV, Parquet).

People get the answer first: one table of the policies, sorted by what they save against the
baseline, in µs per second of trace and % of a CPU, with the exposure; then the ranking's
robustness, the warnings, what was analyzed and the exit table. `--detail` adds the per-vCPU and
per-VM tables, the operations, cycles, sync causes and costs. Terminal tables never cut a cell:
a table wider than the terminal is split into column groups (the key columns repeated), or
printed one record per row.
"""
from __future__ import annotations

import collections
import dataclasses
import io
from typing import Any

import polars as pl
from rich import box
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from . import export
from .analysis import Report
from .filters import describe
from .rates import host_cpus, policy_rates
from .replay.policy import OPERATIONS
from .views import KEY_COLUMNS, event_view, sort_view

FORMATS = ("table", "json", "csv", "markdown", "parquet")
OP_LABELS = {"vmload": "VMLOAD", "vmsave": "VMSAVE", "ltr": "LTR", "wrmsr": "WRMSR", "rdmsr": "RDMSR",
             "seg_reload": "seg reload", "ist_toggle": "IST toggle", "gsbase": "GS base"}
LATENCY_COLUMNS = [("exits", "exits", "count"), ("exits_pct", "%\nexits", "pct"), ("total_ns", "total\nms", "ms"),
                   ("time_pct", "%\ntime", "pct"), ("mean_ns", "mean\nµs", "us"), ("p50_ns", "p50\nµs", "us"),
                   ("p90_ns", "p90\nµs", "us"), ("p99_ns", "p99\nµs", "us"), ("max_ns", "max\nµs", "us")]
KEY_HEADS = {"vm": "VM", "vcpu": "vCPU", "reason": "reason", "port": "port", "direction": "dir", "gpa": "GPA",
             "msr": "MSR", "region": "region", "access": "access", "policy": "policy", "cause": "cause"}


# -- numbers as people read them --------------------------------------------------------------------
def count(v: Any) -> str:
    return "-" if v is None else f"{int(round(v)):,}"


def num(v: Any) -> str:
    """Three significant digits or more, thousands separated: 0.0123, 1.23, 12.3, 123, 1,234."""
    if v is None:
        return "-"
    a = abs(v)
    if a == 0:
        return "0"
    if a >= 100 or float(v).is_integer():  # whole numbers print whole: 42, not 42.0
        return f"{v:,.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    return f"{v:.3g}"


def pct(v: Any) -> str:
    return "-" if v is None else f"{num(v)}%"


UNITS = {"count": count, "pct": pct, "num": num, "text": lambda v: "-" if v is None else str(v),
         "us": lambda v: "-" if v is None else num(v / 1e3), "ms": lambda v: "-" if v is None else num(v / 1e6),
         "id": lambda v: "-" if v is None else str(v)}


# -- what is shown -------------------------------------------------------------------------------------
@dataclasses.dataclass
class Section:
    """A table as text cells: the first `keys` columns name a row (repeated when the table is split)."""

    title: str
    head: list[str]
    rows: list[list[str]]
    keys: int = 1
    note: str = ""
    fit: str = ""  # "narrow": narrower() gives a form without optional columns, for narrow terminals
    narrower: Any = dataclasses.field(default=None, repr=False)


@dataclasses.dataclass
class Para:
    text: str
    kind: str = "text"  # text | warning | heading


def _frame(df: pl.DataFrame, keys: list[str], cols: list[tuple[str, str, str]], title: str,
           limit: int | None = None) -> Section:
    cols = [c for c in cols if c[0] in df.columns]
    shown = df.head(limit) if limit else df
    unit = {k: "id" if k in ("vm", "vcpu") else "text" for k in keys}
    rows = [[UNITS[unit[k]](row[k]) for k in keys] + [UNITS[u](row[c]) for c, _, u in cols]
            for row in shown.iter_rows(named=True)]
    note = f"{shown.height} of {df.height} rows (--limit)" if shown.height < df.height else ""
    return Section(title, [KEY_HEADS.get(k, k) for k in keys] + [h for _, h, _ in cols], rows, len(keys), note)


def policy_section(r: Report, with_range: bool = True) -> Section:
    """The answer: each policy's saving against the baseline and what it exposes, largest saving first."""
    s = r.summary
    p = policy_rates(r)
    rows = []
    for row in p.iter_rows(named=True):
        name = row["policy"] + ("\n(baseline)" if row.get("baseline") else "")
        rng = [f"{num(row['saved_us_per_s_low'])}..{num(row['saved_us_per_s_high'])}"] if with_range else []
        rows.append([name, num(row["saved_us_per_s"]), *rng, pct(row["saved_cpu_pct"]),
                     num(row["saved_per_exit_cycles"]), pct(row["ist_off_pct"]), pct(row["guest_state_live_pct"]),
                     num(row["syncs_per_s"])])
    head = ["policy", "saved\nµs/s", *(["low..high\nµs/s"] if with_range else []), "% of\na CPU",
            "cycles\n/exit", "IST off\n% host", "guest\nlive\n% host", "syncs\n/s"]
    n = host_cpus(s)
    note = (f"costs: {s['cost_profile']} at {s['cpu_mhz']:g} MHz; % host: of the host's {n} CPU{'s' if n != 1 else ''}' "
            "time; "
            "--detail: cycles and operations" + gs_note(p, s["exits"]))
    sec = Section(f"what each policy saves against {s['baseline']}, per second of trace", head, rows,
                  note=note, fit="narrow" if with_range else "")
    if with_range:
        sec.narrower = lambda: policy_section(r, with_range=False)
    return sec


def gs_note(p: pl.DataFrame, exits: int) -> str:
    """What the Linux host's per-exit GS base switch costs each deferring policy, against what the
    deferral saved before paying it (docs/policies.md, "what a Linux implementation must still do")."""
    if "gsbase_cycles_per_exit" not in p.columns:
        return ""
    parts = [f"{row['policy']} {num(row['gsbase_cycles_per_exit'])} of "
             f"{num(row['saved_before_gsbase_cycles_typical'] / exits)}"
             for row in p.iter_rows(named=True) if row["gsbase_cycles_per_exit"] and exits]
    return "; GS base switch per exit, cycles of the saving before it: " + ", ".join(parts) if parts else ""


def ranking_text(sens: dict[str, Any], detail: bool = False) -> str:
    """The ranking and whether the cost ranges can change it; the pairs that can swap are listed
    whole with detail, else counted by the operation whose cost range drives them."""
    order = sens.get("ranking_typical", [])
    text = "ranking by cycles saved: " + " > ".join(order)
    for lvl in ("low", "high"):
        other = sens.get(f"ranking_{lvl}")
        if other and other != order:
            text += f"; at all-{lvl} costs: " + " > ".join(other)
    swaps = sens.get("pairs_that_can_swap") or []
    if not swaps:
        return text + ("; it holds for every cost between the profile's low and high values"
                       if sens.get("ranking_robust") else "")
    if detail:
        pairs = ", ".join(f"{s['above']}/{s['below']} ({s['driver']})" for s in swaps)
        return text + f"; can swap within the cost ranges: {pairs}"
    drivers = collections.Counter(s["driver"] for s in swaps)
    near = [f"{s['above']}/{s['below']}" for s in swaps
            if s["above"] in order and s["below"] in order and order.index(s["below"]) == order.index(s["above"]) + 1]
    by = ", ".join(f"{op} {n}" for op, n in drivers.most_common())
    text += f"; {len(swaps)} pair{'s' if len(swaps) != 1 else ''} can swap within the cost ranges (driven by {by})"
    if near:
        text += f", neighbours among them: {', '.join(near)}"
    return text + "; --detail lists them"


def kernels_section(r: Report) -> list[Section]:
    """The kernel behaviour each policy stands for (its version range or commit), in the table's order."""
    if "kernel" not in r.policies.columns:
        return []
    rows = [[p, k] for p, k in policy_rates(r).select("policy", "kernel").iter_rows() if k]
    return [Section("what each policy stands for", ["", ""], rows)] if rows else []


def _secs(ts: int | None) -> str:
    return "-" if ts is None else f"{ts / 1e9:.6f} s"


def heading(r: Report) -> str:
    s = r.summary
    span_ms = s["span_ns"] / 1e6
    return (f"{s['path']}: {(s['isa'] or 'unknown ISA').upper()}, {s['exits']:,} exits in {num(span_ms)} ms "
            f"({num(s['exits_per_s'])} exits/s), {s['vcpus']} vCPU{'s' if s['vcpus'] != 1 else ''} in "
            f"{s['vms']} VM{'s' if s['vms'] != 1 else ''}")


def filters_text(r: Report) -> str:
    parts = describe(r.summary.get("filters"))
    w = r.summary.get("window")
    if w:
        parts = [p + f" = {_secs(w['from_ts'])} .. {_secs(w['to_ts'])}" if p.startswith("window") else p
                 for p in parts]
    return "filters: " + ("; ".join(parts) if parts else "none (the whole trace)")


def _pairing(s: dict) -> str:
    return ", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in s["pairing"].items() if v) or "-"


def _sync_events(s: dict) -> str:
    return ", ".join(f"{k.removeprefix('kvm_msr_')} {v:,}" for k, v in s["sync_events"].items()) or "-"


def trace_section(r: Report) -> Section:
    """The file as a whole, whatever was selected (and, with no window, its pairing and sync events)."""
    s = r.summary
    fmt = f"{s['format']}" + (f" v{s['version']}" if s["version"] else "") + \
        (f", {s['compression']}" if s.get("compression") not in (None, "", "none") else "")
    first, last = s.get("trace_first_ts"), s.get("trace_last_ts")
    dropped = s.get("trace_dropped_events", s.get("dropped_events")) or {}
    facts = [("file", s["path"]), ("format", fmt), ("host CPUs", str(s["cpus"])), ("clock", s.get("clock") or "-"),
             ("span", f"{_secs(first)} .. {_secs(last)}"),
             ("events", count(s.get("trace_events", s["events"]))),
             ("dropped events", ", ".join(f"CPU {k}: {'?' if v is None else f'{v:,}'}" for k, v in dropped.items())
              or "none reported")]
    if s.get("window") is None:
        facts += [("pairing (every vCPU)", _pairing(s)), ("sync-point events (every vCPU thread)", _sync_events(s))]
    return Section("the trace file", ["", ""], [[k, v] for k, v in facts])


def window_section(r: Report) -> Section | None:
    """The window, every vCPU thread in it (its counts are not the selected exits')."""
    s = r.summary
    w = s.get("window")
    if w is None:
        return None
    facts = [("window", f"{_secs(w['from_ts'])} .. {_secs(w['to_ts'])}"), ("events", count(s["events"])),
             ("pairing", _pairing(s)), ("sync-point events", _sync_events(s))]
    return Section("the window, every vCPU thread", ["", ""], [[k, v] for k, v in facts])


def _vms(r: Report) -> str:
    lv = r.latency_vm
    if not lv.height:
        return "-"
    per = r.latency_vcpu.group_by("vm").len("n") if r.latency_vcpu.height else None
    n = dict(per.iter_rows()) if per is not None else {}
    return ", ".join(f"{vm} ({n.get(vm, '?')} vCPU{'s' if n.get(vm) != 1 else ''})" for vm in lv["vm"].to_list())


def selection_section(r: Report) -> Section:
    """The selected exits (after every filter)."""
    s = r.summary
    facts = [("exits", f"{s['exits']:,} ({s['timed_exits']:,} timed), {num(s['exits_per_s'])}/s"),
             ("span", f"{num(s['span_ns'] / 1e6)} ms"), ("VMs (pid)", _vms(r)),
             ("episodes", ", ".join(f"{k} {v:,}" for k, v in s["classes"].items()) or "-")]
    return Section("the selected exits", ["", ""], [[k, v] for k, v in facts])


def event_section(r: Report, kind: str = "vmexit", key: str = "sample", limit: int | None = None) -> Section:
    keys = KEY_COLUMNS[kind]
    df = sort_view(event_view(r, kind), key, keys)
    what = {"vmexit": "per exit reason", "ioport": "exits per I/O port and direction",
            "mmio": "exits per MMIO address and direction", "msr": "exits per MSR and direction",
            "npf": "exits per NPF region (2 MiB) and access"}[kind]
    return _frame(df, keys, LATENCY_COLUMNS, f"exit handling time {what} "
                  "(kvm_exit -> kvm_entry)", limit)


def detail_sections(r: Report, key: str, limit: int | None) -> list[Section | Para]:
    out: list[Section | Para] = []
    keys_of = {"latency_vcpu": ["vm", "vcpu"], "latency_reason_vm": ["vm", "reason"],
               "latency_reason_vcpu": ["vm", "vcpu", "reason"]}
    for name, title in (("latency_vcpu", "per vCPU"), ("latency_reason_vm", "per VM and reason"),
                        ("latency_reason_vcpu", "per vCPU and reason")):
        df = getattr(r, name)
        keys = keys_of[name]
        if df.height > 1 and df.select(keys[:2] if name != "latency_reason_vm" else keys[:1]).n_unique() > 1:
            out.append(_frame(sort_view(df, key, keys), keys, LATENCY_COLUMNS, f"exit handling time {title}", limit))
    if r.policies.height:
        p = policy_rates(r)
        ops = [(op, OP_LABELS.get(op, op), "count") for op in OPERATIONS if op in p.columns]
        out.append(_frame(p, ["policy"], ops + [("ops_avoided", "all avoided", "count")],
                          "state-switching operations executed per policy"))
        out.append(_frame(p, ["policy"], [("saved_cycles_low", "low", "count"), ("saved_cycles_typical", "typical", "count"),
                                          ("saved_cycles_high", "high", "count"),
                                          ("gsbase_cycles_typical", "GS switch", "count"),
                                          ("share_of_exit_time_pct", "% of exit time", "pct"),
                                          ("syncs", "syncs", "count"),
                                          ("mean_exits_between_syncs", "exits /sync", "num"),
                                          ("ist_off_ns", "IST off ms", "ms"),
                                          ("guest_state_live_ns", "guest live ms", "ms")],
                          f"cycles saved against {r.summary['baseline']} (whole selection) and exposure"))
    if r.sync_causes.height:
        sc = r.sync_causes.filter(pl.col("count") > 0)
        out.append(_frame(sc, ["policy", "cause"], [("count", "syncs", "count")], "sync points by cause"))
    if r.nested.height:
        cols = [(c, c.replace("_", " "), "ms" if c.endswith("_ns") else "count") for c in r.nested.columns
                if c not in ("policy", "mode")]
        out.append(_frame(r.nested, ["policy"], cols, "nested: L1 VMLOAD/VMSAVE exits"))
    if r.costs.height:
        out.append(_frame(r.costs, ["op"], [("low", "low", "count"), ("typical", "typical", "count"),
                                            ("high", "high", "count")],
                          f"cost profile {r.summary['cost_profile']} (cycles per operation)"))
        out += [Para(f"{op}: {src}") for op, src in r.costs.select("op", "source").iter_rows()]
    return out


def sections(r: Report, *, mode: str = "default", event: str = "vmexit", key: str = "sample",
             limit: int | None = None) -> list[Section | Para]:
    """What a person sees, in order. mode: summary (one screen), default, or detail (everything)."""
    out: list[Section | Para] = []
    if r.policies.height:
        out += [policy_section(r), Para(ranking_text(r.sensitivity, detail=mode == "detail"))]
    out += [Para(heading(r), "heading"), Para(filters_text(r))]
    out += [Para(w, "warning") for w in r.warnings if not w.startswith("fields kept as text")]
    if mode == "summary":
        return out
    out += kernels_section(r)
    out += [x for x in (selection_section(r), window_section(r), trace_section(r)) if x is not None]
    exits = bool(r.summary.get("exits"))  # a streamed Report keeps no episodes, only their tables
    if exits:
        out.append(event_section(r, event, key, limit))
    if mode == "detail":
        out += detail_sections(r, key, limit)
    elif exits:
        if r.nested.height:
            out += [s for s in detail_sections(r, key, limit) if isinstance(s, Section) and s.title.startswith("nested")]
        out.append(Para("--detail adds the per-vCPU and per-VM tables, operations, cycles, sync causes and costs; "
                        "--event ioport|mmio|msr|npf groups the exits by port, address, MSR or region."))
    return out


# -- terminal ------------------------------------------------------------------------------------------
def _rich(sec: Section, cols: list[int], title: str) -> Table:
    kv = sec.head == ["", ""]
    t = Table(title=title or None, title_justify="left", title_style="bold", box=box.SIMPLE_HEAD,
              show_header=not kv, show_edge=False, pad_edge=False, padding=(0, 1), collapse_padding=True)
    for i in cols:
        t.add_column(sec.head[i], justify="left" if i < sec.keys or kv else "right", no_wrap=not kv,
                     style="bold" if kv and i == 0 else None, overflow="fold")
    for row in sec.rows:
        t.add_row(*[Text(row[i]) for i in cols])
    return t


def _width(console: Console, t: Table) -> int:
    """The table's natural width (Measurement.get clamps to the console's width: lift the clamp)."""
    return Measurement.get(console, console.options.update_width(1 << 16), t).maximum


def _groups(console: Console, sec: Section) -> list[list[int]] | None:
    """Column groups that each fit the console (key columns in each), or None if one cannot."""
    keys = list(range(sec.keys))
    groups: list[list[int]] = [[]]
    for i in range(sec.keys, len(sec.head)):
        trial = groups[-1] + [i]
        if _width(console, _rich(sec, keys + trial, "")) <= console.width:
            groups[-1] = trial
        elif groups[-1] and _width(console, _rich(sec, keys + [i], "")) <= console.width:
            groups.append([i])
        else:
            return None
    return groups


def print_section(console: Console, sec: Section) -> None:
    """A table that fits; else the same table in column groups; else one record per row. No cell is cut."""
    every = list(range(len(sec.head)))
    if sec.fit == "narrow" and sec.narrower and _width(console, _rich(sec, every, sec.title)) > console.width:
        return print_section(console, sec.narrower())
    if sec.head == ["", ""] or _width(console, _rich(sec, every, sec.title)) <= console.width:
        console.print(_rich(sec, every, sec.title))
    elif (groups := _groups(console, sec)) is not None:
        for j, g in enumerate(groups):
            console.print(_rich(sec, list(range(sec.keys)) + g, sec.title + (" (continued)" if j else "")))
    else:
        console.print(Text(sec.title, style="bold"))
        for row in sec.rows:
            console.print(Text(" ".join(c.replace("\n", " ") for c in row[: sec.keys]), style="bold"))
            for h, c in zip(sec.head[sec.keys:], row[sec.keys:]):
                console.print(Text(f"  {h.replace(chr(10), ' ')}: {c.replace(chr(10), ' ')}"))
    if sec.note:
        console.print(Text(sec.note, style="dim"))
    if not sec.title.startswith("what each policy"):
        console.print()


def print_items(console: Console, items: list[Section | Para]) -> None:
    for it in items:
        if isinstance(it, Section):
            print_section(console, it)
        elif it.kind == "warning":
            console.print(Text.assemble(("warning: ", "yellow"), it.text))
        elif it.kind == "heading":
            console.print(Text(it.text, style="bold"))
        else:
            console.print(Text(it.text))
            if it.text.startswith(("ranking", "--detail", "filters")):
                console.print()


def render_table(r: Report, console: Console, **kw: Any) -> None:
    print_items(console, sections(r, **kw))


# -- Markdown ------------------------------------------------------------------------------------------
def _md_cell(c: str) -> str:
    return c.replace("|", "\\|").replace("\n", "<br>")


def markdown(items: list[Section | Para], title: str) -> str:
    out = [f"# {title}", ""]
    for it in items:
        if isinstance(it, Para):
            out += [("**warning:** " if it.kind == "warning" else "") + _md_cell(it.text)
                    if it.kind != "heading" else f"**{_md_cell(it.text)}**", ""]
            continue
        out += [f"## {it.title}", ""]
        head = ["item", "value"] if it.head == ["", ""] else [h.replace("\n", " ") for h in it.head]
        kv = it.head == ["", ""]
        out.append("| " + " | ".join(head) + " |")
        out.append("|" + "|".join("---" if kv or i < it.keys else "---:" for i in range(len(head))) + "|")
        out += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in it.rows]
        out += (["", f"*{it.note}*"] if it.note else []) + [""]
    return "\n".join(out)


# -- all formats ---------------------------------------------------------------------------------------
def render(r: Report, fmt: str, *, table: str | None = None, width: int = 100, **kw: Any) -> str:
    """Text of one format: table (the terminal's sections at `width`), markdown (every section),
    json (every table, or `table`), csv (one table: `table`, default policies)."""
    if fmt == "json":
        return export.to_json(r, table)
    if fmt == "csv":
        return export.table_csv(r, table or "policies")
    if fmt == "markdown":
        return markdown(sections(r, mode="detail", **kw), f"exitreplay analyze: {r.summary['path']}")
    if fmt == "table":
        buf = io.StringIO()
        render_table(r, Console(file=buf, width=width, force_terminal=False, color_system=None), **kw)
        return buf.getvalue()
    raise ValueError(f"unknown format {fmt!r}")
