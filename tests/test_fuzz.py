"""A short fuzz campaign in the suite: structure-aware mutations of the seed corpus (real
recordings, samples, perf.data files real and generated, text traces, TOML files) through read_trace with every table decoded, and on
some inputs analyze, convert and the CLI. No input may raise anything but the project's error,
exceed its memory budget, hang, break the exact-prefix property of a cut file, make convert and
read_trace disagree, or leave a file to the garbage collector. The same campaign seed gives the
same inputs, so a failure here is reproduced by `python -m tests.fuzz --replay N`."""
from __future__ import annotations

import pytest
from fuzz.atheris_entry import test_one_input as atheris_one_input
from fuzz.atheris_entry import write_seeds
from fuzz.corpus import build_seeds
from fuzz.harness import campaign
from fuzz.mutate import Mutator

INPUTS = 1200
CAMPAIGN = 1


def test_short_campaign(tmp_path):
    s = campaign(INPUTS, campaign=CAMPAIGN, timeout=60, analyze_every=10, convert_every=10, cli_every=700,
                 corpus_dir=tmp_path)
    print(s.report())
    assert s.failures() == 0, s.report()
    assert s.resource_warnings == 0, s.report()
    # The mutations reach both sides of the readers' checks, and every kind of input.
    assert s.counts["ok"] > INPUTS // 5 and s.counts["clean"] > INPUTS // 5, s.report()
    assert set(s.kinds) == {"dat", "perf", "text", "policy", "costs"} and s.truncations > 50, s.report()


def test_the_same_seed_gives_the_same_inputs(tmp_path):
    a = Mutator(build_seeds(tmp_path / "a" if (tmp_path / "a").mkdir() is None else tmp_path), 7)
    b = Mutator(build_seeds(tmp_path / "b" if (tmp_path / "b").mkdir() is None else tmp_path), 7)
    for i in (0, 1, 17, 523):
        x, y = a.make(i), b.make(i)
        assert (x.data, x.ops) == (y.data, y.ops)
    assert a.make(3).data != Mutator(a.seeds, 8).make(3).data or a.make(4).data != Mutator(a.seeds, 8).make(4).data


def test_atheris_entry_point(tmp_path):
    """The coverage-guided entry point runs each seed; with atheris installed, a few hundred runs."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    assert write_seeds(corpus) > 20
    for p in sorted(corpus.iterdir()):
        atheris_one_input(p.read_bytes())
    pytest.importorskip("atheris", reason="atheris not installed (pip install -e '.[fuzz]')")
    import subprocess
    import sys

    from conftest import ROOT

    proc = subprocess.run([sys.executable, "tests/fuzz/atheris_entry.py", str(corpus), "-runs=150",
                           "-rss_limit_mb=3072", "-timeout=60"], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0 and "DONE" in proc.stderr, proc.stderr[-2000:]
