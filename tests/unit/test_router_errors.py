"""Routing errors: statuses, the one table, HTTP/2 codes, bodies."""

from __future__ import annotations

import pytest
from h2.errors import ErrorCodes

from brood.protocol.errors import (
    BadRequest,
    BadResponse,
    BodyTooLarge,
    HeadTooLarge,
    ProtocolError,
    UnsupportedVersion,
)
from brood.routers.errors import (
    STATUS_FOR,
    ClientError,
    NodeFailed,
    NodeTimeout,
    NoNode,
    RoutingError,
    as_routing_error,
    error_body,
    h2_error_code,
    status_for,
)


def test_statuses_and_reasons() -> None:
    assert (NoNode("x").status, NodeFailed("x").status, NodeTimeout("x").status) == (503, 502, 504)
    assert NoNode.for_key(b"py.example.com").reason == "no node for key 'py.example.com'"
    assert NoNode.for_key(None).reason == "no key in request"
    assert NodeFailed().reason == "Bad Gateway"
    assert RoutingError("x", status=500).status == 500
    assert repr(NodeTimeout("slow")) == "NodeTimeout('slow', status=504)"
    assert isinstance(NoNode("x"), RoutingError)


def test_client_error_wraps_protocol_errors() -> None:
    err = ClientError(HeadTooLarge("head over 4096 bytes"))
    assert (err.status, err.reason) == (431, "head over 4096 bytes")
    assert isinstance(err.cause, HeadTooLarge)


@pytest.mark.parametrize(("exc", "status"), [
    (NoNode("x"), 503), (NodeFailed("x"), 502), (NodeTimeout("x"), 504),
    (ClientError(BadRequest("x")), 400), (BadRequest("x"), 400), (HeadTooLarge("x"), 431),
    (BodyTooLarge("x"), 413), (UnsupportedVersion("x"), 505), (BadResponse("x"), 502),
    (ProtocolError("x", status=414), 414), (ValueError("x"), 500),
])
def test_status_for(exc, status) -> None:
    assert status_for(exc) == status


def test_table_rows_agree_with_class_statuses() -> None:
    for klass, status in STATUS_FOR.items():
        assert getattr(klass, "status", status) == status, klass


def test_as_routing_error() -> None:
    no = NoNode("x")
    assert as_routing_error(no) is no
    assert isinstance(as_routing_error(BadRequest("x")), ClientError)
    bad = as_routing_error(BadResponse("garbage head"))
    assert isinstance(bad, NodeFailed) and bad.status == 502
    other = as_routing_error(KeyError("k"))
    assert other.status == 500 and "KeyError" in other.reason


@pytest.mark.parametrize(("exc", "code"), [
    (NoNode("x"), ErrorCodes.REFUSED_STREAM),
    (NodeTimeout("x"), ErrorCodes.CANCEL),
    (NodeFailed("x"), ErrorCodes.INTERNAL_ERROR),
    (BadResponse("x"), ErrorCodes.INTERNAL_ERROR),
    (ClientError(BadRequest("x")), ErrorCodes.PROTOCOL_ERROR),
    (BadRequest("x"), ErrorCodes.PROTOCOL_ERROR),
    (ClientError(BodyTooLarge("x")), ErrorCodes.ENHANCE_YOUR_CALM),
    (RuntimeError("x"), ErrorCodes.INTERNAL_ERROR),
])
def test_h2_error_code(exc, code) -> None:
    assert h2_error_code(exc) == int(code)


def test_error_body_is_short_and_leaks_nothing() -> None:
    assert error_body(503) == b"503 Service Unavailable\n"
    assert error_body(504) == b"504 Gateway Timeout\n"
    assert error_body(599) == b"599 Error\n"
