"""Which exit handlers touch the state a deferring policy leaves in the CPU (the one place for it).

Sources (Linux 6.x unless said otherwise; docs/policies.md tells the history):

- SVM TR/LDTR read/write intercepts (APM vol. 2, exit codes 0x068-0x06d) and VMX LDTR_TR (47):
  the handlers read or write the segment state VMLOAD/VMSAVE move.
- Task switches (`task_switch_interception()`, `handle_task_switch()`) read TR and write every
  segment; SMM entry (`enter_smm()`) saves and replaces the segments.
- Nested SVM: `vmload_vmsave_interception()` (svm.c) copies the 12 VMLOAD-managed fields between
  vmcb12 and vmcb01 with `svm_copy_vmloadsave_state()`: an emulated VMLOAD writes the deferred
  state, an emulated VMSAVE reads it. VMRUN emulation (`nested_svm_vmrun()`,
  `nested_vmcb02_prepare_save()`) and #VMEXIT emulation (`nested_svm_vmexit()`) copy only
  VMRUN-switched state (ES/CS/SS/DS, GDTR/IDTR, EFER, CRs, RFLAGS, RIP/RSP/RAX, DRs): KVM keeps
  L1's and L2's VMLOAD state in vmcb01 alone (commit cc3ed80ae69f, "always use vmcb01 for
  vmsave/vmload of guest state"), so they touch nothing deferred; neither do STGI/CLGI or an L2
  exit that L0 handles itself.
"""
from __future__ import annotations

from . import reasons

NESTED_SVM_REASONS = (reasons.SVM_EXIT_VMRUN, reasons.SVM_EXIT_VMLOAD, reasons.SVM_EXIT_VMSAVE,
                      reasons.SVM_EXIT_STGI, reasons.SVM_EXIT_CLGI)
# The nested exits whose emulation reads / writes L1's VMLOAD-managed state.
NESTED_READS = (reasons.SVM_EXIT_VMSAVE,)
NESTED_WRITES = (reasons.SVM_EXIT_VMLOAD,)
NESTED_VMLOAD_VMSAVE = (reasons.SVM_EXIT_VMLOAD, reasons.SVM_EXIT_VMSAVE)

SVM_SEGMENT_REASONS = (reasons.SVM_EXIT_READ_TR, reasons.SVM_EXIT_WRITE_TR, reasons.SVM_EXIT_READ_LDTR,
                       reasons.SVM_EXIT_WRITE_LDTR)
SVM_WRITE_SEGMENT = (reasons.SVM_EXIT_WRITE_TR, reasons.SVM_EXIT_WRITE_LDTR)
VMX_SEGMENT_REASONS = (reasons.VMX_EXIT_LDTR_TR,)
TASK_SWITCH = {reasons.ISA_SVM: reasons.SVM_EXIT_TASK_SWITCH, reasons.ISA_VMX: reasons.VMX_EXIT_TASK_SWITCH}
# MSR exits whose index is in kvm_msr (when recorded).
SVM_MSR_REASONS = (reasons.SVM_EXIT_MSR,)
VMX_MSR_REASONS = (reasons.VMX_EXIT_MSR_READ, reasons.VMX_EXIT_MSR_WRITE)
VMX_MSR_WRITE_REASONS = (reasons.VMX_EXIT_MSR_WRITE, reasons.VMX_EXIT_MSR_WRITE_IMM)
