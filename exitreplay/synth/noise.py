"""Per-iteration random values that do not depend on which iterations are drawn together.

The events step runs window by window, so the value drawn for a vCPU's iteration m must be the
same whether m is drawn alone, in a window of a thousand or in the whole trace. A NumPy Generator
is a stream (its k-th value depends on how many were drawn before), so these values come from a
counter-based hash instead: value = splitmix64(key, purpose, m), vectorized over m.
"""
from __future__ import annotations

import numpy as np

_MASK = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15


def _mix_int(z: int) -> int:
    """splitmix64's finalizer on one Python int (no NumPy overflow warnings for scalars)."""
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return z ^ (z >> 31)


def _mix(z: np.ndarray) -> np.ndarray:
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


class Noise:
    """Random values of one thread, addressed by (purpose, iteration): the same address, the same value."""

    def __init__(self, key: int):
        self.key = key & _MASK

    def bits(self, purpose: int, m: np.ndarray) -> np.ndarray:
        """64 random bits per element of m (any shape of non-negative integers)."""
        salt = np.uint64(_mix_int((self.key + (purpose + 1) * _GOLDEN) & _MASK))
        return _mix(np.asarray(m).astype(np.uint64) * np.uint64(_GOLDEN) + salt)

    def integers(self, purpose: int, m: np.ndarray, low: int, high: int) -> np.ndarray:
        """Integers in [low, high) (the modulo bias is below 2**-30 for the spans used here)."""
        span = np.uint64(high - low)
        return (self.bits(purpose, m) % span).astype(np.int64) + low

    def choice(self, purpose: int, m: np.ndarray, values: np.ndarray) -> np.ndarray:
        values = np.asarray(values)
        return values[self.integers(purpose, m, 0, values.size)]
