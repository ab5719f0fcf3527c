"""Routing errors, each knowing its consequence, and THE one table mapping errors to answers.

Resolution, balancing and connecting raise these; the fronts never decide a status
themselves, they ask :func:`status_for` (HTTP/1, uwsgi clients) or :func:`h2_error_code`
(an HTTP/2 stream that can no longer get a response head) and :func:`error_body`.

uWSGI 2.0 closes the client connection with no bytes for every routing failure
(WIRE §7.2); brood answers with a status instead, which is an addition a front may turn
off to stay byte-compatible.
"""

from __future__ import annotations

from http import HTTPStatus

from h2.errors import ErrorCodes

from brood.protocol.errors import (
    BadResponse,
    BodyTooLarge,
    HeadTooLarge,
    NotImplementedCoding,
    ProtocolError,
    UnsupportedVersion,
)


class RoutingError(Exception):
    """A request could not be routed; ``status`` is what the client should see."""

    status: int = 502

    def __init__(self, reason: str = "", status: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason or HTTPStatus(self.status if status is None else status).phrase
        if status is not None:
            self.status = status

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.reason!r}, status={self.status})"


class NoNode(RoutingError):
    """No node for this key: unknown key, every node dead or in grace, no fallback."""

    status = 503

    @classmethod
    def for_key(cls, key: bytes | None) -> NoNode:
        if key is None:
            return cls("no key in request")
        return cls(f"no node for key {key.decode('latin-1')!r}")


class NodeFailed(RoutingError):
    """The node refused or reset the connection, or answered with garbage."""

    status = 502


class Overloaded(RoutingError):
    """This router process is out of file descriptors or kernel memory for a node's
    socket: its own limit, not the node's failure (no node is marked for it)."""

    status = 503


class NodeTimeout(RoutingError):
    """The node did not accept the connection, or did not answer, in time."""

    status = 504


class ClientError(RoutingError):
    """The client broke its protocol; wraps the parser's ProtocolError (a 4xx)."""

    status = 400

    def __init__(self, cause: ProtocolError) -> None:
        super().__init__(cause.reason, status=cause.status)
        self.cause = cause


# THE table: exception class -> HTTP status. Looked up along the MRO, so a subclass
# without its own row takes its parent's status.
STATUS_FOR: dict[type[BaseException], int] = {
    NoNode: 503,
    NodeFailed: 502,
    NodeTimeout: 504,
    ClientError: 400,
    RoutingError: 502,
    HeadTooLarge: 431,
    BodyTooLarge: 413,
    UnsupportedVersion: 505,
    NotImplementedCoding: 501,
    BadResponse: 502,
    ProtocolError: 400,
}


def status_for(exc: BaseException) -> int:
    """HTTP status to answer ``exc`` with; an instance's own ``status`` wins (a
    ProtocolError built with an explicit status), then the table, then 500."""
    own = getattr(exc, "status", None)
    if isinstance(own, int) and 100 <= own <= 599:
        return own
    for klass in type(exc).__mro__:
        if klass in STATUS_FOR:
            return STATUS_FOR[klass]
    return 500


def as_routing_error(exc: BaseException) -> RoutingError:
    """Any error of the request path as a RoutingError (protocol errors wrapped)."""
    if isinstance(exc, RoutingError):
        return exc
    if isinstance(exc, ProtocolError):
        if 500 <= exc.status <= 599:
            return NodeFailed(exc.reason, status=exc.status)
        return ClientError(exc)
    return RoutingError(f"internal error: {type(exc).__name__}", status=500)


def h2_error_code(exc: BaseException) -> int:
    """RST_STREAM code for a stream that fails after its response head went out (or
    that a front prefers to reset rather than answer).

    * NoNode -> REFUSED_STREAM: nothing was processed, the client may safely retry
      elsewhere (RFC 9113 §8.7).
    * NodeTimeout -> CANCEL: we gave up waiting for the node.
    * NodeFailed and other 5xx -> INTERNAL_ERROR.
    * client protocol errors -> PROTOCOL_ERROR, except bodies/heads too large ->
      ENHANCE_YOUR_CALM (the peer is sending more than we accept).
    """
    if isinstance(exc, NoNode):
        return int(ErrorCodes.REFUSED_STREAM)
    if isinstance(exc, NodeTimeout):
        return int(ErrorCodes.CANCEL)
    cause = exc.cause if isinstance(exc, ClientError) else exc
    if isinstance(cause, HeadTooLarge | BodyTooLarge):
        return int(ErrorCodes.ENHANCE_YOUR_CALM)
    if isinstance(cause, ProtocolError) and not isinstance(cause, BadResponse):
        return int(ErrorCodes.PROTOCOL_ERROR)
    return int(ErrorCodes.INTERNAL_ERROR)


def error_body(status: int) -> bytes:
    """A short text body for an error answer: the status line's words and nothing
    else (no key, no node address: those are for the log, not for the client)."""
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    return f"{status} {phrase}\n".encode("ascii")


__all__ = [
    "STATUS_FOR",
    "ClientError",
    "NoNode",
    "NodeFailed",
    "NodeTimeout",
    "RoutingError",
    "as_routing_error",
    "error_body",
    "h2_error_code",
    "status_for",
]
