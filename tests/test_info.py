"""`exitreplay info`: every field of `--json` against trace-cmd's own view of the same file
(`trace-cmd dump --summary`, `trace-cmd report`, `trace-cmd report --stat`)."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter

import pytest
from conftest import DAT_VARIANTS, REAL, RECORDINGS
from test_convert import with_losses
from test_tracedat_oracle import oracle_events


def info(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "exitreplay", "info", *args], capture_output=True, text=True,
                          check=False)


def info_json(path) -> dict:
    proc = info(str(path), "--json")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def dump_summary(path) -> dict:
    """The file header as `trace-cmd dump --summary` prints it."""
    text = subprocess.run(["trace-cmd", "dump", "--summary", "-i", str(path)], capture_output=True, text=True,
                          check=True).stdout
    out = {
        "version": int(re.search(r"(\d+)\s+\[Version\]", text)[1]),
        "endian": "little" if "[Little endian]" in text else "big",
        "long_size": int(re.search(r"(\d+)\s+\[Bytes in a long\]", text)[1]),
        "page_size": int(re.search(r"(\d+)\s+\[Page size, bytes\]", text)[1]),
    }
    m = re.search(r"(\w+)\s+\[Compression algorithm\]", text)
    out["compression"] = m[1] if m else "none"
    m = re.search(r'\[buffer "", "([^"]+)" clock, \d+ page size, (\d+) cpus', text)
    if m:  # v7: the buffer option names clock and CPU count
        out["clock"], out["cpus"] = m[1], int(m[2])
    else:  # v6
        out["clock"] = re.search(r"\[Tracing clock\]\s*\[(\w[\w-]*)\]", text)[1]
        out["cpus"] = int(re.search(r"(\d+) \[CPUs with tracing data\]", text)[1])
    return out


def stat_read_events(path) -> dict[str, int]:
    """Per CPU, the kernel's count of events read out of its ring buffer (`report --stat`)."""
    text = subprocess.run(["trace-cmd", "report", "--stat", "-i", str(path)], capture_output=True, text=True,
                          check=True).stdout
    return {m[1]: int(m[2]) for m in re.finditer(r"CPU: (\d+)\n(?:.*\n)*?read events: (\d+)", text)}


@pytest.mark.parametrize("variant", DAT_VARIANTS)
@pytest.mark.parametrize("name", RECORDINGS)
def test_info_json_matches_trace_cmd(trace_cmd, name, variant):
    path = REAL / f"{name}.{variant}.dat"
    got = info_json(path)
    header = dump_summary(path)
    assert got["source_format"] == "trace.dat"
    for key in ("version", "compression", "cpus", "clock", "page_size", "endian", "long_size"):
        assert got[key] == header[key], key
    events = oracle_events(path)
    assert got["event_counts"] == dict(Counter(e for _, _, _, e, _, _ in events))
    assert (got["first_ts"], got["last_ts"]) == (events[0][0], events[-1][0])
    assert got["duration_ns"] == events[-1][0] - events[0][0]
    per_cpu = Counter(str(cpu) for _, cpu, _, _, _, _ in events)
    assert got["extra"]["events_per_cpu"] == dict(per_cpu) == stat_read_events(path)
    assert got["dropped"] == [] and got["dropped_per_cpu"] == {}
    assert got["uname"].startswith("Linux ") and got["extra"]["trace_cmd_version"].startswith("3.1.6")


def test_info_dropped_per_cpu(trace_cmd, tmp_path):
    src = tmp_path / "lost.dat"
    with_losses(REAL / "pvm-pio-small.v6.dat", src)
    got = info_json(src)
    report = subprocess.run(["trace-cmd", "report", "-i", str(src)], capture_output=True, text=True,
                            check=True).stdout
    per_cpu: dict[str, int | None] = {}
    for m in re.finditer(r"CPU:(\d+) \[(?:(\d+) )?EVENTS DROPPED\]", report):
        prev = per_cpu.get(m[1], 0)
        per_cpu[m[1]] = None if prev is None or m[2] is None else prev + int(m[2])
    assert got["dropped_per_cpu"] == per_cpu == {"0": 77, "1": None}
    assert [(d["cpu"], d["count"]) for d in got["dropped"]] == [
        (int(m[1]), None if m[2] is None else int(m[2]))
        for m in re.finditer(r"CPU:(\d+) \[(?:(\d+) )?EVENTS DROPPED\]", report)]
    assert any("lost by the recorder" in w for w in got["warnings"])


def test_info_summary_text(trace_cmd):
    path = REAL / "pvm-longmode-msr.v7zstd.dat"
    proc = info(str(path))
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    header = dump_summary(path)

    def row(label, value):  # a table row, whatever the box characters
        return re.search(rf"{label}[\s│|]+{re.escape(value)}[\s│|]", out)

    assert row("format", "trace.dat v7")
    assert row("compression", "zstd")
    assert row("CPUs", str(header["cpus"]))
    assert row("page size", str(header["page_size"]))
    counts = Counter(e for _, _, _, e, _, _ in oracle_events(path))
    for event, n in counts.items():
        assert row(event, f"{n:,}"), event
    assert "events lost by the recorder: none reported" in out


def test_info_on_text_input():
    got = info_json(REAL / "pvm-pio-small.report.txt")
    dat = info_json(REAL / "pvm-pio-small.v7.dat")
    assert got["source_format"] == "trace-cmd-report"
    assert got["cpus"] == dat["cpus"]
    assert got["event_counts"] == dat["event_counts"]
