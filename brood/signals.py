"""Signals for a synchronous loop: a self-pipe the master can select on.

``signal.set_wakeup_fd`` makes the interpreter write each caught signal's number as one
byte into a pipe; the master's selector wakes on it and ``drain()`` returns the numbers
in arrival order. The Python-level handlers do nothing: all the work happens in the loop,
never inside a handler, so there is no re-entrancy to think about.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import signal
from collections.abc import Iterable, Iterator

# What stops or reloads a process. The master holds them blocked across each fork
# (``stops_blocked``): until the child has reset the master's handlers, a signal sent
# to it would be written into the master's own wakeup pipe and acted on by the master.
# The child releases them once its own handlers are in (``release_stops``).
STOPS = (signal.SIGHUP, signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)


@contextlib.contextmanager
def stops_blocked() -> Iterator[None]:
    """Block the stop signals in this thread for the block, then restore its mask: a
    process forked or a thread started inside keeps them blocked."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOPS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def release_stops() -> None:
    """In a forked child, once its handlers for the stop signals are installed: those
    that came since the fork are delivered to them now."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOPS)


def _high_fd(fd: int) -> int:
    """Move ``fd`` out of the low numbers, so listening sockets get 3, 4, ... as in uWSGI;
    under a file limit too low for that (``ulimit -n`` 65 or less) it stays where it is."""
    try:
        moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 64)
    except OSError:  # EINVAL (64 is past the limit) or EMFILE (no fd free above it)
        return fd
    os.close(fd)
    return moved


def _noop(signum: int, frame: object) -> None:
    """Installed so the signal is caught (and written to the wakeup fd) instead of acted on."""


class SignalPipe:
    """Catches ``signums`` into a non-blocking pipe; one per master process."""

    def __init__(self, signums: Iterable[int]) -> None:
        self.signums = tuple(signums)
        self._r, self._w = (_high_fd(fd) for fd in os.pipe())
        os.set_blocking(self._r, False)
        os.set_blocking(self._w, False)
        self._previous_wakeup = signal.set_wakeup_fd(self._w, warn_on_full_buffer=False)
        for signum in self.signums:
            signal.signal(signum, _noop)

    def fileno(self) -> int:
        return self._r

    def pending(self) -> bool:
        """Whether a signal came since the last ``drain`` (without draining it)."""
        return bool(select.select([self._r], [], [], 0)[0])

    def drain(self) -> list[int]:
        """Signal numbers received since the last call, oldest first."""
        got: list[int] = []
        for _ in range(64):  # bounded: the pipe holds at most a few KB of 1-byte records
            try:
                chunk = os.read(self._r, 4096)
            except BlockingIOError:
                break
            if not chunk:
                break
            got.extend(chunk)
        return got

    def close(self) -> None:
        """Restore default dispositions and drop the pipe (before exec, or in a child)."""
        with contextlib.suppress(ValueError):
            signal.set_wakeup_fd(-1)
        for signum in self.signums:
            signal.signal(signum, signal.SIG_DFL)
        for fd in (self._r, self._w):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._r = self._w = -1
