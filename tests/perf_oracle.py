"""perf itself as the oracle for perf.data files.

- `perf_events`: every tracepoint event with its raw field values, as perf decodes and delivers
  them, from `perf script -s` with a Python script written here (perf's Python engine hands a
  handler every field by name: numbers, strings, arrays as bytes). perf 6.1's Python engine
  crashes (SIGSEGV in PyDict_SetItem) on some real recordings; there the Perl engine is used,
  which passes the fields in format order (char and u8 arrays as C strings, cut at a NUL), and
  which itself crashes on pipe-mode files after most events (heap corruption inside perf): then
  the events it delivered before crashing are what is compared, and `complete` says so.
- `perf_script_lines`: `perf script --ns` text (comm, tid, CPU, time, event), which never crashes.
- `kvm_stat`: `perf kvm stat report` parsed.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

PERF = shutil.which("perf")


def need_perf() -> str:
    if PERF is None:
        pytest.skip("perf not installed (Debian: apt-get install linux-perf): oracle unavailable")
    return PERF


def run_perf(*args: str, stdin=None) -> subprocess.CompletedProcess:
    return subprocess.run([need_perf(), *args], capture_output=True, text=True, errors="replace", stdin=stdin)


_PY = """import json, sys
from perf_trace_context import common_pc, common_flags
def trace_unhandled(event_name, context, fields, sample=None):
    s = sample["sample"]
    sys.stdout.write(json.dumps({"event": sample["ev_name"], "cpu": s["cpu"], "ts": s["time"], "tid": s["tid"],
        "comm": fields["common_comm"], "common_pid": fields["common_pid"], "flags": common_flags(context),
        "pc": common_pc(context), "fields": {k: (list(v) if isinstance(v, (bytes, bytearray)) else v)
                                            for k, v in fields.items() if not k.startswith("common_")}}) + "\\n")
"""

_PERL_HEAD = """$| = 1;
use lib "$ENV{'PERF_EXEC_PATH'}/scripts/perl/Perf-Trace-Util/lib";
use Perf::Trace::Core;
use Perf::Trace::Context;
use Perf::Trace::Util;
sub trace_unhandled { }
sub v { my $x = shift; return defined($x) ? unpack("H*", $x) : ""; }
sub out {
    my ($name, $context, $cpu, $secs, $nsecs, $pid, $comm, $chain, @vals) = @_;
    print join("\\t", $name, $cpu, $secs, $nsecs, $pid, v($comm), common_flags($context), common_pc($context),
               map { v($_) } @vals), "\\n";
}
"""


def event_names(path: Path) -> list[str]:
    """system:event of every tracepoint the file's samples carry, as perf names them."""
    out = run_perf("script", "-F", "event", "-i", str(path)).stdout
    return sorted({ln.strip().rstrip(":") for ln in out.splitlines() if ":" in ln})


def _python(path: Path, tmp: Path) -> tuple[list[dict], bool]:
    script = tmp / "oracle.py"
    script.write_text(_PY)
    res = run_perf("script", "-s", str(script), "-i", str(path))
    return [json.loads(ln) for ln in res.stdout.splitlines() if ln.startswith("{")], res.returncode == 0


def _perl(path: Path, tmp: Path) -> tuple[list[dict], bool]:
    subs = [f"sub {ev.replace(':', '::', 1)} {{ out('{ev}', @_[1..$#_]); }}" for ev in event_names(path)]
    script = tmp / "oracle.pl"
    script.write_text(_PERL_HEAD + "\n".join(subs) + "\n")
    with open(path, "rb") as fh:
        pipe = fh.read(16)[8:] == (16).to_bytes(8, "little")
        fh.seek(0)
        # A pipe-mode file from stdin: perf's Perl engine dies sooner on one given by name.
        res = run_perf("script", "-s", str(script), "-i", "-" if pipe else str(path), stdin=fh if pipe else None)
    events = []
    for line in res.stdout.splitlines():
        p = line.split("\t")
        if len(p) >= 8 and ":" in p[0]:
            events.append({"event": p[0], "cpu": int(p[1]), "ts": int(p[2]) * 10**9 + int(p[3]),
                           "common_pid": int(p[4]), "comm": bytes.fromhex(p[5]).decode("utf-8", "replace"),
                           "flags": int(p[6]), "pc": int(p[7]), "values": [bytes.fromhex(v) for v in p[8:]]})
    return events, res.returncode == 0


def perf_events(path: Path, tmp: Path) -> tuple[list[dict], bool, str]:
    """(events as perf delivers them, whether perf got through the whole file, engine used)."""
    events, ok = _python(path, tmp)
    if ok:
        return events, True, "python"
    more, ok = _perl(path, tmp)
    if ok or len(more) > len(events):
        return more, ok, "perl"
    return events, False, "python"  # its crash is deterministic, the Perl one's is not


LINE = re.compile(r"^\s*(?P<comm>.*?)\s+(?P<tid>-?\d+)\s+\[(?P<cpu>\d+)\]\s+(?P<s>\d+)\.(?P<frac>\d+):\s+"
                  r"(?P<event>[\w-]+:[\w-]+):")


def parse_script_lines(text: str) -> list[dict]:
    """`perf script` lines -> comm, tid, cpu, ts (in the unit of the printed fraction), event."""
    out = []
    for line in text.splitlines():
        m = LINE.match(line)
        if m:
            out.append({"comm": m["comm"], "tid": int(m["tid"]), "cpu": int(m["cpu"]),
                        "ts": int(m["s"]) * 10 ** len(m["frac"]) + int(m["frac"]), "digits": len(m["frac"]),
                        "event": m["event"]})
    return out


def perf_script_lines(path: Path) -> list[dict]:
    return parse_script_lines(run_perf("script", "--ns", "-F", "comm,tid,cpu,time,event", "-i", str(path)).stdout)


_STAT = re.compile(r"^\s*(?P<key>\S+)\s+(?P<n>\d+)\s+[\d.]+%\s+[\d.]+%\s+(?P<min>[\d.]+)us\s+(?P<max>[\d.]+)us\s+"
                   r"(?P<avg>[\d.]+)us")


def kvm_stat(path: Path, event: str = "vmexit") -> dict[str, dict]:
    """`perf kvm stat report --event EVENT`: key -> samples, min/max/avg in us (as printed)."""
    res = run_perf("kvm", "-i", str(path), "stat", "report", "--event", event)
    assert res.returncode == 0, res.stderr[-500:]
    out = {}
    for line in (res.stdout + res.stderr).splitlines():  # perf prints the report with pr_info: stderr
        m = _STAT.match(line)
        if m:
            out[m["key"]] = {"samples": int(m["n"]), "min": float(m["min"]), "max": float(m["max"]),
                             "avg": float(m["avg"])}
    return out
