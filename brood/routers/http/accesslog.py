"""One access line per routed request, on the ``brood.routers.http.access`` logger.

uWSGI's HTTP router writes no request lines (its workers do); brood's router logs at
INFO, so the line costs nothing unless that logger is enabled. Format::

    127.0.0.1:51234 "GET /path HTTP/1.1" 200 1234 host=example.com node=127.0.0.1:3031 0.4ms
"""

from __future__ import annotations

import logging

access = logging.getLogger("brood.routers.http.access")


def enabled() -> bool:
    return access.isEnabledFor(logging.INFO)


def log_request(remote: str, method: bytes, target: bytes, version: bytes, status: int,
                sent: int, key: bytes, node: str, elapsed: float) -> None:
    access.info('%s "%s %s %s" %d %d host=%s node=%s %.1fms', remote,
                method.decode("latin-1"), target.decode("latin-1"), version.decode("latin-1"),
                status, sent, key.decode("latin-1"), node or "-", elapsed * 1000)
