"""Recording speed: events per second the recorder keeps up with, what it loses, what it costs.

    sudo python benchmarks/record.py [--vms V] [--loops L] [--rounds R] [--buffer-kb N]

Needs root, tracefs and /dev/kvm. The workload is tests/kvm_guest.py: V VMs at once, each doing
L `out` exits, R times back to back (about 7 events per loop: kvm_pio, kvm_userspace_exit, two
kvm_fpu, three kvm_emulate_insn on this host's kvm_pvm). The recording runs in a fresh process
through the library (exitreplay.record.Recorder), so the figures split into setup, recording,
the final drain and the trace.dat write, and the recorder's CPU time (all its threads) is the
process's own. Figures: events in the file, lost (per_cpu stats), events/s while recording,
page MB/s, recorder CPU % of one core while recording, write MB/s, output size.

trace-cmd record is not compared: on this host it stops with "Can't enable ftrace" (it writes
/proc/sys/kernel/ftrace_enabled, which the sandbox refuses).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = r"""
import json, resource, subprocess, sys, time
from exitreplay.record import Recorder
out, guest, rounds, buffer_kb = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3]), sys.argv[4]

def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime

t0 = time.perf_counter()
with Recorder(buffer_kb=int(buffer_kb) if buffer_kb != "-" else None, workdir=sys.argv[5]) as rec:
    rec.start()
    t1, c1 = time.perf_counter(), cpu()
    for _ in range(rounds):
        subprocess.run(guest, check=True, capture_output=True)
    t2, c2 = time.perf_counter(), cpu()
    rec.stop()
    t3 = time.perf_counter()
    rec.write(out)
    t4 = time.perf_counter()
    print(json.dumps({"setup": t1 - t0, "recording": t2 - t1, "drain": t3 - t2, "write": t4 - t3,
                      "cpu_recording": c2 - c1, "events": sum(s.read for s in rec.stats),
                      "lost": sum(s.lost for s in rec.stats), "bytes": rec.readers.bytes}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--vms", type=int, default=2)
    ap.add_argument("--loops", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--buffer-kb", default="-", help="per-CPU buffer (default: the kernel's)")
    a = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("benchmarks/record.py needs root (tracefs)")
    guest = [sys.executable, str(ROOT / "tests" / "kvm_guest.py"), "--vms", str(a.vms), "--loops", str(a.loops)]
    with tempfile.TemporaryDirectory(dir=ROOT / "benchmarks") as tmp:
        out = Path(tmp) / "bench.dat"
        r = subprocess.run([sys.executable, "-c", CHILD, str(out), json.dumps(guest), str(a.rounds), a.buffer_kb,
                            tmp], cwd=ROOT, capture_output=True, text=True)
        if r.returncode:
            sys.exit(r.stderr.strip().splitlines()[-1])
        f = json.loads(r.stdout)
        size = out.stat().st_size
    rec = f["recording"]
    print(f"workload: {a.rounds} x {a.vms} VMs x {a.loops} loops, buffer {a.buffer_kb} KiB/CPU, {os.cpu_count()} CPUs")
    print(f"events in file   {f['events']:>12,}   lost {f['lost']:,}")
    print(f"recording        {rec:>12.2f} s   {f['events'] / rec:,.0f} events/s, {f['bytes'] / rec / 1e6:.1f} MB/s of pages")
    print(f"recorder CPU     {f['cpu_recording']:>12.2f} s   {100 * f['cpu_recording'] / rec:.0f}% of one core while recording")
    print(f"setup / drain    {f['setup']:>7.2f} s / {f['drain']:.2f} s")
    print(f"write (zstd)     {f['write']:>12.2f} s   {f['bytes'] / f['write'] / 1e6:.0f} MB/s of pages in, "
          f"{size / 1e6:.1f} MB out")


if __name__ == "__main__":
    main()
