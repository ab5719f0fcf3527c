"""The real uWSGI HTTP router (``--http --http-to``, WIRE §1.6) in front of brood
``--socket`` workers."""

from __future__ import annotations

import json

import pytest
from _interop import BIG, HELLO_APP, HttpConn, http, http_ok, need_uwsgi

pytestmark = pytest.mark.interop


@pytest.fixture(scope="module")
def front(start_brood, start_uwsgi) -> str:
    need_uwsgi("http")
    workers = start_brood("--socket", "127.0.0.1:0", "--wsgi-file", HELLO_APP,
                          "--master", "--processes", "2")
    node = workers.address_of("uwsgi socket 0")
    router = start_uwsgi(
        lambda port: ["--plugins", "http", "--master", "--http", f"127.0.0.1:{port}",
                      "--http-to", node, "--http-keepalive"],
        probe=lambda port: http_ok(f"127.0.0.1:{port}"))
    return f"127.0.0.1:{router.port}"


def test_get(front: str) -> None:
    assert http(front, path="/")[::2] == (200, b"Hello World")
    status, _, body = http(front, path="/env?q=1%202", headers={"X-Thing": "a"})
    env = json.loads(body)
    assert status == 200
    assert env["UWSGI_ROUTER"] == "http"
    assert env["QUERY_STRING"] == "q=1%202"
    assert env["REQUEST_URI"] == "/env?q=1%202"
    assert env["PATH_INFO"] == "/env"
    assert env["HTTP_X_THING"] == "a"
    assert env["HTTP_HOST"] == "localhost"


def test_post_echo(front: str) -> None:
    payload = bytes(range(256)) * 40
    status, _, body = http(front, "POST", "/echo", body=payload,
                           headers={"Content-Type": "application/octet-stream"})
    assert (status, body) == (200, payload)


def test_big_response(front: str) -> None:
    status, _, body = http(front, path="/big")
    assert status == 200
    assert body == BIG


def test_keepalive(front: str) -> None:
    # uWSGI keeps the client connection only for answers with a Content-Length (WIRE
    # §1.6): /big, /echo and /env have one; "/" has none and gets "Connection: close".
    with HttpConn(front) as conn:
        first = conn.request("GET", "/big")
        second = conn.request("POST", "/echo", body=b"again")
        third = conn.request("GET", "/env")
        fourth = conn.request("GET", "/")
        assert conn.closed()
    assert (first[0], first[2]) == (200, BIG)
    assert (second[0], second[2]) == (200, b"again")
    assert third[0] == 200 and json.loads(third[2])["REQUEST_URI"] == "/env"
    assert (fourth[0], fourth[2]) == (200, b"Hello World")
    assert fourth[1].get("connection") == "close"
