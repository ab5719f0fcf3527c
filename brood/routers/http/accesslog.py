"""The HTTP router's request log: one line per request it answered, on fd 2.

uWSGI's HTTP router writes no request lines (its workers do); brood's router writes one
like the line uWSGI's workers write (``brood.workers``'s default line), so the tools that
read those (grep on ``=> generated``, log parsers keyed on ``[pid: ...]``) read these too::

    [pid: 4242|router: http] 127.0.0.1 () {node 127.0.0.1:3031} [Tue Nov 24 14:00:00 2026] GET /path => generated 1234 bytes in 0 msecs (HTTP/1.1 200)

Where the worker's line has its numbers (app, request count, vars), the router has its
own: ``router: http`` in the bracket, the node it sent the request to in the braces (``-``
when none: 503, or an answer of its own), ``()`` for the user the router never knows (the
empty place keeps the line's shape). The time is the request's start; ``generated`` counts
every byte written to the client, head included (a router relays the answer whole and
does not split it); the status is the one the client got (502/503/504 the router's own).

Which requests get a line: every one, unless ``--disable-logging``; then only those
uWSGI's exceptions ask for (``--log-4xx``, ``--log-5xx``, ``--log-zero``, ``--log-slow``,
``--log-big``: ``brood.workers.reqlog.LogRules``, as workers and uWSGI decide; sizes are
the bytes written to the client). ``--log-micros`` gives the time in micros and
``--log-x-forwarded-for`` the client's X-Forwarded-For as its address, as in the workers'
lines. A request refused before its head was read (400, 408, 431)
gets one too, with ``-`` for its method, target and protocol. In embedded mode (the
router routes to this instance's own workers, ``Config.embedded``), they write the line
of each request they answer, as uWSGI's do, and the router writes only those of its
own answers (errors, ``--http-to-https``): one line per request, not two. ``--http-log-format`` replaces the line with a template of
uWSGI's ``--log-format`` placeholders, ``%(name)``, from ``VARIABLES`` below; the template
is parsed and compiled once at start-up by ``brood.logformat`` (shared with the workers'
``--log-format``), unknown names refused there.

Writing it costs the fast lane little (a write(2) to a log file costs more than the
line): the default line is one bytes ``%`` of what the request holds already (bytes as
sent, nothing decoded), appended to a queue; the queue goes out in one ``os.write`` to
fd 2 once it holds ``FLUSH_AT`` bytes (so lines from sibling router processes on one
pipe never interleave), at the lane's sweep (once a second) and as the lane ends
(``AccessLog.flush``); the general path writes its line, after any queued, at once. fd
2 is where the rest of brood's log goes (``--logto`` and ``--daemonize`` redirect it,
``brood.log``), unless --req-logger gives request lines a pipe of their own
(``brood.log.REQUEST_FD``). A line waits a second at most, and a stop (SIGINT, SIGTERM,
a reload) loses none: the lane flushes as it ends; only a SIGKILL loses that second's
lines.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

from brood import log as brood_log
from brood import logformat
from brood.config.model import Config
from brood.logformat import Var
from brood.protocol.http1 import RequestHead
from brood.routers.engine import option
from brood.workers.reqlog import LogRules

# Bytes of lines written at most in one write: a write to a pipe up to PIPE_BUF (4096 on
# Linux) is atomic, so the lines of the router processes sharing fd 2 stay whole.
FLUSH_AT = 4096
# The default line after its "[pid: N|router: http] " (see the module's docstring), and
# with --log-micros.
_LINE = b"%s () {node %s} [%s] %s %s => generated %d bytes in %d msecs (%s %d)\n"
_LINE_MICROS = _LINE.replace(b"msecs", b"micros")
EVERY_REQUEST = LogRules()
# What the line says of a request refused before its head was read.
UNPARSED = RequestHead(b"-", b"-", b"-", b"", b"-", [], None, False, False, False, None, None, 0)


@dataclass(slots=True)
class Entry:
    """What one finished request tells the access line."""

    remote_addr: str
    remote_port: int
    head: RequestHead
    status: int
    sent: int  # bytes written to the client, head included
    host: bytes  # the routing key: the Host header, or the server name without one
    node: str
    started: float  # epoch seconds
    elapsed: float  # seconds


def _header(name: bytes) -> Callable[[Entry], str]:
    def get(e: Entry) -> str:
        for key, value in e.head.headers:
            if key.lower() == name:
                return value.decode("latin-1")
        return ""
    return get


def _forwarded_for(head: RequestHead) -> str:
    """The X-Forwarded-For the client sent (latin-1, as sent), or ""."""
    for name, value in head.headers:
        if name.lower() == b"x-forwarded-for":
            return value.decode("latin-1")
    return ""


def _ltime(e: Entry) -> str:
    return time.strftime("%d/%b/%Y:%H:%M:%S %z", time.localtime(e.started))


# uWSGI's --log-format names where the router has the datum (addr, uri, method, proto,
# host, referer, uagent, status, size, msecs, micros, time, epoch, ctime, ltime, cl),
# plus brood's port and node. Header values and the target are latin-1, as sent.
VARIABLES: dict[str, Callable[[Entry], str]] = {
    "addr": lambda e: e.remote_addr,
    "port": lambda e: str(e.remote_port),
    "method": lambda e: e.head.method.decode("latin-1"),
    "uri": lambda e: e.head.target.decode("latin-1"),
    "proto": lambda e: e.head.version.decode("latin-1"),
    "host": lambda e: e.host.decode("latin-1"),
    "referer": _header(b"referer"),
    "uagent": _header(b"user-agent"),
    "cl": lambda e: str(e.head.content_length or 0),
    "status": lambda e: str(e.status),
    "size": lambda e: str(e.sent),
    "node": lambda e: e.node or "-",
    "msecs": lambda e: str(int(e.elapsed * 1000)),
    "micros": lambda e: str(int(e.elapsed * 1_000_000)),
    "time": lambda e: str(int(e.started)),
    "epoch": lambda e: str(int(e.started + e.elapsed)),
    "ctime": lambda e: time.ctime(e.started),
    "ltime": _ltime,
}


def parse_format(fmt: str, option: str = "http-log-format") -> list[str | Var]:
    """``fmt`` as literal strings and ``Var`` pieces over ``VARIABLES`` (see
    ``brood.logformat.parse_format``)."""
    return logformat.parse_format(fmt, VARIABLES.get, option)


class LineFormat(logformat.LineFormat[Entry]):
    """A parsed format over ``VARIABLES``, ready to render ``Entry`` values; a missing
    header renders as the empty string."""

    __slots__ = ()

    def __init__(self, pieces: list[str | Var]) -> None:
        super().__init__(pieces, VARIABLES.get)

    @classmethod
    def parse(cls, fmt: str, option: str = "http-log-format") -> LineFormat:
        return cls(parse_format(fmt, option))


class AccessLog:
    """One router's request lines: which requests get one (``LogRules``), their format,
    and the lines of the current lane pass not written yet (``flush``)."""

    __slots__ = ("format", "rules", "forwarded_for", "own", "on", "fd", "line", "scale",
                 "pending", "size", "_sec", "_ctime")

    def __init__(self, fmt: LineFormat | None = None, *, rules: LogRules = EVERY_REQUEST,
                 node_answers: bool = True, micros: bool = False,
                 forwarded_for: bool = False, fd: int | None = None) -> None:
        self.format = fmt
        self.rules = rules
        self.forwarded_for = forwarded_for  # --log-x-forwarded-for
        # Whether any of the router's own answers gets a line, and any of the nodes'.
        self.own = rules.any
        self.on = self.own and node_answers
        self.fd = brood_log.REQUEST_FD if fd is None else fd
        # The default line's template, pid in: made in the router process (after the fork).
        self.line = b"[pid: %d|router: http] " % os.getpid() + (_LINE_MICROS if micros
                                                               else _LINE)
        self.scale = 1_000_000 if micros else 1000
        self.pending: list[bytes] = []
        self.size = 0
        self._sec = -1
        self._ctime = b""

    @classmethod
    def from_config(cls, cfg: Config, fmt: LineFormat | None) -> AccessLog:
        """The core options (--disable-logging, --log-4xx, --log-micros...), as workers
        read them; in embedded mode the workers write the lines of the requests they
        answer."""
        return cls(fmt, rules=LogRules.from_config(cfg),
                   node_answers=not getattr(cfg, "embedded", False),
                   micros=bool(option(cfg, "log-micros", False)),
                   forwarded_for=bool(option(cfg, "log-x-forwarded-for", False)))

    def request(self, remote_addr: str, remote_port: int, head: RequestHead, status: int,
                sent: int, key: bytes, node: str, elapsed: float) -> None:
        """Queue the line of one request (if the rules give it one) until ``flush``."""
        rules = self.rules
        if not rules.everything and not rules.wants(status, sent, int(elapsed * 1000)):
            return
        if self.forwarded_for:
            remote_addr = _forwarded_for(head) or remote_addr
        started = time.time() - elapsed
        fmt = self.format
        if fmt is None:
            sec = int(started)
            if sec != self._sec:
                self._sec, self._ctime = sec, time.ctime(sec).encode()
            line = self.line % (remote_addr.encode(), (node or "-").encode("utf-8", "replace"),
                                self._ctime, head.method, head.target, sent,
                                int(elapsed * self.scale), head.version, status)
        else:
            entry = Entry(remote_addr, remote_port, head, status, sent, key, node, started,
                          elapsed)
            line = (fmt.render(entry) + "\n").encode("utf-8", "replace")
        if self.size + len(line) > FLUSH_AT:
            self.flush()
        self.pending.append(line)
        self.size += len(line)

    def write(self, remote_addr: str, remote_port: int, head: RequestHead, status: int,
              sent: int, key: bytes, node: str, elapsed: float) -> None:
        """``request`` and ``flush``: the general path's line, out at once."""
        self.request(remote_addr, remote_port, head, status, sent, key, node, elapsed)
        self.flush()

    def flush(self) -> None:
        """Write the queued lines, in one write when the kernel takes them. Never raises:
        a log that cannot be written loses its lines, not the request."""
        if not self.pending:
            return
        data = b"".join(self.pending) if len(self.pending) > 1 else self.pending[0]
        self.pending.clear()
        self.size = 0
        with contextlib.suppress(OSError):
            while data:
                data = data[os.write(self.fd, data):]
