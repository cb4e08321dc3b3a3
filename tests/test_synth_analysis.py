"""Generated traces through the analysis: what the profiles' parameters imply shows up in the
episode classes and sync causes the replay finds."""
from __future__ import annotations

import pytest

from exitreplay.analysis import analyze
from exitreplay.kvm import reasons as R
from exitreplay.synth.generator import generate
from exitreplay.synth.profiles import load_profile


def _share(prof, cls, isa):
    exits = prof.exits_for(isa)
    return sum(e.weight for e in exits if e.name == cls) / sum(e.weight for e in exits)


def test_idle_vcpus_block_in_hlt_as_often_as_the_profile_halts():
    prof = load_profile("idle")
    hlt = next(e for e in prof.exits if e.name == "hlt")
    r = analyze(generate(prof, vcpus=2, seconds=0.3, seed=3), policies=["kvm-today"])
    expected = _share(prof, "hlt", "svm") * (1 - hlt.pending)  # wake_ns >> poll_ns: every other halt sleeps
    got = r.summary["classes"].get("blocked", 0) / r.summary["exits"]
    assert abs(got - expected) < 0.05, (got, expected)


def test_netio_userspace_exits_match_its_parameters():
    prof = load_profile("netio")
    mmio = next(e for e in prof.exits if e.name == "mmio")
    io = next(e for e in prof.exits if e.name == "io")
    expected = (_share(prof, "mmio", "vmx") * (1 - mmio.ioeventfd) * mmio.userspace
                + _share(prof, "io", "vmx") * io.userspace)
    r = analyze(generate(prof, vcpus=2, seconds=0.05, seed=3, isa="vmx"), policies=["vmx-uret"])
    got = r.summary["classes"]["userspace"] / r.summary["exits"]
    assert abs(got - expected) < 0.05, (got, expected)


def _exits_per_sync(trace, policy="ist-off"):
    r = analyze(trace, policies=["kvm-today", policy])
    return r.policies.filter(r.policies["policy"] == policy).to_dicts()[0]["mean_exits_between_syncs"], r


def test_managed_msr_accesses_force_syncs():
    heavy, rh = _exits_per_sync(generate("syscall-heavy", vcpus=2, seconds=0.05, seed=3))
    cpu, _ = _exits_per_sync(generate("cpu", vcpus=2, seconds=0.5, seed=3))
    assert heavy < cpu
    causes = {c["cause"]: c["count"] for c in rh.sync_causes.to_dicts() if c["policy"] == "ist-off"}
    assert causes["lazy:msr"] > 0.3 * rh.summary["exits"]


@pytest.mark.parametrize("template", ["linux-6.18", "linux-4.19"])
def test_nested_vmload_vmsave_exits_are_what_vls_removes(template):
    tr = generate("nested", vcpus=1, seconds=0.02, seed=5, template=template)
    codes = tr.table("kvm_exit").column("exit_reason").to_pylist()
    r = analyze(tr)
    n = r.nested.filter(r.nested["policy"] == "nested-vls").to_dicts()[0]
    assert n["l1_vmload_vmsave_exits"] == codes.count(R.SVM_EXIT_VMLOAD) + codes.count(R.SVM_EXIT_VMSAVE) > 0
    assert n["measured_ns_removed"] > 0


def test_older_kvm_exit_layout_is_analysed():
    tr = generate("syscall-heavy", vcpus=2, seconds=0.01, seed=1, template="linux-4.19")
    assert "vcpu_id" not in tr.table("kvm_exit").column_names
    r = analyze(tr)  # vCPU ids from thread order when the format has none
    assert r.summary["exits"] == tr.meta.event_counts["kvm_exit"]
