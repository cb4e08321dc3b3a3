"""tracefs: find or mount it, and a private instance (`instances/exitreplay-<pid>`) to record into.

An instance is a trace array of its own (kernel/trace/trace.c instance_mkdir): its own ring
buffers, tracing_on, event enables, clock and buffer size. Recording there leaves the top-level
buffer, its tracer and every other instance exactly as they were; removing the directory
(instance_rmdir, which fails with EBUSY while a file in it is open) frees all of it.
"""
from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import re
import time
from pathlib import Path

from ..errors import ExitReplayError

MOUNT_POINT = Path("/sys/kernel/tracing")
INSTANCE_PREFIX = "exitreplay-"


class RecordError(ExitReplayError):
    """Recording cannot start or go on (not root, no tracefs, no kvm events, a tracefs write failed)."""


def require_root() -> None:
    if os.geteuid() != 0:
        raise RecordError("record needs root: tracefs and its kvm events are root-only (run it with sudo)")


def tracefs_mounts(mounts: str = "/proc/mounts") -> list[Path]:
    """Where tracefs is mounted, in /proc/mounts order (debugfs's automount included)."""
    try:
        lines = Path(mounts).read_text().splitlines()
    except OSError:
        return []
    return [Path(f[1].replace("\\040", " ")) for f in (ln.split() for ln in lines)
            if len(f) > 2 and f[2] == "tracefs"]


def _libc_call(name: str, *args) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if getattr(libc, name)(*args) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


class Tracefs:
    """The tracefs root, mounted here if it was not mounted anywhere (then unmounted by release())."""

    def __init__(self, root: Path, mounted_here: bool):
        self.root, self.mounted_here = root, mounted_here

    @classmethod
    def open(cls) -> Tracefs:
        found = tracefs_mounts()
        if found:
            return cls(MOUNT_POINT if MOUNT_POINT in found else found[0], False)
        try:
            _libc_call("mount", b"nodev", os.fsencode(MOUNT_POINT), b"tracefs", 0, None)
        except OSError as exc:
            raise RecordError(f"tracefs is not mounted and mounting it at {MOUNT_POINT} failed: "
                              f"{exc.strerror} (is CONFIG_TRACING on?)") from None
        return cls(MOUNT_POINT, True)

    def release(self) -> None:
        """Unmount what open() mounted, unless something else now uses it (EBUSY: leave it)."""
        if self.mounted_here:
            with contextlib.suppress(OSError):
                _libc_call("umount2", os.fsencode(self.root), 0)
            self.mounted_here = False

    def remove_stale_instances(self) -> list[str]:
        """Remove instances left by an exitreplay that was killed (its pid is gone)."""
        removed = []
        for d in sorted((self.root / "instances").glob(INSTANCE_PREFIX + "*")):
            m = re.fullmatch(re.escape(INSTANCE_PREFIX) + r"(\d+)", d.name)
            if m and not _alive(int(m[1])):
                with contextlib.suppress(OSError, RecordError):
                    Instance(d).remove()
                    removed.append(d.name)
        return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Instance:
    """One tracefs instance directory; every write goes through write() so a failure is one line."""

    def __init__(self, path: Path):
        self.path = path

    @classmethod
    def create(cls, tracefs: Tracefs, name: str | None = None) -> Instance:
        path = tracefs.root / "instances" / (name or f"{INSTANCE_PREFIX}{os.getpid()}")
        try:
            path.mkdir()
        except FileExistsError:
            raise RecordError(f"tracefs instance {path} already exists (another recording?)") from None
        except OSError as exc:
            raise RecordError(f"cannot create tracefs instance {path}: {exc.strerror}") from None
        inst = cls(path)
        inst.write("tracing_on", "0")  # a new instance starts with tracing on
        return inst

    @property
    def name(self) -> str:
        return self.path.name

    def write(self, rel: str, value: str) -> None:
        try:
            with open(self.path / rel, "w") as fh:
                fh.write(value)
        except OSError as exc:
            raise RecordError(f"cannot write {value!r} to {self.path / rel}: {exc.strerror}") from None

    def read(self, rel: str) -> str:
        return (self.path / rel).read_text()

    def cpus(self) -> list[int]:
        """The CPUs with a ring buffer (per_cpu/cpuN), in order."""
        return sorted(int(d.name[3:]) for d in (self.path / "per_cpu").iterdir() if d.name[3:].isdigit())

    def clock(self) -> str:
        """The clock in use: the bracketed word of trace_clock."""
        m = re.search(r"\[(\S+)\]", self.read("trace_clock"))
        return m[1] if m else "local"

    def stats(self, cpu: int) -> str:
        return self.read(f"per_cpu/cpu{cpu}/stats")

    def set_tracing(self, on: bool) -> None:
        self.write("tracing_on", "1" if on else "0")

    def remove(self, attempts: int = 50) -> None:
        """Stop, disable every event and remove the directory (retried while a reader closes)."""
        with contextlib.suppress(OSError, RecordError):
            self.set_tracing(False)
        with contextlib.suppress(OSError, RecordError):
            self.write("events/enable", "0")
        for _ in range(attempts):
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError as exc:
                if exc.errno != errno.EBUSY:
                    raise RecordError(f"cannot remove tracefs instance {self.path}: {exc.strerror}") from None
                time.sleep(0.02)
        raise RecordError(f"cannot remove tracefs instance {self.path}: still busy; remove it with "
                          f"rmdir {self.path}")
