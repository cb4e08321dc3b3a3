"""Exit-reason tables: SVM, VMX and KVM_EXIT_* (the one place these facts live).

Names are the ones the kernel's own tracepoints print (arch/x86/kvm/trace.h uses
SVM_EXIT_REASONS from arch/x86/include/uapi/asm/svm.h and VMX_EXIT_REASONS from
arch/x86/include/uapi/asm/vmx.h; kvm_userspace_exit prints KVM_EXIT_* from
include/uapi/linux/kvm.h), as of Linux 6.18. Codes not in a table are kept as numbers, never
dropped: `exit_reason_name` renders them as hex.
"""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pyarrow as pa

# kvm_exit's `isa` field (arch/x86/kvm/trace.h KVM_ISA_VMX / KVM_ISA_SVM).
ISA_VMX = 1
ISA_SVM = 2
ISA_NAMES = {ISA_VMX: "vmx", ISA_SVM: "svm"}

# VMX basic exit reason is the low 16 bits; bit 31 marks a failed VM entry.
VMX_REASON_MASK = 0xFFFF
VMX_FAILED_VMENTRY = 0x80000000

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

SVM_EXIT_REASONS: dict[int, str] = {
    0x000: "read_cr0", 0x002: "read_cr2", 0x003: "read_cr3", 0x004: "read_cr4", 0x008: "read_cr8",
    0x010: "write_cr0", 0x012: "write_cr2", 0x013: "write_cr3", 0x014: "write_cr4", 0x018: "write_cr8",
    0x020: "read_dr0", 0x021: "read_dr1", 0x022: "read_dr2", 0x023: "read_dr3", 0x024: "read_dr4",
    0x025: "read_dr5", 0x026: "read_dr6", 0x027: "read_dr7", 0x030: "write_dr0", 0x031: "write_dr1",
    0x032: "write_dr2", 0x033: "write_dr3", 0x034: "write_dr4", 0x035: "write_dr5", 0x036: "write_dr6",
    0x037: "write_dr7", 0x040: "DE excp", 0x041: "DB excp", 0x043: "BP excp", 0x044: "OF excp",
    0x045: "BR excp", 0x046: "UD excp", 0x047: "NM excp", 0x048: "DF excp", 0x04a: "TS excp",
    0x04b: "NP excp", 0x04c: "SS excp", 0x04d: "GP excp", 0x04e: "PF excp", 0x050: "MF excp",
    0x051: "AC excp", 0x052: "MC excp", 0x053: "XF excp", 0x060: "interrupt", 0x061: "nmi", 0x062: "smi",
    0x063: "init", 0x064: "vintr", 0x065: "cr0_sel_write", 0x066: "read_idtr", 0x067: "read_gdtr",
    0x068: "read_ldtr", 0x069: "read_rt", 0x06a: "write_idtr", 0x06b: "write_gdtr", 0x06c: "write_ldtr",
    0x06d: "write_rt", 0x06e: "rdtsc", 0x06f: "rdpmc", 0x070: "pushf", 0x071: "popf", 0x072: "cpuid",
    0x073: "rsm", 0x074: "iret", 0x075: "swint", 0x076: "invd", 0x077: "pause", 0x078: "hlt",
    0x079: "invlpg", 0x07a: "invlpga", 0x07b: "io", 0x07c: "msr", 0x07d: "task_switch",
    0x07e: "ferr_freeze", 0x07f: "shutdown", 0x080: "vmrun", 0x081: "hypercall", 0x082: "vmload",
    0x083: "vmsave", 0x084: "stgi", 0x085: "clgi", 0x086: "skinit", 0x087: "rdtscp", 0x088: "icebp",
    0x089: "wbinvd", 0x08a: "monitor", 0x08b: "mwait", 0x08d: "xsetbv", 0x08f: "write_efer_trap",
    0x090: "write_cr0_trap", 0x094: "write_cr4_trap", 0x098: "write_cr8_trap", 0x0a2: "invpcid",
    0x0a5: "buslock", 0x0a6: "idle-halt", 0x400: "npf", 0x401: "avic_incomplete_ipi",
    0x402: "avic_unaccelerated_access", 0x403: "vmgexit", 0x80000001: "vmgexit_mmio_read",
    0x80000002: "vmgexit_mmio_write", 0x80000003: "vmgexit_nmi_complete", 0x80000004: "vmgexit_ap_hlt_loop",
    0x80000005: "vmgexit_ap_jump_table", 0x80000010: "vmgexit_page_state_change",
    0x80000011: "vmgexit_guest_request", 0x80000012: "vmgexit_ext_guest_request",
    0x80000013: "vmgexit_ap_creation", 0x8000fffd: "vmgexit_hypervisor_feature", 0xffffffff: "invalid_guest_state",
}

KVM_EXIT_REASONS: dict[int, str] = {
    0: "UNKNOWN", 1: "EXCEPTION", 2: "IO", 3: "HYPERCALL", 4: "DEBUG", 5: "HLT", 6: "MMIO",
    7: "IRQ_WINDOW_OPEN", 8: "SHUTDOWN", 9: "FAIL_ENTRY", 10: "INTR", 11: "SET_TPR", 12: "TPR_ACCESS",
    13: "S390_SIEIC", 14: "S390_RESET", 15: "DCR", 16: "NMI", 17: "INTERNAL_ERROR", 18: "OSI",
    19: "PAPR_HCALL", 20: "S390_UCONTROL", 21: "WATCHDOG", 22: "S390_TSCH", 23: "EPR", 24: "SYSTEM_EVENT",
    25: "S390_STSI", 26: "IOAPIC_EOI", 27: "HYPERV", 28: "ARM_NISV", 29: "X86_RDMSR", 30: "X86_WRMSR",
}

# Codes the replay reasons about (same sources).
SVM_EXIT_READ_LDTR = 0x068
SVM_EXIT_READ_TR = 0x069
SVM_EXIT_WRITE_LDTR = 0x06C
SVM_EXIT_WRITE_TR = 0x06D
SVM_EXIT_SMI = 0x062
SVM_EXIT_NMI = 0x061
SVM_EXIT_INTR = 0x060
SVM_EXIT_HLT = 0x078
SVM_EXIT_IOIO = 0x07B
SVM_EXIT_MSR = 0x07C
SVM_EXIT_TASK_SWITCH = 0x07D
SVM_EXIT_VMRUN = 0x080
SVM_EXIT_VMMCALL = 0x081
SVM_EXIT_VMLOAD = 0x082
SVM_EXIT_VMSAVE = 0x083
SVM_EXIT_STGI = 0x084
SVM_EXIT_CLGI = 0x085
SVM_EXIT_NPF = 0x400
SVM_EXIT_ERR = 0xFFFFFFFF

VMX_EXIT_EXCEPTION_NMI = 0
VMX_EXIT_EXTERNAL_INTERRUPT = 1
VMX_EXIT_TASK_SWITCH = 9
VMX_EXIT_HLT = 12
VMX_EXIT_IO_INSTRUCTION = 30
VMX_EXIT_MSR_READ = 31
VMX_EXIT_MSR_WRITE = 32
VMX_EXIT_GDTR_IDTR = 46
VMX_EXIT_LDTR_TR = 47
VMX_EXIT_EPT_VIOLATION = 48
VMX_EXIT_EPT_MISCONFIG = 49
VMX_EXIT_MSR_READ_IMM = 84
VMX_EXIT_MSR_WRITE_IMM = 85

KVM_EXIT_IO = 2
KVM_EXIT_HLT = 5
KVM_EXIT_MMIO = 6

_TABLES = {ISA_VMX: VMX_EXIT_REASONS, ISA_SVM: SVM_EXIT_REASONS}
_BY_NAME = {isa: {v: k for k, v in t.items()} for isa, t in _TABLES.items()}


def _basic(isa: int, code: int) -> int:
    return code & VMX_REASON_MASK if isa == ISA_VMX else code


def exit_reason_name(isa: int, code: int) -> str:
    """The kernel's name of an exit reason; unknown codes (and ISAs) as hex, never dropped."""
    table = _TABLES.get(isa)
    name = table.get(_basic(isa, code)) if table else None
    if name is None:
        return f"0x{code:x}"
    if isa == ISA_VMX and code & VMX_FAILED_VMENTRY:
        return name + " FAILED_VMENTRY"
    return name


def exit_reason_code(isa: int, name: str) -> int | None:
    """Inverse of exit_reason_name (also accepts hex/decimal numbers); None if unknown."""
    name = name.strip()
    failed = name.endswith(" FAILED_VMENTRY")
    if failed:
        name = name[: -len(" FAILED_VMENTRY")]
    code = _BY_NAME.get(isa, {}).get(name)
    if code is None:
        try:
            code = int(name, 0)
        except ValueError:
            return None
    return code | (VMX_FAILED_VMENTRY if failed else 0)


def guess_isa(names: Iterable[str]) -> int | None:
    """The ISA whose table knows the most of these printed reason names (VMX prints upper case)."""
    names = set(names)
    hits = {isa: len(names & set(t)) for isa, t in _BY_NAME.items()}
    best = max(hits, key=hits.get)
    return best if hits[best] else None


def reason_names(isa: pa.Array | np.ndarray, code: pa.Array | np.ndarray) -> pa.Array:
    """Vectorized exit_reason_name: one dictionary lookup per distinct (isa, code) pair."""
    isa_np = np.asarray(isa.to_numpy(zero_copy_only=False) if isinstance(isa, pa.Array | pa.ChunkedArray)
                        else isa, dtype=np.int64)
    code_np = np.asarray(code.to_numpy(zero_copy_only=False) if isinstance(code, pa.Array | pa.ChunkedArray)
                         else code, dtype=np.int64)
    if code_np.size == 0:
        return pa.array([], pa.string())
    pairs = np.stack([isa_np, code_np], axis=1)
    uniq, inv = np.unique(pairs, axis=0, return_inverse=True)
    names = [exit_reason_name(int(i), int(c)) for i, c in uniq]
    return pa.DictionaryArray.from_arrays(pa.array(inv.reshape(-1).astype(np.int32)),
                                          pa.array(names)).cast(pa.string())


def userspace_exit_name(reason: int) -> str:
    return "KVM_EXIT_" + KVM_EXIT_REASONS[reason] if reason in KVM_EXIT_REASONS else str(reason)


def userspace_exit_code(name: str) -> int | None:
    name = name.strip()
    short = name[len("KVM_EXIT_"):] if name.startswith("KVM_EXIT_") else name
    for k, v in KVM_EXIT_REASONS.items():
        if v == short:
            return k
    try:
        return int(name, 0)
    except ValueError:
        return None
