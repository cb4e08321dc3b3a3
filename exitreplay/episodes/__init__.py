"""Exit episodes: each kvm_exit paired with its vCPU thread's next kvm_entry, what happened on that
thread in between, and the vcpu_load/vcpu_put boundaries inferred from it (build.py names the steps).
"""
from .attached import COUNTED_EVENTS
from .build import EXTRA_SCHEMA, Episodes, build_episodes
from .classify import CLASSES
from .threads import VCPU_EVENTS

# Every event type the episodes read: a reader may leave the others undecoded.
NEEDED_EVENTS = frozenset({*VCPU_EVENTS, *(name for name, _ in COUNTED_EVENTS), "sched_switch"})

__all__ = ["CLASSES", "EXTRA_SCHEMA", "NEEDED_EVENTS", "Episodes", "build_episodes"]
