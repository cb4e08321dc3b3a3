"""Profile numbers that cite a real trace agree with what `exitreplay.synth.measure` finds in it, and
a generated trace shows the profile's numbers back."""
from __future__ import annotations

import polars as pl
import pytest

import exitreplay
from exitreplay.synth.generator import generate
from exitreplay.synth.measure import measure
from exitreplay.synth.profiles import load_profile, profile_names


def _exit_row(m, reason):
    return m["exits"].filter(pl.col("reason") == reason).to_dicts()[0]


def _interval(m, prefix):
    return m["intervals"].filter(pl.col("interval").str.starts_with(prefix)).to_dicts()[0]


def _class(prof, name, isa="vmx"):
    return next(e for e in prof.exits_for(isa) if e.name == name)


def _share(prof, name, isa="vmx"):
    ex = prof.exits_for(isa)
    return sum(e.weight for e in ex if e.name == name) / sum(e.weight for e in ex)


def test_idle_profile_is_the_public_vmx_trace(public_dir):
    m = measure(exitreplay.read_trace(public_dir / "vmx-host-3.2-report.txt"))
    prof = load_profile("idle")
    for cls, reason in (("hlt", "HLT"), ("msr", "MSR_WRITE"), ("mmio", "EPT_MISCONFIG"),
                        ("timer", "PREEMPTION_TIMER")):
        assert abs(_share(prof, cls) - _exit_row(m, reason)["share"]) < 0.02, cls
    for cls, reason in (("msr", "MSR_WRITE"), ("mmio", "EPT_MISCONFIG"), ("timer", "PREEMPTION_TIMER")):
        assert _class(prof, cls).handling.median == pytest.approx(_exit_row(m, reason)["handling_us_p50"] * 1000,
                                                                  rel=0.15), cls
    assert _class(prof, "hlt").wake.median == pytest.approx(_interval(m, "kvm_vcpu_wakeup wait")["us_p50"] * 1000,
                                                            rel=0.1)
    assert prof.pre_block.median == pytest.approx(_interval(m, "exit -> sched_switch away")["us_p50"] * 1000,
                                                  rel=0.15)
    assert prof.run.median / 1000 == pytest.approx(_exit_row(m, "MSR_WRITE")["run_before_us_p50"], rel=0.4)


def test_qemu_round_trips_are_the_real_recordings(real_dir):
    p50 = [_interval(measure(exitreplay.read_trace(real_dir / f"{n}.v7zstd.dat")), "QEMU")["us_p50"]
           for n in ("pvm-pio-small", "pvm-longmode-msr")]
    for name in ("netio", "syscall-heavy"):
        for e in load_profile(name).exits:
            if e.userspace:
                assert min(p50) * 1000 <= e.qemu.median <= max(p50) * 1000, (name, e.name)


@pytest.mark.parametrize("isa", ["svm", "vmx"])
def test_a_generated_idle_trace_measures_like_its_profile(isa):
    prof = load_profile("idle")
    m = measure(generate(prof, vcpus=2, seconds=0.5, seed=4, isa=isa))
    hlt = "HLT" if isa == "vmx" else "hlt"
    assert _interval(m, "kvm_vcpu_wakeup wait")["us_p50"] * 1000 == pytest.approx(_class(prof, "hlt", isa).wake.median,
                                                                                   rel=0.15)
    msr = "MSR_WRITE" if isa == "vmx" else "msr"
    assert _exit_row(m, msr)["handling_us_p50"] * 1000 == pytest.approx(_class(prof, "msr", isa).handling.median,
                                                                        rel=0.1)
    assert _exit_row(m, hlt)["share"] == pytest.approx(_share(prof, "hlt", isa), abs=0.03)


def test_every_profile_loads_and_says_what_it_is():
    for name in profile_names():
        p = load_profile(name)
        assert p.summary and p.name == name
