"""iter_windows over a text trace holds a window and a chunk, not the file: peak RSS of a process
reading every window (and every table of each) of a long `trace-cmd report` text does not grow
when the text is four times longer."""
from __future__ import annotations

from pathlib import Path

import pytest
from conftest import trace_cmd_report
from memory_helpers import windows_peak
from text_repeat import repeat_text

ROOT = Path(__file__).resolve().parent.parent
WINDOW = 20_000
# "whole": the read-whole path, for comparison
WHOLE = """
if sys.argv[3] == "whole":
    from exitreplay.formats import textstream
    textstream.MODULES = {}
"""


@pytest.fixture(scope="module")
def texts(trace_cmd, tmp_path_factory):
    d = tmp_path_factory.mktemp("memtext")
    src = d / "vmx-mixed.txt"
    src.write_text(trace_cmd_report(ROOT / "sample_traces" / "vmx-mixed.v6.dat"))
    return {k: (d / f"x{k}.txt", repeat_text(src, d / f"x{k}.txt", k)) for k in (40, 160)}


def peak(path, how: str = "stream") -> dict:
    return windows_peak(path, WINDOW, how, setup=WHOLE)


def test_peak_rss_does_not_grow_with_the_text(texts):
    (small, n_small), (big, n_big) = texts[40], texts[160]
    assert n_big == 4 * n_small > 250_000
    a, b = peak(small), peak(big)
    assert (a["events"], b["events"]) == (n_small, n_big)
    assert a["rows"] == n_small and b["rows"] == n_big
    # Four times the text (~100 MB more): a whole-file read holds every line and its fields; the
    # windows may differ by allocator noise only.
    print(f"peak RSS {a['rss_kb'] // 1000} MB for {n_small:,} events ({small.stat().st_size >> 20} MiB), "
          f"{b['rss_kb'] // 1000} MB for {n_big:,} ({big.stat().st_size >> 20} MiB)")
    assert b["rss_kb"] < a["rss_kb"] * 1.25 + 40_000, (a, b)
    whole = peak(big, "whole")  # what the bound saves: the file read whole, then sliced
    print(f"read whole: {whole['rss_kb'] // 1000} MB")
    assert whole["events"] == n_big and whole["rss_kb"] > 2 * b["rss_kb"], (whole, b)
