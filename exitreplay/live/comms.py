"""pid -> comm for live events: the dictionary only grows, so codes stay valid across windows.

The kernel's saved_cmdlines names the tasks that ran; it is read again when events of a pid it
did not name turn up (a QEMU started after `top`), at most once per window.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa


class Comms:
    def __init__(self, path: str):
        self.path = path
        self.names: list[str] = ["<idle>"]
        self.index = {"<idle>": 0}
        # pid -> code, -1 unknown; slot 0 is the idle task, and the last slot is always -1 (past
        # every pid named), where a clipped lookup sends larger pids and negative ones (as unsigned).
        self.lut = np.array([0, -1], np.int32)
        self._dict: pa.Array | None = None
        self.refresh()

    def refresh(self) -> None:
        try:
            with open(self.path, "rb") as fh:
                text = fh.read().decode("utf-8", "replace")
        except OSError:
            return
        pairs = []
        for line in text.splitlines():
            pid, _, comm = line.partition(" ")
            if pid.isdigit() and 0 < int(pid) < 1 << 22:
                pairs.append((int(pid), comm))
        if not pairs:
            return
        top = max(p for p, _ in pairs) + 2
        if top > self.lut.size:
            self.lut = np.concatenate([self.lut, np.full(top - self.lut.size, -1, np.int32)])
        for pid, comm in pairs:
            if comm not in self.index:
                self.index[comm] = len(self.names)
                self.names.append(comm)
                self._dict = None
            self.lut[pid] = self.index[comm]

    def _lookup(self, pid: np.ndarray) -> np.ndarray:
        return np.take(self.lut, pid.astype(np.int32).view(np.uint32), mode="clip")

    def codes(self, pid: np.ndarray) -> np.ndarray:
        out = self._lookup(pid)
        if (out < 0).any():
            self.refresh()
            out = self._lookup(pid)
        return out.astype(np.int32)

    def dictionary(self) -> pa.Array:
        if self._dict is None:
            self._dict = pa.array(self.names, pa.string())
        return self._dict
