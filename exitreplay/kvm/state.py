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
