"""Log lines for the master and its children: one timestamped line per call, on fd 2.

Every process writes with a single ``os.write`` on file descriptor 2, so lines from the
master and its forked children never interleave mid-line and nothing sits in a Python
buffer across ``fork``. ``--logto`` and ``--daemonize`` redirect fd 2 itself (see
``redirect_output``), so children inherit the destination without knowing about it.
"""

from __future__ import annotations

import os
import sys
import time

_prefix_time = True


def stamp(now: float | None = None) -> str:
    """uWSGI-style local time stamp: ``Sat Jul 11 13:48:19 2015``."""
    return time.strftime("%a %b %d %H:%M:%S %Y", time.localtime(now))


def log(message: str) -> None:
    """Write one line to fd 2 (``<time> - message``). Never raises."""
    line = f"{stamp()} - {message}\n" if _prefix_time else message + "\n"
    data = line.encode("utf-8", "replace")
    try:
        while data:
            written = os.write(2, data)
            data = data[written:]
    except OSError:
        pass


def plain(message: str) -> None:
    """Write a line without the time stamp (banners, the ready line tests wait on)."""
    try:
        os.write(2, (message + "\n").encode("utf-8", "replace"))
    except OSError:
        pass


def redirect_output(path: str) -> None:
    """Point fds 1 and 2 at ``path`` (appended, created 0640), as --logto/--daemonize do."""
    sys.stdout.flush()
    sys.stderr.flush()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
    try:
        os.dup2(fd, 1)
        os.dup2(fd, 2)
    finally:
        if fd > 2:
            os.close(fd)
