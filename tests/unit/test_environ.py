"""The PEP 3333 environ built from uwsgi vars, and the HTTP fast path that must equal it."""

from __future__ import annotations

import io
import sys

import pytest

from brood.protocol.http1 import parse_request_head
from brood.protocol.vars import request_vars
from brood.workers.environ import build_environ, http_environ, url_scheme

COMMON = dict(errors=sys.stderr, multithread=False, multiprocess=True, file_wrapper=None)


def env(pairs, **kw):
    return build_environ(pairs, wsgi_input=io.BytesIO(), **{**COMMON, **kw})


def test_latin1_decoding_and_wsgi_keys():
    e = env([(b"PATH_INFO", b"/caf\xe9"), (b"REQUEST_METHOD", b"POST")], run_once=True)
    assert e["PATH_INFO"] == "/caf\xe9"
    assert e["REQUEST_METHOD"] == "POST"
    assert e["wsgi.version"] == (1, 0)
    assert e["wsgi.multiprocess"] is True and e["wsgi.multithread"] is False
    assert e["wsgi.run_once"] is True
    assert e["wsgi.errors"] is sys.stderr


def test_last_repeated_key_wins():
    assert env([(b"X", b"1"), (b"X", b"2")])["X"] == "2"


def test_defaults_when_absent():
    e = env([])
    assert e["SCRIPT_NAME"] == "" and e["PATH_INFO"] == "" and e["QUERY_STRING"] == ""
    assert e["REQUEST_METHOD"] == "GET"
    assert e["wsgi.url_scheme"] == "http"


@pytest.mark.parametrize(
    ("pairs", "scheme"),
    [
        ([(b"HTTPS", b"on")], "https"),
        ([(b"HTTPS", b"ON")], "https"),
        ([(b"HTTPS", b"off")], "http"),
        ([(b"UWSGI_SCHEME", b"https")], "https"),
        ([(b"wsgi.url_scheme", b"https")], "https"),
        ([(b"HTTPS", b"on"), (b"UWSGI_SCHEME", b"http")], "http"),
        # as uWSGI: a TLS-terminating balancer's X-Forwarded-Proto / X-Forwarded-Ssl
        ([(b"HTTP_X_FORWARDED_PROTO", b"https")], "https"),
        ([(b"HTTP_X_FORWARDED_PROTO", b" HTTPS ")], "https"),
        ([(b"HTTP_X_FORWARDED_PROTO", b"http"), (b"HTTPS", b"on")], "http"),
        ([(b"HTTP_X_FORWARDED_PROTO", b"ftp")], "http"),  # not a WSGI scheme: ignored
        ([(b"HTTP_X_FORWARDED_SSL", b"on")], "https"),
        ([(b"HTTP_X_FORWARDED_PROTO", b"https"), (b"UWSGI_SCHEME", b"http")], "http"),
    ],
)
def test_url_scheme(pairs, scheme):
    assert env(pairs)["wsgi.url_scheme"] == scheme


def test_url_scheme_function_default():
    assert url_scheme({}) == "http"


def test_extra_keys_added():
    assert env([], extra={"wsgi.input_terminated": True})["wsgi.input_terminated"] is True


HEADS = [
    b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET /p%20q/%41?x=1&y=%20 HTTP/1.0\r\n\r\n",
    b"POST /form HTTP/1.1\r\nHost: h:8080\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n"
    b"X-Dup: 1\r\nx-dup: 2\r\nX-Lower_Under: z\r\nCookie: a=\xe9\r\n\r\n",
    b"POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n",
    b"GET http://example.com/abs?q HTTP/1.1\r\nHost: other\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-Proto: https\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-Ssl: on\r\n\r\n",
]


@pytest.mark.parametrize("raw", HEADS)
def test_http_environ_equals_vars_path(raw):
    head = parse_request_head(raw)
    inp = io.BytesIO()
    pairs = request_vars(head, remote_addr="10.0.0.1", remote_port=4321, server_name=b"srv",
                         server_port=b"9090", router=None)  # fmt: skip
    slow = build_environ(pairs, wsgi_input=inp, extra={"k": 1}, **COMMON)
    fast = http_environ(head, remote_addr="10.0.0.1", remote_port="4321", server_name="srv",
                        server_port="9090", wsgi_input=inp, extra={"k": 1}, **COMMON)  # fmt: skip
    assert fast == slow


def test_http_environ_chunked_has_no_content_length():
    head = parse_request_head(HEADS[3])
    e = http_environ(head, remote_addr="", remote_port="0", server_name="s", server_port="",
                     wsgi_input=None, **COMMON)  # fmt: skip
    assert "CONTENT_LENGTH" not in e
    assert e["HTTP_TRANSFER_ENCODING"] == "chunked"
