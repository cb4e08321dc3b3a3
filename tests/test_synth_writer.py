"""The trace.dat writer: trace-cmd reads back exactly the events written, exitreplay round-trips them,
and the bytes depend only on the seed."""
from __future__ import annotations

import subprocess

import numpy as np
import pyarrow as pa
import pytest
from synth_helpers import assert_trace_cmd_reads, table_rows, trace_cmd_events

import exitreplay
from exitreplay.errors import UsageError
from exitreplay.synth.generator import generate
from exitreplay.synth.pages import encode_pages
from exitreplay.synth.templates import extract_template, load_template
from exitreplay.synth.writer import write_trace
from exitreplay.trace import Trace, TraceMeta

# Every profile, both ISAs, both file versions, zstd, both kernel generations of the formats.
CASES = [
    ("idle", "svm", 7, "none", "linux-6.18"), ("idle", "vmx", 6, "none", "linux-6.18"),
    ("netio", "svm", 6, "none", "linux-6.18"), ("netio", "vmx", 7, "zstd", "linux-6.18"),
    ("cpu", "svm", 7, "zstd", "linux-6.18"), ("cpu", "vmx", 6, "none", "linux-4.19"),
    ("syscall-heavy", "svm", 7, "none", "linux-4.19"), ("syscall-heavy", "vmx", 7, "zstd", "linux-6.18"),
    ("nested", "svm", 6, "none", "linux-6.18"), ("nested", "svm", 7, "zstd", "linux-4.19"),
    ("mixed", "vmx", 7, "none", "linux-6.18"), ("mixed", "svm", 6, "none", "linux-4.19"),
]


@pytest.mark.parametrize("profile,isa,version,compression,template", CASES)
def test_trace_cmd_prints_exactly_the_generated_events(trace_cmd, tmp_path, profile, isa, version, compression,
                                                       template):
    gen = generate(profile, vcpus=2, seconds=0.1 if profile == "cpu" else 0.01, seed=7, isa=isa, template=template)
    path = tmp_path / "g.dat"
    write_trace(gen, path, version=version, compression=compression)
    n = assert_trace_cmd_reads(gen, path, load_template(template))
    assert n == len(gen) > 100
    back = exitreplay.read_trace(path)
    assert (back.meta.version, back.meta.compression, back.meta.cpus) == (version, compression, gen.meta.cpus)
    assert table_rows(back) == table_rows(gen)
    assert back.events.column("comm").to_pylist() == gen.events.column("comm").to_pylist()
    assert back.events.column("flags").to_pylist() == gen.events.column("flags").to_pylist()


def test_same_seed_same_bytes(tmp_path):
    for version, compression in ((6, "none"), (7, "none"), (7, "zstd")):
        paths = []
        for i, seed in enumerate((11, 11, 12)):
            p = tmp_path / f"{version}{compression}{i}.dat"
            write_trace(generate("mixed", vcpus=2, seconds=0.01, seed=seed, isa="svm"), p, version=version,
                        compression=compression)
            paths.append(p.read_bytes())
        assert paths[0] == paths[1]
        assert paths[0] != paths[2]


def test_a_real_recording_survives_the_writer(trace_cmd, tmp_path, real_dir):
    """Read a real v6 file, write it as v7 zstd with the formats it carries: trace-cmd prints the same."""
    src = real_dir / "pvm-longmode-msr.v6.dat"
    tpl = load_template(str(extract_template(src, tmp_path / "tpl")))
    tr = exitreplay.read_trace(src)
    out = tmp_path / "rt.dat"
    write_trace(tr, out, template=tpl, version=7, compression="zstd")
    assert trace_cmd_events(out) == trace_cmd_events(src)


def _trace(ts, cpu, event, fields, template_name=None):
    n = len(ts)
    events = pa.table({"ts": pa.array(ts, pa.int64()), "cpu": pa.array(cpu, pa.int32()),
                       "pid": pa.array([7] * n, pa.int32()), "comm": pa.array(["t"] * n),
                       "event": pa.array([event] * n)})
    table = pa.table({"row": pa.array(range(n), pa.int64()), "ts": events["ts"], "cpu": events["cpu"],
                      "pid": events["pid"], **fields})
    return Trace(events, {event: table}, TraceMeta(None, "trace.dat", cpus=max(cpu) + 1,
                                                     extra={"template": template_name} if template_name else {}))


def test_long_gaps_use_time_extends(trace_cmd, tmp_path):
    # Gaps past 2**27 ns need a time-extend record; the first event of a page takes the page's time.
    gaps = [0, 1, (1 << 27) - 1, 1 << 27, (1 << 27) + 1, 5 * 10**9, 3, 1 << 40, 0, 0]
    ts = list(np.cumsum(gaps) + 10**9)
    tr = _trace(ts, [0] * len(ts), "kvm_fpu", {"load": pa.array([i % 2 for i in range(len(ts))], pa.uint32())})
    path = tmp_path / "ext.dat"
    write_trace(tr, path, version=6)
    assert [e[0] for e in trace_cmd_events(path)] == ts
    assert exitreplay.read_trace(path).events.column("ts").to_pylist() == ts


def test_records_longer_than_112_bytes_use_a_length_word(trace_cmd, tmp_path):
    # Payloads above 28 words are written with type_len 0 and a length word (kernel rb_update_event).
    tdir = tmp_path / "tpl"
    base = load_template("linux-6.18")
    (tdir / "events" / "test").mkdir(parents=True)
    (tdir / "header_page.txt").write_bytes(base.header_page)
    (tdir / "header_event.txt").write_bytes(base.header_event)
    (tdir / "template.toml").write_text('description = "test"\n')
    (tdir / "events" / "test" / "big.txt").write_text(
        "name: big\nID: 900\nformat:\n"
        "\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n"
        "\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;\n"
        "\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;\n"
        "\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n\n"
        "\tfield:u64 seq;\toffset:8;\tsize:8;\tsigned:0;\n"
        "\tfield:char name[200];\toffset:16;\tsize:200;\tsigned:0;\n\n"
        'print fmt: "seq %llu %s", REC->seq, REC->name\n')
    tpl = load_template(str(tdir))
    n = 60  # several pages of 216-byte records
    tr = _trace(list(range(10**9, 10**9 + n * 1000, 1000)), [0] * n, "big",
                {"seq": pa.array(range(n), pa.uint64()), "name": pa.array([f"event-{i}" * (i % 20) for i in range(n)])})
    path = tmp_path / "big.dat"
    write_trace(tr, path, template=tpl, version=7)
    got = trace_cmd_events(path)
    assert [int(e[5]["seq"]) for e in got] == list(range(n))
    assert [e[5]["name"] for e in got] == [f"event-{i}" * (i % 20) for i in range(n)]


def test_pages_are_filled_and_cut_between_records():
    ts = np.arange(1000, dtype=np.int64) * 10
    sizes = np.full(1000, 36, np.int64)
    pages = encode_pages(ts, np.arange(36000, dtype=np.int64).astype(np.uint8), sizes)
    words = pages.reshape(-1, 4096)
    commit = words[:, 8:16].copy().view("<u8").reshape(-1)
    # 40-byte records: 102 fit in the 4080 data bytes of a page.
    assert list(commit[:-1]) == [102 * 40] * (len(commit) - 1)
    assert words.shape[0] == -(-1000 // 102)
    assert words[1, :8].copy().view("<u8")[0] == ts[102]


def test_v7_sections_are_named_like_trace_cmd_names_them(trace_cmd, tmp_path):
    path = tmp_path / "s.dat"
    write_trace(generate("idle", seconds=0.01), path, version=7, compression="zstd")
    out = subprocess.run(["trace-cmd", "dump", "--sections", "-i", str(path)], capture_output=True, text=True, check=False).stdout
    names = [line.split('"')[1] for line in out.splitlines() if line.strip().startswith("[Section")]
    assert names == ["headers", "ftrace events", "events format", "kallsyms", "printk", "command lines", "options",
                     "buffer flyrecord ", "options", "strings"]


def test_events_missing_from_the_template_are_refused(tmp_path):
    tr = generate("nested", vcpus=1, seconds=0.005, seed=1)  # kvm_nested_vmenter: not in 4.19
    with pytest.raises(UsageError, match="kvm_nested_vmenter"):
        write_trace(tr, tmp_path / "x.dat", template="linux-4.19")
    with pytest.raises(UsageError):
        write_trace(tr, tmp_path / "x.dat", version=6, compression="zstd")
    assert not list(tmp_path.iterdir())
