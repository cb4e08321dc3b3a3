"""`exitreplay record` without a KVM host: refusals, event selection, stats, stop conditions, output.

Everything here runs anywhere (no root, no tracefs): a fake tracefs directory stands in where a
check must get past the root test.
"""
from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import run_main
from conftest import REAL

from exitreplay.cli.record import progress_text
from exitreplay.formats.tracedat_file import TraceDatFile
from exitreplay.record import Chunk, PageStream, Progress, RecordError
from exitreplay.record import tracefs as tracefs_mod
from exitreplay.record.events import EventSel, parse_spec, resolve
from exitreplay.record.hostformats import host_template, page_size_of
from exitreplay.record.stats import CpuStats
from exitreplay.record.stop import StopWhen
from exitreplay.record.tracefs import Instance

STATS = """entries: 3
overrun: 120
commit overrun: 2
bytes: 4096
oldest event ts:  1138.905951
now ts:  1139.040814
dropped events: 7
read events: 140015
"""


def cli(capsys, monkeypatch, tmp_path, *args):
    return run_main(capsys, monkeypatch, ["record", *args], tmp_path / "cache")


def one_line_error(proc, *words):
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    err = proc.stderr.strip()
    assert "\n" not in err and "Traceback" not in err, err
    assert err.startswith("exitreplay: error: ")
    for w in words:
        assert w in err, err


def fake_tracefs(root: Path, systems: dict[str, list[str]]) -> Path:
    """A directory shaped like tracefs: events/SYSTEM/EVENT/{enable,format}, instances/."""
    (root / "instances").mkdir(parents=True)
    for system, names in systems.items():
        (root / "events" / system).mkdir(parents=True)
        (root / "events" / system / "enable").write_text("0\n")
        for i, n in enumerate(names):
            d = root / "events" / system / n
            d.mkdir()
            (d / "enable").write_text("0\n")
            (d / "format").write_text(f"name: {n}\nID: {100 - i}\nformat:\n\tfield:int x;\toffset:8;\tsize:4;\tsigned:1;\n")
    return root


@pytest.fixture
def as_root_on(monkeypatch):
    """Pretend to be root with tracefs mounted at the given fake directory."""
    def use(root: Path) -> Path:
        monkeypatch.setattr(os, "geteuid", lambda: 0)
        monkeypatch.setattr(tracefs_mod, "tracefs_mounts", lambda mounts="/proc/mounts": [root])
        return root
    return use


def test_not_root_is_refused_in_one_line(capsys, monkeypatch, tmp_path):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    out = tmp_path / "x.dat"
    p = cli(capsys, monkeypatch, tmp_path, "-o", out, "--duration", "1")
    one_line_error(p, "needs root")
    assert not out.exists()


def test_a_host_without_kvm_events_is_refused(capsys, monkeypatch, tmp_path, as_root_on):
    root = as_root_on(fake_tracefs(tmp_path / "tfs", {"sched": ["sched_switch", "sched_wakeup"]}))
    p = cli(capsys, monkeypatch, tmp_path, "-o", tmp_path / "x.dat", "--duration", "1")
    one_line_error(p, "no kvm events", "modprobe")
    assert list((root / "instances").iterdir()) == []  # refused before creating anything


def test_an_unknown_extra_event_is_refused(capsys, monkeypatch, tmp_path, as_root_on):
    as_root_on(fake_tracefs(tmp_path / "tfs", {"kvm": ["kvm_exit"], "sched": ["sched_switch", "sched_wakeup"]}))
    p = cli(capsys, monkeypatch, tmp_path, "-o", tmp_path / "x.dat", "-e", "nosuch/event", "--duration", "1")
    one_line_error(p, "no event 'nosuch/event'")


@pytest.mark.parametrize("args, words", [
    (["--duration", "soon"], ["--duration 'soon': not a length of time"]),
    (["--duration", "0"], ["--duration '0': not a length of time"]),
    (["--buffer-kb", "lots"], ["--buffer-kb needs an integer"]),
    (["-e", "a/b/c"], ["cannot read event 'a/b/c'"]),
])
def test_bad_options_are_one_line_errors(capsys, monkeypatch, tmp_path, as_root_on, args, words):
    as_root_on(fake_tracefs(tmp_path / "tfs", {"kvm": ["kvm_exit"], "sched": ["sched_switch", "sched_wakeup"]}))
    p = cli(capsys, monkeypatch, tmp_path, "-o", tmp_path / "x.dat", *args)
    one_line_error(p, *words)


def test_an_unwritable_output_is_refused_before_recording(capsys, monkeypatch, tmp_path):
    p = cli(capsys, monkeypatch, tmp_path, "-o", tmp_path / "no" / "such" / "dir" / "x.dat", "--duration", "1")
    one_line_error(p, "no directory")


def test_event_specs():
    assert parse_spec("kvm") == parse_spec("kvm/*") == parse_spec("kvm:*") == EventSel("kvm")
    assert parse_spec("sched:sched_switch") == parse_spec("sched/sched_switch") == EventSel("sched", "sched_switch")
    for bad in ("", "a/b/c", "kvm/", "/x"):
        with pytest.raises(RecordError):
            parse_spec(bad)


def test_defaults_and_extras_are_enabled_once(tmp_path):
    ev = fake_tracefs(tmp_path, {"kvm": ["kvm_exit", "kvm_pio"], "sched": ["sched_switch", "sched_wakeup", "sched_waking"],
                                 "irq": ["irq_handler_entry"]}) / "events"
    # kvm/kvm_pio is inside kvm (already on); a whole sched replaces its two events.
    sels = resolve(ev, ["kvm/kvm_pio", "irq:irq_handler_entry", "sched"])
    assert sels == [EventSel("kvm"), EventSel("irq", "irq_handler_entry"), EventSel("sched")]
    assert resolve(ev) == [EventSel("kvm"), EventSel("sched", "sched_switch"), EventSel("sched", "sched_wakeup")]


def test_cpu_stats():
    s = CpuStats(3, STATS)
    assert s.lost == 120 + 2 + 7        # overrun + commit overrun + dropped events
    assert s.read == 140015
    assert s.recorded == 140015 + 3 + 120  # read, still in the buffer, overwritten unread
    assert s.option_text() == b"CPU: 3\n" + STATS.encode() + b"\0"


def test_page_size_from_header_page():
    f = TraceDatFile(REAL / "pvm-pio-small.v7zstd.dat")
    try:
        assert page_size_of(f.header_page_text) == 4096
    finally:
        f.close()
    big = b"\tfield: u64 timestamp;\toffset:0;\tsize:8;\tsigned:0;\n\tfield: char data;\toffset:16;\tsize:65520;\tsigned:0;\n"
    assert page_size_of(big) == 65536


def test_host_template_takes_the_instances_texts_in_id_order(tmp_path):
    root = fake_tracefs(tmp_path, {"kvm": ["kvm_exit", "kvm_pio"], "sched": ["sched_switch", "sched_wakeup"],
                                   "ftrace": ["print", "function"]})
    hp = b"\tfield: u64 timestamp;\toffset:0;\tsize:8;\tsigned:0;\n\tfield: char data;\toffset:16;\tsize:4080;\tsigned:0;\n"
    (root / "events" / "header_page").write_bytes(hp)
    (root / "events" / "header_event").write_bytes(b"# compressed entry header\n")
    t = host_template(Instance(root), resolve(root / "events"))
    assert t.header_page == hp and t.header_event == b"# compressed entry header\n"
    assert t.info["page_size"] == 4096
    # Fake IDs count down in creation order, so ID order is the reverse of it.
    assert [x.split(b"\n")[0] for x in t.event_formats["kvm"]] == [b"name: kvm_pio", b"name: kvm_exit"]
    assert [x.split(b"\n")[0] for x in t.ftrace_formats] == [b"name: function", b"name: print"]
    assert set(t.formats) == {"kvm_exit", "kvm_pio", "sched_switch", "sched_wakeup"}


def test_progress_line_fits_80_columns():
    p = Progress(12.34, {0: 1500.0, 1: 2_500_000.0, 2: 10.0}, 5_300_000, 1234)
    line = progress_text(p)
    assert line == "recording  12.3 s    5.3 MB  lost 1,234  2.5M ev/s | cpu1 2.5M cpu0 1.5k cpu2 10"
    assert line.index("cpu1 2.5M") < line.index("cpu0 1.5k") < line.index("cpu2 10")
    many = progress_text(Progress(1.0, {c: float(c) for c in range(64)}, 0, 0))
    assert len(many) == 80 and many.endswith("…")


def test_stop_after_duration():
    with StopWhen(duration=0.2) as stop:
        stop.start()
        assert stop.wait(0.05) == "0.2 s elapsed"
        assert 0.2 <= stop.elapsed < 1.0


def test_stop_when_the_command_exits():
    with StopWhen(command=[sys.executable, "-c", "raise SystemExit(3)"]) as stop:
        stop.start()
        assert stop.wait(0.05) == f"{Path(sys.executable).name} exited with status 3"
    assert stop.child_status == 3


def test_stop_on_sigterm_and_handlers_restored():
    before = signal.getsignal(signal.SIGTERM)
    threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGTERM)).start()
    with StopWhen() as stop:
        stop.start()
        assert stop.wait(0.05) == "SIGTERM"
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_command_still_running_at_the_end_is_terminated():
    with StopWhen(duration=0.1, command=[sys.executable, "-c", "import time; time.sleep(60)"]) as stop:
        stop.start()
        stop.wait(0.05)
        child = stop.child
    assert child.returncode == -signal.SIGTERM


class _Pages:
    page_size = 8

    def read_pages(self, cpu, first, count):
        return np.arange(first, first + count, dtype=np.uint8).repeat(self.page_size) + cpu * 100


def test_page_stream_windows_group_chunks_per_cpu():
    stream = PageStream(_Pages())
    for c in (Chunk(0, 0, 2, 0.0), Chunk(1, 0, 1, 0.0), Chunk(0, 2, 1, 0.0)):
        stream.queue.put(c)
    windows = stream.windows(0.2)
    first = next(windows)
    assert sorted(first) == [0, 1]
    assert first[0].tolist() == [0] * 8 + [1] * 8 + [2] * 8  # CPU 0's three pages in order
    assert first[1].tolist() == [100] * 8
    t0 = time.monotonic()
    assert next(windows) == {}  # nothing arrived: an empty window, an interval later
    assert time.monotonic() - t0 >= 0.15
    stream.queue.put(Chunk(1, 1, 1, 0.0))
    stream.queue.put(None)
    assert [w[1].tolist() for w in windows] == [[101] * 8]  # the last pages, then the end
