"""HTTP/1 head parsing: framing, keep-alive, and the request-smuggling refusals."""

import pytest

from brood.protocol.errors import (
    BadRequest,
    BadResponse,
    HeadTooLarge,
    NotImplementedCoding,
    ProtocolError,
    UnsupportedVersion,
)
from brood.protocol.http1 import (
    STATUS_REASONS,
    parse_request_head,
    parse_response_head,
    simple_response,
)

LIMIT = 65535


def req(*lines: str, version: str = "HTTP/1.1", first: str = "GET / ") -> bytes:
    return (first + version + "\r\n" + "".join(line + "\r\n" for line in lines) + "\r\n").encode(
        "latin-1"
    )


def test_an_escaped_nul_in_the_query_is_the_apps_business():
    head = parse_request_head(b"GET /p?x=%00 HTTP/1.1\r\nHost: a\r\n\r\n", 65535)
    assert (head.path, head.query) == (b"/p", b"x=%00")


def test_get_with_query():
    data = b"GET /path/x?a=1&b=2 HTTP/1.0\r\nHost: www.example.test\r\nX-Custom:  v1 \r\nCookie: c=1\r\n\r\n"
    head = parse_request_head(data + b"NEXT", LIMIT)
    assert head.method == b"GET"
    assert head.target == b"/path/x?a=1&b=2"
    assert (head.path, head.query) == (b"/path/x", b"a=1&b=2")
    assert head.version == b"HTTP/1.0"
    assert head.headers == [(b"Host", b"www.example.test"), (b"X-Custom", b"v1"), (b"Cookie", b"c=1")]
    assert head.host == b"www.example.test"
    assert head.content_length is None and not head.chunked
    assert not head.keep_alive and not head.expect_continue and head.upgrade is None
    assert head.size == len(data)


def test_incomplete_returns_none_at_every_prefix():
    data = req("Host: a", "Content-Length: 5")
    for i in range(len(data)):
        assert parse_request_head(data[:i], LIMIT) is None, i
    assert parse_request_head(bytearray(data), LIMIT).content_length == 5


def test_leading_empty_lines_skipped_and_counted():
    data = b"\r\n\r\n" + req("Host: a")
    head = parse_request_head(data, LIMIT)
    assert head.size == len(data)
    assert parse_request_head(b"\r\n", LIMIT) is None


@pytest.mark.parametrize(
    "version, connection, expected",
    [
        ("HTTP/1.1", None, True),
        ("HTTP/1.1", "close", False),
        ("HTTP/1.1", "Keep-Alive, CLOSE", False),
        ("HTTP/1.0", None, False),
        ("HTTP/1.0", "keep-alive", True),
        ("HTTP/1.0", "Keep-Alive", True),
    ],
)
def test_keep_alive(version, connection, expected):
    lines = ["Host: a"] + ([f"Connection: {connection}"] if connection else [])
    assert parse_request_head(req(*lines, version=version), LIMIT).keep_alive is expected


def test_upgrade_and_expect():
    head = parse_request_head(
        req("Host: a", "Connection: keep-alive, Upgrade", "Upgrade: websocket", "Expect: 100-Continue"),
        LIMIT,
    )
    assert head.upgrade == b"websocket"
    assert head.expect_continue
    # Upgrade without the Connection token, or in HTTP/1.0, is not an upgrade.
    assert parse_request_head(req("Host: a", "Upgrade: websocket"), LIMIT).upgrade is None
    h10 = req("Connection: upgrade", "Upgrade: websocket", "Expect: 100-continue", version="HTTP/1.0")
    head = parse_request_head(h10, LIMIT)
    assert head.upgrade is None and not head.expect_continue


def test_chunked_and_length():
    assert parse_request_head(req("Host: a", "Transfer-Encoding: Chunked"), LIMIT).chunked
    head = parse_request_head(req("Host: a", "Content-Length: 11", "content-length: 11"), LIMIT)
    assert head.content_length == 11
    assert parse_request_head(req("Host: a", "Content-Length: 7, 7"), LIMIT).content_length == 7
    assert parse_request_head(req("Host: a", "Content-Length: 0"), LIMIT).content_length == 0


def test_target_forms():
    head = parse_request_head(req("Host: a", first="OPTIONS * "), LIMIT)
    assert head.path == b"*"
    head = parse_request_head(req("Host: ignored", first="GET http://b.test:8/x/y?q=1 "), LIMIT)
    assert (head.host, head.path, head.query) == (b"b.test:8", b"/x/y", b"q=1")
    # the node sees the Host it was routed by (RFC 9112 §3.2.2), not the one sent
    assert (b"Host", b"b.test:8") in head.headers and "ignored" not in repr(head.headers)
    head = parse_request_head(req(first="GET http://b.test/ ", version="HTTP/1.0"), LIMIT)
    assert head.headers[0] == (b"Host", b"b.test")
    head = parse_request_head(req("Host: c", first="GET http://b.test "), LIMIT)
    assert head.path == b"/"
    head = parse_request_head(req("Host: c.test:443", first="CONNECT c.test:443 "), LIMIT)
    assert head.path == b"" and head.host == b"c.test:443"
    head = parse_request_head(req("Host: a", first="GET /p? "), LIMIT)
    assert (head.path, head.query) == (b"/p", b"")


def test_http10_without_host_is_fine():
    assert parse_request_head(b"GET / HTTP/1.0\r\n\r\n", LIMIT).host is None


SMUGGLING = [
    ("CL+TE", req("Host: a", "Content-Length: 5", "Transfer-Encoding: chunked"), 400),
    ("TE+CL", req("Host: a", "Transfer-Encoding: chunked", "Content-Length: 5"), 400),
    ("CL,CL differ", req("Host: a", "Content-Length: 5", "Content-Length: 6"), 400),
    ("CL list differ", req("Host: a", "Content-Length: 5, 6"), 400),
    ("CL signed", req("Host: a", "Content-Length: +5"), 400),
    ("CL hex", req("Host: a", "Content-Length: 0x5"), 400),
    ("CL empty", req("Host: a", "Content-Length: "), 400),
    ("CL huge", req("Host: a", "Content-Length: 9999999999999999999"), 400),
    ("CL inner space", req("Host: a", "Content-Length: 1 2"), 400),
    ("TE chunked,identity", req("Host: a", "Transfer-Encoding: chunked, identity"), 400),
    ("TE identity", req("Host: a", "Transfer-Encoding: identity"), 400),
    ("TE chunked twice", req("Host: a", "Transfer-Encoding: chunked", "Transfer-Encoding: chunked"), 400),
    ("TE gzip,chunked", req("Host: a", "Transfer-Encoding: gzip, chunked"), 501),
    ("TE xchunked", req("Host: a", "Transfer-Encoding: xchunked"), 400),
    ("TE empty", req("Host: a", "Transfer-Encoding: "), 400),
    ("TE vertical tab", b"GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \x0bchunked\r\n\r\n", 400),
    ("TE in 1.0", req("Transfer-Encoding: chunked", version="HTTP/1.0"), 400),
    ("obs-fold", req("Host: a", "X-A: 1", " continued"), 400),
    ("obs-fold tab", req("Host: a", "X-A: 1", "\tcontinued"), 400),
    ("fold into TE", req("Host: a", "Transfer-Encoding:", " chunked"), 400),
    ("space before colon", req("Host: a", "Transfer-Encoding : chunked"), 400),
    ("tab before colon", req("Host: a", "Content-Length\t: 5"), 400),
    ("bare CR in value", b"GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n", 400),
    ("bare CR line end", b"GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n", 400),
    ("bare LF line", b"GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n", 400),
    ("bare LF head", b"GET / HTTP/1.1\nHost: a\n\n", 400),
    ("bare LF request line", b"GET / HTTP/1.1\nHost: a\r\n\r\n", 400),
    ("bare CR request line", b"GET /\r HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("NUL in value", b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n", 400),
    ("escaped NUL in path", b"GET /c%00d?x HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("escaped NUL, absolute", b"GET http://a/c%00 HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("DEL in value", b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x7fb\r\n\r\n", 400),
    ("bad name char", req("Host: a", "X(y): 1"), 400),
    ("empty name", req("Host: a", ": 1"), 400),
    ("no colon", req("Host: a", "Garbage"), 400),
    ("two Hosts", req("Host: a", "Host: b"), 400),
    ("no Host 1.1", req("X: y"), 400),
    ("Host with slash", req("Host: a/../b"), 400),
    ("Host with space", req("Host: a b"), 400),
    ("double space request line", b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("trailing space request line", b"GET / HTTP/1.1 \r\nHost: a\r\n\r\n", 400),
    ("tab request line", b"GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("bad method", b"G(T / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ("relative target", req("Host: a", first="GET path "), 400),
    ("asterisk GET", req("Host: a", first="GET * "), 400),
    ("userinfo", req("Host: a", first="GET http://u@b/ "), 400),
    ("empty authority", req("Host: a", first="GET http:///abs "), 400),
    ("fragment in path", req("Host: a", first="GET /adm#/../x "), 400),
    ("fragment in query", req("Host: a", first="GET /f?x=1#frag "), 400),
    ("HTTP/2", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505),
    ("HTTP/0.9", b"GET /\r\n\r\n", 505),
    ("HTTP/1.2", req("Host: a", version="HTTP/1.2"), 505),
    ("garbage version", req("Host: a", version="FOO/1.1"), 400),  # not an HTTP-version (RFC 9112 §2.3)
    ("lowercase version", req("Host: a", version="http/1.1"), 400),
]


@pytest.mark.parametrize("name, data, status", SMUGGLING, ids=[c[0] for c in SMUGGLING])
def test_refused(name, data, status):
    with pytest.raises(ProtocolError) as info:
        parse_request_head(data, LIMIT)
    assert info.value.status == status
    assert info.value.reason
    expected = {400: BadRequest, 501: NotImplementedCoding, 505: UnsupportedVersion}[status]
    assert isinstance(info.value, expected)


def test_refused_early_before_head_complete():
    with pytest.raises(BadRequest):
        parse_request_head(b"\x16\x03\x01\x02\x00", LIMIT)  # a TLS ClientHello
    with pytest.raises(BadRequest):
        parse_request_head(b"GET / HTTP/1.1\nHost: a\n\n", LIMIT)  # bare-LF head
    with pytest.raises(BadRequest):
        parse_request_head(b"GET / HTTP/1.1\r\r", LIMIT)  # bare CR
    with pytest.raises(UnsupportedVersion):
        parse_request_head(b"GET / HTTP/2.0\r\nHost: a", LIMIT)
    with pytest.raises(BadRequest):
        parse_request_head(b"GET  / HTTP/1.1\r\n", LIMIT)
    # A bare LF or CR anywhere in a head that can never end: at once, not a 408 later
    # (no CRLFCRLF ever comes after "y\n\r\n").
    for partial in (b"GET /a HTTP/1.1\r\nHost: a\r\nX: y\n\r\n", b"GET / HTTP/1.1\r\nX: a\rb"):
        with pytest.raises(BadRequest):
            parse_request_head(partial, LIMIT)
    assert parse_request_head(b"GET / HTTP/1.1\r\nX: y\r", LIMIT) is None  # its LF may come


def test_head_too_large():
    data = req("Host: a", "X: " + "x" * 200)
    assert parse_request_head(data, len(data)).size == len(data)
    with pytest.raises(HeadTooLarge) as info:
        parse_request_head(data, len(data) - 1)
    assert info.value.status == 431
    with pytest.raises(HeadTooLarge):
        parse_request_head(data[:100], 100)  # no end within the limit
    assert parse_request_head(data[:100], 101) is None
    with pytest.raises(HeadTooLarge):
        parse_request_head(b"\r\n" * 60, 100)


def test_56k_of_headers_fits_the_default_limit():
    lines = ["Host: www.example.test"] + [f"X-Big{i}: " + "x" * 8000 for i in range(7)]
    head = parse_request_head(req(*lines, version="HTTP/1.0", first="GET /big56 "), LIMIT)
    assert len(head.headers) == 8


def test_obs_text_value_and_target_tolerated():
    head = parse_request_head(b"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: a\r\nX: \xe9t\xe9\r\n\r\n", LIMIT)
    assert head.headers[1] == (b"X", b"\xe9t\xe9")


# -- responses ---------------------------------------------------------------


def resp(*lines: str, status: str = "HTTP/1.1 200 OK", eol: str = "\r\n") -> bytes:
    return (status + eol + "".join(line + eol for line in lines) + eol).encode()


@pytest.mark.parametrize(
    "data, method, kind, length, keep",
    [
        (resp("Content-Length: 9"), b"GET", "length", 9, True),
        (resp("Content-Length: 9", "Connection: close"), b"GET", "length", 9, False),
        (resp("Transfer-Encoding: chunked"), b"GET", "chunked", None, True),
        (resp("Transfer-Encoding: gzip"), b"GET", "close", None, False),
        (resp("Content-Type: text/plain"), b"GET", "close", None, False),
        (resp("Content-Length: 9"), b"HEAD", "none", 9, True),
        (resp("Content-Length: 9"), b"head", "length", 9, True),  # methods are case-sensitive
        (resp(status="HTTP/1.1 204 No Content"), b"GET", "none", None, True),
        (resp(status="HTTP/1.1 304 Not Modified"), b"GET", "none", None, True),
        (resp(status="HTTP/1.1 100 Continue"), b"POST", "none", None, True),
        (resp("Upgrade: websocket", status="HTTP/1.1 101 Switching"), b"GET", "none", None, False),
        (resp("Content-Length: 3", status="HTTP/1.0 200 OK"), b"GET", "length", 3, False),
        (resp("Content-Length: 3", "Connection: keep-alive", status="HTTP/1.0 200 OK"), b"GET", "length", 3, True),
        (resp("Transfer-Encoding: chunked", status="HTTP/1.0 200 OK"), b"GET", "close", None, False),
        (resp("Content-Length: 3", eol="\n"), b"GET", "length", 3, True),
        (resp("Content-Length: 3", status="HTTP/1.1 200"), b"GET", "length", 3, True),
    ],
)
def test_response_framing(data, method, kind, length, keep):
    head = parse_response_head(data + b"body", LIMIT, method)
    assert head.body_kind == kind
    assert head.content_length == length
    assert head.keep_alive is keep
    assert head.size == len(data)


def test_response_fields_and_incomplete():
    data = b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\nX-A: b\r\n\r\n"
    for i in range(len(data)):
        assert parse_response_head(data[:i], LIMIT) is None
    head = parse_response_head(data, LIMIT)
    assert (head.version, head.status, head.reason) == (b"HTTP/1.1", 404, b"Not Found")
    assert head.headers == [(b"Content-Length", b"2"), (b"X-A", b"b")]


def test_response_mixed_line_endings():
    data = b"HTTP/1.0 200 OK\nContent-Length: 1\r\n\n"
    assert parse_response_head(data, LIMIT).size == len(data)


@pytest.mark.parametrize(
    "data",
    [
        resp("Content-Length: 3", "Transfer-Encoding: chunked"),
        resp("Content-Length: 3", "Content-Length: 4"),
        resp("Content-Length: x"),
        resp("Bad Header: 1"),
        resp(status="HTTP/2 200 OK"),
        resp(status="HTTP/1.1 20 OK"),
        resp(status="HTTP/1.1 099 Odd"),  # under 100: not a status code, not an interim
        resp(status="HTTP/1.1 000 Zero"),
        b"<html>not http</html>",
    ],
)
def test_response_refused(data):
    with pytest.raises(BadResponse) as info:
        parse_response_head(data, LIMIT)
    assert info.value.status == 502


def test_response_too_large():
    with pytest.raises(BadResponse):
        parse_response_head(b"HTTP/1.1 200 OK\r\nX: " + b"x" * 100, 50)


def test_simple_response():
    data = simple_response(502)
    head = parse_response_head(data, LIMIT)
    assert head.status == 502 and not head.keep_alive
    assert data[head.size :] == b"502 Bad Gateway\n"
    assert head.content_length == len(b"502 Bad Gateway\n")
    data = simple_response(404, b"nope", headers=[(b"X-A", b"1")], keep_alive=True)
    head = parse_response_head(data, LIMIT)
    assert head.keep_alive and data[head.size :] == b"nope"
    assert (b"X-A", b"1") in head.headers
    assert simple_response(204).endswith(b"\r\n\r\n")
    assert b"Content-Length" not in simple_response(304)
    assert simple_response(400, version=b"HTTP/1.0").startswith(b"HTTP/1.0 400 Bad Request\r\n")
    for status in (400, 404, 413, 431, 502, 503, 504, 505):
        assert status in STATUS_REASONS
