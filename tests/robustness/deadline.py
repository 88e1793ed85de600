"""A wall-clock limit that turns a hang into a test failure (pytest-timeout is not installed here)."""

from __future__ import annotations

import signal
from contextlib import contextmanager
from typing import Iterator


class TookTooLong(AssertionError):
    pass


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Fail with TookTooLong if the block runs longer than `seconds` (main thread, POSIX only)."""

    def expire(signum, frame):
        raise TookTooLong(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
