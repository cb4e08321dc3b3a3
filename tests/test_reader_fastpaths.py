"""The reader's quick paths give what their line-by-line readings give (formats/tracedat_file.py)."""
from __future__ import annotations

import random
from pathlib import Path

import pytest

from exitreplay.formats.tracedat_file import TraceDatFile, _cmdlines_by_line, _cmdlines_plain

ROOT = Path(__file__).resolve().parent.parent
DATS = sorted([*(ROOT / "sample_traces").glob("*.dat"), *(ROOT / "tests" / "data" / "real").glob("*.dat")])


@pytest.mark.parametrize("path", DATS, ids=lambda p: p.name)
def test_saved_cmdlines_of_real_files(path):
    with TraceDatFile(path) as f:
        text = f.cmdlines.decode("utf-8", "replace")
    fast = _cmdlines_plain(text)
    assert fast is not None and fast == _cmdlines_by_line(text)
    assert fast[0]


def test_saved_cmdlines_of_any_text():
    pieces = ["1", "23", "007", " ", "  ", "\t", "x", "\n", "\n", "99999999999", "123456789012", "-", "é", "\r",
              "\x0b", "4194304", "4194305"]
    rnd = random.Random(12)
    quick = 0
    for _ in range(20000):
        text = "".join(rnd.choice(pieces) for _ in range(rnd.randint(0, 30)))
        fast = _cmdlines_plain(text)
        if fast is not None:
            quick += 1
            assert fast == _cmdlines_by_line(text), repr(text)
    assert quick > 2000  # the quick path is taken for most texts without odd bytes
