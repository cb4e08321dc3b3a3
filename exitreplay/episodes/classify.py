"""Step 4, classification: each episode's class, reason id, and the exit facts the replay asks about."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..kvm import handlers, reasons
from .locate import codes, column, unique
from .tasks import TASK_RUNNING_MASK

# Episode classes, in the order they take precedence. "moved": the entry is on another CPU but no
# sched_switch of the thread was recorded, so the put's cause is unknown.
CLASSES = ("nested", "userspace", "blocked", "preempted", "moved", "kernel")


def exit_isa(ex: pa.Table, warnings: list[str]) -> tuple[int | None, np.ndarray]:
    """(the trace's ISA, the ISA of each exit)."""
    vals = pc.unique(ex.column("isa")).drop_null().to_pylist() if "isa" in ex.column_names else []
    isa = int(vals[0]) if len(vals) == 1 else (None if not vals else int(max(vals)))
    if len(vals) > 1:
        warnings.append(f"kvm_exit events carry several ISAs {sorted(vals)}; using {isa}")
    if isa is None:
        warnings.append("kvm_exit events do not say their ISA; reason names unknown")
    per_exit = column(ex, "isa", np.int8) if "isa" in ex.column_names else np.full(ex.num_rows, isa or 0, np.int8)
    return isa, per_exit


def classes(isa: np.ndarray, code: np.ndarray, cols: dict, sched_state: np.ndarray, moved: np.ndarray
            ) -> dict[str, np.ndarray]:
    """The class flags of each episode and its class index into CLASSES."""
    userspace, sched_out = cols["n_userspace"] > 0, cols["n_sched_out"] > 0
    runnable = (sched_state & TASK_RUNNING_MASK) == 0
    nested = ((isa == reasons.ISA_SVM) & np.isin(code, handlers.NESTED_SVM_REASONS)) | (
        (cols["n_nested_vmexit"] | cols["n_nested_inject"] | cols["n_nested_vmenter"]) > 0)
    cls = np.select([nested, userspace, sched_out & ~runnable, sched_out & runnable, moved], [0, 1, 2, 3, 4], 5)
    return {"userspace": userspace, "sched_out": sched_out, "preempted": sched_out & runnable,
            "blocked": sched_out & ~runnable, "nested": nested, "cls": cls.astype(np.int8)}


def msr_write_exits(ex: pa.Table, isa: np.ndarray, code: np.ndarray) -> np.ndarray:
    """An MSR exit that writes: SVM says so in EXITINFO1 (1 = WRMSR, APM vol. 2), VMX in the reason."""
    out = (isa == reasons.ISA_VMX) & np.isin(code, handlers.VMX_MSR_WRITE_REASONS)
    svm_msr = np.flatnonzero((isa == reasons.ISA_SVM) & np.isin(code, handlers.SVM_MSR_REASONS))
    if svm_msr.size and "info1" in ex.column_names:
        out[svm_msr] = pc.equal(ex.column("info1").take(pa.array(svm_msr)), 1).to_numpy(zero_copy_only=False)
    return out


def reason_codes(isa: np.ndarray, code: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """A dense id per distinct (isa, exit_reason) pair and the kernel's name of each."""
    key = (isa.astype(np.int64) << 32) | code
    uniq = unique([key])
    names = reasons.reason_names(uniq >> 32, uniq & 0xFFFFFFFF).to_pylist()
    if uniq.size < 65535:
        return codes(uniq, key).astype(np.uint16) if uniq[-1] < 2**23 else \
            np.searchsorted(uniq, key).astype(np.uint16), names
    return np.searchsorted(uniq, key), names
