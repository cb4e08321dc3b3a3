"""The CPU merge (running-maximum keys, stable sort, split into windows) against trace-cmd's rule
written out plainly: repeatedly print the CPU whose next event has the smallest timestamp, the
lower CPU on ties."""
from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from exitreplay.formats.tracedat import Decoder, Part, _windows, merge_key


def head_merge(seqs: list[list[int]]) -> list[tuple[int, int]]:
    heads = [0] * len(seqs)
    out = []
    while True:
        best = None
        for c, s in enumerate(seqs):
            if heads[c] < len(s) and (best is None or s[heads[c]] < seqs[best][heads[best]]):
                best = c
        if best is None:
            return out
        out.append((best, heads[best]))
        heads[best] += 1


def plain_decoder() -> Decoder:
    dec = Decoder.__new__(Decoder)  # no file: only the merge, with timestamps already in ns
    dec.tsc2nsec, dec.time_offset = None, 0
    return dec


cpu_seq = st.lists(st.integers(0, 40), min_size=0, max_size=30).map(
    lambda steps: np.cumsum([s - 8 if s % 7 == 0 else s for s in steps]).astype(np.int64))


@settings(max_examples=200, deadline=None)
@given(st.lists(cpu_seq, min_size=1, max_size=5), st.integers(1, 12))
def test_windowed_merge_is_trace_cmds_order(seqs, target):
    """Timestamps that tie across CPUs and step back within one, cut into windows of any size."""
    dec = plain_decoder()
    keys = [merge_key(s) for s in seqs]
    for k in keys:
        assert (np.diff(k) >= 0).all()
    got = []
    for win in _windows(keys, target):
        parts = [Part(c, k[lo:hi], s[lo:hi], np.arange(lo, hi, dtype=np.int64), np.zeros(hi - lo, np.int32))
                 for c, ((lo, hi), k, s) in enumerate(zip(win, keys, seqs))]
        m = dec.merge(parts)
        got += list(zip(m.cpu.tolist(), m.off.tolist()))
    assert got == head_merge([s.tolist() for s in seqs])


@settings(max_examples=100, deadline=None)
@given(cpu_seq, st.integers(0, 100))
def test_merge_key_carries_the_previous_chunks_maximum(seq, cut):
    cut = min(cut, seq.size)
    whole = merge_key(seq)
    first = merge_key(seq[:cut])
    floor = int(first[-1]) if cut else None
    assert np.concatenate([first, merge_key(seq[cut:], floor)]).tolist() == whole.tolist()
