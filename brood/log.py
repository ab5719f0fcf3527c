"""Log lines for the master and its children: one timestamped line per call, on fd 2.

Every process writes with a single ``os.write`` on file descriptor 2, so lines from the
master and its forked children never interleave mid-line and nothing sits in a Python
buffer across ``fork``. ``--logto`` and ``--daemonize`` redirect fd 2 itself (see
``redirect_output``), so children inherit the destination without knowing about it;
with the log master (``brood.logs``) fd 2 is a pipe it reads instead. Request lines go
to ``REQUEST_FD``: fd 2 too, unless --req-logger gives them a pipe of their own.

``--log-date``/``--log-prefix`` choose the text before `` - `` (``set_date``): a
strftime format, or uWSGI's date (``Sat Jul 11 13:48:19 2015``) by default.
"""

from __future__ import annotations

import os
import sys
import time

REQUEST_FD = 2  # where request lines go (the workers', the HTTP router's)
_date_format: str | None = None  # --log-date FORMAT; None: ``stamp``'s
_TRUE = ("true", "yes", "on", "1")


def stamp(now: float | None = None) -> str:
    """uWSGI-style local time stamp: ``Sat Jul 11 13:48:19 2015``."""
    return time.strftime("%a %b %d %H:%M:%S %Y", time.localtime(now))


def set_date(value: str | None) -> None:
    """--log-date/--log-prefix's value: None, or bare/true/yes/on/1, keep the default
    date; any other text is a strftime format (the empty one leaves just `` - ``), as
    uWSGI 2.0.21 reads them."""
    global _date_format
    text = None if value is None else str(value)
    _date_format = None if text is None or text.strip().lower() in _TRUE else text


def prefix(now: float | None = None) -> str:
    """What goes before `` - `` on each line."""
    if _date_format is not None:
        try:
            return time.strftime(_date_format, time.localtime(now))
        except ValueError:  # (a NUL in the format: the default date instead)
            pass
    return stamp(now)


def log(message: str) -> None:
    """Write one line to fd 2 (``<time> - message``). Never raises."""
    line = f"{prefix()} - {message}\n"
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


def redirect_output(path: str, truncate: bool = False) -> None:
    """Point fds 1 and 2 at ``path`` (appended, created 0640; emptied first with
    ``truncate``), as --logto/--daemonize do."""
    sys.stdout.flush()
    sys.stderr.flush()
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | (os.O_TRUNC if truncate else 0)
    fd = os.open(path, flags, 0o640)
    try:
        os.dup2(fd, 1)
        os.dup2(fd, 2)
    finally:
        if fd > 2:
            os.close(fd)
