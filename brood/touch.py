"""Touch files (--touch-reload, --touch-workers-reload, --touch-chain-reload,
--touch-exec, --touch-logrotate, --touch-logreopen): the master notices, once per
cycle, that a file's mtime changed, as uWSGI does (a file that appears, or goes away,
counts as touched too).

--touch-exec's command runs as uWSGI runs it: ``/bin/sh -c COMMAND`` in a session of
its own, with the master's stdin, stdout and stderr and no other fd (no listening
socket stays open in it), not waited for; the master reaps it and says how it ended.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterable


def mtime(path: str) -> float | None:
    try:
        return os.stat(path).st_mtime_ns / 1e9
    except OSError:
        return None


class TouchWatch:
    """The mtimes of some files as last seen."""

    def __init__(self, paths: Iterable[str]) -> None:
        self.seen: dict[str, float | None] = {path: mtime(path) for path in paths}

    def touched(self) -> str | None:
        """The first file touched since the last call (then seen as it is now)."""
        for path, before in self.seen.items():
            now = mtime(path)
            if now != before:
                self.seen[path] = now
                return path
        return None


def exec_touches(values: Iterable[str]) -> dict[str, list[str]]:
    """--touch-exec values -> {file: [commands]} (pure). A value is ``FILE COMMAND``,
    split at its first space, as uWSGI splits it; without a space the file is run."""
    found: dict[str, list[str]] = {}
    for value in values:
        path, _, command = str(value).partition(" ")
        found.setdefault(path, []).append(command or path)
    return found


def spawn_command(command: str) -> int:
    """Start ``/bin/sh -c command`` (see the module docstring); its pid. OSError when
    the fork fails."""
    pid = os.fork()
    if pid:
        return pid
    try:  # the child: never back into the caller's code
        os.closerange(3, os.sysconf("SC_OPEN_MAX"))
        os.setsid()
        # Python ignores SIGPIPE and SIGXFSZ, and an exec keeps what is ignored and blocked
        for signum in (signal.SIGPIPE, signal.SIGXFSZ):
            signal.signal(signum, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, ())
        os.execv("/bin/sh", ["/bin/sh", "-c", command])
    finally:
        os._exit(127)
