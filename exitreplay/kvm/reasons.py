"""Exit-reason tables: SVM, VMX and KVM_EXIT_* (the one place these facts live).

Sources (Linux 6.18; the same tables are printed by the 6.18 kernel's own `kvm_exit` print format,
which tests/test_reasons.py reads back from a real recording with `trace-cmd dump --events`):

- `arch/x86/include/uapi/asm/svm.h`: the `SVM_EXIT_*` codes and `SVM_EXIT_REASONS`, the names the
  kernel's tracepoints print for SVM (lower case: "npf", "msr", "vmload", "DE excp", ...).
- `arch/x86/include/uapi/asm/vmx.h`: the `EXIT_REASON_*` codes, `VMX_EXIT_REASONS` (upper case:
  "EPT_VIOLATION", ...) and `VMX_EXIT_REASON_FLAGS` (bit 31, "FAILED_VMENTRY").
- `arch/x86/kvm/trace.h`: `kvm_exit`'s `isa` field (KVM_ISA_VMX = 1, KVM_ISA_SVM = 2) and
  `kvm_print_exit_reason()`: on VMX the basic reason is `exit_reason & 0xffff`, and the upper bits
  print as flags after a space ("EPT_VIOLATION FAILED_VMENTRY"); a code not in the table prints as
  "0x%lx" (`__print_symbolic`/`__print_flags` fall back to hex).
- `include/uapi/linux/kvm.h`: `KVM_EXIT_*` (kvm_run.exit_reason), and `include/trace/events/kvm.h`
  `kvm_trace_exit_reason`, the subset `kvm_userspace_exit` prints by name ("KVM_EXIT_IO"), up to
  KVM_EXIT_X86_WRMSR; later codes print as hex.
- libtraceevent `plugins/plugin_kvm.c` (used by `trace-cmd report`): its own copies of the tables.
  SVM names there are the header's macro names ("EXIT_NPF", "EXIT_MSR", "EXIT_EXCP_PF", ...), VMX
  names the kernel's except 7, "PENDING_INTERRUPT" (also the kernel's name for 7 before 5.x); a
  code it does not know prints "UNKNOWN (<decimal>)".

A code missing from a table is kept as a number, never dropped: `exit_reason_name` renders it as
hex, the way the kernel does.
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

# kvm_exit's `isa` field (arch/x86/kvm/trace.h).
ISA_VMX = 1
ISA_SVM = 2
ISA_NAMES = {ISA_VMX: "vmx", ISA_SVM: "svm"}

# VMX: basic exit reason in the low 16 bits, flags above (vmx.h).
VMX_REASON_MASK = 0xFFFF
VMX_FAILED_VMENTRY = 0x80000000
VMX_EXIT_REASON_FLAGS: dict[int, str] = {VMX_FAILED_VMENTRY: "FAILED_VMENTRY"}

# --- SVM (svm.h) --------------------------------------------------------------------------------
# The header's macro names without the SVM_EXIT_ prefix (the plugin prints "EXIT_" + this).
SVM_EXIT_CODES: dict[str, int] = {
    "READ_CR0": 0x000, "READ_CR2": 0x002, "READ_CR3": 0x003, "READ_CR4": 0x004, "READ_CR8": 0x008,
    "WRITE_CR0": 0x010, "WRITE_CR2": 0x012, "WRITE_CR3": 0x013, "WRITE_CR4": 0x014, "WRITE_CR8": 0x018,
    **{f"READ_DR{i}": 0x020 + i for i in range(8)},
    **{f"WRITE_DR{i}": 0x030 + i for i in range(8)},
    # SVM_EXIT_EXCP_BASE + vector (0x040..0x05f); the plugin names them EXCP_<mnemonic>.
    "EXCP_DE": 0x040, "EXCP_DB": 0x041, "EXCP_BP": 0x043, "EXCP_OF": 0x044, "EXCP_BR": 0x045,
    "EXCP_UD": 0x046, "EXCP_NM": 0x047, "EXCP_DF": 0x048, "EXCP_TS": 0x04A, "EXCP_NP": 0x04B,
    "EXCP_SS": 0x04C, "EXCP_GP": 0x04D, "EXCP_PF": 0x04E, "EXCP_MF": 0x050, "EXCP_AC": 0x051,
    "EXCP_MC": 0x052, "EXCP_XF": 0x053,
    "INTR": 0x060, "NMI": 0x061, "SMI": 0x062, "INIT": 0x063, "VINTR": 0x064, "CR0_SEL_WRITE": 0x065,
    "IDTR_READ": 0x066, "GDTR_READ": 0x067, "LDTR_READ": 0x068, "TR_READ": 0x069,
    "IDTR_WRITE": 0x06A, "GDTR_WRITE": 0x06B, "LDTR_WRITE": 0x06C, "TR_WRITE": 0x06D,
    "RDTSC": 0x06E, "RDPMC": 0x06F, "PUSHF": 0x070, "POPF": 0x071, "CPUID": 0x072, "RSM": 0x073,
    "IRET": 0x074, "SWINT": 0x075, "INVD": 0x076, "PAUSE": 0x077, "HLT": 0x078, "INVLPG": 0x079,
    "INVLPGA": 0x07A, "IOIO": 0x07B, "MSR": 0x07C, "TASK_SWITCH": 0x07D, "FERR_FREEZE": 0x07E,
    "SHUTDOWN": 0x07F, "VMRUN": 0x080, "VMMCALL": 0x081, "VMLOAD": 0x082, "VMSAVE": 0x083,
    "STGI": 0x084, "CLGI": 0x085, "SKINIT": 0x086, "RDTSCP": 0x087, "ICEBP": 0x088, "WBINVD": 0x089,
    "MONITOR": 0x08A, "MWAIT": 0x08B, "MWAIT_COND": 0x08C, "XSETBV": 0x08D, "RDPRU": 0x08E,
    "EFER_WRITE_TRAP": 0x08F,
    **{f"CR{i}_WRITE_TRAP": 0x090 + i for i in range(16)},
    "INVPCID": 0x0A2, "BUS_LOCK": 0x0A5, "IDLE_HLT": 0x0A6,
    "NPF": 0x400, "AVIC_INCOMPLETE_IPI": 0x401, "AVIC_UNACCELERATED_ACCESS": 0x402, "VMGEXIT": 0x403,
    "ERR": 0xFFFFFFFF,  # SVM_EXIT_ERR (-1) as kvm_exit's unsigned exit_reason holds it
}

# SEV-ES/SNP software-defined VMGEXIT exit codes (svm.h SVM_VMGEXIT_*).
SVM_VMGEXIT_CODES: dict[str, int] = {
    "MMIO_READ": 0x80000001, "MMIO_WRITE": 0x80000002, "NMI_COMPLETE": 0x80000003,
    "AP_HLT_LOOP": 0x80000004, "AP_JUMP_TABLE": 0x80000005, "PSC": 0x80000010,
    "GUEST_REQUEST": 0x80000011, "EXT_GUEST_REQUEST": 0x80000012, "AP_CREATION": 0x80000013,
    "HV_FEATURES": 0x8000FFFD, "UNSUPPORTED_EVENT": 0x8000FFFF,
}

# SVM_EXIT_REASONS: what the kernel's tracepoints print.
SVM_EXIT_REASONS: dict[int, str] = {
    0x000: "read_cr0", 0x002: "read_cr2", 0x003: "read_cr3", 0x004: "read_cr4", 0x008: "read_cr8",
    0x010: "write_cr0", 0x012: "write_cr2", 0x013: "write_cr3", 0x014: "write_cr4", 0x018: "write_cr8",
    **{0x020 + i: f"read_dr{i}" for i in range(8)},
    **{0x030 + i: f"write_dr{i}" for i in range(8)},
    0x040: "DE excp", 0x041: "DB excp", 0x043: "BP excp", 0x044: "OF excp", 0x045: "BR excp",
    0x046: "UD excp", 0x047: "NM excp", 0x048: "DF excp", 0x04A: "TS excp", 0x04B: "NP excp",
    0x04C: "SS excp", 0x04D: "GP excp", 0x04E: "PF excp", 0x050: "MF excp", 0x051: "AC excp",
    0x052: "MC excp", 0x053: "XF excp",
    0x060: "interrupt", 0x061: "nmi", 0x062: "smi", 0x063: "init", 0x064: "vintr",
    0x065: "cr0_sel_write", 0x066: "read_idtr", 0x067: "read_gdtr", 0x068: "read_ldtr",
    0x069: "read_rt", 0x06A: "write_idtr", 0x06B: "write_gdtr", 0x06C: "write_ldtr", 0x06D: "write_rt",
    0x06E: "rdtsc", 0x06F: "rdpmc", 0x070: "pushf", 0x071: "popf", 0x072: "cpuid", 0x073: "rsm",
    0x074: "iret", 0x075: "swint", 0x076: "invd", 0x077: "pause", 0x078: "hlt", 0x079: "invlpg",
    0x07A: "invlpga", 0x07B: "io", 0x07C: "msr", 0x07D: "task_switch", 0x07E: "ferr_freeze",
    0x07F: "shutdown", 0x080: "vmrun", 0x081: "hypercall", 0x082: "vmload", 0x083: "vmsave",
    0x084: "stgi", 0x085: "clgi", 0x086: "skinit", 0x087: "rdtscp", 0x088: "icebp", 0x089: "wbinvd",
    0x08A: "monitor", 0x08B: "mwait", 0x08D: "xsetbv", 0x08F: "write_efer_trap",
    0x090: "write_cr0_trap", 0x094: "write_cr4_trap", 0x098: "write_cr8_trap", 0x0A2: "invpcid",
    0x0A5: "buslock", 0x0A6: "idle-halt", 0x400: "npf", 0x401: "avic_incomplete_ipi",
    0x402: "avic_unaccelerated_access", 0x403: "vmgexit",
    0x80000001: "vmgexit_mmio_read", 0x80000002: "vmgexit_mmio_write",
    0x80000003: "vmgexit_nmi_complete", 0x80000004: "vmgexit_ap_hlt_loop",
    0x80000005: "vmgexit_ap_jump_table", 0x80000010: "vmgexit_page_state_change",
    0x80000011: "vmgexit_guest_request", 0x80000012: "vmgexit_ext_guest_request",
    0x80000013: "vmgexit_ap_creation", 0x8000FFFD: "vmgexit_hypervisor_feature",
    0xFFFFFFFF: "invalid_guest_state",
}

# Codes the replay and the generator reason about, by their header names.
SVM_EXIT_READ_CR0 = 0x000
SVM_EXIT_WRITE_CR0 = 0x010
SVM_EXIT_WRITE_CR3 = 0x013
SVM_EXIT_WRITE_CR4 = 0x014
SVM_EXIT_WRITE_CR8 = 0x018
SVM_EXIT_EXCP_BASE = 0x040
SVM_EXIT_LAST_EXCP = 0x05F
SVM_EXIT_INTR = 0x060
SVM_EXIT_NMI = 0x061
SVM_EXIT_SMI = 0x062
SVM_EXIT_INIT = 0x063
SVM_EXIT_VINTR = 0x064
SVM_EXIT_CR0_SEL_WRITE = 0x065
SVM_EXIT_IDTR_READ = 0x066
SVM_EXIT_GDTR_READ = 0x067
SVM_EXIT_LDTR_READ = 0x068
SVM_EXIT_TR_READ = 0x069
SVM_EXIT_IDTR_WRITE = 0x06A
SVM_EXIT_GDTR_WRITE = 0x06B
SVM_EXIT_LDTR_WRITE = 0x06C
SVM_EXIT_TR_WRITE = 0x06D
SVM_EXIT_RDTSC = 0x06E
SVM_EXIT_RDPMC = 0x06F
SVM_EXIT_PUSHF = 0x070
SVM_EXIT_POPF = 0x071
SVM_EXIT_CPUID = 0x072
SVM_EXIT_RSM = 0x073
SVM_EXIT_IRET = 0x074
SVM_EXIT_SWINT = 0x075
SVM_EXIT_INVD = 0x076
SVM_EXIT_PAUSE = 0x077
SVM_EXIT_HLT = 0x078
SVM_EXIT_INVLPG = 0x079
SVM_EXIT_INVLPGA = 0x07A
SVM_EXIT_IOIO = 0x07B
SVM_EXIT_MSR = 0x07C
SVM_EXIT_TASK_SWITCH = 0x07D
SVM_EXIT_FERR_FREEZE = 0x07E
SVM_EXIT_SHUTDOWN = 0x07F
SVM_EXIT_VMRUN = 0x080
SVM_EXIT_VMMCALL = 0x081
SVM_EXIT_VMLOAD = 0x082
SVM_EXIT_VMSAVE = 0x083
SVM_EXIT_STGI = 0x084
SVM_EXIT_CLGI = 0x085
SVM_EXIT_SKINIT = 0x086
SVM_EXIT_RDTSCP = 0x087
SVM_EXIT_ICEBP = 0x088
SVM_EXIT_WBINVD = 0x089
SVM_EXIT_MONITOR = 0x08A
SVM_EXIT_MWAIT = 0x08B
SVM_EXIT_MWAIT_COND = 0x08C
SVM_EXIT_XSETBV = 0x08D
SVM_EXIT_RDPRU = 0x08E
SVM_EXIT_EFER_WRITE_TRAP = 0x08F
SVM_EXIT_CR0_WRITE_TRAP = 0x090
SVM_EXIT_CR4_WRITE_TRAP = 0x094
SVM_EXIT_CR8_WRITE_TRAP = 0x098
SVM_EXIT_INVPCID = 0x0A2
SVM_EXIT_BUS_LOCK = 0x0A5
SVM_EXIT_IDLE_HLT = 0x0A6
SVM_EXIT_NPF = 0x400
SVM_EXIT_AVIC_INCOMPLETE_IPI = 0x401
SVM_EXIT_AVIC_UNACCELERATED_ACCESS = 0x402
SVM_EXIT_VMGEXIT = 0x403
SVM_EXIT_ERR = 0xFFFFFFFF
# Older spellings kept for callers.
SVM_EXIT_READ_LDTR = SVM_EXIT_LDTR_READ
SVM_EXIT_READ_TR = SVM_EXIT_TR_READ
SVM_EXIT_WRITE_LDTR = SVM_EXIT_LDTR_WRITE
SVM_EXIT_WRITE_TR = SVM_EXIT_TR_WRITE

# Exits that are L1 hypervisor instructions intercepted by L0 (nested SVM).
SVM_NESTED_INSTRUCTION_EXITS = (SVM_EXIT_VMRUN, SVM_EXIT_VMMCALL, SVM_EXIT_VMLOAD, SVM_EXIT_VMSAVE,
                                SVM_EXIT_STGI, SVM_EXIT_CLGI, SVM_EXIT_SKINIT, SVM_EXIT_INVLPGA)

# --- VMX (vmx.h) --------------------------------------------------------------------------------
# VMX_EXIT_REASONS: the printed names equal the header's EXIT_REASON_<name> macros.
VMX_EXIT_REASONS: dict[int, str] = {
    0: "EXCEPTION_NMI", 1: "EXTERNAL_INTERRUPT", 2: "TRIPLE_FAULT", 3: "INIT_SIGNAL", 4: "SIPI_SIGNAL",
    7: "INTERRUPT_WINDOW", 8: "NMI_WINDOW", 9: "TASK_SWITCH", 10: "CPUID", 12: "HLT", 13: "INVD",
    14: "INVLPG", 15: "RDPMC", 16: "RDTSC", 18: "VMCALL", 19: "VMCLEAR", 20: "VMLAUNCH", 21: "VMPTRLD",
    22: "VMPTRST", 23: "VMREAD", 24: "VMRESUME", 25: "VMWRITE", 26: "VMOFF", 27: "VMON", 28: "CR_ACCESS",
    29: "DR_ACCESS", 30: "IO_INSTRUCTION", 31: "MSR_READ", 32: "MSR_WRITE", 33: "INVALID_STATE",
    34: "MSR_LOAD_FAIL", 36: "MWAIT_INSTRUCTION", 37: "MONITOR_TRAP_FLAG", 39: "MONITOR_INSTRUCTION",
    40: "PAUSE_INSTRUCTION", 41: "MCE_DURING_VMENTRY", 43: "TPR_BELOW_THRESHOLD", 44: "APIC_ACCESS",
    45: "EOI_INDUCED", 46: "GDTR_IDTR", 47: "LDTR_TR", 48: "EPT_VIOLATION", 49: "EPT_MISCONFIG",
    50: "INVEPT", 51: "RDTSCP", 52: "PREEMPTION_TIMER", 53: "INVVPID", 54: "WBINVD", 55: "XSETBV",
    56: "APIC_WRITE", 57: "RDRAND", 58: "INVPCID", 59: "VMFUNC", 60: "ENCLS", 61: "RDSEED", 62: "PML_FULL",
    63: "XSAVES", 64: "XRSTORS", 67: "UMWAIT", 68: "TPAUSE", 74: "BUS_LOCK", 75: "NOTIFY", 77: "TDCALL",
    84: "MSR_READ_IMM", 85: "MSR_WRITE_IMM",
}
# Names printed for a code by older kernels or by trace-cmd's kvm plugin, besides the above.
VMX_ALIASES: dict[str, int] = {"PENDING_INTERRUPT": 7}

VMX_EXIT_EXCEPTION_NMI = 0
VMX_EXIT_EXTERNAL_INTERRUPT = 1
VMX_EXIT_TRIPLE_FAULT = 2
VMX_EXIT_INTERRUPT_WINDOW = 7
VMX_EXIT_NMI_WINDOW = 8
VMX_EXIT_TASK_SWITCH = 9
VMX_EXIT_CPUID = 10
VMX_EXIT_HLT = 12
VMX_EXIT_INVLPG = 14
VMX_EXIT_RDTSC = 16
VMX_EXIT_VMCALL = 18
VMX_EXIT_VMLAUNCH = 20
VMX_EXIT_VMPTRLD = 21
VMX_EXIT_VMREAD = 23
VMX_EXIT_VMRESUME = 24
VMX_EXIT_VMWRITE = 25
VMX_EXIT_CR_ACCESS = 28
VMX_EXIT_DR_ACCESS = 29
VMX_EXIT_IO_INSTRUCTION = 30
VMX_EXIT_MSR_READ = 31
VMX_EXIT_MSR_WRITE = 32
VMX_EXIT_INVALID_STATE = 33
VMX_EXIT_MWAIT_INSTRUCTION = 36
VMX_EXIT_PAUSE_INSTRUCTION = 40
VMX_EXIT_TPR_BELOW_THRESHOLD = 43
VMX_EXIT_APIC_ACCESS = 44
VMX_EXIT_EOI_INDUCED = 45
VMX_EXIT_GDTR_IDTR = 46
VMX_EXIT_LDTR_TR = 47
VMX_EXIT_EPT_VIOLATION = 48
VMX_EXIT_EPT_MISCONFIG = 49
VMX_EXIT_RDTSCP = 51
VMX_EXIT_PREEMPTION_TIMER = 52
VMX_EXIT_WBINVD = 54
VMX_EXIT_XSETBV = 55
VMX_EXIT_APIC_WRITE = 56
VMX_EXIT_PML_FULL = 62
VMX_EXIT_UMWAIT = 67
VMX_EXIT_TPAUSE = 68
VMX_EXIT_BUS_LOCK = 74
VMX_EXIT_NOTIFY = 75
VMX_EXIT_TDCALL = 77
VMX_EXIT_MSR_READ_IMM = 84
VMX_EXIT_MSR_WRITE_IMM = 85

# --- KVM_EXIT_* (kvm.h) -------------------------------------------------------------------------
KVM_EXIT_REASONS: dict[int, str] = {
    0: "UNKNOWN", 1: "EXCEPTION", 2: "IO", 3: "HYPERCALL", 4: "DEBUG", 5: "HLT", 6: "MMIO",
    7: "IRQ_WINDOW_OPEN", 8: "SHUTDOWN", 9: "FAIL_ENTRY", 10: "INTR", 11: "SET_TPR", 12: "TPR_ACCESS",
    13: "S390_SIEIC", 14: "S390_RESET", 15: "DCR", 16: "NMI", 17: "INTERNAL_ERROR", 18: "OSI",
    19: "PAPR_HCALL", 20: "S390_UCONTROL", 21: "WATCHDOG", 22: "S390_TSCH", 23: "EPR", 24: "SYSTEM_EVENT",
    25: "S390_STSI", 26: "IOAPIC_EOI", 27: "HYPERV", 28: "ARM_NISV", 29: "X86_RDMSR", 30: "X86_WRMSR",
    31: "DIRTY_RING_FULL", 32: "AP_RESET_HOLD", 33: "X86_BUS_LOCK", 34: "XEN", 35: "RISCV_SBI",
    36: "RISCV_CSR", 37: "NOTIFY", 38: "LOONGARCH_IOCSR", 39: "MEMORY_FAULT", 40: "TDX",
}
# kvm_userspace_exit prints these codes by name; it prints the others as hex.
KVM_EXIT_TRACE_MAX = 30

KVM_EXIT_UNKNOWN = 0
KVM_EXIT_EXCEPTION = 1
KVM_EXIT_IO = 2
KVM_EXIT_HYPERCALL = 3
KVM_EXIT_DEBUG = 4
KVM_EXIT_HLT = 5
KVM_EXIT_MMIO = 6
KVM_EXIT_IRQ_WINDOW_OPEN = 7
KVM_EXIT_SHUTDOWN = 8
KVM_EXIT_FAIL_ENTRY = 9
KVM_EXIT_INTR = 10
KVM_EXIT_INTERNAL_ERROR = 17
KVM_EXIT_SYSTEM_EVENT = 24
KVM_EXIT_X86_RDMSR = 29
KVM_EXIT_X86_WRMSR = 30
KVM_EXIT_X86_BUS_LOCK = 33
KVM_EXIT_NOTIFY = 37
KVM_EXIT_MEMORY_FAULT = 39

# --- lookups ------------------------------------------------------------------------------------
_TABLES = {ISA_VMX: VMX_EXIT_REASONS, ISA_SVM: SVM_EXIT_REASONS}


def _by_name() -> dict[int, dict[str, int]]:
    vmx = {v: k for k, v in VMX_EXIT_REASONS.items()} | VMX_ALIASES
    svm = {v: k for k, v in SVM_EXIT_REASONS.items()}
    # trace-cmd's plugin prints the SVM header macro names.
    svm |= {"EXIT_" + k: v for k, v in SVM_EXIT_CODES.items()}
    return {ISA_VMX: vmx, ISA_SVM: svm}


_BY_NAME = _by_name()
_UNKNOWN_PLUGIN = re.compile(r"^UNKNOWN \((\d+)\)$")


def exit_reason_name(isa: int | None, code: int) -> str:
    """The name kvm_exit prints for a code; a code (or ISA) not in the tables as hex, never dropped.

    VMX flags in the upper bits follow the basic name after a space, as the kernel prints them:
    "EPT_VIOLATION FAILED_VMENTRY"; unknown flag bits as hex ("HLT 0x8000000").
    """
    code = int(code) & 0xFFFFFFFF
    if isa == ISA_VMX:
        basic = code & VMX_REASON_MASK
        name = VMX_EXIT_REASONS.get(basic, f"0x{basic:x}")
        rest = code & ~VMX_REASON_MASK
        if not rest:
            return name
        parts = []
        for bit, flag in VMX_EXIT_REASON_FLAGS.items():
            if rest & bit == bit:
                parts.append(flag)
                rest &= ~bit
        if rest:
            parts.append(f"0x{rest:x}")
        return name + " " + " ".join(parts)
    if isa == ISA_SVM:
        return SVM_EXIT_REASONS.get(code, f"0x{code:x}")
    return f"0x{code:x}"


def lookup_reason(name: str, isa: int | None = None) -> tuple[int | None, int] | None:
    """(isa, code) for a printed reason: the kernel's names, trace-cmd's plugin names, VMX flag
    suffixes, "UNKNOWN (<decimal>)" and hex. The ISA is the given one, or the table that knows the
    name (None for a bare number with no ISA given). None if the name is not a reason."""
    name = name.strip()
    if not name:
        return None
    m = _UNKNOWN_PLUGIN.match(name)
    if m:
        return isa, int(m[1]) & 0xFFFFFFFF
    isas = (isa,) if isa is not None else (ISA_VMX, ISA_SVM)
    for i in isas:
        code = _BY_NAME.get(i, {}).get(name)
        if code is not None:
            return i, code
    # VMX: "NAME FLAG [FLAG|0xHEX]..." (the kernel's kvm_print_exit_reason)
    if isa in (None, ISA_VMX) and " " in name:
        head, *flags = name.split(" ")
        base = _parse_number(head) if head.startswith("0x") else _BY_NAME[ISA_VMX].get(head)
        if base is not None:
            by_flag = {v: k for k, v in VMX_EXIT_REASON_FLAGS.items()}
            for f in flags:
                bit = by_flag.get(f, _parse_number(f) if f.startswith("0x") else None)
                if bit is None:
                    break
                base |= bit
            else:
                return ISA_VMX, base & 0xFFFFFFFF
    num = _parse_number(name)
    if num is not None:
        return isa, num & 0xFFFFFFFF
    return None


def _parse_number(text: str) -> int | None:
    try:
        return int(text, 16) if text.lower().startswith("0x") else int(text, 10)
    except ValueError:
        return None


def exit_reason_code(isa: int | None, name: str) -> int | None:
    """Inverse of `exit_reason_name` (also reads trace-cmd's plugin names, "UNKNOWN (n)", hex and
    decimal numbers); None if the name is not a reason of that ISA."""
    hit = lookup_reason(name, isa)
    return None if hit is None else hit[1]


def isa_of_reason(name: str) -> int | None:
    """The ISA whose tables print this name (None for numbers and unknown names)."""
    hit = lookup_reason(name)
    return None if hit is None else hit[0]


def guess_isa(names: Iterable[str]) -> int | None:
    """The ISA whose tables know the most of these printed reason names (None if neither knows any)."""
    hits = {ISA_VMX: 0, ISA_SVM: 0}
    for n in set(names):
        isa = isa_of_reason(n)
        if isa is not None:
            hits[isa] += 1
    best = max(hits, key=hits.__getitem__)
    return best if hits[best] else None


# --- vectorized ---------------------------------------------------------------------------------
def _to_numpy(values: Any) -> tuple[np.ndarray, np.ndarray]:
    """(int64 values with nulls as 0, null mask) of an Arrow/Polars/NumPy column or a scalar."""
    if isinstance(values, pl.Series):
        values = values.to_arrow()
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if isinstance(values, pa.Array):
        if pa.types.is_dictionary(values.type):
            values = values.dictionary_decode()
        mask = values.is_null().to_numpy(zero_copy_only=False)
        arr = values.fill_null(0).to_numpy(zero_copy_only=False)
        return np.asarray(arr).astype(np.int64, copy=False), np.asarray(mask, bool)
    arr = np.asarray(values)
    if arr.dtype == object:
        mask = np.array([v is None for v in arr.ravel()], bool).reshape(arr.shape)
        arr = np.where(mask, 0, arr).astype(np.int64)
        return arr, mask
    return arr.astype(np.int64, copy=False), np.zeros(arr.shape, bool)


def reason_names(isa: Any, code: Any) -> pa.Array:
    """Vectorized `exit_reason_name` over columns (Arrow, Polars, NumPy, or a scalar `isa`):
    one lookup per distinct (isa, code) pair, nulls where the code is null."""
    code_np, code_null = _to_numpy(code)
    if np.ndim(isa) == 0 and not isinstance(isa, pa.Array | pa.ChunkedArray | pl.Series):
        isa_np = np.full(code_np.shape, -1 if isa is None else int(isa), np.int64)
        isa_null = np.zeros(code_np.shape, bool)
    else:
        isa_np, isa_null = _to_numpy(isa)
    if code_np.size == 0:
        return pa.array([], pa.string())
    isa_np = np.where(isa_null, -1, isa_np)
    pairs = np.stack([isa_np, code_np & 0xFFFFFFFF], axis=1)
    uniq, inv = np.unique(pairs, axis=0, return_inverse=True)
    names = [exit_reason_name(int(i) if i >= 0 else None, int(c)) for i, c in uniq]
    out = pa.DictionaryArray.from_arrays(pa.array(inv.reshape(-1).astype(np.int32)), pa.array(names))
    out = out.cast(pa.string())
    if code_null.any():
        out = pc.if_else(pa.array(code_null), pa.scalar(None, pa.string()), out)
    return out


def reason_names_expr(isa: str | pl.Expr, code: str | pl.Expr) -> pl.Expr:
    """Polars expression: the printed exit-reason name of columns `isa` and `code`."""
    isa_e = pl.col(isa) if isinstance(isa, str) else isa
    code_e = pl.col(code) if isinstance(code, str) else code

    def _names(s: pl.Series) -> pl.Series:
        parts = s.struct.unnest()
        return pl.Series(s.name, reason_names(parts[:, 0], parts[:, 1]), dtype=pl.String)

    return pl.struct(isa_e.alias("isa"), code_e.alias("code")).map_batches(
        _names, return_dtype=pl.String).alias("reason_name")


def lookup_reasons(names: pl.Series, isa: int | None = None) -> pl.DataFrame:
    """Vectorized `lookup_reason`: columns `isa` and `exit_reason` (UInt32, null where the name is
    not a reason or the ISA is unknown), one lookup per distinct name."""
    uniq = names.unique().drop_nulls().to_list()
    isa_map: dict[str, int | None] = {}
    code_map: dict[str, int | None] = {}
    for n in uniq:
        hit = lookup_reason(n, isa)
        isa_map[n], code_map[n] = (hit if hit is not None else (None, None))
    return pl.DataFrame({
        "isa": names.replace_strict(isa_map, default=None, return_dtype=pl.UInt32),
        "exit_reason": names.replace_strict(code_map, default=None, return_dtype=pl.UInt32),
    })


# --- userspace exits ----------------------------------------------------------------------------
def userspace_exit_name(reason: int) -> str:
    """KVM_EXIT_<NAME> of a kvm_run exit reason; an unknown code as hex."""
    name = KVM_EXIT_REASONS.get(int(reason))
    return "KVM_EXIT_" + name if name is not None else f"0x{int(reason):x}"


_USERSPACE_BY_NAME = {v: k for k, v in KVM_EXIT_REASONS.items()}


def userspace_exit_code(name: str) -> int | None:
    """Inverse of `userspace_exit_name` (with or without the KVM_EXIT_ prefix, or a number)."""
    name = name.strip()
    short = name.removeprefix("KVM_EXIT_")
    code = _USERSPACE_BY_NAME.get(short)
    return code if code is not None else _parse_number(name)
