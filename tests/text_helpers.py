"""The text-reader tests' own oracle: `trace-cmd report -R -t` parsed here, not by exitreplay.

`-R` prints every raw field as `name=value`, each integer with the conversion the event's print
format uses for it (libtraceevent reuses it): "0x.." or `%x` -> hex, otherwise decimal. Which fields
a print format shows with `%x` is read from the formats the file itself stores (`trace-cmd dump
--events`), so the oracle knows the base of "830" in `ecx=830` without asking exitreplay.
"""
from __future__ import annotations

import functools
import re
import subprocess
from pathlib import Path

from conftest import trace_cmd_report

# The task column up to the CPU column ("%16s-%-5d", split by `split_task`).
TASK = r"(?P<task>.*?-\d+)\s+\[(?P<cpu>\d+)\]\s+"
LINE = re.compile(r"^" + TASK + r"(?P<sec>\d+)\.(?P<frac>\d+):\s+(?P<event>[\w:]+):\s*(?P<rest>.*?)\s*$")
FIELD = re.compile(r"(\w+)=(.*?)(?=\s+\w+=|$)")
CONV = re.compile(r"%[-+ #0]*\d*(?:\.\d+)?(?:hh|h|ll|l|z|j|t|L)?([diouxXcspn%])")


def split_task(task: str) -> tuple[str, int]:
    """(comm, pid) of a "%16s-%-Nd" task column: a comm of up to 15 characters is padded to 16
    columns, so the dash after it is the 17th character (the comm may end in a dash, the pid may
    be negative); a longer comm ends at the last dash."""
    if len(task) > 17 and task[0].isspace() and task[16] == "-":
        return task[:16].strip(), int(task[17:])
    comm, _, pid = task.strip().rpartition("-")
    return comm, int(pid)


def _split_args(args: str) -> list[str]:
    out, depth, cur = [], 0, []
    for ch in args:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        if ch == "," and depth == 0:
            out.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    if cur:
        out.append("".join(cur).strip())
    return out


@functools.cache
def hex_fields(dat: Path) -> dict[str, set[str]]:
    """event -> fields its print format writes with %x/%p (so `-R` prints them in hex)."""
    text = subprocess.run(["trace-cmd", "dump", "--events", "-i", str(dat)], check=True,
                          capture_output=True, text=True).stdout
    out: dict[str, set[str]] = {}
    for block in re.split(r"\n(?=name: )", text):
        name = re.match(r"name: (\w+)", block)
        pf = re.search(r'^print fmt: "((?:[^"\\]|\\.)*)"(.*)$', block, re.MULTILINE)
        if not name or not pf:
            continue
        convs = [c for c in CONV.findall(pf[1]) if c != "%"]
        args = _split_args(pf[2].lstrip(", ")) if pf[2].strip() else []
        hexes = set()
        for conv, arg in zip(convs, args):
            m = re.fullmatch(r"REC->(\w+)", arg)
            if m and conv in "xXp":
                hexes.add(m[1])
        out[name[1]] = hexes
    return out


def oracle(dat: Path, *extra: str) -> list[dict]:
    """Events of `trace-cmd report -R -t` (plus extra options) of a trace.dat, with typed fields."""
    bases = hex_fields(dat)
    out = []
    for line in trace_cmd_report(dat, "-R", "-t", *extra).splitlines():
        m = LINE.match(line)
        if not m:
            continue
        event = m["event"].split(":")[-1]
        comm, pid = split_task(m["task"])
        fields = {}
        for k, v in FIELD.findall(m["rest"]):
            fields[k] = typed(v, k in bases.get(event, set()))
        out.append({"ts": int(m["sec"]) * 10**9 + int(m["frac"].ljust(9, "0")[:9]), "cpu": int(m["cpu"]),
                    "pid": pid, "comm": comm, "event": event, "fields": fields})
    return out


def typed(text: str, hex_conv: bool):
    text = text.strip()
    arr = re.fullmatch(r"ARRAY\[(.*)\]", text)
    if arr:
        return [int(b, 16) for b in arr[1].split(", ") if b]
    try:
        if text.lower().startswith(("0x", "-0x")):
            return int(text, 16)
        return int(text, 16 if hex_conv else 10)
    except ValueError:
        return text


def rows_of(trace) -> list[dict]:
    """Per row of `trace.events`: its own fields from the per-event tables (nulls left out)."""
    out: list[dict] = [{} for _ in range(trace.events.num_rows)]
    for name in trace.event_names:
        t = trace.table(name)
        own = [c for c in t.column_names if c not in ("row", "ts", "cpu", "pid")]
        cols = {c: t.column(c).to_pylist() for c in own}
        for i, r in enumerate(t.column("row").to_pylist()):
            out[r] = {c: cols[c][i] for c in own if cols[c][i] is not None}
    return out


def us(ns: int) -> int:
    return (ns + 500) // 1000  # trace-cmd and the kernel both round ns to the printed µs


def same(mine, raw) -> bool:
    if isinstance(mine, bool) or isinstance(raw, bool):
        return int(mine) == int(raw)
    if isinstance(mine, list) and isinstance(raw, list):
        # the kernel's print shows `len` bytes of kvm_emulate_insn's 15-byte array
        return mine == raw[: len(mine)]
    return mine == raw
