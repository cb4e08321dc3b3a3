"""`exitreplay analyze` through the command line: every output format parses and holds the
Report's numbers, every filter and option does what it says, a user's policy file works end to
end, and every bad value is one line on stderr with exit status 2."""
from __future__ import annotations

import io
import json
import subprocess
import sys

import polars as pl
import pytest
from conftest import SAMPLES

import exitreplay

TRACE = SAMPLES / "svm-mixed.v7zstd.dat"  # generated: 4 VMs x 2 vCPUs, SVM, kvm_msr and sched_switch
OPS = ("vmload", "vmsave", "ltr", "wrmsr", "rdmsr", "seg_reload", "ist_toggle")


def run(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "exitreplay", "analyze", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, check=False)


def run_json(*args: str) -> dict:
    r = run(TRACE, "--format", "json", *args)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


@pytest.fixture(scope="module")
def trace():
    return exitreplay.read_trace(TRACE)


@pytest.fixture(scope="module")
def report(trace):
    return exitreplay.analyze(trace)


def _by(rows: list[dict], *keys: str) -> dict:
    return {tuple(r[k] for k in keys): r for r in rows}


def assert_rows_equal(got: list[dict], want: pl.DataFrame, keys: tuple[str, ...]) -> None:
    g, w = _by(got, *keys), _by(want.to_dicts(), *keys)
    assert set(g) == set(w)
    for k, row in w.items():
        for col, v in row.items():
            if isinstance(v, float):
                assert g[k][col] == pytest.approx(v, rel=1e-9, abs=1e-9), (k, col)
            else:
                assert g[k][col] == v, (k, col)


def test_json_holds_the_report(report):
    data = run_json()
    for key in ("exits", "timed_exits", "exit_time_ns", "vcpus", "vms", "classes", "pairing", "sync_events",
                "baseline"):
        assert data["summary"][key] == report.summary[key], key
    assert_rows_equal(data["policies"], report.policies, ("policy",))
    assert_rows_equal(data["latency"], report.latency, ("reason",))
    assert_rows_equal(data["latency_reason_vcpu"], report.latency_reason_vcpu, ("vm", "vcpu", "reason"))
    assert_rows_equal(data["latency_reason_vm"], report.latency_reason_vm, ("vm", "reason"))
    assert_rows_equal(data["sync_causes"], report.sync_causes, ("policy", "cause"))
    assert data["sensitivity"] == report.sensitivity


def test_csv_one_file_per_table_and_one_table_to_stdout(report, tmp_path):
    out = tmp_path / "csv"
    r = run(TRACE, "--format", "csv", "-o", out)
    assert r.returncode == 0, r.stderr
    files = {p.stem for p in out.glob("*.csv")}
    assert {"policies", "latency", "latency_vcpu", "latency_reason_vcpu", "sync_causes", "costs", "ops"} <= files
    pol = pl.read_csv(out / "policies.csv")
    assert_rows_equal(pol.to_dicts(), report.policies.select(pol.columns[: report.policies.width]), ("policy",))
    lat = pl.read_csv(out / "latency.csv")
    assert_rows_equal(lat.to_dicts(), report.latency.select(lat.columns), ("reason",))
    # Counts are integers, not 8242.0.
    ops = pl.read_csv(out / "ops.csv")
    assert ops.schema["executed"] == pl.Int64 and ops.schema["avoided"] == pl.Int64
    assert pol.schema["vmload"] == pl.Int64
    one = run(TRACE, "--format", "csv", "--table", "latency")
    assert one.returncode == 0 and pl.read_csv(io.StringIO(one.stdout)).equals(lat)
    default = run(TRACE, "--format", "csv")
    assert pl.read_csv(io.StringIO(default.stdout)).equals(pol)
    bad = run(TRACE, "--format", "csv", "--table", "nope")
    assert bad.returncode == 2 and "unknown --table 'nope'" in bad.stderr


def test_parquet_directory_holds_every_table_and_the_episodes(report, tmp_path):
    out = tmp_path / "pq"
    r = run(TRACE, "--format", "parquet", "-o", out)
    assert r.returncode == 0, r.stderr
    ep = pl.read_parquet(out / "episodes.parquet")
    assert ep.height == report.episodes.height
    for col in ("reason", "vcpu", "vm", "latency_ns", "b_put", "b_load", "exit_row", "entry_row"):
        assert col in ep.columns, col
    assert ep["latency_ns"].drop_nulls().sum() == report.episodes["latency_ns"].drop_nulls().sum()
    assert pl.read_parquet(out / "policies.parquet")["policy"].sort().to_list() == \
        report.policies["policy"].sort().to_list()
    assert json.loads((out / "summary.json").read_text())["summary"]["exits"] == report.summary["exits"]
    assert run(TRACE, "--format", "parquet").returncode == 2  # needs -o DIR


def test_markdown_is_for_people(report):
    r = run(TRACE, "--format", "markdown", "--vcpu", "1", "--pid", "4103")
    assert r.returncode == 0, r.stderr
    md = r.stdout
    assert "filters: VM 4103; vCPU 1" in md
    lines = md.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("## what each policy saves"))
    header = [c.strip() for c in lines[start + 2].strip("|").split("|")]
    assert header[:3] == ["policy", "saved µs/s", "low..high µs/s"]
    rows = [dict(zip(header, (c.strip() for c in line.strip("|").split("|"))))
            for line in lines[start + 4:] if line.startswith("|")][:3]
    # Formatted for reading: thousands separators, units in the header, no 10-digit floats.
    lib = exitreplay.analyze(TRACE, vcpu=1, vm=4103)
    span_s = lib.summary["span_ns"] / 1e9
    top = lib.policies.sort("saved_cycles_typical", descending=True).row(0, named=True)
    us = top["saved_cycles_typical"] / lib.summary["cpu_mhz"] / span_s
    assert rows[0]["policy"].split("<br>")[0] == top["policy"]  # then the kernel it stands for
    assert float(rows[0]["saved µs/s"].replace(",", "")) == pytest.approx(us, rel=5e-3)
    assert "## exit handling time per exit reason" in md and "ranking by cycles saved" in md


def test_output_file(tmp_path):
    out = tmp_path / "r.json"
    r = run(TRACE, "--format", "json", "-o", out)
    assert r.returncode == 0 and r.stdout == ""
    assert json.loads(out.read_text()) == run_json()
    table = tmp_path / "r.txt"
    assert run(TRACE, "-o", table).returncode == 0
    assert "exit handling time per exit reason" in table.read_text()


def test_vcpu_vm_and_time_filters(trace):
    ex = trace.table("kvm_exit").to_pylist()
    d = run_json("--vcpu", "1")
    assert d["summary"]["exits"] == sum(e["vcpu_id"] == 1 for e in ex)
    assert {r["vcpu"] for r in d["latency_vcpu"]} == {1}
    assert any("merges vCPU 1 of 4 VMs" in w for w in d["warnings"])  # said, not silently merged
    # A VM is named by its lowest vCPU thread pid; the trace's threads of VM 4103 are 4103 and 4104.
    d = run_json("--pid", "4103")
    assert d["summary"]["exits"] == sum(e["pid"] in (4103, 4104) for e in ex)
    assert {r["vm"] for r in d["latency_vm"]} == {4103}
    d = run_json("--vm", "4104")  # any thread of the QEMU process names its VM
    assert d["summary"]["exits"] == sum(e["pid"] in (4103, 4104) for e in ex)
    t0 = trace.meta.first_ts
    d = run_json("--from", "+10ms", "--to", "+25ms")
    assert d["summary"]["exits"] == sum(t0 + 10_000_000 <= e["ts"] < t0 + 25_000_000 for e in ex)
    assert d["summary"]["filters"]["from"] == "+10ms" and d["summary"]["filters"]["to"] == "+25ms"
    # Absolute timestamps, as trace-cmd report prints them.
    lo, hi = (t0 + 10_000_000) / 1e9, (t0 + 25_000_000) / 1e9
    d2 = run_json("--from", f"{lo:.6f}", "--to", f"{hi:.6f}s")
    assert d2["summary"]["exits"] == d["summary"]["exits"]


def test_cost_profile_file_and_cpu_mhz(tmp_path):
    costs = {"vmload": (10, 20, 30), "vmsave": (10, 20, 30), "ltr": (1, 2, 3), "wrmsr": (5, 7, 9),
             "rdmsr": (1, 1, 1), "seg_reload": (0, 0, 0), "ist_toggle": (100, 200, 300)}
    text = 'name = "mine"\ncpu_mhz = 1000\n' + "".join(
        f'[ops.{op}]\nlow = {lo}\ntypical = {ty}\nhigh = {hi}\nsource = "assumption: test"\n'
        for op, (lo, ty, hi) in costs.items())
    f = tmp_path / "mine.toml"
    f.write_text(text)
    d = run_json("--cost-profile", f, "--policy", "kvm-today", "--policy", "ist-off")
    assert d["summary"]["cost_profile"] == "mine" and d["summary"]["cpu_mhz"] == 1000
    avoided = {(r["policy"], r["op"]): r["avoided"] for r in d["ops"]}
    row = {r["policy"]: r for r in d["policies"]}["ist-off"]
    # A profile with no [gsbase] prices the GS base switch as the MSR pair: 1 RDMSR + 2 WRMSR.
    typical = {**{op: c[1] for op, c in costs.items()}, "gsbase": 1 + 2 * 7}
    assert row["saved_cycles_typical"] == pytest.approx(sum(avoided[("ist-off", op)] * c for op, c in typical.items()))
    assert row["saved_ns_typical"] == pytest.approx(row["saved_cycles_typical"] * 1000 / 1000)
    d2 = run_json("--cost-profile", f, "--policy", "kvm-today", "--policy", "ist-off", "--cpu-mhz", "4000")
    row2 = {r["policy"]: r for r in d2["policies"]}["ist-off"]
    assert d2["summary"]["cpu_mhz"] == 4000
    assert row2["saved_cycles_typical"] == row["saved_cycles_typical"]
    assert row2["saved_ns_typical"] == pytest.approx(row["saved_cycles_typical"] * 1000 / 4000)
    assert row2["share_of_exit_time_pct"] == pytest.approx(
        row2["saved_ns_typical"] / d2["summary"]["exit_time_ns"] * 100)


USER_POLICY = """
name = "my-policy"
isa = "svm"
summary = "a test policy: one LTR per exit, one selector reload per vcpu_put, one RDMSR per user return"
sources = ["tests/test_analyze_cli.py"]

[ops.exit]
ltr = 1

[ops.put]
seg_reload = 1

[ops.user_return]
rdmsr = 1

[lazy]
msrs = "svm"

[ops.lazy_write]
vmload = 3

[exposure]
ist_off = "loaded"
"""


def test_user_policy_file_end_to_end(tmp_path, trace, report):
    f = tmp_path / "my.toml"
    f.write_text(USER_POLICY)
    d = run_json("--policy", f, "--policy", "kvm-today")
    row = {r["policy"]: r for r in d["policies"]}["my-policy"]
    assert row["ltr"] == trace.table("kvm_exit").num_rows
    causes = {r["cause"]: r["count"] for r in d["sync_causes"] if r["policy"] == "my-policy"}
    puts = report.summary["classes"]["userspace"] + report.summary["classes"]["blocked"] + \
        report.summary["classes"]["preempted"]
    assert row["seg_reload"] == puts == causes["put:userspace"] + causes["put:preempted"] + causes["put:blocked"]
    assert row["vmload"] % 3 == 0 and row["vmload"] > 0  # lazy writes of SVM-managed MSRs, 3 each
    lib = exitreplay.analyze(trace, [str(f), "kvm-today"])
    assert_rows_equal(d["policies"], lib.policies, ("policy",))
    assert d["summary"]["policies"] == ["my-policy", "kvm-today"]


def test_user_policy_for_the_other_isa_is_replayed_with_a_warning(tmp_path):
    f = tmp_path / "v.toml"
    f.write_text(USER_POLICY.replace('isa = "svm"', 'isa = "vmx"'))
    d = run_json("--policy", f)
    assert any("policy my-policy is for VMX but this trace is SVM" in w for w in d["warnings"])


def one_line_error(r: subprocess.CompletedProcess, *needles: str) -> None:
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert r.stderr.startswith("exitreplay: error: ") and r.stderr.count("\n") == 1, r.stderr
    assert "Traceback" not in r.stderr
    for n in needles:
        assert n in r.stderr, (n, r.stderr)


BAD_POLICIES = {
    "unknown boundary": ('name = "x"\n[ops.exit_and_more]\nvmload = 1\n', "unknown boundary [ops.exit_and_more]"),
    "unknown op": ('name = "x"\n[ops.exit]\nvmrun = 1\n', "unknown operation 'vmrun'"),
    "negative count": ('name = "x"\n[ops.put]\nwrmsr = -2\n', "must be a non-negative number"),
    "not toml": ("name = \n[ops\n", "not valid TOML"),
    "no name": ("[ops.exit]\nvmload = 1\n", "needs a name"),
    "bad lazy set": ('name = "x"\n[lazy]\nmsrs = "all"\n', "[lazy] msrs must be one of"),
    "bool count": ('name = "x"\n[ops.exit]\nvmload = true\n', "must be a non-negative number"),
}


@pytest.mark.parametrize("case", sorted(BAD_POLICIES))
def test_bad_policy_files(tmp_path, case):
    text, needle = BAD_POLICIES[case]
    f = tmp_path / "bad.toml"
    f.write_text(text)
    one_line_error(run(TRACE, "--policy", f), str(f), needle)


BAD_COSTS = {
    "missing op": ('[ops.vmload]\nlow = 1\ntypical = 2\nhigh = 3\nsource = "x"\n', "no cost for"),
    "order": ('[ops.vmload]\nlow = 5\ntypical = 2\nhigh = 3\nsource = "x"\n', "low <= typical <= high"),
    "not toml": ("[ops.vmload\n", "not valid TOML"),
}


@pytest.mark.parametrize("case", sorted(BAD_COSTS))
def test_bad_cost_profiles(tmp_path, case):
    text, needle = BAD_COSTS[case]
    f = tmp_path / "c.toml"
    f.write_text(text)
    one_line_error(run(TRACE, "--cost-profile", f), needle)


@pytest.mark.parametrize("args,needle", [
    (("--cpu-mhz", "abc"), "--cpu-mhz needs a number"),
    (("--cpu-mhz", "0"), "--cpu-mhz must be a positive"),
    (("--cpu-mhz", "-5"), "--cpu-mhz must be a positive"),
    (("--cpu-mhz", "nan"), "--cpu-mhz needs a finite number"),
    (("--tsc-mhz", "fast"), "--tsc-mhz needs a number"),
    (("--vcpu", "one"), "--vcpu needs an integer"),
    (("--vcpu", "99"), "--vcpu 99: no exits of that vCPU (VMs: 4003 (vCPUs 0, 1)"),
    (("--vm", "1.5"), "--pid needs an integer"),
    (("--pid", "77"), "--pid 77: no VM with that id or thread pid"),
    (("--cpu", "x"), "--cpu needs an integer"),
    (("--reason", "bogus"), "--reason bogus: not an exit reason of this trace (it has: msr, "),
    (("--from", "soon"), "--from 'soon': not a time"),
    (("--from", "+20ms", "--to", "+10ms"), "--to +10ms must come after --from +20ms"),
    (("--from", "+2s"), "--from +2s is outside the trace: the trace spans "),
    (("--from", "5ms"), "a + sign makes a time relative"),
    (("--to", "0.5"), "--to 0.5 is outside the trace"),
    (("--event", "disk"), "unknown --event 'disk'"),
    (("--key", "size"), "unknown --key 'size'"),
    (("--limit", "0"), "--limit must be at least 1"),
    (("--summary", "--detail"), "exclude each other"),
    (("--format", "xml"), "unknown --format 'xml'"),
    (("-o", "/nonexistent-dir/r.json"), "does not exist"),
    (("--cost-profile", "nosuch"), "unknown cost profile 'nosuch'"),
    (("--cost-profile", "/tmp/nosuch-costs.toml"), "does not exist"),
    (("--policy", "nosuch"), "unknown policy 'nosuch'"),
    (("--policy", "/tmp/nosuch-policy.toml"), "does not exist"),
    (("--baseline", "nested-vls"), "is a nested policy"),
])
def test_bad_values_are_one_line_errors(args, needle):
    one_line_error(run(TRACE, *args), needle)


def test_window_error_names_the_traces_own_span():
    meta = exitreplay.read_trace(TRACE).meta
    span = f"the trace spans {meta.first_ts / 1e9:.6f} s .. {meta.last_ts / 1e9:.6f} s"
    one_line_error(run(TRACE, "--from", "+2s"), span)


def test_policy_named_like_a_builtin_is_refused(tmp_path):
    f = tmp_path / "clash.toml"
    f.write_text('name = "kvm-today"\n[ops.exit]\nvmload = 1\n')
    one_line_error(run(TRACE, "--policy", f, "--policy", "kvm-today"), "two policies are named 'kvm-today'")


def test_missing_trace_is_a_one_line_error(tmp_path):
    one_line_error(run(tmp_path / "nope.dat"))


def test_policies_command_lists_every_builtin():
    r = subprocess.run([sys.executable, "-m", "exitreplay", "policies"], capture_output=True, text=True, check=False)
    assert r.returncode == 0
    for name in ("kvm-today", "vmx-uret", "vmx-2.6.25", "vmx-2.6.26", "xen-lazy", "ist-config", "nested-measured",
                 "nested-vls", "nested-l1-ist-off"):
        assert name in r.stdout
