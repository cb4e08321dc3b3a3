"""Exit episodes: each kvm_exit paired with its vCPU thread's next kvm_entry, what happened on that
thread in between, and the vcpu_load/vcpu_put boundaries inferred from it (build.py names the steps).
"""
from .build import EXTRA_SCHEMA, Episodes, build_episodes
from .classify import CLASSES

__all__ = ["CLASSES", "EXTRA_SCHEMA", "Episodes", "build_episodes"]
