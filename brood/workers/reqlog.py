"""The worker's request log: which requests get a line, and ``--log-format`` lines.

Which requests (``LogRules``, shared with the HTTP router's line): every one, unless
``--disable-logging``; then only those one of uWSGI's exceptions asks for, checked in
uWSGI's order: an empty body (``--log-zero``), at least N msecs (``--log-slow``), a 4xx
(``--log-4xx``) or 5xx (``--log-5xx``) status, a body of at least N bytes
(``--log-big``), a file sent with sendfile (``--log-sendfile``), a client that went away
mid-request (``--log-ioerror``).

How the default line says it: ``--log-micros`` gives the time in micros, and
``--log-x-forwarded-for`` the request's X-Forwarded-For as the address (``%(addr)``
too) when it has one, as uWSGI does.

``--log-format`` (alias ``--logformat``) replaces the worker's default line with a
template of uWSGI's request log variables, ``%(name)``, from ``VARIABLES`` below, plus
``%(var.NAME)``, the request variable NAME (``%(var.REMOTE_ADDR)``). Any other name is,
as uWSGI reads it, a logvar (a value the app sets through uWSGI's ``uwsgi`` module, which
brood does not have): written as ``-``, and said once at start-up, since it may be a typo.
It is parsed and compiled once (``brood.logformat``): at start-up in the master, so an
unclosed ``%(`` stops it with one line naming it, and again in each worker. As in uWSGI,
a variable with no value is written as ``-`` and the line ends with a newline, written
with one ``write`` to fd 2 (``brood.log.REQUEST_FD``: a pipe of its own with
--req-logger; ``write_line``). A line renders a ``Facts`` record, built only when a
format is set.

A worker logging the default line to every request uses none of this module per
request; otherwise its ``request_log`` is a ``RequestLog``.
"""

from __future__ import annotations

import contextlib
import os
import select
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from brood import log as brood_log
from brood.logformat import Getter, LineFormat, Var, parse_format
from brood.workers.loader import option

if TYPE_CHECKING:
    from brood.workers.response import Core
    from brood.workers.wsgi import Worker

OPTION = "log-format"
_PAGE = os.sysconf("SC_PAGE_SIZE")
_MB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class LogRules:
    """Which finished requests get a request line: all of them, unless
    --disable-logging (``everything`` False); then only those one of uWSGI's exceptions
    asks for (uWSGI's ``log_request``, in its order). ``slow`` is in msecs and ``big``
    in bytes, 0 for off; sizes are body bytes."""

    everything: bool = True
    log_4xx: bool = False
    log_5xx: bool = False
    zero: bool = False
    slow: int = 0
    big: int = 0
    sendfile: bool = False
    ioerror: bool = False

    @classmethod
    def from_config(cls, cfg: Any) -> LogRules:
        """The core options, as the workers and the HTTP router read them."""
        return cls(everything=not option(cfg, "disable-logging", False),
                   log_4xx=bool(option(cfg, "log-4xx", False)),
                   log_5xx=bool(option(cfg, "log-5xx", False)),
                   zero=bool(option(cfg, "log-zero", False)),
                   slow=int(option(cfg, "log-slow", 0)), big=int(option(cfg, "log-big", 0)),
                   sendfile=bool(option(cfg, "log-sendfile", False)),
                   ioerror=bool(option(cfg, "log-ioerror", False)))

    @property
    def any(self) -> bool:
        """Whether any request may get a line."""
        return (self.everything or self.log_4xx or self.log_5xx or self.zero
                or self.slow > 0 or self.big > 0 or self.sendfile or self.ioerror)

    def wants(self, status: int, size: int, msecs: int, sendfile: bool = False,
              ioerror: bool = False) -> bool:
        """Whether a request answered ``status`` with ``size`` body bytes in ``msecs``
        gets a line."""
        return (self.everything
                or (self.zero and size == 0)
                or (self.slow > 0 and msecs >= self.slow)
                or (self.log_4xx and 400 <= status <= 499)
                or (self.log_5xx and 500 <= status <= 599)
                or (self.big > 0 and size >= self.big)
                or (self.sendfile and sendfile)
                or (self.ioerror and ioerror))


class Facts:
    """One finished request, as a ``--log-format`` line sees it."""

    __slots__ = ("worker", "core", "environ", "start", "end", "vsize", "nvars", "_memory")

    def __init__(self, worker: Worker, core: Core, environ: dict[str, Any], start: float,
                 end: float, vsize: int, nvars: int) -> None:
        self.worker = worker
        self.core = core
        self.environ = environ
        self.start = start  # epoch seconds
        self.end = end
        self.vsize = vsize  # bytes of request vars (the default line's "in N bytes")
        self.nvars = nvars
        self._memory: tuple[int, int] | None = None

    def memory(self) -> tuple[int, int]:
        """(vsz, rss) of this worker in bytes, read from /proc once per line."""
        if self._memory is None:
            try:
                with open("/proc/self/statm", "rb") as fh:
                    fields = fh.read().split()
                self._memory = (int(fields[0]) * _PAGE, int(fields[1]) * _PAGE)
            except (OSError, ValueError, IndexError):
                self._memory = (0, 0)
        return self._memory


def _env(key: str) -> Getter:
    def get(f: Facts) -> str:
        value = f.environ.get(key)
        return "" if value is None else str(value)
    return get


def _addr(f: Facts) -> str:
    """REMOTE_ADDR, or with --log-x-forwarded-for the X-Forwarded-For sent, as uWSGI."""
    environ = f.environ
    addr = environ.get("REMOTE_ADDR", "")
    if f.worker.log_x_forwarded_for:
        addr = environ.get("HTTP_X_FORWARDED_FOR", addr)
    return "" if addr is None else str(addr)


def _uri(f: Facts) -> str:
    return f.environ.get("REQUEST_URI") or f.environ.get("PATH_INFO", "")


def _cl(f: Facts) -> str:
    try:
        return str(int(f.environ.get("CONTENT_LENGTH") or 0))
    except ValueError:
        return "0"


def _ltime(f: Facts) -> str:
    return time.strftime("%d/%b/%Y:%H:%M:%S %z", time.localtime(int(f.start)))


def _micros(f: Facts) -> int:
    return int((f.end - f.start) * 1_000_000)


# uWSGI 2.0's request log variables that a brood worker knows. Sizes are bytes; times
# are the request's start (time, ctime, ltime, tmsecs, tmicros) or its duration
# (secs, msecs, micros); epoch is the time the line is written.
VARIABLES: dict[str, Callable[[Facts], str]] = {
    "uri": _uri,
    "method": _env("REQUEST_METHOD"),
    "user": _env("REMOTE_USER"),
    "addr": _addr,
    "host": _env("HTTP_HOST"),
    "proto": _env("SERVER_PROTOCOL"),
    "uagent": _env("HTTP_USER_AGENT"),
    "referer": _env("HTTP_REFERER"),
    "status": lambda f: str(f.core.code),
    "micros": lambda f: str(_micros(f)),
    "msecs": lambda f: str(_micros(f) // 1000),
    "secs": lambda f: f"{f.end - f.start:f}",
    "time": lambda f: str(int(f.start)),
    "ctime": lambda f: time.ctime(int(f.start)),
    "ltime": _ltime,
    "tmsecs": lambda f: str(int(f.start * 1000)),
    "tmicros": lambda f: str(int(f.start * 1_000_000)),
    "epoch": lambda f: str(int(time.time())),
    "size": lambda f: str(f.core.sent + f.core.hsize),
    "rsize": lambda f: str(f.core.sent),
    "hsize": lambda f: str(f.core.hsize),
    "headers": lambda f: str(f.core.hcount),
    "cl": _cl,
    "pid": lambda f: str(f.worker.pid),
    "wid": lambda f: str(f.worker.id),
    "core": lambda f: str(f.core.id),
    "switches": lambda f: "1",  # one per request, as the default line says
    "vars": lambda f: str(f.nvars),
    "pktsize": lambda f: str(f.vsize),
    "vsz": lambda f: str(f.memory()[0]),
    "rss": lambda f: str(f.memory()[1]),
    "vszM": lambda f: str(f.memory()[0] // _MB),
    "rssM": lambda f: str(f.memory()[1] // _MB),
}
_REQUEST_VAR = "var."


def lookup(name: str) -> Getter | None:
    """The getter for ``name``: a table variable, or ``var.NAME`` (a request var)."""
    get = VARIABLES.get(name)
    if get is None and name.startswith(_REQUEST_VAR) and len(name) > len(_REQUEST_VAR):
        get = _env(name[len(_REQUEST_VAR):])
    return get


def _logvar(f: Facts) -> str:
    """A uWSGI logvar: a value the app sets for the line through uWSGI's ``uwsgi``
    module (``set_logvar``), which brood does not have, so there is never one."""
    return ""


def lookup_or_logvar(name: str) -> Getter:
    """As uWSGI reads a --log-format: a name that is no variable is a logvar."""
    return lookup(name) or _logvar


def compile_format(fmt: str) -> LineFormat[Facts]:
    """``--log-format`` compiled; OptionError for an unclosed ``%(``."""
    return LineFormat(parse_format(fmt, lookup_or_logvar, OPTION), lookup_or_logvar,
                      empty="-")


def logvars(fmt: str) -> list[str]:
    """The names of ``fmt`` that are logvars (no variable brood knows): written as
    ``-``, as uWSGI writes a logvar nobody set; said at start-up, as they may be typos."""
    return [p.name for p in parse_format(fmt, lookup_or_logvar, OPTION)
            if isinstance(p, Var) and lookup(p.name) is None]


def line_bytes(line: str) -> bytes:
    """A request line as bytes: environ values are the request's bytes read as latin-1
    (PEP 3333), so latin-1 gives them back as sent (a UTF-8 path logs as UTF-8, not
    twice encoded); a value an app set to other text goes out as UTF-8."""
    try:
        return line.encode("latin-1")
    except UnicodeEncodeError:
        return line.encode("utf-8", "replace")


def write_line(data: bytes, lock: threading.Lock | None) -> None:
    """One request line out in one write. Up to PIPE_BUF bytes a write to a pipe is
    whole; a longer one from a --threads worker takes the worker's lock, so two threads'
    long lines (long URIs) do not mix in the log master's pipe."""
    with contextlib.suppress(OSError):
        if lock is None or len(data) <= select.PIPE_BUF:
            os.write(brood_log.REQUEST_FD, data)
        else:
            with lock:
                os.write(brood_log.REQUEST_FD, data)


class RequestLog:
    """A worker's ``request_log`` when it is not the default one: a --log-format line,
    and/or only the requests ``LogRules`` wants (under --disable-logging)."""

    __slots__ = ("worker", "default_line", "format", "rules")

    def __init__(self, worker: Worker, default_line: Callable[..., None], fmt: str | None,
                 rules: LogRules) -> None:
        self.worker = worker
        self.default_line = default_line  # the worker's own line, used without a format
        self.format = compile_format(fmt) if fmt else None
        self.rules = rules

    def __call__(self, core: Core, environ: dict[str, Any], start: float, end: float,
                 vsize: int, nvars: int) -> None:
        rules = self.rules
        if not rules.everything and not rules.wants(
                core.code, core.sent, int((end - start) * 1000), core.sendfile, core.broken):
            return
        if self.format is None:
            self.default_line(core, environ, start, end, vsize, nvars)
            return
        facts = Facts(self.worker, core, environ, start, end, vsize, nvars)
        write_line(line_bytes(self.format.render(facts) + "\n"), self.worker.lock)
