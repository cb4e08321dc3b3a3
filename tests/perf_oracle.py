"""perf itself as the oracle for perf.data files: `perf script` run with a Perl script written here,
which prints every event's raw field values exactly as perf decodes them.

perf 6.1's Python engine crashes (SIGSEGV in PyDict_SetItem) on some of the recordings, its Perl
engine does not, so the Perl one is used. It passes a tracepoint's fields to a handler named
`system::event` in the format's order (the names come from `perf evlist --trace-fields`); char
and u8 arrays arrive as strings cut at their first NUL, numbers as Perl integers.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

PERF = shutil.which("perf")


def need_perf() -> str:
    if PERF is None:
        pytest.skip("perf not installed (Debian: apt-get install linux-perf): oracle unavailable")
    return PERF


def run_perf(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([need_perf(), *args], capture_output=True, text=True, errors="replace", check=check)


def event_names(path: Path) -> list[str]:
    """system:event of every tracepoint the file's samples carry, as perf names them."""
    out = run_perf("script", "-F", "event", "-i", str(path)).stdout
    return sorted({ln.strip().rstrip(":") for ln in out.splitlines() if ":" in ln})


_PERL_HEAD = """use lib "$ENV{'PERF_EXEC_PATH'}/scripts/perl/Perf-Trace-Util/lib";
use Perf::Trace::Core;
use Perf::Trace::Context;
use Perf::Trace::Util;
sub trace_unhandled { }
sub v { my $x = shift; return defined($x) ? unpack("H*", $x) : ""; }
sub out {
    my ($name, $context, $cpu, $secs, $nsecs, $pid, $comm, $chain, @vals) = @_;
    my @f = map { v($_) } @vals;
    print join("\\t", $name, $cpu, $secs, $nsecs, $pid, v($comm), common_flags($context), common_pc($context), @f), "\\n";
}
"""


def perf_events(path: Path, tmp: Path) -> list[dict]:
    """Every tracepoint event of the file as perf delivers it: event (system:name), cpu, ts (ns),
    tid, comm, flags, pc, and `values`: the event's own fields in format order, as bytes (the
    decimal text of numbers, the raw bytes of strings).

    (Field names are not asked of perf: `perf evlist --trace-fields` crashes on pipe-mode files.)"""
    subs = []
    for ev in event_names(path):
        system, name = ev.split(":", 1)
        subs.append(f"sub {system}::{name} {{ out('{ev}', @_[1..$#_]); }}")
    script = tmp / "oracle.pl"
    script.write_text(_PERL_HEAD + "\n".join(subs) + "\n")
    res = run_perf("script", "-s", str(script), "-i", str(path))
    events = []
    for line in res.stdout.splitlines():
        parts = line.split("\t")
        if len(parts) < 8 or ":" not in parts[0]:
            continue
        events.append({"event": parts[0], "cpu": int(parts[1]), "ts": int(parts[2]) * 10**9 + int(parts[3]),
                       "tid": int(parts[4]), "comm": bytes.fromhex(parts[5]).decode("utf-8", "replace"),
                       "flags": int(parts[6]), "pc": int(parts[7]),
                       "values": [bytes.fromhex(v) for v in parts[8:]]})
    return events
