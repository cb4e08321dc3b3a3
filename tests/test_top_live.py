"""`exitreplay top` on this host's tracefs (root, tracefs, /dev/kvm; else skipped with the reason).

The workload is tests/kvm_guest.py (see test_record.py): L loops on V VMs make exactly L kvm_pio
and L + 1 kvm_userspace_exit per VM, which the guest prints. `top --batch json` summed over its
lines must count exactly those; the host's tracing state must be as it was after SIGINT, SIGTERM
and (test_top_tmux.py) after `q`.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT
from test_record import GUEST, guest_counts, tracing_state

from exitreplay.record.tracefs import tracefs_mounts


def why_not_live() -> str | None:
    if sys.platform != "linux" or os.geteuid() != 0:
        return "needs root on Linux (tracefs)"
    if "tracefs" not in Path("/proc/filesystems").read_text():
        return "the kernel has no tracefs"
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "no usable /dev/kvm"
    if not Path("/sys/module/kvm").is_dir():
        return "the kvm module is not loaded"
    return None


pytestmark = pytest.mark.skipif(why_not_live() is not None, reason=why_not_live() or "")


@pytest.fixture
def host_state():
    before = tracing_state()
    yield before
    after = tracing_state()
    assert after == before, {k: (before.get(k), after.get(k)) for k in set(before) | set(after)
                             if before.get(k) != after.get(k)}


def wait_for_instance(pid: int, timeout: float = 60) -> Path:
    """The top process's tracefs instance, once tracing is on in it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for root in tracefs_mounts():
            inst = root / "instances" / f"exitreplay-{pid}"
            try:
                if (inst / "tracing_on").read_text().strip() == "1":
                    return inst
            except OSError:
                pass
        time.sleep(0.05)
    raise AssertionError(f"top (pid {pid}) never started tracing")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_live_batch_counts_every_guest_event_and_restores_the_host(host_state, sig):
    p = subprocess.Popen([sys.executable, "-m", "exitreplay", "top", "--batch", "json", "--interval", "0.3s"],
                         cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        inst = wait_for_instance(p.pid)
        g = subprocess.run([sys.executable, GUEST, "--loops", "400", "--vms", "2"], capture_output=True,
                           text=True, check=True)
        time.sleep(1.0)  # a few intervals pass while the guest is done
        p.send_signal(sig)
        stdout, stderr = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 0, stderr
    assert "Traceback" not in stderr
    assert not inst.exists()
    counts = guest_counts(g.stdout)
    assert counts == [{"HLT": 1, "IO": 400}] * 2
    lines = [json.loads(x) for x in stdout.splitlines()]
    assert len(lines) >= 3
    pio = sum(d["events"].get("kvm_pio", 0) for d in lines)
    uexit = sum(d["events"].get("kvm_userspace_exit", 0) for d in lines)
    assert pio == sum(c["IO"] for c in counts)
    assert uexit == sum(c["IO"] + c["HLT"] for c in counts)
    # The analysis saw the guest's threads as vCPU threads: their userspace exits are sync points.
    assert sum(d["sync_events"].get("kvm_userspace_exit", 0) for d in lines) == uexit
    ts = [d["t_s"] for d in lines]
    assert all(b >= a for a, b in zip(ts, ts[1:]))


def test_live_needs_root_says_so_in_one_line(tmp_path):
    """As an unprivileged user (nobody), the live source refuses in one line, exit status 2."""
    r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-m",
                        "exitreplay", "top", "--batch", "json"], cwd=ROOT, capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60)
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1 and "needs root" in r.stderr


def test_live_events_lost_in_the_ring_buffer_are_counted(host_state):
    """An 8 KiB buffer per CPU cannot hold a 20000-loop guest's events between two reads: the
    lines count the losses the pages mark, and fewer pio events than the guest made arrive."""
    p = subprocess.Popen([sys.executable, "-m", "exitreplay", "top", "--batch", "json", "--interval", "0.3s",
                          "--buffer-kb", "8"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_instance(p.pid)
        subprocess.run([sys.executable, GUEST, "--loops", "20000"], capture_output=True, check=True)
        time.sleep(1.0)
        p.send_signal(signal.SIGINT)
        stdout, stderr = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 0, stderr
    lines = [json.loads(x) for x in stdout.splitlines()]
    lost = sum(d["lost_events"] for d in lines)
    pio = sum(d["events"].get("kvm_pio", 0) for d in lines)
    assert lost > 0 and pio < 20000


def test_losses_in_a_real_recording_decoded_live_and_replayed(tmp_path, host_state):
    """A recording with losses (record, 8 KiB buffers): the live page decoder gives read_trace's
    rows and loss marks, and `top --replay` lines sum to its losses, counted and not."""
    from test_top_units import test_live_page_decoder_equals_read_trace as same_as_read_trace

    import exitreplay

    out = tmp_path / "lost.dat"
    r = subprocess.run([sys.executable, "-m", "exitreplay", "record", "-o", str(out), "--buffer-kb", "8", "--",
                        sys.executable, str(GUEST), "--loops", "20000"], cwd=ROOT, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    dropped = exitreplay.read_trace(out).meta.dropped
    assert dropped
    same_as_read_trace(tmp_path, str(out))
    t = top_json(out)
    assert sum(d["lost_events"] for d in t) == sum(d.count or 0 for d in dropped)
    assert sum(d["lost_uncounted"] for d in t) == sum(d.count is None for d in dropped)


def top_json(path) -> list[dict]:
    r = subprocess.run([sys.executable, "-m", "exitreplay", "top", "--replay", str(path), "--interval", "20ms",
                        "--speed", "0", "--batch", "json"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return [json.loads(x) for x in r.stdout.splitlines()]
