"""Which task a sched_switch hands the CPU to: idle, a kernel thread, or a task that will return
to user mode.

sched_switch carries only the next task's comm, so kernel threads are told by the names the
kernel gives them (kthread_create formats in kernel/ and drivers/; "vhost-%d" in
drivers/vhost/vhost.c: a kthread before 6.4 and a vhost_task, which never returns to user mode
either, since). Anything else that is not the idle task (pid 0) counts as a user task.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

KERNEL_THREAD_COMM = (r"^(swapper|kworker/|ksoftirqd/|migration/|rcu_|rcuo|rcub/|cpuhp/|idle_inject/|watchdog/|"
                      r"irq/|kthreadd$|kcompactd|kswapd|khugepaged|ksmd$|kauditd$|oom_reaper$|writeback$|"
                      r"kblockd$|jbd2/|kvm-nx-lpage|kvm-pit/|vhost-|khungtaskd$|kdevtmpfs$|scsi_|nvme-|"
                      r"ext4-|xfs|btrfs-|kcryptd|kdmflush|psimon$|kthrotld$|edac-poller$)")
TASK_RUNNING_MASK = 0xFF  # prev_state without the preempted (R+) bit: 0 means still runnable


def next_is_user_task(ss: pa.Table, next_pid: np.ndarray) -> np.ndarray:
    """Per sched_switch: the next task is neither the idle task nor a kernel thread by name."""
    user = next_pid != 0
    if "next_comm" in ss.column_names:
        comm = ss.column("next_comm").cast(pa.string())
        kthread = pc.fill_null(pc.match_substring_regex(comm, KERNEL_THREAD_COMM), False)
        user &= ~np.asarray(kthread.to_numpy(zero_copy_only=False), bool)
    return user
