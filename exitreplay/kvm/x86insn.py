"""Just enough x86 decoding of `kvm_emulate_insn` bytes to tell whether the emulated instruction
touches the state VMLOAD/VMSAVE move (FS, GS, TR, LDTR with their hidden parts, KernelGSBase and
the SYSCALL/SYSENTER MSRs), vectorized over every event at once.

`kvm_emulate_insn` (arch/x86/kvm/trace.h) records `insn` (15 bytes fetched), `len` (how many the
decoder consumed) and `flags` (KVM_EMUL_INSN_F_*: CR0.PE, EFLAGS.VM, CS.D, CS.L, i.e. the mode).
Opcodes: Intel SDM vol. 2 / AMD APM vol. 3 opcode maps. What each class touches, and why:

| class | touches | why |
|---|---|---|
| FS/GS segment prefix (64h/65h) | read | the emulator adds the segment base (`seg_base()` -> `get_cached_segment_base`), which for FS/GS lives in the deferred state |
| SWAPGS (0F 01 F8) | read + write | swaps GS base and KernelGSBase |
| SLDT/STR (0F 00 /0, /1), VERR/VERW (/4, /5) | read | LDTR/TR, or a descriptor that may sit in the LDT |
| LLDT/LTR (0F 00 /2, /3) | write | load LDTR/TR |
| SGDT/SIDT/LGDT/LIDT (0F 01 /0-/3, memory forms) | none | GDTR and IDTR are switched by VMRUN itself (APM vol. 2, VMCB save area), not by VMLOAD |
| MOV Sreg, r/m (8E) | write for FS/GS, else read | loads the selector's hidden part; any selector with TI=1 is looked up through LDTR |
| MOV r/m, Sreg (8C) | read for FS/GS | FS/GS selectors are deferred state |
| PUSH FS/GS (0F A0/A8), POP FS/GS (0F A1/A9), LFS/LGS (0F B4/B5) | read / write / write | |
| LSS (0F B2), LAR/LSL (0F 02/03), far JMP/CALL/RET, IRET, INT n, POP ES/SS/DS, LDS/LES | read | descriptor loads that may go through the LDT |
| SYSCALL/SYSRET/SYSENTER/SYSEXIT (0F 05/07/34/35) | read | STAR/LSTAR/CSTAR/SFMASK or SYSENTER_CS/ESP/EIP |
| RDMSR/WRMSR (0F 32/30) | read / write | the index is in ECX, unknown here (kvm_msr has it when recorded) |
| VMSAVE/VMLOAD (0F 01 DB/DA) | read / write | nested: copies the deferred state |
| bytes that do not decode (no opcode within `len`) | read | conservative |
| anything else | none | memory operands through DS/ES/SS, registers, I/O |
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# arch/x86/kvm/trace.h
KVM_EMUL_INSN_F_CR0_PE = 1 << 0
KVM_EMUL_INSN_F_EFL_VM = 1 << 1
KVM_EMUL_INSN_F_CS_D = 1 << 2
KVM_EMUL_INSN_F_CS_L = 1 << 3
MAX_LEN = 15

READ, WRITE = 1, 2
# Class codes, in the order they are tested.
CLASSES = ("other", "undecoded", "swapgs", "tr_ldtr", "dtr", "sreg", "far", "syscall", "msr", "svm",
           "fs_gs_prefix")
_C = {name: i for i, name in enumerate(CLASSES)}
LEGACY_PREFIXES = np.array([0xF0, 0xF2, 0xF3, 0x2E, 0x36, 0x3E, 0x26, 0x64, 0x65, 0x66, 0x67], np.uint8)


def byte_matrix(insn: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(n x 18 uint8 matrix, zero-padded, of each event's bytes; how many bytes each has)."""
    arr = insn.combine_chunks() if isinstance(insn, pa.ChunkedArray) else insn
    n = len(arr)
    mat = np.zeros((n, MAX_LEN + 3), np.uint8)
    if n == 0:
        return mat, np.zeros(0, np.int64)
    if pa.types.is_binary(arr.type):
        arr = pc.fill_null(arr, b"")
        offsets = np.frombuffer(arr.buffers()[1], np.int32, n + 1, arr.offset * 4).astype(np.int64)
        values = np.frombuffer(arr.buffers()[2], np.uint8)
    else:
        arr = pc.fill_null(arr, pa.scalar([], arr.type)) if arr.null_count else arr
        offsets = np.asarray(arr.offsets.to_numpy(), np.int64)
        values = np.asarray(arr.values.to_numpy(zero_copy_only=False)).astype(np.uint8, copy=False)
    counts = np.minimum(np.diff(offsets), MAX_LEN)
    col = np.arange(MAX_LEN)
    take = col[None, :] < counts[:, None]
    mat[:, :MAX_LEN][take] = values[(offsets[:-1, None] + col[None, :])[take]]
    return mat, counts


def decode(insn: pa.ChunkedArray | pa.Array, length: np.ndarray | None = None,
           flags: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(class code per event, deferred-state access bits per event: READ | WRITE).

    `length`: the tracepoint's `len` (bytes consumed), else the bytes present. `flags`: its mode
    flags; without them (text formats that drop them) 64-bit mode is assumed.
    """
    mat, have = byte_matrix(insn)
    n = mat.shape[0]
    size = have if length is None else np.minimum(np.asarray(length, np.int64), have)
    long_mode = np.ones(n, bool) if flags is None else (
        (np.asarray(flags, np.int64) & (KVM_EMUL_INSN_F_CR0_PE | KVM_EMUL_INSN_F_CS_L))
        == (KVM_EMUL_INSN_F_CR0_PE | KVM_EMUL_INSN_F_CS_L))
    rows = np.arange(n)
    pos, seg = _skip_prefixes(mat, rows, size, long_mode)
    op0, op1, op2 = mat[rows, pos], mat[rows, pos + 1], mat[rows, pos + 2]
    two = op0 == 0x0F
    modrm = np.where(two, op2, op1)
    reg, mod = (modrm >> 3) & 7, modrm >> 6
    room = size - pos
    needs_modrm = (two & np.isin(op1, [0x00, 0x01, 0x02, 0x03, 0xB2, 0xB4, 0xB5])) | (
        ~two & np.isin(op0, [0x8C, 0x8E, 0xFF]))
    undecoded = (room < 1) | (two & (room < 2)) | (needs_modrm & (room < np.where(two, 3, 2)))
    cls, acc = _classify(two, op0, op1, modrm, reg, mod, long_mode)
    cls = np.where(undecoded, _C["undecoded"], np.where((cls == _C["other"]) & seg, _C["fs_gs_prefix"], cls))
    acc = np.where(undecoded, READ, acc | np.where(seg, READ, 0)).astype(np.uint8)
    return cls.astype(np.uint8), acc


def _skip_prefixes(mat: np.ndarray, rows: np.ndarray, size: np.ndarray, long_mode: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Position of each opcode after its legacy (and, in 64-bit mode, REX) prefixes; whether an
    FS or GS override is among them. One vectorized step per prefix byte, at most 15."""
    pos = np.zeros(rows.size, np.int64)
    seg = np.zeros(rows.size, bool)
    for _ in range(MAX_LEN):
        b = mat[rows, pos]
        pre = (np.isin(b, LEGACY_PREFIXES) | (long_mode & ((b & 0xF0) == 0x40))) & (pos < size)
        if not pre.any():
            break
        seg |= pre & ((b == 0x64) | (b == 0x65))
        pos += pre
    return pos, seg


def _classify(two, op0, op1, modrm, reg, mod, long_mode) -> tuple[np.ndarray, np.ndarray]:
    fs_gs = (reg == 4) | (reg == 5)
    legacy_only = ~long_mode  # these opcodes are VEX prefixes or invalid in 64-bit mode
    far = (np.isin(op0, [0xCA, 0xCB, 0xCC, 0xCD, 0xCE, 0xCF])
           | ((op0 == 0xFF) & ((reg == 3) | (reg == 5)) & (mod != 3))
           | (legacy_only & np.isin(op0, [0xEA, 0x9A, 0xC4, 0xC5, 0x07, 0x17, 0x1F])))
    rules = [  # (mask, class, access)
        (two & (op1 == 0x01) & (modrm == 0xF8), "swapgs", READ | WRITE),
        (two & (op1 == 0x01) & (modrm == 0xDB), "svm", READ),
        (two & (op1 == 0x01) & (modrm == 0xDA), "svm", WRITE),
        (two & (op1 == 0x00) & ((reg == 2) | (reg == 3)), "tr_ldtr", WRITE),
        (two & (op1 == 0x00) & (reg <= 5), "tr_ldtr", READ),
        (two & (op1 == 0x01) & (mod != 3) & (reg <= 3), "dtr", 0),
        (two & np.isin(op1, [0x05, 0x07, 0x34, 0x35]), "syscall", READ),
        (two & (op1 == 0x30), "msr", WRITE),
        (two & (op1 == 0x32), "msr", READ),
        (~two & (op0 == 0x8E) & fs_gs, "sreg", WRITE),
        (~two & (op0 == 0x8E), "sreg", READ),
        (~two & (op0 == 0x8C) & fs_gs, "sreg", READ),
        (two & np.isin(op1, [0xA1, 0xA9, 0xB4, 0xB5]), "sreg", WRITE),
        (two & np.isin(op1, [0xA0, 0xA8]), "sreg", READ),
        (two & np.isin(op1, [0xB2, 0x02, 0x03]), "far", READ),
        (~two & far, "far", READ),
    ]
    cls = np.select([m for m, _, _ in rules], [_C[c] for _, c, _ in rules], _C["other"])
    acc = np.select([m for m, _, _ in rules], [a for _, _, a in rules], 0)
    return cls, acc
