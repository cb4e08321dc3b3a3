"""`exitreplay top` on a real terminal: tmux (a private server) at 80x24, driven with send-keys and
read with capture-pane. The screen must update, fit 80 columns without a wrapped line (capture
-J joins wrapped lines, so one would show longer than 80), answer its keys, and quit cleanly on
`q` (exit status 0, the terminal back as it was). Live runs (root, tracefs, /dev/kvm) also check
the host's tracing state after `q` and after Ctrl-C.
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time

import pytest
from conftest import ROOT
from test_top_live import host_state, wait_for_instance, why_not_live  # noqa: F401 (fixture)

from exitreplay.synth import synthesize

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux not installed (scripts/setup.sh)")
WIDTH, HEIGHT = 80, 24


class Pane:
    def __init__(self, command: list[str]):
        self.sock = f"exitreplay-test-{os.getpid()}"
        env = f"PYTHONPATH={shlex.quote(str(ROOT))}"
        cmd = f"cd {shlex.quote(str(ROOT))} && env {env} {shlex.join(command)}; echo TOP-EXIT=$?; sleep 600"
        self.tmux("new-session", "-d", "-s", "top", "-x", str(WIDTH), "-y", str(HEIGHT), cmd)

    def tmux(self, *args: str) -> str:
        return subprocess.run(["tmux", "-L", self.sock, "-f", "/dev/null", *args], check=True,
                              capture_output=True, text=True).stdout

    def screen(self) -> list[str]:
        return self.tmux("capture-pane", "-p", "-J", "-t", "top").rstrip("\n").split("\n")

    def keys(self, *keys: str) -> None:
        self.tmux("send-keys", "-t", "top", *keys)

    def wait(self, pattern: str, timeout: float = 60) -> list[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            lines = self.screen()
            if re.search(pattern, "\n".join(lines)):
                return lines
            time.sleep(0.1)
        raise AssertionError(f"never saw {pattern!r}; the screen:\n" + "\n".join(self.screen()))

    def top_pid(self) -> int:
        """The exitreplay process in the pane (the shell's child)."""
        shell = int(self.tmux("display-message", "-p", "-t", "top", "#{pane_pid}").strip())
        out = subprocess.run(["pgrep", "-P", str(shell)], capture_output=True, text=True).stdout.split()
        return int(out[0])

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.sock, "kill-server"], capture_output=True)


def t_of(lines: list[str]) -> float:
    m = re.search(r"· \+(\d+\.\d+) s", lines[0])
    assert m, lines[0]
    return float(m[1])


def check_fits(lines: list[str]) -> None:
    assert max(len(x) for x in lines) <= WIDTH, [x for x in lines if len(x) > WIDTH]


def test_replay_screen_updates_sorts_and_quits(tmp_path):
    path = tmp_path / "mixed.dat"
    synthesize("mixed", path, vcpus=2, seconds=0.3, isa="svm", seed=5)
    pane = Pane([sys.executable, "-m", "exitreplay", "top", "--replay", str(path), "--interval", "0.25s",
                 "--speed", "0.2"])
    try:
        first = pane.wait(r"exits/s · [\d,]+ exits")
        check_fits(first)
        t0 = t_of(first)
        later = pane.wait(r"· \+0\.(?!0)\d+ s", timeout=30)
        time.sleep(0.6)
        later = pane.screen()
        assert t_of(later) > t0  # the screen moved on
        check_fits(later)
        assert later[-1].startswith("q quit · sort by exits/s")
        assert any(x.startswith("exit reason") for x in later) and any(" kvm-today" in x for x in later)
        pane.keys("9")
        assert pane.wait(r"sort by p99")[-1].startswith("q quit · sort by p99")
        end = pane.wait(r"ended", timeout=60)
        check_fits(end)
        assert t_of(end) == pytest.approx(0.3, abs=0.05)
        pane.keys("q")
        after = pane.wait(r"TOP-EXIT=\d+", timeout=30)
        assert "TOP-EXIT=0" in "\n".join(after)
        assert not any("exitreplay top" in x for x in after)  # the alternate screen is gone
    finally:
        pane.close()


live = pytest.mark.skipif(why_not_live() is not None, reason=why_not_live() or "")


@live
@pytest.mark.parametrize("how", ["q", "C-c"])
def test_live_screen_shows_the_guest_and_quits_restoring_the_host(host_state, how):  # noqa: F811
    guest = ROOT / "tests" / "kvm_guest.py"
    pane = Pane([sys.executable, "-m", "exitreplay", "top", "--interval", "0.3s"])
    try:
        pane.wait(r"exitreplay top · live \(exitreplay-\d+\)")
        wait_for_instance(pane.top_pid())
        subprocess.run([sys.executable, str(guest), "--loops", "3000"], check=True, capture_output=True)
        lines = pane.wait(r"kvm_pio\s+\S+\s+3k")  # the 3000 pio exits, in the running total
        check_fits(lines)
        text = "\n".join(lines)
        assert "no kvm_exit events" in text or "exits/s ·" in text
        pane.keys(how)
        after = pane.wait(r"TOP-EXIT=\d+", timeout=60)
        assert "TOP-EXIT=0" in "\n".join(after)
    finally:
        pane.close()
