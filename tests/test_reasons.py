"""Exit-reason tables against the kernel: header values, the kernel's own print tables, trace-cmd.

The strongest check reads the `print fmt` of kvm_exit and kvm_userspace_exit that a real Linux 6.18
kernel stored in a committed recording (`trace-cmd dump --events`): the `__print_symbolic` tables
there are SVM_EXIT_REASONS / VMX_EXIT_REASONS / kvm_trace_exit_reason as that kernel was built.
"""
from __future__ import annotations

import re
import subprocess

import numpy as np
import polars as pl
import pyarrow as pa
import pytest
from conftest import REAL, ROOT, trace_cmd_report

from exitreplay.kvm import reasons as R

SAMPLES = ROOT / "sample_traces"


def test_header_values():
    # Values as written in arch/x86/include/uapi/asm/svm.h, vmx.h and include/uapi/linux/kvm.h.
    svm = {"VMRUN": 0x080, "VMMCALL": 0x081, "VMLOAD": 0x082, "VMSAVE": 0x083, "STGI": 0x084,
           "CLGI": 0x085, "SKINIT": 0x086, "NPF": 0x400, "MSR": 0x07C, "IOIO": 0x07B, "HLT": 0x078,
           "INTR": 0x060, "VINTR": 0x064, "CPUID": 0x072, "PAUSE": 0x077, "TASK_SWITCH": 0x07D,
           "TR_READ": 0x069, "LDTR_WRITE": 0x06C, "RDPRU": 0x08E, "MWAIT_COND": 0x08C,
           "EFER_WRITE_TRAP": 0x08F, "CR8_WRITE_TRAP": 0x098, "CR15_WRITE_TRAP": 0x09F, "INVPCID": 0x0A2,
           "BUS_LOCK": 0x0A5, "IDLE_HLT": 0x0A6, "AVIC_INCOMPLETE_IPI": 0x401,
           "AVIC_UNACCELERATED_ACCESS": 0x402, "VMGEXIT": 0x403, "WRITE_DR7": 0x037, "READ_CR8": 0x008}
    for name, code in svm.items():
        assert R.SVM_EXIT_CODES[name] == code, name
    # The module's named constants agree with the table.
    consts = {k[len("SVM_EXIT_"):]: v for k, v in vars(R).items() if k.startswith("SVM_EXIT_") and isinstance(v, int)}
    assert len(consts) > 60
    for name, code in consts.items():
        if name in R.SVM_EXIT_CODES:
            assert R.SVM_EXIT_CODES[name] == code, name
    assert R.SVM_EXIT_ERR == 2**32 - 1  # -1 in the header, as kvm_exit's u32 holds it
    vmx = {"EXCEPTION_NMI": 0, "EXTERNAL_INTERRUPT": 1, "HLT": 12, "CPUID": 10, "IO_INSTRUCTION": 30,
           "MSR_READ": 31, "MSR_WRITE": 32, "EPT_VIOLATION": 48, "EPT_MISCONFIG": 49, "PREEMPTION_TIMER": 52,
           "APIC_WRITE": 56, "TPAUSE": 68, "BUS_LOCK": 74, "NOTIFY": 75, "TDCALL": 77, "MSR_READ_IMM": 84,
           "MSR_WRITE_IMM": 85, "INTERRUPT_WINDOW": 7, "LDTR_TR": 47}
    for name, code in vmx.items():
        assert R.VMX_EXIT_REASONS[code] == name
        assert getattr(R, "VMX_EXIT_" + name) == code, name
    kvm = {"IO": 2, "HLT": 5, "MMIO": 6, "SHUTDOWN": 8, "INTERNAL_ERROR": 17, "SYSTEM_EVENT": 24,
           "X86_WRMSR": 30, "X86_BUS_LOCK": 33, "NOTIFY": 37, "MEMORY_FAULT": 39, "TDX": 40}
    for name, code in kvm.items():
        assert R.KVM_EXIT_REASONS[code] == name
    assert (R.ISA_VMX, R.ISA_SVM) == (1, 2)


def _c_int(expr: str) -> int:
    """A symbol value as the print fmt writes it: "0x040 + 19", "-1", "85"."""
    total = sum(int(tok, 0) for tok in expr.replace(" ", "").split("+"))
    return total & 0xFFFFFFFF


def _symbol_tables(print_fmt: str) -> list[dict[int, str]]:
    tables = []
    for m in re.finditer(r"__print_(?:symbolic|flags)\((.*?)\)\s*(?:[:,)]|$)", print_fmt):
        pairs = re.findall(r'\{\s*([^,{}]+?)\s*,\s*((?:"[^"]*"\s*)+)\}', m.group(1))
        tables.append({_c_int(v): "".join(re.findall(r'"([^"]*)"', s)) for v, s in pairs})
    return tables


@pytest.fixture(scope="module")
def kernel_formats(trace_cmd) -> dict[str, str]:
    text = subprocess.run(["trace-cmd", "dump", "--events", "-i", str(REAL / "pvm-pio-small.v7zstd.dat")],
                          check=True, capture_output=True, text=True).stdout
    out = {}
    for block in re.split(r"\n(?=name: )", text):
        m = re.match(r"name: (\w+)", block)
        pf = re.search(r"^print fmt: (.*)$", block, re.MULTILINE)
        if m and pf:
            out[m[1]] = pf[1]
    return out


def test_tables_equal_the_kernels_own_print_format(kernel_formats):
    vmx, svm, flags = _symbol_tables(kernel_formats["kvm_exit"])
    assert vmx == R.VMX_EXIT_REASONS
    assert svm == R.SVM_EXIT_REASONS
    assert flags == R.VMX_EXIT_REASON_FLAGS
    (printed,) = _symbol_tables(kernel_formats["kvm_userspace_exit"])
    assert printed == {k: "KVM_EXIT_" + v for k, v in R.KVM_EXIT_REASONS.items() if k <= R.KVM_EXIT_TRACE_MAX}
    # kvm_nested_vmexit prints the same tables (TRACE_EVENT_KVM_EXIT).
    assert _symbol_tables(kernel_formats["kvm_nested_vmexit"])[:2] == [vmx, svm]


@pytest.mark.parametrize("isa", [R.ISA_VMX, R.ISA_SVM])
def test_round_trip_every_name(isa):
    table = R.VMX_EXIT_REASONS if isa == R.ISA_VMX else R.SVM_EXIT_REASONS
    for code, name in table.items():
        assert R.exit_reason_name(isa, code) == name
        assert R.exit_reason_code(isa, name) == code
        assert R.lookup_reason(name) == (isa, code)  # names never collide across ISAs
    other = R.ISA_SVM if isa == R.ISA_VMX else R.ISA_VMX
    assert all(R.exit_reason_code(other, n) is None for n in table.values() if not n.startswith("0x"))


def test_plugin_and_old_names():
    # trace-cmd's kvm plugin prints the SVM macro names; both spellings give one code.
    for key, code in R.SVM_EXIT_CODES.items():
        assert R.exit_reason_code(R.ISA_SVM, "EXIT_" + key) == code
        if code in R.SVM_EXIT_REASONS:
            assert R.exit_reason_code(R.ISA_SVM, R.SVM_EXIT_REASONS[code]) == code
    assert R.lookup_reason("PENDING_INTERRUPT") == (R.ISA_VMX, 7)
    assert R.exit_reason_code(R.ISA_VMX, "UNKNOWN (74)") == 74


def test_unknown_codes_kept_as_numbers_and_vmx_flags():
    assert R.exit_reason_name(R.ISA_SVM, 0x1234) == "0x1234"
    assert R.exit_reason_code(R.ISA_SVM, "0x1234") == 0x1234
    assert R.exit_reason_name(R.ISA_VMX, 99) == "0x63"
    assert R.exit_reason_name(None, 5) == "0x5"
    failed = R.VMX_FAILED_VMENTRY | R.VMX_EXIT_INVALID_STATE
    assert R.exit_reason_name(R.ISA_VMX, failed) == "INVALID_STATE FAILED_VMENTRY"
    assert R.exit_reason_code(R.ISA_VMX, "INVALID_STATE FAILED_VMENTRY") == failed
    odd = 0x08000000 | R.VMX_EXIT_HLT  # a flag bit the table does not name
    assert R.exit_reason_name(R.ISA_VMX, odd) == "HLT 0x8000000"
    assert R.exit_reason_code(R.ISA_VMX, "HLT 0x8000000") == odd
    assert R.exit_reason_code(R.ISA_SVM, "no such reason") is None
    assert R.guess_isa(["EPT_VIOLATION", "0x30"]) == R.ISA_VMX
    assert R.guess_isa(["EXIT_NPF"]) == R.ISA_SVM
    assert R.guess_isa(["0x30"]) is None


def test_vectorized_equals_scalar():
    rng = np.random.default_rng(7)
    codes = np.concatenate([rng.choice(list(R.SVM_EXIT_REASONS), 300), rng.integers(0, 0x500, 300)])
    isas = rng.choice([R.ISA_VMX, R.ISA_SVM, 3], codes.size)
    got = R.reason_names(pa.array(isas), pa.array(codes)).to_pylist()
    assert got == [R.exit_reason_name(int(i) if i in (1, 2) else None, int(c)) for i, c in zip(isas, codes)]
    df = pl.DataFrame({"isa": isas, "code": codes})
    assert df.select(R.reason_names_expr("isa", "code"))["reason_name"].to_list() == got
    assert R.reason_names(R.ISA_SVM, pa.array([0x82, None])).to_pylist() == ["vmload", None]
    back = R.lookup_reasons(pl.Series(got))
    known = [g for g in got if not g.startswith("0x")]
    assert len(known) > 50
    for name, code in zip(got, back["exit_reason"].to_list()):
        if not name.startswith("0x"):
            assert R.exit_reason_name(R.isa_of_reason(name), code) == name


def test_userspace_exit_names():
    assert R.userspace_exit_name(R.KVM_EXIT_IO) == "KVM_EXIT_IO"
    assert R.userspace_exit_code("KVM_EXIT_MMIO") == 6
    assert R.userspace_exit_code("HLT") == 5
    assert R.userspace_exit_code("0x27") == R.KVM_EXIT_MEMORY_FAULT  # printed as hex by the kernel
    assert R.userspace_exit_name(99) == "0x63"


@pytest.mark.parametrize("sample", ["svm-nested.v7.dat", "vmx-netio.v6.dat", "svm-mixed.v7zstd.dat"])
def test_trace_cmd_plugin_names_map_to_the_raw_codes(trace_cmd, sample):
    """`trace-cmd report` prints reasons through libtraceevent's kvm plugin; `-R` prints the raw code."""
    path = SAMPLES / sample
    pretty = [ln for ln in trace_cmd_report(path).splitlines() if " kvm_exit: " in ln]
    raw = [ln for ln in trace_cmd_report(path, "-R").splitlines() if " kvm_exit: " in ln]
    assert len(pretty) == len(raw) > 100
    seen = set()
    for p, r in zip(pretty, raw):
        name = re.search(r"kvm_exit:\s+reason (.+?) rip ", p)[1]
        code = int(re.search(r"exit_reason=(\d+)", r)[1])
        isa = int(re.search(r"isa=(\d+)", r)[1])
        assert R.lookup_reason(name) == (isa, code), p
        seen.add(code)
    assert len(seen) >= 3
