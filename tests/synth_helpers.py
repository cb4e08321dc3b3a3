"""Independent checks for generated traces: trace-cmd's text parsed here, and a per-CPU replay.

Nothing here uses exitreplay's readers or writers: `trace_cmd_events` parses what
`trace-cmd report -R -t` prints, with the number base each field is printed in taken from the
event's own `print fmt` (libtraceevent prints a raw field with the conversion its print format
uses for it: `%x` -> hex without "0x", `0x%016llx` -> "0x..."; anything else in decimal).
"""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

from text_helpers import TASK, split_task

LINE = re.compile(r"^" + TASK + r"(?P<sec>\d+)\.(?P<ns>\d{9}):\s+(?P<event>\w+):\s?(?P<rest>.*)$")
FIELD = re.compile(r"(\w+)=(.*?)(?=\s+\w+=|$)")
CONV = re.compile(r"%[-+ #0]*\d*(?:\.\d+)?(?:hh|h|ll|l|z)?([diouxXscp])")


def trace_cmd_events(path: Path) -> list[tuple[int, int, int, str, str, dict[str, str]]]:
    """(ts ns, cpu, pid, comm, event, {field: text}) for every line of `trace-cmd report -R -t`."""
    out = subprocess.run(["trace-cmd", "report", "-R", "-t", "-i", str(path)], check=True, capture_output=True,
                         text=True, errors="replace").stdout
    events = []
    for line in out.splitlines():
        m = LINE.match(line)
        if m:
            comm, pid = split_task(m["task"])
            events.append((int(m["sec"]) * 10**9 + int(m["ns"]), int(m["cpu"]), pid, comm,
                           m["event"], dict(FIELD.findall(m["rest"]))))
    return events


def _split_top(text: str) -> list[str]:
    parts, depth, cur, quote = [], 0, [], False
    for ch in text:
        if ch == '"':
            quote = not quote
        elif not quote and ch in "([{":
            depth += 1
        elif not quote and ch in ")]}":
            depth -= 1
        if ch == "," and depth == 0 and not quote:
            parts.append("".join(cur).strip())
            cur = []
            continue
        cur.append(ch)
    parts.append("".join(cur).strip())
    return parts


def hex_fields(format_text: str) -> set[str]:
    """Fields the print format shows with %x (as a direct REC->field argument)."""
    line = next(x for x in format_text.splitlines() if x.startswith("print fmt:"))
    body = line[len("print fmt:"):].strip()
    end = body.index('"', 1)
    fmt, args = body[1:end], _split_top(body[end + 1:].lstrip(", "))
    convs = CONV.findall(fmt.replace("%%", ""))
    out = set()
    for conv, arg in zip(convs, args):
        m = re.fullmatch(r"REC->(\w+)", arg)
        if m and conv in "xX":
            out.add(m[1])
    return out


def value_of(text: str, hexed: bool):
    """The value trace-cmd printed: int, list of ints (ARRAY[..] bytes) or str."""
    t = text.strip()
    if t.startswith("ARRAY["):
        inner = t[6:-1].strip()
        return [int(x, 16) for x in inner.split(",")] if inner else []
    if re.fullmatch(r"-?0x[0-9a-fA-F]+", t):
        return int(t, 16)
    if hexed and re.fullmatch(r"[0-9a-fA-F]+", t):
        return int(t, 16)
    if re.fullmatch(r"-?\d+", t):
        return int(t)
    return t


def table_rows(trace) -> list[tuple[str, dict]]:
    """Each event with all its fields from the typed tables, in row order."""
    rows = {}
    for name in trace.event_names:
        for r in trace.table(name).to_pylist():
            rows[r.pop("row")] = (name, r)
    return [rows[i] for i in range(len(trace))]


def assert_trace_cmd_reads(trace, path: Path, template) -> int:
    """trace-cmd prints exactly the events of `trace` (ts, cpu, pid, comm, event, every field)."""
    got = trace_cmd_events(path)
    ev = trace.events.to_pydict()
    rows = table_rows(trace)
    assert len(got) == len(rows), (len(got), len(rows))
    hexes = {name: hex_fields(text.decode()) for name, text in
             ((f.name, t) for s, ts in template.event_formats.items() for t in ts
              for f in [__import__("exitreplay").formats.eventformat.parse_format(t, s)])}
    for i, (ts, cpu, pid, comm, event, fields) in enumerate(got):
        assert (ts, cpu, pid, event) == (ev["ts"][i], ev["cpu"][i], ev["pid"][i], ev["event"][i]), i
        assert comm == (ev["comm"][i] or "<...>"), (i, comm, ev["comm"][i])
        _, mine = rows[i]
        own = {k: v for k, v in mine.items() if k not in ("ts", "cpu")}
        if "pid" not in fields:
            own.pop("pid", None)
        assert set(fields) == set(own), (i, event, set(fields) ^ set(own))
        for k, text in fields.items():
            assert value_of(text, k in hexes[event]) == (int(own[k]) if isinstance(own[k], bool) else own[k]), \
                (i, event, k, text, own[k])
    return len(got)


def coherence_problems(trace) -> list[tuple]:
    """Replay the events per CPU: who runs where (sched_switch), exits and entries alternating."""
    ev = trace.events.to_pydict()
    sw = {r["row"]: r for r in trace.table("sched_switch").to_pylist()} if trace.has("sched_switch") else {}
    cur: dict[int, int] = {}
    last: dict[int, int] = {}
    running_on: dict[int, int] = {}
    problems = []
    for i, (c, p, e, t) in enumerate(zip(ev["cpu"], ev["pid"], ev["event"], ev["ts"])):
        if t < last.get(c, t):
            problems.append(("time goes back", i))
        last[c] = t
        if c in cur and cur[c] != p:
            problems.append(("event of a task not on this CPU", i, c, p, cur[c], e))
        if e == "sched_switch":
            r = sw[i]
            nxt = r["next_pid"]
            if r["prev_pid"] != p:
                problems.append(("prev_pid differs from the event's pid", i))
            if nxt and running_on.get(nxt, c) != c:
                problems.append(("task switched in on two CPUs", i, nxt))
            running_on.pop(p, None)
            if nxt:
                running_on[nxt] = c
            cur[c] = nxt
    if trace.has("kvm_exit") and trace.has("kvm_entry"):
        seq: dict[int, list] = {}
        for name, tag in (("kvm_exit", "x"), ("kvm_entry", "e")):
            t = trace.table(name)
            for r, p in zip(t.column("row").to_pylist(), t.column("pid").to_pylist()):
                seq.setdefault(p, []).append((r, tag))
        for p, s in seq.items():
            tags = "".join(tag for _, tag in sorted(s))
            if "xx" in tags or "ee" in tags:
                problems.append(("exits and entries do not alternate", p))
    return problems
