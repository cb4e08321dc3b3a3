"""Bad input: one line naming the file and the problem, exit status 2, no traceback; truncated
data keeps every complete event before the cut."""
from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import REAL

import exitreplay
from exitreplay.errors import TraceError, TraceWarning

SRC = REAL / "pvm-longmode-msr.v6.dat"


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "exitreplay", *args], capture_output=True, text=True)


def assert_one_line_error(path, proc, words):
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    assert str(path) in lines[0]
    assert any(w in lines[0] for w in words), lines[0]


def test_empty_file(tmp_path):
    p = tmp_path / "empty.dat"
    p.write_bytes(b"")
    with pytest.raises(TraceError, match="empty"):
        exitreplay.read_trace(p)
    assert_one_line_error(p, run_cli("info", str(p)), ["empty"])


def test_text_that_is_not_a_trace(tmp_path):
    p = tmp_path / "notes.txt"
    p.write_text("hello\nthis is a shopping list\n- eggs\n")
    assert_one_line_error(p, run_cli("info", str(p)), ["not a trace"])


def test_binary_garbage(tmp_path):
    p = tmp_path / "garbage.bin"
    p.write_bytes(bytes(range(256)) * 10)
    assert_one_line_error(p, run_cli("info", str(p)), ["not a trace"])


def test_missing_file(tmp_path):
    p = tmp_path / "nope.dat"
    assert_one_line_error(p, run_cli("info", str(p)), ["no such file"])


@pytest.mark.parametrize("cut", [5, 12, 17, 40, 300, 3000, 60000])
def test_truncated_in_header(tmp_path, cut):
    p = tmp_path / f"cut{cut}.dat"
    p.write_bytes(SRC.read_bytes()[:cut])
    with pytest.raises(TraceError) as exc:
        exitreplay.read_trace(p)
    assert "truncated" in str(exc.value) or "not a" in str(exc.value)
    assert_one_line_error(p, run_cli("info", str(p)), ["truncated", "not a"])


def test_unknown_version(tmp_path):
    data = bytearray(SRC.read_bytes()[:4096])
    data[10:12] = b"9\0"
    p = tmp_path / "v9.dat"
    p.write_bytes(bytes(data))
    with pytest.raises(TraceError, match="version 9"):
        exitreplay.read_trace(p)
    assert_one_line_error(p, run_cli("info", str(p)), ["version"])


def _cpu_table(path):
    from exitreplay.formats.tracedat_file import TraceDatFile

    f = TraceDatFile(path)
    return f.buffers[0].cpus, f.page_size


def test_truncated_mid_page_keeps_complete_events(tmp_path):
    full = exitreplay.read_trace(SRC)
    cpus, page = _cpu_table(SRC)
    last = max(cpus, key=lambda c: c.offset)  # the CPU whose data ends the file
    cut = last.offset + 2 * page + page // 2  # half-way into its third page
    p = tmp_path / "cut-data.dat"
    p.write_bytes(SRC.read_bytes()[:cut])
    with pytest.warns(TraceWarning, match="truncated"):
        part = exitreplay.read_trace(p)
    assert any("truncated" in w for w in part.meta.warnings)
    # Every event of the other CPUs survives; the cut CPU keeps a prefix of its events, all equal.
    full_ev = full.events.to_pydict()
    got = part.events.to_pydict()
    keys = list(zip(full_ev["ts"], full_ev["cpu"], full_ev["pid"], full_ev["event"]))
    got_keys = list(zip(got["ts"], got["cpu"], got["pid"], got["event"]))
    assert set(got_keys) <= set(keys)
    other = [k for k in keys if k[1] != last.cpu]
    assert [k for k in got_keys if k[1] != last.cpu] == other
    mine_cut = [k for k in got_keys if k[1] == last.cpu]
    full_cut = [k for k in keys if k[1] == last.cpu]
    assert 0 < len(mine_cut) < len(full_cut)
    assert mine_cut == full_cut[: len(mine_cut)]
    # The half page is decoded as far as its complete records go, beyond the two whole pages.
    two_pages = exitreplay.formats.ringbuffer.decode_pages(
        __import__("numpy").frombuffer(SRC.read_bytes()[last.offset: last.offset + 2 * page], "u1"), page
    )
    assert len(mine_cut) > two_pages.count
    proc = run_cli("info", str(p))
    assert proc.returncode == 0 and "truncated" in proc.stderr and "Traceback" not in proc.stderr


def test_corrupted_page_is_skipped_with_warning(tmp_path):
    full = exitreplay.read_trace(SRC)
    cpus, page = _cpu_table(SRC)
    c0 = cpus[0]
    data = bytearray(SRC.read_bytes())
    # Garbage commit word on the CPU's second page: a length larger than the page.
    data[c0.offset + page + 8: c0.offset + page + 16] = (0x7FFFFF).to_bytes(8, "little")
    p = tmp_path / "corrupt.dat"
    p.write_bytes(bytes(data))
    tr = exitreplay.read_trace(p)
    assert any("corrupt" in w and "page 1" in w for w in tr.meta.warnings)
    assert 0 < len(tr) < len(full)
