"""Printed event text -> the kernel's raw field names and values.

Text traces show each event through a print format: the kernel's `print fmt` (ftrace text,
`perf script`, `trace-cmd report -N`) or a libtraceevent plugin (`trace-cmd report`: kvm_exit,
kvm_entry, kvm_emulate_insn, kvm_nested_vmexit[_inject], sched_switch, sched_wakeup). To give the
same typed tables as trace.dat, the print formats are parsed back to raw fields here. Each form
below names where it comes from; the kernel's forms were checked against the `print fmt` of
Linux 6.18 and 4.19 as stored in real recordings (exitreplay/synth/templates), the plugin forms
against libtraceevent's plugins/plugin_kvm.c, plugin_sched_switch.c and trace-cmd 3.1.6's output.

`name=value` text (raw `-R` output, and print formats that are already `name=value`) needs no spec:
textcommon parses it generically.

A spec is (regex, converters): named groups are raw field names, each with a converter kind:
  "x" hex (with or without 0x)          "d" decimal            "s" string
  "reason" an exit-reason name (the ISA comes from the name, or from the rest of the trace)
  "uexit" a KVM_EXIT_* name             "kstate"/"pstate" sched_switch states (kernel / plugin letters)
  "bytes" hex bytes "0f 01 3c" -> list  "present" 1 if the group matched text, else 0
  "vmc" "b" (vmcb: SVM) or "s" (vmcs: VMX) -> isa
  "=WORD" 1 if the text is WORD else 0 (e.g. "=write" for "msr_write"/"msr_read")
  "@TABLE" a symbol of SYMBOLS[TABLE] -> its number (a number printed instead is read as hex)
A group whose name starts with "_" is matched but not kept.
"""
from __future__ import annotations

HEX = r"(?:0x)?[0-9a-fA-F]+"
H = r"[0-9a-fA-F]+"  # hex digits after a literal "0x" in the format

Spec = tuple[str, dict[str, str]]

# --- sched_switch prev_state ---------------------------------------------------------------------
# The kernel's print (include/trace/events/sched.h, as stored in 6.18's format): __print_flags of
# prev_state & (TASK_REPORT_MAX - 1) with these letters, "R" when none is set, and a "+" suffix for
# the TASK_REPORT_MAX bit (preempted while runnable).
KERNEL_STATE_BITS = {"S": 0x01, "D": 0x02, "T": 0x04, "t": 0x08, "X": 0x10, "Z": 0x20, "P": 0x40, "I": 0x80}
TASK_REPORT_MAX = 0x100
# libtraceevent's plugin_sched_switch.c (trace-cmd report) prints bit i as "SDTtZXxW"[i], "R" for
# none, and nothing for TASK_REPORT_MAX: its Z/X are the kernel's X/Z, its W the kernel's I, and
# the kernel's "R+" (256) shows as plain "R".
PLUGIN_STATE_BITS = {"S": 0x01, "D": 0x02, "T": 0x04, "t": 0x08, "Z": 0x10, "X": 0x20, "x": 0x40, "W": 0x80}

# --- symbol tables of print formats (arch/x86/kvm/trace.h) ----------------------------------------
SYMBOLS: dict[str, dict[str, int]] = {
    # kvm_mmio type: KVM_TRACE_MMIO_READ_UNSATISFIED / READ / WRITE
    "mmio": {"unsatisfied-read": 0, "read": 1, "write": 2},
    # kvm_emulate_insn flags: KVM_EMUL_INSN_F_CR0_PE 1, _EFL_VM 2, _CS_D 4, _CS_L 8
    "emul": {"real": 0, "vm16": 3, "prot16": 1, "prot32": 5, "prot64": 9},
    # kvm_apic reg: APIC register offsets (arch/x86/include/asm/apicdef.h)
    "apic": {
        "APIC_ID": 0x20, "APIC_LVR": 0x30, "APIC_TASKPRI": 0x80, "APIC_ARBPRI": 0x90,
        "APIC_PROCPRI": 0xA0, "APIC_EOI": 0xB0, "APIC_RRR": 0xC0, "APIC_LDR": 0xD0, "APIC_DFR": 0xE0,
        "APIC_SPIV": 0xF0, "APIC_ISR": 0x100, "APIC_TMR": 0x180, "APIC_IRR": 0x200, "APIC_ESR": 0x280,
        "APIC_ICR": 0x300, "APIC_ICR2": 0x310, "APIC_LVTT": 0x320, "APIC_LVTTHMR": 0x330,
        "APIC_LVTPC": 0x340, "APIC_LVT0": 0x350, "APIC_LVT1": 0x360, "APIC_LVTERR": 0x370,
        "APIC_TMICT": 0x380, "APIC_TMCCT": 0x390, "APIC_TDCR": 0x3E0, "APIC_SELF_IPI": 0x3F0,
        "APIC_EFEAT": 0x400, "APIC_ECTRL": 0x410,
    },
    # kvm_update_master_clock/kvm_track_tsc host_clock: enum vdso_clock_mode (include/vdso/clocksource.h
    # and arch/x86/include/asm/vdso/clocksource.h); libtraceevent cannot resolve the enum and prints hex
    "clockmode": {"none": 0, "tsc": 1, "pvclock": 2, "hvclock": 3},
    # kvm_ack_irq irqchip: KVM_IRQCHIP_PIC_MASTER / PIC_SLAVE / IOAPIC
    "irqchip": {"PIC master": 0, "PIC slave": 1, "IOAPIC": 2},
    # kvm_apic_accept_irq dm: delivery mode (dm >> 8 & 7) names; the raw field keeps the << 8
    "apic_dm": {"Fixed": 0x000, "LowPrio": 0x100, "SMI": 0x200, "Res3": 0x300, "NMI": 0x400,
                "INIT": 0x500, "SIPI": 0x600, "ExtINT": 0x700},
}

_EXIT_FIELDS = {"vcpu_id": "d", "exit_reason": "reason", "guest_rip": "x", "info1": "x", "info2": "x",
                "intr_info": "x", "error_code": "x", "requests": "x"}
# TRACE_EVENT_KVM_EXIT (kvm_exit, kvm_nested_vmexit) since 5.x; "vcpu" and "requests" came later.
_EXIT_KERNEL = (rf"^(?:vcpu (?P<vcpu_id>\d+) )?reason (?P<exit_reason>.+?) rip 0x(?P<guest_rip>{H}) "
                rf"info1 0x(?P<info1>{H}) info2 0x(?P<info2>{H}) intr_info 0x(?P<intr_info>{H}) "
                rf"error_code 0x(?P<error_code>{H})(?: requests 0x(?P<requests>{H}))?$")
_INJECT_FIELDS = {"exit_code": "reason", "exit_info1": "x", "exit_info2": "x", "exit_int_info": "x",
                  "exit_int_info_err": "x"}

SPECS: dict[str, list[Spec]] = {
    "sched_switch": [
        # kernel
        ((r"^prev_comm=(?P<prev_comm>.*?) prev_pid=(?P<prev_pid>-?\d+) prev_prio=(?P<prev_prio>-?\d+) "
         r"prev_state=(?P<prev_state>\S+) ==> next_comm=(?P<next_comm>.*?) next_pid=(?P<next_pid>-?\d+) "
         r"next_prio=(?P<next_prio>-?\d+)$"),
         {"prev_comm": "s", "prev_pid": "d", "prev_prio": "d", "prev_state": "kstate",
          "next_comm": "s", "next_pid": "d", "next_prio": "d"}),
        # trace-cmd plugin: "a:1 [120] S ==> b:2 [120]"
        ((r"^(?P<prev_comm>.*?):(?P<prev_pid>-?\d+) \[(?P<prev_prio>-?\d+)\] (?P<prev_state>\S+) ==> "
         r"(?P<next_comm>.*?):(?P<next_pid>-?\d+) \[(?P<next_prio>-?\d+)\]$"),
         {"prev_comm": "s", "prev_pid": "d", "prev_prio": "d", "prev_state": "pstate",
          "next_comm": "s", "next_pid": "d", "next_prio": "d"}),
    ],
    "sched_wakeup": [
        # kernel (also sched_waking, sched_wakeup_new); "success" until 4.x
        ((r"^comm=(?P<comm>.*?) pid=(?P<pid>-?\d+) prio=(?P<prio>-?\d+)(?: success=(?P<success>\d+))? "
         r"target_cpu=(?P<target_cpu>\d+)$"),
         {"comm": "s", "pid": "d", "prio": "d", "success": "d", "target_cpu": "d"}),
        # trace-cmd plugin: "comm:pid [prio] CPU:003"
        ((r"^(?P<comm>.*?):(?P<pid>-?\d+) \[(?P<prio>-?\d+)\](?: success=(?P<success>\d+))? "
         r"CPU:(?P<target_cpu>\d+)$"),
         {"comm": "s", "pid": "d", "prio": "d", "success": "d", "target_cpu": "d"}),
    ],
    "kvm_exit": [
        (_EXIT_KERNEL, _EXIT_FIELDS),
        # trace-cmd plugin, and the kernel before 5.x: "reason X rip 0x.. info A B"
        # (the plugin may add the guest symbol after the rip)
        (rf"^reason (?P<exit_reason>.+?) rip 0x(?P<guest_rip>{H})(?: [^ ]+)? info (?P<info1>{H}) (?P<info2>{H})$",
         {"exit_reason": "reason", "guest_rip": "x", "info1": "x", "info2": "x"}),
    ],
    "kvm_nested_vmexit": [
        (_EXIT_KERNEL, _EXIT_FIELDS),
        # kernel before 5.x
        ((rf"^rip: 0x(?P<rip>{H}) reason: (?P<exit_code>.+?) ext_inf1: 0x(?P<exit_info1>{H}) "
         rf"ext_inf2: 0x(?P<exit_info2>{H}) ext_int: 0x(?P<exit_int_info>{H}) "
         rf"ext_int_err: 0x(?P<exit_int_info_err>{H})$"),
         {"rip": "x", **_INJECT_FIELDS}),
        # trace-cmd plugin on that layout (its " rip %llx" runs into "reason")
        ((rf"^rip (?P<rip>{H})(?: [^ ]+?)?reason (?P<exit_code>.+?) info1 (?P<exit_info1>{H}) "
         rf"info2 (?P<exit_info2>{H}) int_info (?P<exit_int_info>{H}) int_info_err (?P<exit_int_info_err>{H})$"),
         {"rip": "x", **_INJECT_FIELDS}),
    ],
    "kvm_nested_vmexit_inject": [
        ((rf"^reason: (?P<exit_code>.+?) ext_inf1: 0x(?P<exit_info1>{H}) ext_inf2: 0x(?P<exit_info2>{H}) "
         rf"ext_int: 0x(?P<exit_int_info>{H}) ext_int_err: 0x(?P<exit_int_info_err>{H})$"), _INJECT_FIELDS),
        ((rf"^reason (?P<exit_code>.+?) info1 (?P<exit_info1>{H}) info2 (?P<exit_info2>{H}) "
         rf"int_info (?P<exit_int_info>{H}) int_info_err (?P<exit_int_info_err>{H})$"), _INJECT_FIELDS),
    ],
    "kvm_nested_vmenter": [
        ((rf"^rip: 0x(?P<rip>{H}) vmc(?P<isa>[bs]): 0x(?P<vmcb>{H}) nested_rip: 0x(?P<nested_rip>{H}) "
         rf"int_ctl: 0x(?P<int_ctl>{H}) event_inj: 0x(?P<event_inj>{H}) "
         rf"nested_(?:ept|npt)=(?P<tdp_enabled>y|n) \w+: 0x(?P<guest_pgd>{H})$"),
         {"rip": "x", "isa": "vmc", "vmcb": "x", "nested_rip": "x", "int_ctl": "x", "event_inj": "x",
          "tdp_enabled": "=y", "guest_pgd": "x"}),
    ],
    "kvm_entry": [
        # kernel 6.x
        ((rf"^vcpu (?P<vcpu_id>\d+), rip 0x(?P<rip>{H}) intr_info 0x(?P<intr_info>{H}) "
         rf"error_code 0x(?P<error_code>{H}) ?(?P<immediate_exit>\[immediate exit\])?$"),
         {"vcpu_id": "d", "rip": "x", "intr_info": "x", "error_code": "x", "immediate_exit": "present"}),
        # kernel 5.x
        (rf"^vcpu (?P<vcpu_id>\d+), rip 0x(?P<rip>{H})$", {"vcpu_id": "d", "rip": "x"}),
        # trace-cmd plugin (may add the guest symbol)
        (rf"^vcpu (?P<vcpu_id>\d+) rip 0x(?P<rip>{H})(?: [^ ]+)?$", {"vcpu_id": "d", "rip": "x"}),
        # kernel 4.x
        (r"^vcpu (?P<vcpu_id>\d+)$", {"vcpu_id": "d"}),
    ],
    "kvm_msr": [
        (rf"^msr_(?P<write>read|write) (?P<ecx>{H}) = 0x(?P<data>{H})(?P<exception> \(#GP\))?$",
         {"write": "=write", "ecx": "x", "data": "x", "exception": "present"}),
    ],
    "kvm_userspace_exit": [
        # "reason NAME (reason)" when errno >= 0 (it is 0 then); "restart|error (-errno)" otherwise
        (r"^reason (?P<reason>\S+) \((?P<_paren>-?\d+)\)$", {"reason": "uexit", "_paren": "d"}),
    ],
    "kvm_pio": [
        ((rf"^pio_(?P<rw>read|write) at 0x(?P<port>{H}) size (?P<size>\d+) count (?P<count>\d+)"
         rf"(?: val 0x(?P<val>{H}))?(?: ?\(\.\.\.\))?$"),
         {"rw": "=write", "port": "x", "size": "d", "count": "d", "val": "x"}),
    ],
    "kvm_fpu": [(r"^(?P<load>load|unload)$", {"load": "=load"})],
    "kvm_mmio": [
        (rf"^mmio (?P<type>\S+) len (?P<len>\d+) gpa 0x(?P<gpa>{H}) val 0x(?P<val>{H})$",
         {"type": "@mmio", "len": "d", "gpa": "x", "val": "x"}),
    ],
    "kvm_fast_mmio": [(rf"^fast mmio at gpa 0x(?P<gpa>{H})$", {"gpa": "x"})],
    "kvm_vcpu_wakeup": [
        (r"^(?P<waited>wait|poll) time (?P<ns>-?\d+) ns, polling (?P<valid>valid|invalid)$",
         {"waited": "=wait", "ns": "d", "valid": "=valid"}),
    ],
    "kvm_emulate_insn": [
        # kernel: "csbase:rip:bytes (mode)[ failed]"
        (rf"^(?P<csbase>{H}):(?P<rip>{H}):(?P<insn>(?:[0-9a-f]{{2}} ?)*) \((?P<flags>[\w-]+)\)(?P<failed> failed)?$",
         {"csbase": "x", "rip": "x", "insn": "bytes", "flags": "@emul", "failed": "present"}),
        # trace-cmd plugin without a disassembler: "csbase:rip: bytes[ FAIL]"
        (rf"^(?P<csbase>{H}):(?P<rip>{H})(?: [^ :]+)?: (?P<insn>(?:[0-9a-f]{{2}} ?)+?)(?P<failed> FAIL)?$",
         {"csbase": "x", "rip": "x", "insn": "bytes", "failed": "present"}),
    ],
    "kvm_apic": [
        (rf"^apic_(?P<rw>read|write) (?P<reg>\S+) = 0x(?P<val>{H})$", {"rw": "=write", "reg": "@apic", "val": "x"}),
    ],
    "kvm_apic_accept_irq": [
        (rf"^apicid (?P<apicid>{H}) vec (?P<vec>\d+) \((?P<dm>\w+)\|(?P<tm>level|edge)\)$",
         {"apicid": "x", "vec": "d", "dm": "@apic_dm", "tm": "=level"}),
    ],
    "kvm_eoi": [(rf"^apicid (?P<apicid>{H}) vector (?P<vector>\d+)$", {"apicid": "x", "vector": "d"})],
    "kvm_set_irq": [
        (r"^gsi (?P<gsi>\d+) level (?P<level>-?\d+) source (?P<irq_source_id>-?\d+)$",
         {"gsi": "d", "level": "d", "irq_source_id": "d"}),
    ],
    "kvm_inj_virq": [
        (rf"^(?P<soft>Soft/INTn|IRQ) 0x(?P<vector>{H})(?P<reinjected> \[reinjected\])?$",
         {"soft": "=Soft/INTn", "vector": "x", "reinjected": "present"}),
        (r"^irq (?P<irq>\d+)$", {"irq": "d"}),
    ],
    "kvm_page_fault": [
        ((rf"^vcpu (?P<vcpu_id>\d+) rip 0x(?P<guest_rip>{H}) address 0x(?P<fault_address>{H}) "
         rf"error_code 0x(?P<error_code>{H})$"),
         {"vcpu_id": "d", "guest_rip": "x", "fault_address": "x", "error_code": "x"}),
        (rf"^address (?P<fault_address>{H}) error_code (?P<error_code>{H})$",
         {"fault_address": "x", "error_code": "x"}),
    ],
    "kvm_hypercall": [
        (rf"^nr 0x(?P<nr>{H}) a0 0x(?P<a0>{H}) a1 0x(?P<a1>{H}) a2 0x(?P<a2>{H}) a3 0x(?P<a3>{H})$",
         {"nr": "x", "a0": "x", "a1": "x", "a2": "x", "a3": "x"}),
    ],
    "kvm_cr": [
        (rf"^cr_(?P<rw>read|write) (?P<cr>{H}) = 0x(?P<val>{H})$", {"rw": "=write", "cr": "x", "val": "x"}),
    ],
    "kvm_cpuid": [
        ((rf"^func (?P<function>{H}) idx (?P<index>{H}) rax (?P<rax>{H}) rbx (?P<rbx>{H}) "
          rf"rcx (?P<rcx>{H}) rdx (?P<rdx>{H}), cpuid entry (?P<found>found|not found)"
          rf"(?P<used_max_basic>, used max basic)?$"),
         {"function": "x", "index": "x", "rax": "x", "rbx": "x", "rcx": "x", "rdx": "x",
          "found": "=found", "used_max_basic": "present"}),
        # before 5.x: no index, no used_max_basic
        ((rf"^func (?P<function>{H}) rax (?P<rax>{H}) rbx (?P<rbx>{H}) rcx (?P<rcx>{H}) rdx (?P<rdx>{H}), "
          rf"cpuid entry (?P<found>found|not found)$"),
         {"function": "x", "rax": "x", "rbx": "x", "rcx": "x", "rdx": "x", "found": "=found"}),
    ],
    "kvm_write_tsc_offset": [
        (r"^vcpu=(?P<vcpu_id>\d+) prev=(?P<previous_tsc_offset>\d+) next=(?P<next_tsc_offset>\d+)$",
         {"vcpu_id": "d", "previous_tsc_offset": "d", "next_tsc_offset": "d"}),
    ],
    "kvm_update_master_clock": [
        (r"^masterclock (?P<use_master_clock>-?\d+) hostclock (?P<host_clock>\S+) offsetmatched (?P<offset_matched>\d+)$",
         {"use_master_clock": "d", "host_clock": "@clockmode", "offset_matched": "d"}),
    ],
    "kvm_track_tsc": [
        ((r"^vcpu_id (?P<vcpu_id>\d+) masterclock (?P<use_master_clock>\d+) offsetmatched "
          r"(?P<nr_vcpus_matched_tsc>\d+) nr_online (?P<online_vcpus>\d+) hostclock (?P<host_clock>\S+)$"),
         {"vcpu_id": "d", "use_master_clock": "d", "nr_vcpus_matched_tsc": "d", "online_vcpus": "d",
          "host_clock": "@clockmode"}),
    ],
    "kvm_apicv_inhibit_changed": [
        (rf"^(?P<set>set|cleared) reason=(?P<reason>\d+), inhibits=0x(?P<inhibits>{H})(?: \S+)?$",
         {"set": "=set", "reason": "d", "inhibits": "x"}),
    ],
    "kvm_unmap_hva_range": [
        (rf"^mmu notifier unmap range: 0x(?P<start>{H}) -- 0x(?P<end>{H})$", {"start": "x", "end": "x"}),
    ],
    "kvm_ack_irq": [(r"^irqchip (?P<irqchip>.+) pin (?P<pin>\d+)$", {"irqchip": "@irqchip", "pin": "d"})],
    "kvm_smm_transition": [
        (rf"^vcpu (?P<vcpu_id>\d+): (?P<entering>entering|leaving) SMM, smbase 0x(?P<smbase>{H})$",
         {"vcpu_id": "d", "entering": "=entering", "smbase": "x"}),
    ],
    "kvm_ple_window_update": [
        (r"^vcpu (?P<vcpu_id>\d+) old (?P<old>\d+) new (?P<new>\d+) \((?:growed|shrinked)\)$",
         {"vcpu_id": "d", "old": "d", "new": "d"}),
    ],
    "kvm_halt_poll_ns": [
        (r"^vcpu (?P<vcpu_id>\d+): halt_poll_ns (?P<new>\d+) \((?P<grow>grow|shrink) (?P<old>\d+)\)$",
         {"vcpu_id": "d", "new": "d", "grow": "=grow", "old": "d"}),
    ],
    "kvm_wait_lapic_expire": [
        (r"^vcpu (?P<vcpu_id>\d+): delta (?P<delta>-?\d+) \((?:early|late)\)$", {"vcpu_id": "d", "delta": "d"}),
    ],
    "kvm_pv_tlb_flush": [
        (r"^vcpu (?P<vcpu_id>\d+) need_flush_tlb (?P<need_flush_tlb>true|false)$",
         {"vcpu_id": "d", "need_flush_tlb": "=true"}),
    ],
    "kvm_hv_timer_state": [
        (rf"^vcpu_id (?P<vcpu_id>{H}) hv_timer (?P<hv_timer_in_use>{H})$", {"vcpu_id": "x", "hv_timer_in_use": "x"}),
    ],
    # include/trace/events/msr.h (system "msr")
    "read_msr": [(rf"^(?P<msr>{H}), value (?P<val>{H})(?P<failed> #GP)?$", {"msr": "x", "val": "x", "failed": "present"})],
}
SPECS["sched_wakeup_new"] = SPECS["sched_wakeup"]
SPECS["sched_waking"] = SPECS["sched_wakeup"][:1]
SPECS["write_msr"] = SPECS["read_msr"]
SPECS["rdpmc"] = SPECS["read_msr"]
SPECS["kvm_apicv_accept_irq"] = SPECS["kvm_apic_accept_irq"]

# Events whose reason names decide the trace's ISA.
REASON_EVENTS = ("kvm_exit", "kvm_nested_vmexit", "kvm_nested_vmexit_inject")

# The system of the events above (text from trace-cmd and the kernel does not print it).
SYSTEMS: dict[str, str] = {
    **{e: "sched" for e in SPECS if e.startswith("sched_")},
    **{e: "kvm" for e in SPECS if e.startswith("kvm_")},
    "read_msr": "msr", "write_msr": "msr", "rdpmc": "msr",
}


def raw_hex_fields(event: str) -> set[str]:
    """Fields the event's print format writes with %x: `trace-cmd report -R` prints them in hex
    without "0x" (libtraceevent reuses the print format's conversion), so "830" there means 0x830."""
    return {g for _, conv in SPECS.get(event, []) for g, kind in conv.items() if kind == "x"}

