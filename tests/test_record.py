"""`exitreplay record` on this host's real KVM (root, tracefs, /dev/kvm, trace-cmd; else skipped).

The workload is tests/kvm_guest.py: a real-mode guest whose every `out` exits to userspace, so a
run of L loops on V VMs must give each vCPU thread exactly L kvm_pio (port 0x3f8, one byte out,
the value 'x') and L + 1 kvm_userspace_exit (L KVM_EXIT_IO, one KVM_EXIT_HLT); the guest prints
its own counts. trace-cmd report -R -t is the oracle for the file, event by event. Every test
checks that the host's tracing state is as it was and that the instance is gone.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT
from test_tracedat_oracle import mismatches_with_trace_cmd, oracle_events

import exitreplay
from exitreplay.formats.tracedat_file import TraceDatFile
from exitreplay.record.tracefs import tracefs_mounts

GUEST = ROOT / "tests" / "kvm_guest.py"
TRACEFS = Path("/sys/kernel/tracing")
# The files that make up the top-level tracer's state (and its buffer's contents: `trace`).
STATE_FILES = ["tracing_on", "current_tracer", "set_event", "set_event_pid", "trace_clock", "buffer_size_kb",
               "tracing_cpumask", "trace_options", "saved_cmdlines_size", "events/kvm/enable",
               "events/sched/enable", "trace"]
PORT, VALUE = 0x3F8, ord("x")
KVM_EXIT_IO, KVM_EXIT_HLT = 2, 5


def _why_not() -> str | None:
    if sys.platform != "linux" or os.geteuid() != 0:
        return "needs root on Linux (tracefs)"
    if "tracefs" not in Path("/proc/filesystems").read_text():
        return "the kernel has no tracefs"
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "no usable /dev/kvm"
    if not Path("/sys/module/kvm").is_dir():
        return "the kvm module is not loaded"
    if subprocess.run(["which", "trace-cmd"], capture_output=True).returncode:
        return "trace-cmd not installed (the oracle)"
    return None


pytestmark = pytest.mark.skipif(_why_not() is not None, reason=_why_not() or "")


def tracing_state() -> dict:
    """The top-level tracer's settings and buffer text, the instances, and where tracefs is mounted.

    Where it is not mounted it is looked at through a private mount (tracefs is one instance per
    kernel, so an instance left behind would show there), which is unmounted again.
    """
    mounts = tracefs_mounts()
    if mounts:
        return {"mounts": mounts, **_state_of(TRACEFS if TRACEFS in mounts else mounts[0])}
    with tempfile.TemporaryDirectory() as d:
        subprocess.run(["mount", "-t", "tracefs", "nodev", d], check=True)
        try:
            return {"mounts": [], **_state_of(Path(d))}
        finally:
            subprocess.run(["umount", d], check=True)


def _state_of(root: Path) -> dict:
    state = {f: (root / f).read_text() for f in STATE_FILES}
    state["instances"] = sorted(os.listdir(root / "instances"))
    return state


def record(args, tmp_path, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "exitreplay", "record", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def guest_counts(stdout: str) -> list[dict[str, int]]:
    """The guest's own per-VM exit counts ("vm0: HLT=1 IO=300")."""
    return [dict((k, int(v)) for k, v in re.findall(r"(\w+)=(\d+)", line))
            for line in stdout.splitlines() if re.match(r"vm\d+: ", line)]


@pytest.fixture
def host_state():
    """Yields the state before the test; after it, the state must be the same."""
    before = tracing_state()
    yield before
    after = tracing_state()
    assert after == before, {k: (before.get(k), after.get(k)) for k in set(before) | set(after)
                             if before.get(k) != after.get(k)}


@pytest.fixture
def tracefs_mounted():
    """tracefs mounted for the test (unmounted again if this fixture mounted it)."""
    mounted_here = not tracefs_mounts()
    if mounted_here:
        subprocess.run(["mount", "-t", "tracefs", "nodev", str(TRACEFS)], check=True)
    try:
        yield TRACEFS if TRACEFS in tracefs_mounts() else tracefs_mounts()[0]
    finally:
        if mounted_here:
            subprocess.run(["umount", str(TRACEFS)], check=False)


def check_guest_events(trace, counts: list[dict[str, int]]) -> None:
    pio = trace.df("kvm_pio")
    exits = trace.df("kvm_userspace_exit")
    assert pio.height == sum(c["IO"] for c in counts)
    assert set(pio["port"].to_list()) == {PORT} and set(pio["val"].to_list()) == {VALUE}
    assert set(pio["rw"].to_list()) == {1} and set(pio["size"].to_list()) == {1}
    # One vCPU thread per VM: its pio and userspace exits are the guest's own counts.
    per_thread = sorted(pio.group_by("pid").len()["len"].to_list())
    assert per_thread == sorted(c["IO"] for c in counts)
    for pid in pio["pid"].unique().to_list():
        reasons = exits.filter(exits["pid"] == pid)["reason"].to_list()
        assert reasons.count(KVM_EXIT_HLT) == 1 and reasons[-1] == KVM_EXIT_HLT
        assert reasons.count(KVM_EXIT_IO) == pio.filter(pio["pid"] == pid).height


def test_record_of_a_guest_equals_trace_cmd_event_by_event(tmp_path, host_state):
    out = tmp_path / "guest.dat"
    r = record(["-o", out, "--", sys.executable, GUEST, "--loops", 300, "--vms", 2], tmp_path)
    assert r.returncode == 0, r.stderr
    assert f"({Path(sys.executable).name} exited with status 0)" in r.stdout
    counts = guest_counts(r.stdout)
    assert counts == [{"HLT": 1, "IO": 300}] * 2

    expected = oracle_events(out)
    trace = exitreplay.read_trace(out)
    assert len(expected) == len(trace) > 600
    assert mismatches_with_trace_cmd(trace, expected) == []
    check_guest_events(trace, counts)

    assert trace.meta.version == 7 and trace.meta.compression == "zstd"
    assert trace.meta.cpus == os.cpu_count()
    u = os.uname()
    assert trace.meta.uname == f"{u.sysname} {u.nodename} {u.release} {u.machine}"
    assert trace.meta.extra["trace_cmd_version"].startswith("exitreplay ") and "record" in \
        trace.meta.extra["trace_cmd_version"]
    assert {"kvm_pio", "kvm_userspace_exit", "sched_switch"} <= set(trace.event_names)
    assert "no events lost" in r.stdout


def test_file_carries_the_hosts_own_formats(tmp_path, host_state, tracefs_mounted):
    out = tmp_path / "formats.dat"
    r = record(["-o", out, "--duration", "0.2s", "-e", "irq/irq_handler_entry"], tmp_path)
    assert r.returncode == 0, r.stderr
    f = TraceDatFile(out)
    try:
        ev = tracefs_mounted / "events"
        assert f.header_page_text == (ev / "header_page").read_bytes()
        assert f.header_event_text == (ev / "header_event").read_bytes()
        kvm = sorted(f.event_format_texts["kvm"])
        assert kvm == sorted(p.read_bytes() for p in (ev / "kvm").glob("*/format"))
        assert sorted(f.event_format_texts["sched"]) == sorted(
            (ev / "sched" / n / "format").read_bytes() for n in ("sched_switch", "sched_wakeup"))
        assert f.event_format_texts["irq"] == [(ev / "irq/irq_handler_entry/format").read_bytes()]
        assert sorted(f.ftrace_formats) == sorted(p.read_bytes() for p in (ev / "ftrace").glob("*/format"))
    finally:
        f.close()


def _instance_running(pid: int, root_hint: Path = TRACEFS, timeout: float = 60) -> Path:
    inst = root_hint / "instances" / f"exitreplay-{pid}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if (inst / "tracing_on").read_text().strip() == "1":
                return inst
        except OSError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"{inst} never started tracing")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_stops_and_restores_the_host(tmp_path, host_state, tracefs_mounted, sig):
    out = tmp_path / "signal.dat"
    p = subprocess.Popen([sys.executable, "-m", "exitreplay", "record", "-o", str(out)], cwd=ROOT,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        inst = _instance_running(p.pid, tracefs_mounted)
        assert (inst / "events/kvm/enable").read_text().strip() == "1"
        g = subprocess.run([sys.executable, GUEST, "--loops", "200"], capture_output=True, text=True,
                           check=True)
        p.send_signal(sig)
        stdout, stderr = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 0, stderr
    assert f"({signal.Signals(sig).name})" in stdout
    assert not inst.exists()
    trace = exitreplay.read_trace(out)
    check_guest_events(trace, guest_counts(g.stdout))


def test_duration_stops_the_recording(tmp_path, host_state):
    out = tmp_path / "duration.dat"
    t0 = time.monotonic()
    r = record(["-o", out, "--duration", "700ms"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert "(0.7 s elapsed)" in r.stdout
    assert time.monotonic() - t0 >= 0.7
    trace = exitreplay.read_trace(out)
    ts = trace.events.column("ts").to_numpy()
    assert ts.size and (ts[-1] - ts[0]) / 1e9 < 0.7 + 0.2  # events only while it recorded


def test_lost_events_are_kept_as_missed_flags_and_reported(tmp_path, host_state):
    """A 8 KiB buffer per CPU cannot hold a 20000-loop guest's events between two reads."""
    out = tmp_path / "lost.dat"
    # Whether the writer outruns the reader depends on the machine's load: a longer guest each try.
    for loops in (20000, 100000, 300000):
        r = record(["-o", out, "--buffer-kb", 8, "--", sys.executable, GUEST, "--loops", loops], tmp_path)
        assert r.returncode == 0, r.stderr
        m = re.search(r"lost ([\d,]+) events in the ring buffer \(([^)]*)\)", r.stdout)
        if m:
            break
    else:
        pytest.skip(f"the reader kept up with every guest (no events lost to check): {r.stdout[-200:]}")
    lost = int(m[1].replace(",", ""))
    trace = exitreplay.read_trace(out)
    stats = [dict(re.findall(r"^([a-z ]+): (\d+)$", t, re.M)) for t in trace.meta.extra["cpustat"]]
    assert sum(int(s["overrun"]) + int(s["commit overrun"]) + int(s["dropped events"]) for s in stats) == lost
    # The pages' missed-events flags: what trace-cmd prints as "CPU:N [COUNT EVENTS DROPPED]".
    report = subprocess.run(["trace-cmd", "report", "-i", str(out)], capture_output=True, text=True).stdout
    shown = [(int(c), int(n) if n else None) for c, n in re.findall(r"CPU:(\d+) \[(\d*) ?EVENTS DROPPED\]", report)]
    assert shown and [(d.cpu, d.count) for d in trace.meta.dropped] == shown
    assert sum(n for _, n in shown if n) <= lost
    # Every event the kernel let the reader have is in the file.
    assert len(trace) == sum(int(s["read events"]) for s in stats)


def test_another_tracer_is_left_alone(tmp_path, host_state, tracefs_mounted):
    """A second instance recording kvm_pio meanwhile keeps its settings and gets every event too."""
    other = tracefs_mounted / "instances" / f"other-tracer-{os.getpid()}"
    other.mkdir()
    try:
        (other / "events/kvm/kvm_pio/enable").write_text("1")
        settings = {f: (other / f).read_text() for f in ("tracing_on", "set_event", "buffer_size_kb")}
        out = tmp_path / "both.dat"
        r = record(["-o", out, "--", sys.executable, GUEST, "--loops", 150], tmp_path)
        assert r.returncode == 0, r.stderr
        (other / "tracing_on").write_text("0")
        text = (other / "trace").read_text()
        assert {f: (other / f).read_text() for f in settings if f != "tracing_on"} == \
            {k: v for k, v in settings.items() if k != "tracing_on"}
        assert settings["tracing_on"].strip() == "1"
        assert len(re.findall(r"kvm_pio: pio_write at 0x3f8", text)) == 150
        assert exitreplay.read_trace(out).df("kvm_pio").height == 150
    finally:
        (other / "events/enable").write_text("0")
        other.rmdir()


def test_a_failure_after_setup_still_restores_the_host(tmp_path, host_state):
    out = tmp_path / "fail.dat"
    r = record(["-o", out, "--", "/nonexistent/command"], tmp_path)
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "cannot run /nonexistent/command" in r.stderr
    assert "Traceback" not in r.stderr and not out.exists()
    assert not [p for p in tmp_path.iterdir()]  # no temporary files left beside the output


def test_an_instance_left_by_a_killed_recording_is_removed(tmp_path, host_state, tracefs_mounted):
    dead = 4_000_000 + os.getpid() % 100_000  # above the default pid_max: no such process
    stale = tracefs_mounted / "instances" / f"exitreplay-{dead}"
    stale.mkdir()
    try:
        (stale / "events/kvm/enable").write_text("1")
        r = record(["-o", tmp_path / "s.dat", "--duration", "0.1"], tmp_path)
        assert r.returncode == 0, r.stderr
        assert f"removed the tracefs instance exitreplay-{dead}" in r.stderr
        assert not stale.exists()
    finally:
        if stale.exists():
            (stale / "events/enable").write_text("0")
            stale.rmdir()


def test_tracefs_is_mounted_when_needed_and_unmounted_after(tmp_path, host_state):
    if tracefs_mounts():
        pytest.skip("tracefs is already mounted here (unmounting it could disturb another user)")
    r = record(["-o", tmp_path / "m.dat", "--duration", "0.2"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert tracefs_mounts() == []
    assert len(exitreplay.read_trace(tmp_path / "m.dat")) > 0


def test_page_stream_delivers_every_page_as_it_arrives(tmp_path, host_state):
    """The live source: the chunks a subscriber sees, read back, are exactly each CPU's stream."""
    from exitreplay.record import Recorder

    got: dict[int, list[np.ndarray]] = {}
    with Recorder(workdir=tmp_path) as rec:
        stream = rec.subscribe()
        rec.start()
        subprocess.run([sys.executable, GUEST, "--loops", "300"], check=True, capture_output=True)
        rec.stop()
        for chunk in stream:
            got.setdefault(chunk.cpu, []).append(stream.read(chunk))
        files = rec.readers.cpu_pages()
        for cpu, pages in enumerate(files):
            seen = np.concatenate(got[cpu]) if cpu in got else np.empty(0, np.uint8)
            assert np.array_equal(seen, np.asarray(pages)), cpu
        rec.write(tmp_path / "live.dat")
    assert sum(len(v) for v in got.values()) > 0
    assert exitreplay.read_trace(tmp_path / "live.dat").df("kvm_pio").height == 300
