"""The CPU state the policies move, and the MSRs that name it (the one place these facts live).

Sources: AMD64 APM vol. 2, "VMLOAD"/"VMSAVE" (the state they load/save); Linux
arch/x86/include/asm/msr-index.h (indices); arch/x86/kvm/vmx/vmx.c `vmx_setup_uret_msrs` (the VMX
user-return set); docs/policies.md tells the history.
"""
from __future__ import annotations

MSR_EFER = 0xC0000080
MSR_STAR = 0xC0000081
MSR_LSTAR = 0xC0000082
MSR_CSTAR = 0xC0000083
MSR_SYSCALL_MASK = 0xC0000084  # SFMASK
MSR_FS_BASE = 0xC0000100
MSR_GS_BASE = 0xC0000101
MSR_KERNEL_GS_BASE = 0xC0000102
MSR_TSC_AUX = 0xC0000103
MSR_IA32_SYSENTER_CS = 0x174
MSR_IA32_SYSENTER_ESP = 0x175
MSR_IA32_SYSENTER_EIP = 0x176
MSR_IA32_TSX_CTRL = 0x122

MSR_NAMES = {
    MSR_EFER: "EFER", MSR_STAR: "STAR", MSR_LSTAR: "LSTAR", MSR_CSTAR: "CSTAR",
    MSR_SYSCALL_MASK: "SFMASK", MSR_FS_BASE: "FS_BASE", MSR_GS_BASE: "GS_BASE",
    MSR_KERNEL_GS_BASE: "KernelGSBase", MSR_TSC_AUX: "TSC_AUX", MSR_IA32_SYSENTER_CS: "SYSENTER_CS",
    MSR_IA32_SYSENTER_ESP: "SYSENTER_ESP", MSR_IA32_SYSENTER_EIP: "SYSENTER_EIP",
    MSR_IA32_TSX_CTRL: "TSX_CTRL",
}

# Registers VMLOAD/VMSAVE move besides VMRUN's own state (APM vol. 2, VMLOAD): FS, GS, TR, LDTR
# with hidden parts, KernelGSBase, STAR, LSTAR, CSTAR, SFMASK, SYSENTER_CS/ESP/EIP.
VMLOAD_SEGMENTS = ("FS", "GS", "TR", "LDTR")
VMLOAD_MSRS = frozenset({
    MSR_KERNEL_GS_BASE, MSR_STAR, MSR_LSTAR, MSR_CSTAR, MSR_SYSCALL_MASK,
    MSR_IA32_SYSENTER_CS, MSR_IA32_SYSENTER_ESP, MSR_IA32_SYSENTER_EIP,
})
# An MSR access to FS/GS base reads the hidden part of a VMLOAD-managed segment.
VMLOAD_SEGMENT_BASE_MSRS = frozenset({MSR_FS_BASE, MSR_GS_BASE})
# What a deferring SVM policy must sync before a handler may touch it.
SVM_LAZY_MSRS = VMLOAD_MSRS | VMLOAD_SEGMENT_BASE_MSRS

# VMX user-return MSRs (vmx_setup_uret_msrs): STAR, LSTAR and SFMASK for 64-bit guests with
# EFER.SCE, EFER when it cannot be switched by the VMCS, TSC_AUX, TSX_CTRL. CSTAR is never loaded.
VMX_URET_MSRS = frozenset({MSR_STAR, MSR_LSTAR, MSR_SYSCALL_MASK, MSR_EFER, MSR_TSC_AUX, MSR_IA32_TSX_CTRL})
# KERNEL_GS_BASE is switched by hand at vcpu_load/put (vmx_prepare_switch_to_guest/host); while the
# guest value is live, KVM reads it with RDMSR (vmx_read_guest_kernel_gs_base).
VMX_LAZY_MSRS = VMX_URET_MSRS | {MSR_KERNEL_GS_BASE}
KERNEL_GS_BASE_ONLY = frozenset({MSR_KERNEL_GS_BASE})
# Before the shared-MSR rework (26bb0981b3ff, 2.6.32), vmx_save_host_state()/vmx_load_host_state()
# switched these for a 64-bit guest (setup_msrs(): STAR only with EFER.SCE; EFER only when it
# differs beyond NX/SCE/LMA/LME, which it does not for a Linux guest on a Linux host).
VMX_2008_SWITCHED_MSRS = frozenset({MSR_SYSCALL_MASK, MSR_LSTAR, MSR_CSTAR, MSR_KERNEL_GS_BASE, MSR_STAR})

# Lazy-state MSR sets a policy can name, with the episode-column suffix each is counted under.
LAZY_MSR_SETS = {"svm": SVM_LAZY_MSRS, "vmx": VMX_LAZY_MSRS, "vmx-2008": VMX_2008_SWITCHED_MSRS,
                 "kernel-gs-base": KERNEL_GS_BASE_ONLY, "none": frozenset()}
LAZY_MSR_COLUMN = {"svm": "svm", "vmx": "vmx", "vmx-2008": "vmx2008", "kernel-gs-base": "kgs"}


def msr_name(index: int) -> str:
    return MSR_NAMES.get(index, f"0x{index:x}")


# The names the event views print for MSRs (Linux arch/x86/include/asm/msr-index.h, without the
# MSR_ / MSR_IA32_ prefixes, as perf and kvm_stat users read them), the MSRs guests commonly
# exit for included; the x2APIC registers (0x800 + APIC register offset / 16) from the Intel SDM
# vol. 3A, "x2APIC Register Address Space". An index not listed prints as hex.
MSR_LABELS = {
    0x10: "TSC", 0x1B: "APICBASE", 0x3A: "FEAT_CTL", 0x3B: "TSC_ADJUST", 0x48: "SPEC_CTRL", 0x49: "PRED_CMD",
    0x8B: "UCODE_REV", 0x9E: "SMBASE", 0xC1: "PERFCTR0", 0xC2: "PERFCTR1", 0xCE: "PLATFORM_INFO",
    0xE1: "UMWAIT_CONTROL", 0xE7: "MPERF", 0xE8: "APERF", 0xFE: "MTRRcap", 0x10A: "ARCH_CAPABILITIES",
    0x10B: "FLUSH_CMD", MSR_IA32_TSX_CTRL: "TSX_CTRL", MSR_IA32_SYSENTER_CS: "SYSENTER_CS",
    MSR_IA32_SYSENTER_ESP: "SYSENTER_ESP", MSR_IA32_SYSENTER_EIP: "SYSENTER_EIP", 0x179: "MCG_CAP",
    0x17A: "MCG_STATUS", 0x186: "EVNTSEL0", 0x187: "EVNTSEL1", 0x198: "PERF_STATUS", 0x199: "PERF_CTL",
    0x1A0: "MISC_ENABLE", 0x1B0: "ENERGY_PERF_BIAS", 0x1D9: "DEBUGCTLMSR", 0x1FC: "POWER_CTL",
    0x277: "CR_PAT", 0x2FF: "MTRRdefType", 0x38D: "CORE_PERF_FIXED_CTR_CTRL", 0x38E: "CORE_PERF_GLOBAL_STATUS",
    0x38F: "CORE_PERF_GLOBAL_CTRL", 0x390: "CORE_PERF_GLOBAL_OVF_CTRL", 0x6E0: "TSC_DEADLINE",
    0x802: "X2APIC_ID", 0x803: "X2APIC_VERSION", 0x808: "X2APIC_TPR", 0x80B: "X2APIC_EOI",
    0x80D: "X2APIC_LDR", 0x80F: "X2APIC_SPIV", 0x828: "X2APIC_ESR", 0x830: "X2APIC_ICR",
    0x832: "X2APIC_LVTT", 0x838: "X2APIC_TMICT", 0x839: "X2APIC_TMCCT", 0x83E: "X2APIC_TDCR",
    0x83F: "X2APIC_SELF_IPI", 0xD90: "BNDCFGS", 0xDA0: "XSS",
    0x4B564D00: "KVM_WALL_CLOCK_NEW", 0x4B564D01: "KVM_SYSTEM_TIME_NEW", 0x4B564D02: "KVM_ASYNC_PF_EN",
    0x4B564D03: "KVM_STEAL_TIME", 0x4B564D04: "KVM_PV_EOI_EN", 0x4B564D05: "KVM_POLL_CONTROL",
    0x4B564D06: "KVM_ASYNC_PF_INT", 0x4B564D07: "KVM_ASYNC_PF_ACK", 0x11: "KVM_WALL_CLOCK",
    0x12: "KVM_SYSTEM_TIME",
    MSR_EFER: "EFER", MSR_STAR: "STAR", MSR_LSTAR: "LSTAR", MSR_CSTAR: "CSTAR", MSR_SYSCALL_MASK: "SYSCALL_MASK",
    MSR_FS_BASE: "FS_BASE", MSR_GS_BASE: "GS_BASE", MSR_KERNEL_GS_BASE: "KERNEL_GS_BASE", MSR_TSC_AUX: "TSC_AUX",
    0xC0000104: "AMD64_TSC_RATIO", 0xC0010015: "K7_HWCR", 0xC0010117: "VM_HSAVE_PA",
    0xC001011F: "AMD64_VIRT_SPEC_CTRL", 0xC0010114: "VM_CR",
}


def msr_label(index: int) -> str:
    """An MSR's name as the event views print it (hex where unnamed)."""
    return MSR_LABELS.get(int(index), f"0x{int(index):x}")
