"""Peak memory of a child process, and pairs of generated traces of two lengths."""
from __future__ import annotations

from exitreplay.synth import synthesize

# The child's own peak: VmHWM belongs to its address space, while ru_maxrss would start from the
# size of the pytest process that forked it.
PEAK_KB = ('next(int(line.split()[1]) for line in open("/proc/self/status") '
           'if line.startswith("VmHWM:"))')


def trace_pair(factory, profile: str, lengths: tuple[float, float], vcpus: int, window: int) -> dict:
    out = {}
    for seconds in lengths:
        path = factory.mktemp("mem") / f"{profile}-{seconds}.dat"
        out[seconds] = (path, synthesize(profile, path, seconds=seconds, vcpus=vcpus, window_events=window).events)
    return out
