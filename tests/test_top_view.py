"""The live screen at 80 columns (and narrower, and short terminals), and its keys, in process."""
from __future__ import annotations

import io

import pytest
from conftest import SAMPLES
from rich.console import Console

from exitreplay.live import view
from exitreplay.live.session import Watcher
from exitreplay.live.sources import ReplaySource


def frames(name: str, interval: float) -> list:
    src = ReplaySource(str(SAMPLES / name), interval, 0)
    w = Watcher()
    return [f for f in (w.step(*x) for x in src.frames()) if f is not None]


def screen(frame, st: view.ViewState, width: int, height: int) -> list[str]:
    c = Console(width=width, height=height, record=True, file=io.StringIO(), color_system=None)
    c.print(view.render(frame, st, width, height))
    return c.export_text().rstrip("\n").split("\n")


@pytest.mark.parametrize("name", ["svm-mixed.v7zstd.dat", "vmx-mixed.v6.dat", "svm-nested.v7.dat",
                                  "pvm-longmode-msr.v7zstd.dat"])
@pytest.mark.parametrize("width,height", [(80, 24), (80, 60), (120, 40), (64, 20)])
def test_every_line_fits_the_terminal(name, width, height):
    fs = frames(name, 0.01)
    assert fs
    for f in (fs[0], fs[-1]):
        lines = screen(f, view.ViewState(source=f"replay {name}"), width, height)
        assert max(len(x) for x in lines) <= min(width, view.MAX_WIDTH)
        assert len(lines) <= height
        assert lines[0].startswith("exitreplay top · replay ") and "q quit" in lines[-1]


def test_screen_shows_the_intervals_numbers():
    f = frames("svm-mixed.v7zstd.dat", 0.01)[1]
    text = "\n".join(screen(f, view.ViewState(source="x"), 80, 40))
    busiest = max(f.delta.by_reason, key=f.delta.by_reason.get)
    assert busiest in text and view.si(f.rate(f.delta.by_reason[busiest])) in text
    assert f"{f.total.exits:,} exits" in text
    best = max(f.delta.saved, key=f.delta.saved.get)
    assert f"{f.rate(f.delta.saved[best]) / 1e6:.3f}" in text
    assert f"*{f.baseline}" in text


def test_sort_keys_reorder_the_exit_tables():
    f = frames("vmx-mixed.v6.dat", 0.02)[-1]
    st = view.ViewState()
    order = {}
    for key in ("e", "9", "n"):
        assert st.key(key)
        order[st.sort] = [ln.split()[0] for ln in screen(f, st, 80, 60)[4:9]]
    assert order["name"] == sorted(order["name"])
    p99 = {r: q[1] for r, q in f.latency.items()}
    assert order["p99"][0].rstrip("…") == max(p99, key=p99.get)[: len(order["p99"][0].rstrip("…"))]
    assert order["exits/s"][0] == max(f.delta.by_reason, key=f.delta.by_reason.get)[:len(order["exits/s"][0])]
    assert not st.key("x") and st.sort == "name"
    st.key("s")
    assert st.sort == view.SORTS[0]


def test_a_source_without_kvm_exit_says_so_and_shows_its_sync_events():
    f = frames("pvm-pio-small.v7zstd.dat", 0.005)[-1]
    text = "\n".join(screen(f, view.ViewState(source="x"), 80, 24))
    assert "no kvm_exit" in text
    for name in ("kvm_userspace_exit", "kvm_pio", "sched_switch"):
        assert name in text
