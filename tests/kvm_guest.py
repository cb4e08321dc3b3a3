"""A tiny KVM guest on /dev/kvm, for recording real KVM events: `python3 tests/kvm_guest.py --loops 300`.

Each VM is one vCPU in real mode running five bytes at 0x1000:

    out dx, al      ; EE        exits to userspace (KVM_EXIT_IO) every time
    dec cx          ; 49
    jnz -4          ; 75 FC     back to the out
    hlt             ; F4        KVM_EXIT_HLT (no in-kernel irqchip), the run ends

with cx = loops and dx = the port, so a run makes exactly `loops` KVM_EXIT_IO exits and one
KVM_EXIT_HLT per VM. The ioctl numbers and structures are those of include/uapi/linux/kvm.h
(x86-64): the _IO/_IOW/_IOR encodings are written out below. `--vms N` runs N VMs at once, one
thread each (fcntl.ioctl drops the GIL around the KVM_RUN ioctl), so the events land on several
CPUs. It prints one line per VM with its exit counts, the numbers a recording must contain.

Needs read/write access to /dev/kvm; nothing else (no QEMU, no compiler).
"""
from __future__ import annotations

import argparse
import ctypes
import fcntl
import mmap
import os
import struct
import sys
import threading

KVMIO = 0xAE
_IOC_WRITE, _IOC_READ = 1, 2


def _io(nr: int) -> int:
    return (KVMIO << 8) | nr


def _ioc(direction: int, nr: int, size: int) -> int:
    return (direction << 30) | (size << 16) | (KVMIO << 8) | nr


KVM_API_VERSION = 12
REGS_SIZE = 144   # struct kvm_regs: 18 u64 (rax..r15, rip, rflags)
SREGS_SIZE = 312  # struct kvm_sregs: 8 segments, gdt, idt, 7 control words, interrupt bitmap
KVM_GET_API_VERSION = _io(0x00)
KVM_CREATE_VM = _io(0x01)
KVM_GET_VCPU_MMAP_SIZE = _io(0x04)
KVM_CREATE_VCPU = _io(0x41)
KVM_SET_USER_MEMORY_REGION = _ioc(_IOC_WRITE, 0x46, 32)
KVM_RUN = _io(0x80)
KVM_GET_REGS = _ioc(_IOC_READ, 0x81, REGS_SIZE)
KVM_SET_REGS = _ioc(_IOC_WRITE, 0x82, REGS_SIZE)
KVM_GET_SREGS = _ioc(_IOC_READ, 0x83, SREGS_SIZE)
KVM_SET_SREGS = _ioc(_IOC_WRITE, 0x84, SREGS_SIZE)

# struct kvm_run: exit_reason at offset 8; the exit union at 32 (io: direction u8, size u8, port u16,
# count u32, data_offset u64).
KVM_EXIT_IO, KVM_EXIT_HLT = 2, 5
EXIT_NAMES = {0: "UNKNOWN", 1: "EXCEPTION", 2: "IO", 5: "HLT", 6: "MMIO", 8: "SHUTDOWN",
              9: "FAIL_ENTRY", 17: "INTERNAL_ERROR"}

MEM_SIZE = 0x10000
CODE_AT = 0x1000
CODE = bytes([0xEE, 0x49, 0x75, 0xFC, 0xF4])
SEGMENT = struct.Struct("<QIHBBBBBBBBBx")  # struct kvm_segment, 24 bytes
REGS = struct.Struct("<18Q")
RCX, RDX, RAX, RIP, RFLAGS = 2, 3, 0, 16, 17  # kvm_regs order: rax rbx rcx rdx rsi rdi rsp rbp r8..r15 rip rflags


class GuestError(RuntimeError):
    pass


def _ioctl(fd: int, request: int, arg=0):
    try:
        return fcntl.ioctl(fd, request, arg)
    except OSError as exc:
        raise GuestError(f"ioctl {request:#x}: {exc.strerror}") from None


class Guest:
    """One VM with one real-mode vCPU running CODE; run() returns the exit counts."""

    def __init__(self, kvm_fd: int, loops: int, port: int):
        if not 1 <= loops <= 0xFFFF:
            raise GuestError("--loops must be 1..65535 (the guest counts in 16-bit cx)")
        self.vm = _ioctl(kvm_fd, KVM_CREATE_VM, 0)
        self.mem = mmap.mmap(-1, MEM_SIZE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        self.mem[CODE_AT:CODE_AT + len(CODE)] = CODE
        self._mem_ref = ctypes.c_char.from_buffer(self.mem)
        region = struct.pack("<IIQQQ", 0, 0, 0, MEM_SIZE, ctypes.addressof(self._mem_ref))
        _ioctl(self.vm, KVM_SET_USER_MEMORY_REGION, region)
        self.vcpu = _ioctl(self.vm, KVM_CREATE_VCPU, 0)
        run_size = _ioctl(kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0)
        self.run_page = mmap.mmap(self.vcpu, run_size, flags=mmap.MAP_SHARED,
                                  prot=mmap.PROT_READ | mmap.PROT_WRITE)
        self._real_mode()
        regs = [0] * 18
        regs[RCX], regs[RDX], regs[RAX] = loops, port, ord("x")
        regs[RIP], regs[RFLAGS] = CODE_AT, 0x2  # bit 1 of RFLAGS is always set
        _ioctl(self.vcpu, KVM_SET_REGS, REGS.pack(*regs))

    def _real_mode(self) -> None:
        """Code and data segments at base 0, selector 0 (the reset state has CS at 0xf0000)."""
        sregs = bytearray(_ioctl(self.vcpu, KVM_GET_SREGS, bytes(SREGS_SIZE)))
        for i in (0, 1, 2, 3, 4, 5):  # cs ds es fs gs ss
            seg = list(SEGMENT.unpack_from(sregs, i * SEGMENT.size))
            seg[0], seg[2] = 0, 0
            SEGMENT.pack_into(sregs, i * SEGMENT.size, *seg)
        _ioctl(self.vcpu, KVM_SET_SREGS, bytes(sregs))

    def run(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        while True:
            _ioctl(self.vcpu, KVM_RUN, 0)
            reason = struct.unpack_from("<I", self.run_page, 8)[0]
            name = EXIT_NAMES.get(reason, str(reason))
            counts[name] = counts.get(name, 0) + 1
            if reason == KVM_EXIT_HLT:
                return counts
            if reason != KVM_EXIT_IO:
                rip = REGS.unpack(_ioctl(self.vcpu, KVM_GET_REGS, bytes(REGS_SIZE)))[RIP]
                raise GuestError(f"unexpected exit KVM_EXIT_{name} at rip {rip:#x}")

    def close(self) -> None:
        self.run_page.close()
        os.close(self.vcpu)
        os.close(self.vm)
        del self._mem_ref
        self.mem.close()


def run_vms(vms: int, loops: int, port: int) -> list[dict[str, int]]:
    """Run `vms` guests at once; each one's exit counts, or GuestError."""
    kvm = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
    try:
        api = _ioctl(kvm, KVM_GET_API_VERSION, 0)
        if api != KVM_API_VERSION:
            raise GuestError(f"/dev/kvm API version {api}, expected {KVM_API_VERSION}")
        guests = [Guest(kvm, loops, port) for _ in range(vms)]
        results: list[dict[str, int] | BaseException] = [{}] * vms

        def work(i: int) -> None:
            try:
                results[i] = guests[i].run()
            except BaseException as exc:  # noqa: BLE001 (re-raised in the main thread)
                results[i] = exc

        threads = [threading.Thread(target=work, args=(i,)) for i in range(vms)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for g in guests:
            g.close()
    finally:
        os.close(kvm)
    for r in results:
        if isinstance(r, BaseException):
            raise r
    return results  # type: ignore[return-value]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--loops", type=int, default=300, help="out instructions per VM (1..65535)")
    ap.add_argument("--vms", type=int, default=1, help="VMs run at once, one thread each")
    ap.add_argument("--port", type=lambda s: int(s, 0), default=0x3F8, help="I/O port (default 0x3f8)")
    a = ap.parse_args(argv)
    try:
        results = run_vms(a.vms, a.loops, a.port)
    except (GuestError, OSError) as exc:
        print(f"kvm_guest: {exc}", file=sys.stderr)
        return 1
    for i, counts in enumerate(results):
        print(f"vm{i}: " + " ".join(f"{k}={v}" for k, v in sorted(counts.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
