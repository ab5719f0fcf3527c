"""One access line per routed request, on the ``brood.routers.http.access`` logger.

uWSGI's HTTP router writes no request lines (its workers do); brood's router logs at
INFO, so the line costs nothing unless that logger is enabled. Default format::

    127.0.0.1:51234 "GET /path HTTP/1.1" 200 1234 host=example.com node=127.0.0.1:3031 0.4ms

``--http-log-format`` (a brood option) replaces it with a template using uWSGI's
``--log-format`` placeholders, ``%(name)``, from ``VARIABLES`` below; the template is
parsed and compiled once at start-up by ``brood.logformat`` (shared with the workers'
``--log-format``), unknown names refused there.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from brood import logformat
from brood.logformat import Var
from brood.protocol.http1 import RequestHead

access = logging.getLogger("brood.routers.http.access")


def enabled() -> bool:
    return access.isEnabledFor(logging.INFO)


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


def log_request(fmt: LineFormat | None, remote_addr: str, remote_port: int,
                head: RequestHead, status: int, sent: int, key: bytes, node: str,
                elapsed: float) -> None:
    """Write the line for one request (the caller checked ``enabled()``)."""
    if fmt is None:
        access.info('%s:%d "%s %s %s" %d %d host=%s node=%s %.1fms', remote_addr,
                    remote_port, head.method.decode("latin-1"),
                    head.target.decode("latin-1"), head.version.decode("latin-1"),
                    status, sent, key.decode("latin-1"), node or "-", elapsed * 1000)
        return
    entry = Entry(remote_addr, remote_port, head, status, sent, key, node,
                  time.time() - elapsed, elapsed)
    access.info("%s", fmt.render(entry))
