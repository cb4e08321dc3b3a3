"""Format detection from content: every committed form, the variants, and what is not a trace."""
from __future__ import annotations

import re
import subprocess
import sys

import pytest
from conftest import DAT_VARIANTS, REAL, RECORDINGS, ROOT, trace_cmd_report

import exitreplay
from exitreplay.errors import TraceError
from exitreplay.formats.detect import sniff


@pytest.mark.parametrize("name", RECORDINGS)
def test_committed_forms(name):
    for v in DAT_VARIANTS:
        assert sniff(REAL / f"{name}.{v}.dat") == "trace.dat"
    assert sniff(REAL / f"{name}.report.txt") == "trace-cmd-report"
    assert sniff(REAL / f"{name}.ftrace.txt") == "ftrace-text"
    assert sniff(REAL / f"{name}.perf-script.txt") == "perf-script"


def test_detection_ignores_the_file_name(tmp_path):
    # a report saved as ".dat" and a trace.dat saved as ".txt" are still what they are
    a, b = tmp_path / "looks.dat", tmp_path / "looks.txt"
    a.write_bytes((REAL / "pvm-pio-small.report.txt").read_bytes())
    b.write_bytes((REAL / "pvm-pio-small.v7.dat").read_bytes())
    assert sniff(a) == "trace-cmd-report"
    assert sniff(b) == "trace.dat"


@pytest.mark.parametrize("opts", [(), ("-R",), ("-t",), ("-N",), ("-R", "-t")])
def test_trace_cmd_outputs(trace_cmd, tmp_path, opts):
    out = tmp_path / "r.txt"
    text = trace_cmd_report(ROOT / "sample_traces" / "vmx-netio.v6.dat", *opts)
    out.write_text(text)
    assert sniff(out) == "trace-cmd-report"
    # without the cpus= header, trace-cmd's padding of event names still tells it from ftrace
    out.write_text("\n".join(ln for ln in text.splitlines() if not ln.startswith("cpus=")))
    assert sniff(out) == "trace-cmd-report"


def test_kernel_text_variants(tmp_path):
    lines = (REAL / "pvm-pio-small.ftrace.txt").read_text().splitlines()
    pipe = [ln for ln in lines if not ln.startswith("#")]
    (tmp_path / "pipe.txt").write_text("\n".join(pipe))
    assert sniff(tmp_path / "pipe.txt") == "ftrace-text"
    lat = re.compile(r"(\]) [.dDbX][.nNpPlLbB][.hHsSzZ][.0-9a-f][.0-9a-f] ")
    (tmp_path / "nolat.txt").write_text("\n".join(lat.sub(r"\1 ", ln) for ln in pipe))
    assert sniff(tmp_path / "nolat.txt") == "ftrace-text"


def test_trace_dat_with_unknown_version_is_still_a_trace_dat(tmp_path):
    data = bytearray((REAL / "pvm-pio-small.v6.dat").read_bytes()[:100_000])
    assert data[10:12] == b"6\0"  # the version string follows the 10-byte magic
    data[10:11] = b"9"
    p = tmp_path / "v9.dat"
    p.write_bytes(bytes(data))
    assert sniff(p) == "trace.dat"
    with pytest.raises(TraceError, match="version"):
        exitreplay.read_trace(p)


@pytest.mark.parametrize("content,why", [
    (b"", "empty file"),
    (b"\n  \n\n", "not a trace"),
    (bytes(range(256)) * 64, "not a trace: binary"),
    (b"\x17\x08\x44trac", "not a trace"),  # a damaged magic
    (b"# Notes\n\nSome text: with colons.\nkey=value pairs=everywhere\n", "not a trace"),
    (b"a,b,c\n1,2,3\n", "not a trace"),
])
def test_not_a_trace(tmp_path, content, why):
    p = tmp_path / "x"
    p.write_bytes(content)
    with pytest.raises(TraceError) as err:
        sniff(p)
    assert why in err.value.problem
    assert err.value.path == str(p)


def test_directory_and_missing(tmp_path):
    with pytest.raises(TraceError, match="directory"):
        exitreplay.read_trace(tmp_path)
    with pytest.raises(TraceError, match="no such file"):
        exitreplay.read_trace(tmp_path / "nope.dat")


def test_cli_says_one_line_and_exits_2(tmp_path):
    p = tmp_path / "empty.txt"
    p.write_bytes(b"")
    res = subprocess.run([sys.executable, "-m", "exitreplay", "info", str(p)], capture_output=True, text=True,
                         check=False)
    assert res.returncode == 2
    assert res.stderr.strip().count("\n") == 0 and "empty file" in res.stderr
    assert "Traceback" not in res.stderr
