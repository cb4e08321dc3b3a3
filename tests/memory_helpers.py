"""Peak memory of a child process, and pairs of generated traces of two lengths."""
from __future__ import annotations

import json
import os
import subprocess
import sys

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


# A child that reads every window of argv[1] (windows of argv[2] events) and every table of each;
# `setup` runs first (argv[3] onward are its own).
WINDOWS_CHILD = r"""
import json, sys
from exitreplay.windows import iter_windows
SETUP
n = rows = 0
for w in iter_windows(sys.argv[1], window_events=int(sys.argv[2])):
    n += len(w)
    rows += sum(w.table(name).num_rows for name in w.event_names)
print(json.dumps({"events": n, "rows": rows, "rss_kb": PEAK}))
""".replace("PEAK", PEAK_KB)


def windows_peak(path, window: int, *args: str, setup: str = "") -> dict:
    """Events, table rows and peak RSS (kB) of a child reading every window of `path`."""
    r = subprocess.run([sys.executable, "-c", WINDOWS_CHILD.replace("SETUP", setup), str(path), str(window), *args],
                       capture_output=True, text=True, env=dict(os.environ), check=True)
    return json.loads(r.stdout)
