"""Head -> uwsgi vars, byte-exact against what uWSGI's HTTP router sent (WIRE §1.6)."""

import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from brood.protocol.http1 import parse_request_head
from brood.protocol.uwsgi import encode_packet, encode_vars, read_packet
from brood.protocol.vars import header_var_name, line_vars, path_info, request_vars, routing_key

REQUESTS = Path(os.environ.get("BROOD_FIXTURES", "/work/shared/fixtures")) / "requests"

# The client requests behind each capture (fixtures README), and the client port
# the router saw (REMOTE_PORT in the capture). SERVER_NAME was the host "vm".
CASES = [
    (
        "httprouter_get_query.bin",
        b"GET /path/x?a=1&b=2 HTTP/1.0\r\nHost: www.example.test\r\nX-Custom: v1\r\nCookie: c=1\r\n\r\n",
        61131, b"27082", False, (),
    ),
    (
        "httprouter_post_form.bin",
        b"POST /post HTTP/1.0\r\nHost: www.example.test\r\n"
        b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 11\r\n\r\n",
        48771, b"27082", False, (),
    ),
    (
        "httprouter_dup_headers.bin",
        b"GET /dup HTTP/1.0\r\nHost: a.test\r\nX-A: 1\r\nX-A: 2\r\nx-lower_under: z\r\n\r\n",
        54915, b"27082", False, (),
    ),
    (
        "httprouter_get_http11.bin",
        b"GET /h11 HTTP/1.1\r\nHost: www.example.test\r\nConnection: close\r\n\r\n",
        52355, b"27082", False, (),
    ),
    (
        "httprouter_https_get_pctencoded_httpvar.bin",
        b"GET /tls/%41%20b?q=%41 HTTP/1.0\r\nHost: www.example.test\r\n\r\n",
        48770, b"27083", True, ((b"EXTRA_VAR", b"hello"),),
    ),
    (
        "httprouter_keepalive_second_request.bin",
        b"GET /ka2 HTTP/1.1\r\nHost: a\r\n\r\n",
        37011, b"27082", False, ((b"EXTRA_VAR", b"hello"),),
    ),
    (
        "httprouter_post_chunked_default.bin",
        b"POST /chunked HTTP/1.1\r\nHost: www.example.test\r\n"
        b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        51331, b"27082", False, (),
    ),
    (
        "httprouter_get_56k_headers.bin",
        b"GET /big56 HTTP/1.0\r\nHost: www.example.test\r\n"
        + b"".join(b"X-Big%d: %s\r\n" % (i, b"x" * 8000) for i in range(7))
        + b"\r\n",
        36485, b"27082", False, (),
    ),
]


@pytest.mark.parametrize("name, request_bytes, port, server_port, https, extra", CASES, ids=[c[0] for c in CASES])
def test_byte_exact_against_capture(name, request_bytes, port, server_port, https, extra):
    captured = (REQUESTS / name).read_bytes()
    packet, _ = read_packet(captured)
    head = parse_request_head(request_bytes, 65535)
    pairs = request_vars(
        head,
        remote_addr="127.0.0.1",
        remote_port=port,
        server_name=b"vm",
        server_port=server_port,
        https=https,
        extra=extra,
    )
    assert pairs == packet.vars
    assert encode_packet(pairs) == packet.raw


def _head(data: bytes):
    return parse_request_head(data, 65535)


def _vars(data: bytes, **kw):
    args = dict(remote_addr="10.0.0.1", remote_port=1, server_name=b"vm", server_port=b"80")
    args.update(kw)
    return request_vars(_head(data), **args)


def test_dechunked_length_replaces_transfer_encoding():
    data = b"POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nX: y\r\n\r\n"
    pairs = _vars(data, content_length=11)
    names = [k for k, _ in pairs]
    assert b"HTTP_TRANSFER_ENCODING" not in names
    assert names[-3:] == [b"HTTP_HOST", b"CONTENT_LENGTH", b"HTTP_X"]
    assert dict(pairs)[b"CONTENT_LENGTH"] == b"11"
    # Without a Transfer-Encoding header the override is appended after the headers.
    pairs = _vars(b"POST /c HTTP/1.1\r\nHost: h\r\n\r\n", content_length=0, extra=[(b"E", b"1")])
    assert pairs[-2:] == [(b"CONTENT_LENGTH", b"0"), (b"E", b"1")]


def test_content_length_normalised_and_not_forgeable():
    pairs = _vars(b"POST / HTTP/1.0\r\nContent-Length: 011\r\nContent-Length: 11\r\nContent_Length: 99\r\n\r\n")
    assert pairs.count((b"CONTENT_LENGTH", b"11")) == 1
    assert (b"HTTP_CONTENT_LENGTH", b"99") in pairs
    assert [k for k, _ in pairs].count(b"CONTENT_LENGTH") == 1


def test_router_none_and_server_name_as_host():
    data = b"GET / HTTP/1.1\r\nX: 1\r\nHost: h.test:8080\r\n\r\n"
    pairs = _vars(data, router=None, server_name_as_http_host=True)
    names = [k for k, _ in pairs]
    assert b"UWSGI_ROUTER" not in names
    assert names[-3:] == [b"HTTP_X", b"SERVER_NAME", b"HTTP_HOST"]
    assert dict(pairs)[b"SERVER_NAME"] == b"h.test:8080"
    assert names.count(b"SERVER_NAME") == 1
    # Without a Host header the flag falls back to the configured name.
    pairs = _vars(b"GET / HTTP/1.0\r\n\r\n", server_name_as_http_host=True)
    assert dict(pairs)[b"SERVER_NAME"] == b"vm"


def test_header_var_name():
    assert header_var_name(b"x-lower_under") == b"HTTP_X_LOWER_UNDER"
    assert header_var_name(b"content-TYPE") == b"CONTENT_TYPE"
    assert header_var_name(b"Content_Type") == b"HTTP_CONTENT_TYPE"


def test_path_info_decoded_uri_raw():
    pairs = dict(_vars(b"GET /a%2Fb%zz HTTP/1.0\r\n\r\n"))
    assert pairs[b"PATH_INFO"] == b"/a/b%zz"
    assert pairs[b"REQUEST_URI"] == b"/a%2Fb%zz"
    assert pairs[b"QUERY_STRING"] == b""


# As real uWSGI 2.0's HTTP router gave them (dot segments removed before decoding),
# except where an escape made a dot segment: uWSGI passed those on, brood removes them
# too (as nginx does).
@pytest.mark.parametrize("target, path", [
    (b"/static/../../etc/passwd", b"/etc/passwd"),
    (b"/static/../app.py", b"/app.py"),
    (b"/a/./b", b"/a/b"),
    (b"/a/..", b"/"),
    (b"/a/.", b"/a/"),
    (b"/../x", b"/x"),
    (b"/a//b/../c", b"/a//c"),
    (b"/a/b/..?x=/../", b"/a/"),
    (b"/a/b/../", b"/a/"),
    (b"//x/../y", b"//y"),
    (b"/a/.../b", b"/a/.../b"),
    (b"/a/..b/.c", b"/a/..b/.c"),
    (b"/a/%252e%252e/b", b"/a/%2e%2e/b"),
    (b"/..", b"/"),  # uWSGI: empty
    (b"/a/%2e%2e/b", b"/b"),  # uWSGI: /a/../b
    (b"/a%2f..%2fb", b"/b"),  # uWSGI: /a/../b
])
def test_path_info_has_no_dot_segments(target, path):
    pairs = dict(_vars(b"GET %s HTTP/1.0\r\n\r\n" % target))
    assert pairs[b"PATH_INFO"] == path
    assert pairs[b"REQUEST_URI"] == target
    assert b"".join(line_vars(b"GET", target, target.partition(b"?")[0],
                              target.partition(b"?")[2], b"HTTP/1.0", b"")) == encode_vars(
        pairs_in_line_order(target, path))  # the fast lane's encoder agrees


def pairs_in_line_order(target: bytes, path: bytes) -> list[tuple[bytes, bytes]]:
    """REQUEST_METHOD through SERVER_PROTOCOL as ``line_vars`` encodes them."""
    query = target.partition(b"?")[2]
    if b"?" in target:
        middle = [(b"PATH_INFO", path), (b"REQUEST_URI", target), (b"QUERY_STRING", query)]
    else:
        middle = [(b"REQUEST_URI", target), (b"PATH_INFO", path), (b"QUERY_STRING", b"")]
    return [(b"REQUEST_METHOD", b"GET"), *middle, (b"SERVER_PROTOCOL", b"HTTP/1.0")]


@given(st.lists(st.sampled_from([b"a", b".", b"..", b"", b"%2e", b"%2E%2e", b".b", b"%2f"]),
                max_size=8))
def test_remove_dot_segments_leaves_none(parts):
    path = path_info(b"/" + b"/".join(parts))
    assert path.startswith(b"/")
    assert not ({b".", b".."} & set(path.split(b"/")))
    assert path_info(path) == path or b"%" in path


@pytest.mark.parametrize(
    "pairs, key",
    [
        ([(b"SERVER_NAME", b"s"), (b"HTTP_HOST", b"h")], b"h"),
        ([(b"HTTP_HOST", b"h"), (b"SERVER_NAME", b"s")], b"h"),
        ([(b"HTTP_HOST", b"h1"), (b"HTTP_HOST", b"h2")], b"h2"),
        ([(b"HTTP_HOST", b"h"), (b"UWSGI_FASTROUTER_KEY", b"k"), (b"HTTP_HOST", b"z")], b"k"),
        ([(b"SERVER_NAME", b"s")], b"s"),
        ([(b"HTTP_HOST", b"x" * 256), (b"SERVER_NAME", b"s")], b"s"),
        ([(b"HTTP_HOST", b"x" * 255)], b"x" * 255),
        ([(b"HTTP_HOST", b"ok"), (b"HTTP_HOST", b"x" * 256)], b"ok"),
        ([(b"REQUEST_METHOD", b"GET")], None),
        ([], None),
        # As real uWSGI 2.0 reads them: the first SERVER_NAME, and only while no key is
        # set yet; an empty value leaves no key (uWSGI closes, brood answers 503).
        ([(b"SERVER_NAME", b"s1"), (b"SERVER_NAME", b"s2")], b"s1"),
        ([(b"HTTP_HOST", b"")], None),
        ([(b"UWSGI_FASTROUTER_KEY", b""), (b"HTTP_HOST", b"h")], None),
        ([(b"SERVER_NAME", b"s"), (b"HTTP_HOST", b"")], None),
        ([(b"HTTP_HOST", b""), (b"SERVER_NAME", b"s")], b"s"),
    ],
)
def test_routing_key(pairs, key):
    assert routing_key(pairs) == key


def test_routing_key_on_fixtures():
    nginx, _ = read_packet((REQUESTS / "nginx_post_form.bin").read_bytes())
    assert routing_key(nginx.vars) == b"127.0.0.1"  # Debian's $host, not SERVER_NAME
    fast, _ = read_packet((REQUESTS / "fastrouter_forwarded_m5_m3_with_body.bin").read_bytes())
    assert routing_key(fast.vars) == b"m5.example"
