"""Facts about KVM: exit reasons, the state VMLOAD/VMSAVE manage."""
