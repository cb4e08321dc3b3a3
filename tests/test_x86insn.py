"""The kvm_emulate_insn decoder against instructions whose encodings are written out by hand from
the Intel SDM vol. 2 / AMD APM vol. 3 opcode maps (an oracle independent of the decoder's tables)."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from exitreplay.kvm import x86insn

PROT64, PROT32, REAL = 9, 5, 0  # KVM_EMUL_INSN_F_*: PE|CS_L, PE|CS_D, none
R, W, RW, NONE = x86insn.READ, x86insn.WRITE, x86insn.READ | x86insn.WRITE, 0
CASES = [
    # bytes, mode, class, access
    ("89 02", PROT64, "other", NONE),                     # mov %eax,(%rdx)
    ("48 89 10", PROT64, "other", NONE),                  # mov %rdx,(%rax) (REX.W)
    ("8b 80 00 03 00 00", PROT64, "other", NONE),         # mov 0x300(%rax),%eax
    ("64 8b 00", PROT64, "fs_gs_prefix", R),              # mov %fs:(%rax),%eax
    ("65 48 8b 04 25 28 00 00 00", PROT64, "fs_gs_prefix", R),  # mov %gs:0x28,%rax
    ("f3 65 a4", PROT64, "fs_gs_prefix", R),              # rep movsb %gs:(%rsi),(%rdi)
    ("0f 01 f8", PROT64, "swapgs", RW),
    ("0f 00 c0", PROT64, "tr_ldtr", R),                   # sldt %eax
    ("0f 00 c8", PROT64, "tr_ldtr", R),                   # str %eax
    ("0f 00 d0", PROT64, "tr_ldtr", W),                   # lldt %ax
    ("0f 00 d8", PROT64, "tr_ldtr", W),                   # ltr %ax
    ("0f 01 10", PROT64, "dtr", NONE),                    # lgdt (%rax)
    ("0f 01 08", PROT64, "dtr", NONE),                    # sidt (%rax)
    ("8e e0", PROT64, "sreg", W),                         # mov %eax,%fs
    ("8e d8", PROT64, "sreg", R),                         # mov %eax,%ds (an LDT selector reads LDTR)
    ("8c e8", PROT64, "sreg", R),                         # mov %gs,%eax
    ("8c d8", PROT64, "other", NONE),                     # mov %ds,%eax (VMRUN-switched)
    ("0f a9", PROT64, "sreg", W),                         # pop %gs
    ("0f 05", PROT64, "syscall", R),
    ("0f 07", PROT64, "syscall", R),                      # sysret
    ("0f 34", PROT32, "syscall", R),                      # sysenter
    ("0f 30", PROT64, "msr", W),                          # wrmsr
    ("0f 32", PROT64, "msr", R),                          # rdmsr
    ("0f 01 da", PROT64, "svm", W),                       # vmload
    ("0f 01 db", PROT64, "svm", R),                       # vmsave
    ("cf", PROT64, "far", R),                             # iret
    ("ff 28", PROT64, "far", R),                          # ljmp *(%rax)
    ("ea 00 00 00 00 08 00", PROT32, "far", R),           # ljmp $0x8,$0x0
    ("c5 f8 77", PROT64, "other", NONE),                  # vzeroupper: VEX, not LDS, in 64-bit mode
    ("c5 00", PROT32, "far", R),                          # lds (%eax),%eax in 32-bit mode
    ("ee", REAL, "other", NONE),                          # out %al,(%dx)
    ("66", PROT64, "undecoded", R),                       # a prefix, no opcode
    ("0f 00", PROT64, "undecoded", R),                    # 0f 00 without its ModRM byte
    ("", PROT64, "undecoded", R),
]


@pytest.mark.parametrize("hexbytes,mode,cls,acc", CASES)
def test_decoded_class_and_access(hexbytes, mode, cls, acc):
    raw = bytes.fromhex(hexbytes)
    got_cls, got_acc = x86insn.decode(pa.array([list(raw.ljust(15, b"\xcc"))], pa.list_(pa.uint8())),
                                      np.array([len(raw)]), np.array([mode]))
    assert (x86insn.CLASSES[got_cls[0]], int(got_acc[0])) == (cls, acc)


def test_all_cases_at_once_and_binary_columns():
    # One vectorized call over every case gives the same answers as one at a time, for list and
    # binary columns alike; without flags, 64-bit mode is assumed.
    raws = [bytes.fromhex(c[0]) for c in CASES]
    want = [(c[2], c[3]) for c in CASES]
    for col in (pa.array([list(r) for r in raws], pa.list_(pa.uint8())), pa.array(raws, pa.binary())):
        cls, acc = x86insn.decode(col, None, np.array([c[1] for c in CASES]))
        assert [(x86insn.CLASSES[c], int(a)) for c, a in zip(cls, acc)] == want
    cls, _ = x86insn.decode(pa.array([b"\xc5\xf8\x77"]))
    assert x86insn.CLASSES[cls[0]] == "other"
