"""Generated traces: trace-cmd reads every one back exactly, the reader round-trips them,
a seed gives the same bytes, and the profiles show what their parameters say."""
from __future__ import annotations

import subprocess
import sys

import pytest

import exitreplay
from exitreplay.analysis import analyze
from exitreplay.errors import UsageError
from exitreplay.kvm import reasons as R
from exitreplay.synth.generator import generate
from exitreplay.synth.writer import write_trace
from test_tracedat_oracle import oracle_events, same_value

CASES = [("idle", "svm", 7, "none"), ("idle", "vmx", 6, "none"), ("netio", "svm", 6, "none"),
         ("netio", "vmx", 7, "zstd"), ("cpu", "svm", 7, "zstd"), ("cpu", "vmx", 6, "none"),
         ("syscall-heavy", "svm", 7, "none"), ("syscall-heavy", "vmx", 7, "zstd"),
         ("nested", "svm", 6, "none"), ("nested", "svm", 7, "zstd"), ("mixed", "vmx", 7, "none")]


def columns(trace):
    """Every event with all its fields, from the typed tables, in row order."""
    rows = {}
    for name in trace.event_names:
        t = trace.table(name).to_pylist()
        for r in t:
            rows[r.pop("row")] = (name, r)
    return [rows[i] for i in range(len(trace))]


@pytest.mark.parametrize("profile,isa,version,compression", CASES)
def test_trace_cmd_reads_exactly_what_was_written(trace_cmd, tmp_path, profile, isa, version, compression):
    gen = generate(profile, vcpus=2, seconds=0.2 if profile == "cpu" else 0.01, seed=7, isa=isa)
    path = tmp_path / "g.dat"
    write_trace(gen, path, version=version, compression=compression)
    expected = columns(gen)
    got = oracle_events(path)
    assert len(got) == len(expected) > 50
    ev = gen.events.to_pydict()
    for i, (ts, cpu, pid, event, _comm, fields) in enumerate(got):
        assert (ts, cpu, pid, event) == (ev["ts"][i], ev["cpu"][i], ev["pid"][i], ev["event"][i]), i
        name, mine = expected[i]
        for k, v in fields.items():
            if k in mine:
                assert same_value(mine[k], v), (i, event, k, mine[k], v)
    # and the reader round-trips it
    back = exitreplay.read_trace(path)
    assert back.meta.version == version and back.meta.compression == compression
    assert columns(back) == expected


def test_same_seed_same_bytes(tmp_path):
    for i in range(2):
        write_trace(generate("netio", vcpus=2, seconds=0.01, seed=11, isa="svm"), tmp_path / f"{i}.dat",
                    version=7, compression="zstd")
    assert (tmp_path / "0.dat").read_bytes() == (tmp_path / "1.dat").read_bytes()
    write_trace(generate("netio", vcpus=2, seconds=0.01, seed=12, isa="svm"), tmp_path / "2.dat", version=7)
    assert (tmp_path / "2.dat").read_bytes() != (tmp_path / "0.dat").read_bytes()


def test_round_trip_of_a_real_recording(trace_cmd, tmp_path, real_dir):
    src = real_dir / "pvm-longmode-msr.v6.dat"
    tr = exitreplay.read_trace(src)
    out = tmp_path / "rt.dat"
    write_trace(tr, out, version=7, compression="zstd")
    assert oracle_events(out) == oracle_events(src)


def test_older_kvm_exit_layout(tmp_path):
    gen = generate("syscall-heavy", vcpus=1, seconds=0.005, seed=1, isa="svm")
    out = tmp_path / "old.dat"
    write_trace(gen, out, template="linux-4.19-layout", version=6)
    back = exitreplay.read_trace(out)
    cols = back.table("kvm_exit").column_names
    assert "vcpu_id" not in cols and "requests" not in cols and "info2" in cols
    r = analyze(back)  # vCPU ids come from thread order when the format has none
    assert r.summary["exits"] == back.meta.event_counts["kvm_exit"]


def _exits_per_sync(path_or_trace, policy="ist-off"):
    r = analyze(path_or_trace, policies=["kvm-today", policy])
    row = r.policies.filter(r.policies["policy"] == policy).to_dicts()[0]
    return row["mean_exits_between_syncs"], r


def test_profiles_behave_as_their_parameters_say():
    heavy, rh = _exits_per_sync(generate("syscall-heavy", vcpus=2, seconds=0.05, seed=3))
    cpu, rc = _exits_per_sync(generate("cpu", vcpus=2, seconds=0.5, seed=3))
    assert heavy < cpu  # MSR accesses to the managed registers force syncs
    causes = {c["cause"]: c["count"] for c in rh.sync_causes.to_dicts() if c["policy"] == "ist-off"}
    assert causes["lazy:msr"] > 0.3 * rh.summary["exits"]
    idle = analyze(generate("idle", vcpus=2, seconds=0.2, seed=3), policies=["kvm-today"])
    assert idle.summary["classes"].get("blocked", 0) > 0.3 * idle.summary["exits"]
    net = analyze(generate("netio", vcpus=2, seconds=0.05, seed=3, isa="vmx"), policies=["vmx-uret"])
    assert net.summary["classes"]["userspace"] > 0.2 * net.summary["exits"]


def test_nested_vls_has_no_vmload_vmsave_exits():
    plain = generate("nested", vcpus=1, seconds=0.01, seed=5)
    vls = generate("nested", vcpus=1, seconds=0.01, seed=5, vls=True)
    def count(tr, code):
        return sum(1 for x in tr.table("kvm_exit").column("exit_reason").to_pylist() if x == code)
    assert count(plain, R.SVM_EXIT_VMLOAD) == 2 * count(plain, R.SVM_EXIT_VMSAVE) > 0
    assert count(vls, R.SVM_EXIT_VMLOAD) == count(vls, R.SVM_EXIT_VMSAVE) == 0
    assert count(vls, R.SVM_EXIT_VMRUN) > 0
    r = analyze(plain)
    n = r.nested.filter(r.nested["policy"] == "nested-vls").to_dicts()[0]
    assert n["l1_vmload_vmsave_exits"] == count(plain, R.SVM_EXIT_VMLOAD) + count(plain, R.SVM_EXIT_VMSAVE)
    assert n["measured_ns_removed"] > 0


def test_bad_options_are_one_line_errors(tmp_path):
    with pytest.raises(UsageError):
        generate("nested", isa="vmx")
    p = subprocess.run([sys.executable, "-m", "exitreplay", "synth", "nope", "-o", str(tmp_path / "x.dat")],
                       capture_output=True, text=True)
    assert p.returncode == 2 and "unknown profile" in p.stderr and "Traceback" not in p.stderr
