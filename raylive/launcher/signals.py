"""SIGTERM and Ctrl-C while `raylive up` starts: abandon the start, never between a spawn and its record.

Not a signal mask: a child inherits the mask, and a Redis that cannot see SIGTERM cannot save its
snapshot on the way out (found when keys made before a `kill -9` were lost).
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

_spawning = 0
_pending: list[int] = []


class StartupInterrupted(BaseException):
    """A BaseException, so that no library's `except Exception` swallows it."""


def interrupt_startup(signum: int, _frame: FrameType | None) -> None:
    """The signal handler while starting."""
    if _spawning:
        _pending.append(signum)
        return
    raise StartupInterrupted(signal.Signals(signum).name)


@contextmanager
def spawning() -> Iterator[None]:
    """A signal that comes inside takes effect at its end, once the new process is recorded."""
    global _spawning
    _spawning += 1
    try:
        yield
    finally:
        _spawning -= 1
        if not _spawning and _pending:
            raise StartupInterrupted(signal.Signals(_pending.pop()).name)
