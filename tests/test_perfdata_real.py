"""The perf.data reader on real recordings, against perf itself: every event (time, CPU, thread,
task name, event, every field, flags, preempt count) in perf script's order, losses, metadata.

Without perf, the committed `perf script` text of each file is the oracle for everything but the
field values."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import REAL
from perf_oracle import parse_script_lines, perf_events, perf_script_lines, run_perf

import exitreplay
from exitreplay.formats.detect import sniff
from exitreplay.formats.perf_file import PerfFile
from exitreplay.formats.perf_tracing import TracingData

FILES = sorted(p.name for p in REAL.glob("*.perf.data"))
PIPE = {"pvm-guest.pipe.perf.data", "pvm-guest.pipe-zstd.perf.data"}
ZSTD = {"pvm-guest.zstd.perf.data", "pvm-guest.pipe-zstd.perf.data", "pvm-guest.lost-zstd.perf.data"}


@pytest.fixture(scope="module", params=FILES)
def recording(request):
    path = REAL / request.param
    return path, exitreplay.read_trace(path)


def test_every_recording_is_here():
    assert len(FILES) == 8 and PIPE | ZSTD <= set(FILES)


def test_sniffed_by_content(recording, tmp_path):
    path, tr = recording
    odd = tmp_path / "recording.txt"  # the name says nothing
    odd.write_bytes(path.read_bytes())
    assert sniff(odd) == "perf.data"
    assert tr.meta.source_format == "perf.data"
    assert tr.meta.extra["pipe_mode"] == (path.name in PIPE)
    assert tr.meta.compression == ("zstd" if path.name in ZSTD else "none")


def _as_perf_prints(tr) -> list[dict]:
    ev = tr.events.to_pylist()
    return [{"comm": e["comm"] if e["comm"] is not None else f":{e['pid']}", "tid": e["pid"], "cpu": e["cpu"],
             "ts": e["ts"], "event": f"{e['system']}:{e['event']}"} for e in ev]


def test_events_equal_committed_perf_script_text(recording):
    """perf script's own text of the same file (microseconds): same events, same order."""
    path, tr = recording
    text = path.with_name(path.name.replace(".perf.data", ".perf-data.perf-script.txt")).read_text()
    want = parse_script_lines(text)
    got = _as_perf_prints(tr)
    assert len(got) == len(want) > 1000
    for g, w in zip(got, want):
        assert w["digits"] == 6
        assert (g["comm"], g["tid"], g["cpu"], g["ts"] // 1000, g["event"]) == \
               (w["comm"], w["tid"], w["cpu"], w["ts"], w["event"])


def test_events_equal_perf_script_ns(recording):
    path, tr = recording
    want = perf_script_lines(path)
    got = _as_perf_prints(tr)
    assert [(w["comm"], w["tid"], w["cpu"], w["ts"], w["event"]) for w in want] == \
           [(g["comm"], g["tid"], g["cpu"], g["ts"], g["event"]) for g in got]


def _formats(path: Path) -> dict[str, list]:
    pf = PerfFile(str(path))
    return {f"{f.system}:{f.name}": f.own_fields for f in TracingData(pf.tracing_blob, str(path)).formats.values()}


def _perl_value(v, field) -> bytes:
    """What perf's Perl engine passes for our value: numbers as decimal text, char/u8 arrays as a C
    string (cut at the first NUL; perf reads past a full array, so only its length is compared)."""
    if isinstance(v, str):
        return v.encode()
    if isinstance(v, list):
        return bytes(v).split(b"\0")[0]
    return str(int(v)).encode()


def test_every_field_equals_perf(recording, tmp_path):
    path, tr = recording
    want, complete, engine = perf_events(path, tmp_path)
    if path.name in PIPE:
        # perf's script engines crash part way through pipe-mode files (perf_oracle.py): the
        # events before the crash are compared; perf_script_lines checks the rest of each event.
        assert len(want) >= 250
    else:
        assert complete and len(want) == len(tr)
    fmts = _formats(path)
    rows = {}
    for name in tr.event_names:
        for r in tr.table(name).to_pylist():
            rows[r["row"]] = r
    ev = tr.events.to_pylist()
    for i, w in enumerate(want):
        e, r = ev[i], rows[i]
        assert (f"{e['system']}:{e['event']}", e["cpu"], e["ts"], e["flags"], e["preempt_count"]) == \
               (w["event"], w["cpu"], w["ts"], w["flags"], w["pc"]), i
        if e["pid"] != -1:  # a task that had exited: perf shows tid -1, its payload still says who it was
            assert e["pid"] == w["common_pid"], i
        own = fmts[w["event"]]
        if engine == "python":
            assert {f.name: r[f.name] for f in own} == w["fields"], i
        else:
            lens = [f.size if f.is_string or f.array_len else None for f in own]
            got = [_perl_value(r[f.name], f) for f in own]
            assert [g if n is None else g[:n] for g, n in zip(got, lens)] == \
                   [v if n is None else v[:n] for v, n in zip(w["values"], lens)], i


def test_tid_minus_one_is_what_perf_script_prints(recording):
    """perf gives an exiting task's sample tid -1 (and names it ':-1'): so do we."""
    path, tr = recording
    ev = tr.events.to_pylist()
    for e in (e for e in ev if e["pid"] == -1):
        assert e["comm"] is None


def test_lost_events_per_cpu_as_perf_shows_them():
    """Every PERF_RECORD_LOST (`perf report -D` lists them) on its CPU with its count; each one
    `perf script --show-lost-events` prints sits before the event we say follows it."""
    path = REAL / "pvm-guest.lost-zstd.perf.data"
    tr = exitreplay.read_trace(path)
    dump = run_perf("report", "-D", "-i", str(path)).stdout
    records = [(int(m[1]), int(m[2])) for m in re.finditer(r"^(\d+) \d+ 0x[0-9a-f]+ \[0x[0-9a-f]+\]: "
                                                            r"PERF_RECORD_LOST: id:\d+: lost:(\d+)", dump, re.M)]
    assert len(records) == 98
    assert sorted((d.cpu, d.count) for d in tr.meta.dropped) == sorted(records)
    assert sum(d.count for d in tr.meta.dropped) == 8421
    # perf record's closing LOST_SAMPLES per event restate the same 8421, not counted twice
    totals = [int(m[1]) for m in re.finditer(r"PERF_RECORD_LOST_SAMPLES: id:\d+: lost samples :(\d+)", dump)]
    assert len(totals) == 14 and sum(totals) == sum(tr.meta.extra["lost_samples"].values()) == 8421
    assert any("lost" in w for w in tr.meta.warnings)
    out = run_perf("script", "--show-lost-events", "--ns", "-F", "comm,tid,cpu,time,event", "-i", str(path)).stdout
    shown, events = [], 0
    for line in out.splitlines():
        m = re.search(r"\[(\d+)\]\s+[\d.]+:\s+PERF_RECORD_LOST lost (\d+)", line)
        if m:
            shown.append((int(m[1]), int(m[2]), events))
        elif parse_script_lines(line):
            events += 1
    assert len(shown) == len(records)
    cpu = tr.events.column("cpu").to_pylist()
    ours = iter(tr.meta.dropped)
    for c, n, before in shown:
        d = next(d for d in ours if (d.cpu, d.count) == (c, n))
        assert d.row == next((i for i in range(before, len(cpu)) if cpu[i] == c), None)


def _header(path: Path) -> dict[str, str]:
    out = run_perf("report", "--header-only", "-i", str(path)).stdout
    return dict(m.groups() for m in re.finditer(r"^# ([a-z ]+?)\s*: (.*)$", out, re.M))


@pytest.mark.parametrize("name", sorted(set(FILES) - PIPE))
def test_metadata_equals_perf_report_header(name):
    path = REAL / name
    tr = exitreplay.read_trace(path)
    h, x = _header(path), tr.meta.extra
    assert (x["hostname"], x["osrelease"], x["arch"], x["perf_version"], x["cpuid"], x["cpudesc"]) == \
           (h["hostname"], h["os release"], h["arch"], h["perf version"], h["cpuid"], h["cpudesc"])
    assert (tr.meta.cpus, x["nr_cpus_online"]) == (int(h["nrcpus avail"]), int(h["nrcpus online"]))
    assert " ".join(x["cmdline"]) == h["cmdline"].strip()
    assert f"{x['total_mem_kb']} kB" == h["total memory"]
    assert tr.meta.uname == f"Linux {h['hostname']} {h['os release']} {h['arch']}"
    assert tr.meta.clock == "perf"
    if name in ZSTD:
        assert h["compressed"].startswith(f"Zstd, level = {x['compression_info']['level']}")


def test_pipe_mode_attrs_and_names_from_records():
    tr = exitreplay.read_trace(REAL / "pvm-guest.pipe.perf.data")
    attrs = tr.meta.extra["attrs"]
    assert len(attrs) == 93  # the HEADER_ATTR records perf report -D lists
    names = {a["name"] for a in attrs}
    assert {"kvm:kvm_pio", "sched:sched_switch", "kvm:kvm_exit"} <= names
    assert tr.meta.extra["cpuid"].startswith("GenuineIntel")  # from its HEADER_FEATURE records


def test_same_run_read_by_perf_and_trace_cmd_gives_the_same_analysis():
    """One run recorded by perf and by the kernel's ring buffer at once (tests/data/real/README.md):
    the same kvm events with the same fields on the same threads, and the same analysis (perf's
    clock and the trace clock tick apart, so times are not compared)."""
    perf = exitreplay.read_trace(REAL / "pvm-guest.both.perf.data")
    dat = exitreplay.read_trace(REAL / "pvm-guest.both.dat")
    kvm = [n for n in perf.event_names if n.startswith("kvm_")]
    assert kvm and set(kvm) <= set(dat.event_names)
    for name in kvm:
        a, b = perf.table(name).drop(["row", "ts"]), dat.table(name).drop(["row", "ts"])
        assert a.equals(b), name
    ra, rb = exitreplay.analyze(perf), exitreplay.analyze(dat)
    assert ra.summary["sync_events"] == rb.summary["sync_events"]
    assert ra.summary["vcpus"] == rb.summary["vcpus"] == 2


@pytest.mark.parametrize("name", ["pvm-pio-small", "pvm-longmode-msr", "pvm-guest.zstd", "pvm-guest.pipe"])
def test_perf_data_and_its_perf_script_text_give_the_same_analysis(name):
    perf = exitreplay.read_trace(REAL / f"{name}.perf.data")
    text = exitreplay.read_trace(REAL / f"{name}.perf-data.perf-script.txt")
    assert text.meta.source_format == "perf-script"
    assert perf.meta.event_counts == text.meta.event_counts
    ra, rb = exitreplay.analyze(perf), exitreplay.analyze(text)
    for key in ("sync_events", "vcpus", "events", "exits", "dropped_events"):
        assert ra.summary[key] == rb.summary[key], key
    for ev in perf.event_names:  # every field the text carries, as its reader parses it
        cols = [c for c in text.table(ev).column_names if c not in ("row", "ts")]
        a, b = perf.table(ev).select(cols).to_pylist(), text.table(ev).select(cols).to_pylist()
        for ra, rb in zip(a, b):  # as values: the text reader's column types are its own
            for k, v in rb.items():  # the text shows an array's first `len` bytes (kvm_emulate_insn)
                if isinstance(v, list):
                    ra[k] = ra[k][:len(v)]
        assert a == b, ev
