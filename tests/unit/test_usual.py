"""The fast lane's one-pass parsers agree with the strict ones wherever they answer.

``usual_request`` must give exactly what ``parse_request_head`` + ``encode_head_vars``
give, and ``usual_answer`` what ``parse_response_framing`` gives, or None; never a
head the strict parser refuses.
"""

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from test_http1 import LIMIT, SMUGGLING, req

from brood.protocol import usual
from brood.protocol.errors import ProtocolError
from brood.protocol.http1 import parse_request_head, parse_response_framing
from brood.protocol.usual import usual_answer, usual_request
from brood.protocol.uwsgi import encode_vars
from brood.protocol.vars import encode_connection_vars, encode_head_vars, request_vars
from brood.routers.http.h1 import has_forwarded_for

CONNECTION_VARS = encode_connection_vars(remote_addr="127.0.0.1", remote_port=40000,
                                         server_name=b"example.test", server_port=b"8080")
EXTRA = b"\x03\x00ABC\x01\x00d"


CLIENT = b"127.0.0.1"


def strict(data: bytes, extra: bytes = b""):
    """What the general path makes of ``data``: (head, block), None, or the refusal. A
    head with X-Forwarded-For gets the client's address appended, as the HTTP router's
    ``build_vars_block`` does (``request_vars``, then the chain grows)."""
    try:
        head = parse_request_head(data, LIMIT)
    except ProtocolError as exc:
        return exc
    if head is None:
        return None
    if not has_forwarded_for(data, head.size):
        return head, encode_head_vars(head, CONNECTION_VARS, extra_block=extra)
    pairs = request_vars(head, remote_addr=CLIENT.decode(), remote_port=40000,
                         server_name=b"example.test", server_port=b"8080",
                         extra=[(b"ABC", b"d")] if extra else ())
    for i, (key, value) in enumerate(pairs):
        if key == b"HTTP_X_FORWARDED_FOR":
            pairs[i] = (key, value + b", " + CLIENT)
            break
    try:
        return head, encode_vars(pairs)
    except ProtocolError as exc:
        return exc


def check_agrees(data: bytes, extra: bytes = b"") -> bool:
    """usual_request(data) is None or what the general path gives; True when it answered.
    Without the client's address a head with X-Forwarded-For is never served."""
    fast = usual_request(data, LIMIT, CONNECTION_VARS, extra, CLIENT)
    # The second time the whole head comes from its cache, the third time (that cache
    # emptied) its lines do: the same answer each time.
    assert usual_request(data, LIMIT, CONNECTION_VARS, extra, CLIENT) == fast
    usual._request_heads.clear()
    assert usual_request(data, LIMIT, CONNECTION_VARS, extra, CLIENT) == fast
    without = usual_request(data, LIMIT, CONNECTION_VARS, extra)
    assert without == (None if has_forwarded_for(data, len(data)) else fast)
    if fast is None:
        return False
    assert fast == strict(data, extra)
    return True


USUAL = [
    req("Host: 127.0.0.1:8080"),
    req("Host: a", "Connection: close"),
    req("Host: a", "Connection: keep-alive", version="HTTP/1.0"),
    req("Connection: Keep-Alive, TE", version="HTTP/1.0"),
    req("Host: a", "Connection: upgrade"),  # no Upgrade header: not an upgrade
    req(version="HTTP/1.0"),
    req("Host: a", "Content-Type: text/plain", "Cookie: a=b; c=d", "X-Empty:",
        "X-Tab: a\tb", first="DELETE /p%20q?x=1&y "),
    req("Host: a", "X-Obs: caf\xe9", first="GET /caf\xe9 "),
    req("Host: [::1]:8080", "User-Agent: wrk"),
    req("Host: a", "Accept:   text/html", first="PURGE /x "),
    req("Host: a", "X-Forwarded-For: 10.0.0.1"),
    req("X-Forwarded-For: 10.0.0.1, 10.0.0.2", "Host: a", "Accept: */*"),
    req("Host: a", "x-forwarded-for:"),
    req("Host: a", "X_Forwarded_For: 6.6.6.6"),  # the same var: the client is appended
    req("Host: a", "Content-Length: 5", first="POST /form ") + b"hello",
    req("Host: a", "Content-Length: 0"),
    req("Content-Length: 007", "Host: a", first="PUT /x ") + b"1234567",  # the var says 7
    req("Host: a", "Content-Length: 5", version="HTTP/1.0", first="POST / ") + b"hel",  # more to come
]


@pytest.mark.parametrize("data", USUAL, ids=range(len(USUAL)))
def test_usual_heads_served_as_the_parser_reads_them(data):
    assert check_agrees(data)
    assert check_agrees(data, EXTRA)


LEFT = [
    ("chunked", req("Host: a", "Transfer-Encoding: chunked")),
    ("upgrade", req("Host: a", "Connection: upgrade", "Upgrade: websocket")),
    ("expect", req("Host: a", "Expect: 100-continue")),
    ("forwarded twice", req("Host: a", "X-Forwarded-For: 10.0.0.1", "X-Forwarded-For: b")),
    ("length list", req("Host: a", "Content-Length: 5, 5") + b"hello"),
    ("length twice", req("Host: a", "Content-Length: 5", "Content-Length: 5") + b"hello"),
    ("chunked", req("Host: a", "Transfer-Encoding: chunked") + b"0\r\n\r\n"),
    ("merged names", req("Host: a", "X-A: 1", "x-a: 2")),
    ("merged by var", req("Host: a", "X-A: 1", "X_A: 2")),
    ("trailing space", req("Host: a", "X-A: 1 ")),
    ("trailing tab", req("Host: a", "X-A: 1\t")),
    ("absolute form", req("Host: a", first="GET http://b.test/ ")),
    ("asterisk", req("Host: a", first="OPTIONS * ")),
    ("leading CRLF", b"\r\n" + req("Host: a")),
    ("incomplete", req("Host: a")[:-2]),
]


@pytest.mark.parametrize("name, data", LEFT, ids=[c[0] for c in LEFT])
def test_other_heads_left_to_the_general_path(name, data):
    assert usual_request(data, LIMIT, CONNECTION_VARS, b"", CLIENT) is None
    assert not isinstance(strict(data), ProtocolError)  # valid: the general path serves it


@pytest.mark.parametrize("name, data, status", SMUGGLING, ids=[c[0] for c in SMUGGLING])
def test_refused_heads_never_served(name, data, status):
    assert usual_request(data, LIMIT, CONNECTION_VARS, b"", CLIENT) is None


def test_head_limit_applies():
    data = req("Host: a", "X-Long: " + "v" * 200)
    assert usual_request(data, len(data), CONNECTION_VARS) is not None
    assert usual_request(data, len(data) - 1, CONNECTION_VARS) is None


def test_host_check_not_fooled_by_a_cached_valid_host():
    assert check_agrees(req("Host: a.test"))
    assert usual_request(req("Host: a.test/x"), LIMIT, CONNECTION_VARS) is None
    assert usual_request(req("Host: a.test"), LIMIT, CONNECTION_VARS) is not None


# Pieces a head is made of, mostly valid, some not: the parsers must agree on every mix.
NAMES = st.sampled_from([b"Host", b"host", b"HOST", b"Connection", b"connection", b"X-A",
                         b"x_a", b"Cookie", b"Content-Type", b"Accept", b"User-Agent",
                         b"Content-Length", b"Upgrade", b"Expect", b"Transfer-Encoding",
                         b"X-Forwarded-For", b"X(y)", b"", b"Host "])
GOOD_VALUES = st.sampled_from([b"a", b"a.test:80", b"close", b"keep-alive", b"Keep-Alive, x",
                               b"5", b"chunked", b"", b"caf\xe9", b"[::1]", b"upgrade", b"a b",
                               b"x\ty", b"*/*"])
BAD_VALUES = st.one_of(
    st.sampled_from([b" ", b"a/b", b"v\t", b"v ", b"a\rb", b"a\x00b", b"a\x7f"]),
    st.binary(max_size=12),
)
VALUES = st.one_of(GOOD_VALUES, GOOD_VALUES, GOOD_VALUES, BAD_VALUES)
LINE_END = st.sampled_from([b"\r\n"] * 20 + [b"\n", b"\r", b" \r\n"])
SEPARATORS = st.sampled_from([b": "] * 6 + [b":", b":  ", b" : ", b":\t"])
GOOD_REQUEST_LINES = st.sampled_from([
    b"GET / HTTP/1.1", b"GET / HTTP/1.0", b"HEAD /x?y HTTP/1.1", b"POST /a%2Fb HTTP/1.1",
    b"PURGE /p HTTP/1.1", b"GET /?a=%41 HTTP/1.0", b"GET /caf\xe9 HTTP/1.1"])
GOOD_NAMES = st.sampled_from([b"Connection", b"connection", b"X-A", b"x_a", b"Cookie",
                              b"X-Forwarded-For", b"x-forwarded-for", b"X_Forwarded-For",
                              b"Content-Length", b"content-length",
                              b"Content-Type", b"Accept", b"User-Agent", b"Host"])
REQUEST_LINES = st.sampled_from([
    b"GET / HTTP/1.1", b"GET / HTTP/1.0", b"HEAD /x?y HTTP/1.1", b"POST /a%2Fb HTTP/1.1",
    b"PURGE /p HTTP/1.1", b"GET /?a=%41 HTTP/1.0",
    b"GET http://h/ HTTP/1.1", b"GET  / HTTP/1.1", b"GET / HTTP/1.2", b"G(T / HTTP/1.1",
    b"GET /\xff HTTP/1.1", b"OPTIONS * HTTP/1.1", b"get / HTTP/1.1",
])


@st.composite
def heads(draw, flaws: int = 1) -> bytes:
    """A head of valid pieces with up to ``flaws`` of them replaced by doubtful ones."""
    pieces = [draw(GOOD_REQUEST_LINES), b"\r\n"]
    if draw(st.booleans()):
        pieces += [b"Host", b": ", draw(st.sampled_from([b"a", b"a.test:80", b"[::1]"])), b"\r\n"]
    for _ in range(draw(st.integers(0, 4))):
        pieces += [draw(GOOD_NAMES), b": ", draw(GOOD_VALUES), b"\r\n"]
    pieces.append(b"\r\n")
    doubtful = [REQUEST_LINES, LINE_END, NAMES, SEPARATORS, BAD_VALUES, LINE_END]
    for _ in range(draw(st.integers(0, flaws))):
        at = draw(st.integers(0, len(pieces) - 1))
        pieces[at] = draw(doubtful[at % len(doubtful)] if at else REQUEST_LINES)
    return b"".join(pieces) + draw(st.sampled_from([b"", b"GET / HTTP/1.1\r\n", b"body"]))


@settings(max_examples=1000, deadline=None)
@given(heads(), st.sampled_from([b"", EXTRA]))
@example(req("Host: a", "Host: a"), b"")
@example(req("Connection: close", "Host: a", "Connection: x"), b"")
def test_usual_request_agrees_with_the_parser(data, extra):
    check_agrees(data, extra)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=80))
def test_usual_request_on_any_bytes(data):
    check_agrees(data)


# -- answers --------------------------------------------------------------------------

ANSWER = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 11\r\n\r\nHello World"


def check_answer_agrees(data: bytes, method: bytes) -> bool:
    fast = usual_answer(data, method)
    assert usual_answer(data, method) == fast  # the whole head from its cache
    usual._answer_heads.clear()
    assert usual_answer(data, method) == fast  # its lines from theirs
    if fast is None:
        return False
    assert fast == parse_response_framing(data, LIMIT, method)
    assert fast[1] == "length" and fast[0] >= 200
    return True


@pytest.mark.parametrize("data", [ANSWER, ANSWER[:-1], ANSWER + b"!", ANSWER[:-11]],
                         ids=["whole", "a byte short", "a byte past", "no body yet"])
def test_the_usual_answer_framed_however_much_of_the_body_came(data):
    assert usual_answer(data, b"GET") == (200, "length", 11, True, len(ANSWER) - 11)
    assert check_answer_agrees(data, b"POST")


def test_http10_answer_does_not_keep_alive():
    assert usual_answer(ANSWER.replace(b"1.1", b"1.0", 1), b"GET")[3] is False


@pytest.mark.parametrize("data, method", [
    (ANSWER, b"HEAD"),  # no body whatever the length
    (ANSWER[:-13], b"GET"),  # the head is not whole
    (ANSWER.replace(b"200 OK", b"204 No Content"), b"GET"),
    (ANSWER.replace(b"200 OK", b"100 Continue"), b"GET"),
    (ANSWER.replace(b"Content-Type: text/plain", b"Connection: close"), b"GET"),
    (ANSWER.replace(b"Content-Type: text/plain", b"Content-Length: 11"), b"GET"),
    (ANSWER.replace(b"Content-Type: text/plain", b"Transfer-Encoding: chunked"), b"GET"),
    (ANSWER.replace(b"Length: 11", b"Length: +11"), b"GET"),
    (ANSWER.replace(b"\r\n", b"\n"), b"GET"),  # bare LF: the tolerant path's
    (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", b"CONNECT"),
])
def test_other_answers_left_to_the_general_path(data, method):
    assert usual_answer(data, method) is None


ANSWER_HEADERS = st.sampled_from([
    b"Content-Length: 3", b"content-length: 3", b"Content-Length: 4", b"Content-Length:3 ",
    b"Connection: close", b"Connection: keep-alive", b"Transfer-Encoding: chunked",
    b"Content-Type: a", b"X: y", b"Content-Length: 03",
])


@settings(max_examples=1500, deadline=None)
@given(st.sampled_from([b"HTTP/1.1 200 OK", b"HTTP/1.0 200 OK", b"HTTP/1.1 204 No",
                        b"HTTP/1.1 304 N", b"HTTP/1.1 101 S", b"HTTP/1.1 500", b"HTTP/2 200"]),
       st.lists(ANSWER_HEADERS, max_size=3), st.sampled_from([b"", b"abc", b"abcd"]),
       st.sampled_from([b"GET", b"HEAD", b"POST", b"CONNECT", b"get"]))
def test_usual_answer_agrees_with_the_framing(status_line, headers, body, method):
    data = b"\r\n".join([status_line, *headers]) + b"\r\n\r\n" + body
    check_answer_agrees(data, method)


def test_long_lines_are_served_but_not_kept():
    usual._header_lines.clear()  # (a nearly full cache would start over on the way)
    name, host = "X-" + "n" * 300, "h" * 300
    long_name, long_host = (name + ": v").encode(), ("Host: " + host).encode()
    assert check_agrees(req("Host: " + host, name + ": v"))
    assert long_name not in usual._header_lines and long_host not in usual._header_lines
    assert check_agrees(req("Host: short.test", "X-Short: v"))
    assert b"X-Short: v" in usual._header_lines and b"Host: short.test" in usual._header_lines


def test_a_full_cache_starts_over(monkeypatch):
    monkeypatch.setattr(usual, "LINE_CACHE_MAX", 4)
    usual._header_lines.clear()
    for i in range(4):
        assert check_agrees(req("Host: a", f"X-{i}: v"))
    assert len(usual._header_lines) <= 4
    assert check_agrees(req("Host: a", "X-new: v"))
    assert b"X-new: v" in usual._header_lines and len(usual._header_lines) <= 4


def _no_more_line_reads(monkeypatch) -> None:
    for cache in (usual._request_lines, usual._header_lines, usual._status_lines,
                  usual._answer_lines):
        monkeypatch.setattr(cache, "read", lambda line: pytest.fail(f"{line!r} read again"))


def test_lines_are_read_once_then_come_from_the_caches(monkeypatch):
    head = req("Host: cached.test", "X-Once: 1", first="GET /once ")
    answer = ANSWER.replace(b"text/plain", b"text/once").replace(b"200 OK", b"201 Once")
    first = usual_request(head, LIMIT, CONNECTION_VARS, b"", CLIENT), usual_answer(answer, b"GET")
    assert None not in first
    _no_more_line_reads(monkeypatch)
    usual._request_heads.clear()
    usual._answer_heads.clear()
    again = usual_request(head, LIMIT, CONNECTION_VARS, b"", CLIENT), usual_answer(answer, b"GET")
    assert again == first


def test_whole_heads_come_from_their_caches_without_a_line_read(monkeypatch):
    """A head is kept whole once all its lines were seen before (the second time it
    comes: a head with a line never seen, a new URL say, is not likely to come again);
    then it costs one lookup, and its vars block is still built around this
    connection's vars and the extra vars."""
    head = req("Host: whole.test", "X-Whole: 1", first="GET /whole ")
    answer = ANSWER.replace(b"text/plain", b"text/whole")
    whole_head, whole_answer = head[:-4], answer[:answer.index(b"\r\n\r\n")]
    first = usual_request(head, LIMIT, CONNECTION_VARS, EXTRA, CLIENT)
    framing = usual_answer(answer, b"GET")
    assert whole_head not in usual._request_heads
    assert whole_answer not in usual._answer_heads
    assert usual_request(head, LIMIT, CONNECTION_VARS, EXTRA, CLIENT) == first
    assert usual_answer(answer, b"GET") == framing
    assert whole_head in usual._request_heads and whole_answer in usual._answer_heads
    _no_more_line_reads(monkeypatch)
    assert usual_request(head, LIMIT, CONNECTION_VARS, EXTRA, CLIENT) == first
    assert usual_answer(answer, b"GET") == framing
    other_vars = encode_connection_vars(remote_addr="10.0.0.9", remote_port=50000,
                                        server_name=b"example.test", server_port=b"8080")
    assert usual_request(head, LIMIT, other_vars, b"", CLIENT) == (
        first[0], encode_head_vars(first[0], other_vars))
    assert usual_answer(answer, b"HEAD") is None  # the method still counts


def test_heads_with_a_secret_or_a_forwarded_for_or_too_long_are_not_kept_whole():
    kept = req("Host: a", "X-Kept: 1")
    secret = req("Host: a", "Cookie: session=s3cret")
    forwarded = req("Host: a", "X-Forwarded-For: 10.1.1.1")
    long_head = req("Host: a", *[f"X-{i}: {'v' * 100}" for i in range(12)])
    assert len(long_head) > usual.HEAD_CACHED_LEN
    for data in (kept, secret, forwarded, long_head):
        assert check_agrees(data)
        assert (data[:-4] in usual._request_heads) == (data is kept)
    set_cookie = ANSWER.replace(b"Content-Type: text/plain", b"Set-Cookie: session=s3cret")
    assert check_answer_agrees(set_cookie, b"GET")
    assert not any(b"s3cret" in whole for whole in usual._answer_heads)


def test_a_full_head_cache_starts_over(monkeypatch):
    monkeypatch.setattr(usual, "HEAD_CACHE_MAX", 3)
    usual._request_heads.clear()
    for i in range(3):
        for _ in range(2):  # kept the second time
            assert usual_request(req("Host: a", f"X-{i}: v"), LIMIT, CONNECTION_VARS)
    assert len(usual._request_heads) == 3
    for _ in range(2):
        assert usual_request(req("Host: a", "X-new: v"), LIMIT, CONNECTION_VARS)
    assert list(usual._request_heads) == [req("Host: a", "X-new: v")[:-4]]


def test_lines_read_as_not_usual_are_kept_so():
    assert usual_answer(ANSWER.replace(b"200 OK", b"204 No Content"), b"GET") is None
    assert usual._status_lines[b"HTTP/1.1 204 No Content"] is False
    assert usual_request(req("Host: a", "Bad Name: x"), LIMIT, CONNECTION_VARS) is None
    assert usual._header_lines[b"Bad Name: x"] is False
    assert usual_answer(ANSWER.replace(b"Content-Type: text/plain", b"Connection: close"),
                        b"GET") is None
    assert usual._answer_lines[b"Connection: close"] == usual._FRAMING_LINE
    # An empty body is a length like any other (0 is not a miss).
    empty = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
    for _ in range(2):
        assert usual_answer(empty, b"GET") == (200, "length", 0, True, len(empty))


@pytest.mark.parametrize("line", [
    "Cookie: session=s3cret", "Authorization: Basic czNjcmV0",
    "Proxy-Authorization: Basic czNjcmV0", "X-Auth-Token: s3cret", "X-Api-Key: s3cret",
    "X-CSRF-Token: s3cret", "X-Session-Id: s3cret", "X-Hub-Signature: s3cret"])
def test_secrets_are_served_but_never_kept(line):
    head = req("Host: a", line)
    for _ in range(3):  # nor the head that has it, however often it comes
        assert check_agrees(head)
        assert line.encode() not in usual._header_lines
        assert head[:-4] not in usual._request_heads
    answer = ANSWER.replace(b"Content-Type: text/plain", line.encode())
    for _ in range(3):
        assert check_answer_agrees(answer, b"GET")
        assert line.encode() not in usual._answer_lines
        assert not any(b"s3cret" in whole for whole in usual._answer_heads)


def test_a_head_with_a_line_too_long_to_keep_is_not_kept_whole():
    """Its long line is read every time (it is never a hit), so the head never counts as
    seen before."""
    head = req("Host: a", "User-Agent: " + "u" * usual.LINE_CACHED_LEN)
    assert len(head) <= usual.HEAD_CACHED_LEN
    for _ in range(3):
        assert usual_request(head, LIMIT, CONNECTION_VARS) is not None
    assert head[:-4] not in usual._request_heads


def test_no_client_address_leaves_the_forwarded_chain_as_it_came():
    """A unix socket client has no address: nothing is appended (it was ", "), and the
    head is not cached as such (a TCP client's identical head still gets its address)."""
    data = req("Host: a", "X-Forwarded-For: 10.0.0.1")
    head = parse_request_head(data, LIMIT)
    _, block = usual_request(data, LIMIT, CONNECTION_VARS, b"", b"")
    assert block == encode_head_vars(head, CONNECTION_VARS)
    _, block = usual_request(data, LIMIT, CONNECTION_VARS, b"", CLIENT)
    assert block == strict(data)[1] and b"10.0.0.1, 127.0.0.1" in block


def test_general_path_leaves_the_chain_of_a_unix_client_as_it_came():
    from brood.config.model import Config
    from brood.protocol.uwsgi import decode_vars
    from brood.routers.http.body import Client
    from brood.routers.http.h1 import build_vars_block
    from brood.routers.http.settings import HttpSettings

    data = req("Host: a", "X-Forwarded-For: 10.0.0.1")
    block = build_vars_block(parse_request_head(data, LIMIT), Client(None, "", 0),
                             HttpSettings.from_config(Config()), server_port=b"80",
                             https=False, content_length=None, forwarded_for=True)
    assert dict(decode_vars(block, 0, len(block)))[b"HTTP_X_FORWARDED_FOR"] == b"10.0.0.1"
