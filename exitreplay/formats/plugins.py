"""Printed event text -> the kernel's raw field names and values.

Text traces show each event through its print format (the kernel's `print fmt`, or a
trace-cmd/libtraceevent plugin). To give the same typed tables as trace.dat, the events the replay
needs are parsed back to their raw fields here; `name=value` texts (raw `-R` output, and events
whose print format is already `name=value`) are parsed generically by textcommon.

Each spec: a regex with named groups (the raw field names) and a converter per group:
"x" hex, "d" decimal, "s" string, or a name of a special converter in textcommon.
"""
from __future__ import annotations

HEX = r"(?:0x)?[0-9a-fA-F]+"

# sched_switch prev_state letters. The kernel's own print uses TASK_REPORT bits; trace-cmd's
# sched_switch plugin (libtraceevent plugin_sched_switch.c) uses an older table "SDTtZXxW" in
# which Z and X are swapped and the preempted bit (R+) is not shown.
KERNEL_STATE_BITS = {"S": 1, "D": 2, "T": 4, "t": 8, "X": 16, "Z": 32, "P": 64, "I": 128}
PLUGIN_STATE_BITS = {"S": 1, "D": 2, "T": 4, "t": 8, "Z": 16, "X": 32, "x": 64, "W": 128}
TASK_REPORT_MAX = 256  # the kernel prints it as the "+" of "R+": preempted while runnable

SPECS: dict[str, list[tuple[str, dict[str, str]]]] = {
    "sched_switch": [
        (r"^prev_comm=(?P<prev_comm>.+?) prev_pid=(?P<prev_pid>-?\d+) prev_prio=(?P<prev_prio>-?\d+) "
         r"prev_state=(?P<prev_state>\S+) ==> next_comm=(?P<next_comm>.+?) next_pid=(?P<next_pid>-?\d+) "
         r"next_prio=(?P<next_prio>-?\d+)$",
         {"prev_comm": "s", "prev_pid": "d", "prev_prio": "d", "prev_state": "kernel_state",
          "next_comm": "s", "next_pid": "d", "next_prio": "d"}),
        (r"^(?P<prev_comm>.+?):(?P<prev_pid>-?\d+) \[(?P<prev_prio>-?\d+)\] (?P<prev_state>\S+) ==> "
         r"(?P<next_comm>.+?):(?P<next_pid>-?\d+) \[(?P<next_prio>-?\d+)\]$",
         {"prev_comm": "s", "prev_pid": "d", "prev_prio": "d", "prev_state": "plugin_state",
          "next_comm": "s", "next_pid": "d", "next_prio": "d"}),
    ],
    "sched_wakeup": [
        (r"^comm=(?P<comm>.+?) pid=(?P<pid_>-?\d+) prio=(?P<prio>-?\d+) target_cpu=(?P<target_cpu>\d+)$",
         {"comm": "s", "pid_": "d", "prio": "d", "target_cpu": "d"}),
        (r"^(?P<comm>.+?):(?P<pid_>-?\d+) \[(?P<prio>-?\d+)\](?: success=\d+)? CPU:(?P<target_cpu>\d+)$",
         {"comm": "s", "pid_": "d", "prio": "d", "target_cpu": "d"}),
    ],
    "kvm_exit": [
        (rf"^vcpu (?P<vcpu_id>\d+) reason (?P<exit_reason>.+?) rip 0x(?P<guest_rip>{HEX}) "
         rf"info1 0x(?P<info1>{HEX}) info2 0x(?P<info2>{HEX}) intr_info 0x(?P<intr_info>{HEX}) "
         rf"error_code 0x(?P<error_code>{HEX})(?: requests 0x(?P<requests>{HEX}))?$",
         {"vcpu_id": "d", "exit_reason": "exit_reason", "guest_rip": "x", "info1": "x", "info2": "x",
          "intr_info": "x", "error_code": "x", "requests": "x"}),
        # trace-cmd's kvm plugin and pre-5.x kernels: "reason X rip 0x.. info A B [intr_info..]"
        (rf"^reason (?P<exit_reason>.+?) rip 0x(?P<guest_rip>{HEX}) info (?P<info1>{HEX}) (?P<info2>{HEX})"
         rf"(?: intr_info 0x(?P<intr_info>{HEX}) error_code 0x(?P<error_code>{HEX}))?$",
         {"exit_reason": "exit_reason", "guest_rip": "x", "info1": "x", "info2": "x", "intr_info": "x",
          "error_code": "x"}),
    ],
    "kvm_entry": [
        (rf"^vcpu (?P<vcpu_id>\d+),? rip 0x(?P<rip>{HEX})(?: intr_info 0x(?P<intr_info>{HEX}) "
         rf"error_code 0x(?P<error_code>{HEX}))?(?P<immediate_exit>\[immediate exit\])?$",
         {"vcpu_id": "d", "rip": "x", "intr_info": "x", "error_code": "x", "immediate_exit": "present"}),
    ],
    "kvm_msr": [
        (rf"^msr_(?P<write>read|write) (?P<ecx>{HEX}) = 0x(?P<data>{HEX})(?P<exception> \(#GP\))?$",
         {"write": "write_flag", "ecx": "x", "data": "x", "exception": "present"}),
    ],
    "kvm_userspace_exit": [
        (r"^reason (?P<reason>\S+) \((?P<errno>-?\d+)\)$", {"reason": "uexit", "errno": "d"}),
    ],
    "kvm_pio": [
        (rf"^pio_(?P<rw>read|write) at 0x(?P<port>{HEX}) size (?P<size>\d+) count (?P<count>\d+)"
         rf"(?: val 0x(?P<val>{HEX}))?(?: \(\.\.\.\))?$",
         {"rw": "write_flag", "port": "x", "size": "d", "count": "d", "val": "x"}),
    ],
    "kvm_fpu": [(r"^(?P<load>load|unload)$", {"load": "load_flag"})],
    "kvm_mmio": [
        (rf"^mmio (?P<type>\S+) len (?P<len>\d+) gpa 0x(?P<gpa>{HEX}) val 0x(?P<val>{HEX})$",
         {"type": "s", "len": "d", "gpa": "x", "val": "x"}),
    ],
    "kvm_vcpu_wakeup": [
        (r"^(?P<waited>wait|poll) time (?P<ns>\d+) ns, polling (?P<valid>valid|invalid)$",
         {"waited": "wait_flag", "ns": "d", "valid": "valid_flag"}),
    ],
    "kvm_nested_vmexit": [
        (rf"^vcpu (?P<vcpu_id>\d+) reason (?P<exit_reason>.+?) rip 0x(?P<guest_rip>{HEX}) "
         rf"info1 0x(?P<info1>{HEX}) info2 0x(?P<info2>{HEX}) intr_info 0x(?P<intr_info>{HEX}) "
         rf"error_code 0x(?P<error_code>{HEX})(?: requests 0x(?P<requests>{HEX}))?$",
         {"vcpu_id": "d", "exit_reason": "exit_reason", "guest_rip": "x", "info1": "x", "info2": "x",
          "intr_info": "x", "error_code": "x", "requests": "x"}),
    ],
    "kvm_nested_vmexit_inject": [
        (rf"^reason: (?P<exit_code>.+?) ext_inf1: 0x(?P<exit_info1>{HEX}) ext_inf2: 0x(?P<exit_info2>{HEX}) "
         rf"ext_int: 0x(?P<exit_int_info>{HEX}) ext_int_err: 0x(?P<exit_int_info_err>{HEX})$",
         {"exit_code": "exit_reason", "exit_info1": "x", "exit_info2": "x", "exit_int_info": "x",
          "exit_int_info_err": "x"}),
    ],
    "kvm_nested_vmenter": [
        (rf"^rip: 0x(?P<rip>{HEX}) vmc[bs]: 0x(?P<vmcb>{HEX}) nested_rip: 0x(?P<nested_rip>{HEX}) "
         rf"int_ctl: 0x(?P<int_ctl>{HEX}) event_inj: 0x(?P<event_inj>{HEX}) nested_(?:ept|npt)="
         rf"(?P<tdp_enabled>[yn]) \w+: 0x(?P<guest_pgd>{HEX})$",
         {"rip": "x", "vmcb": "x", "nested_rip": "x", "int_ctl": "x", "event_inj": "x",
          "tdp_enabled": "yn", "guest_pgd": "x"}),
    ],
}

# Field renames: a group name that would clash with the events table's own columns.
RENAMES = {"pid_": "pid_field"}
