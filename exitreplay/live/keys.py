"""Single keys from the terminal while the view runs: cbreak mode (no echo, no line buffering),
put back as it was on the way out, whatever the way out."""
from __future__ import annotations

import contextlib
import os
import select
import sys
from collections.abc import Iterator


class Keys:
    def __init__(self, fd: int | None):
        self.fd = fd

    def get(self, timeout: float) -> str | None:
        """A key pressed within `timeout` seconds, else None (also when stdin is not a terminal)."""
        if self.fd is None:
            if timeout > 0:
                select.select([], [], [], timeout)
            return None
        ready, _, _ = select.select([self.fd], [], [], max(0.0, timeout))
        if not ready:
            return None
        data = os.read(self.fd, 32)
        if not data:  # the terminal went away: read no more, behave as without one
            self.fd = None
            return None
        return data[:1].decode("latin-1")


@contextlib.contextmanager
def terminal_keys(enabled: bool = True) -> Iterator[Keys]:
    if not enabled or not sys.stdin.isatty():
        yield Keys(None)
        return
    import termios
    import tty

    fd = sys.stdin.fileno()
    old = termios.tcgetattr(fd)
    try:
        tty.setcbreak(fd)
        yield Keys(fd)
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, old)
