"""Typed protocol errors: the peer broke the protocol, and this is how to answer.

Every error carries the HTTP ``status`` a server should answer with and a short
``reason`` fit for a log line. The shells keep one table from these to responses
(or to a silent close, which is what uWSGI's routers do); the parsers never
decide how to answer, they only say what went wrong.

Misuse by local code (bad arguments) raises ``ValueError``/``RuntimeError``
instead, so the two kinds never get mixed up.
"""

from __future__ import annotations


class ProtocolError(Exception):
    """The remote peer sent bytes that break the protocol."""

    status: int = 400

    def __init__(self, reason: str, status: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        if status is not None:
            self.status = status

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.reason!r}, status={self.status})"


class PacketError(ProtocolError):
    """A malformed uwsgi packet (header or vars block)."""

    status = 400


class HeadTooLarge(ProtocolError):
    """A request head or vars block larger than the configured limit."""

    status = 431


class BodyTooLarge(ProtocolError):
    """A request body larger than the configured limit."""

    status = 413


class BadRequest(ProtocolError):
    """A malformed or ambiguous HTTP request (request smuggling lives here)."""

    status = 400


class UnsupportedVersion(ProtocolError):
    """An HTTP version other than 1.0 and 1.1."""

    status = 505


class NotImplementedCoding(ProtocolError):
    """A transfer coding we do not implement (anything but ``chunked``)."""

    status = 501


class BadResponse(ProtocolError):
    """A backend answer we cannot frame; the client gets a 502."""

    status = 502


__all__ = [
    "BadRequest",
    "BadResponse",
    "BodyTooLarge",
    "HeadTooLarge",
    "NotImplementedCoding",
    "PacketError",
    "ProtocolError",
    "UnsupportedVersion",
]
