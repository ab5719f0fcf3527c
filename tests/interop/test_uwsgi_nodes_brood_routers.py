"""Real uWSGI workers (python3 plugin, the demo app) behind brood's routers: the HTTP
router (plain requests and keep-alive), the fastrouter (driven by raw uwsgi packets
from the test, and by nginx) and the rawrouter (HTTP to the workers' --http-socket, by
the test and by wrk)."""

from __future__ import annotations

import json

import pytest
from _interop import (
    BIG,
    HELLO_APP,
    HttpConn,
    http,
    http_ok,
    need_nginx,
    need_uwsgi,
    uwsgi_call,
    uwsgi_ok,
)
from test_wrk_http_socket import run_wrk

pytestmark = pytest.mark.interop


@pytest.fixture(scope="module")
def uwsgi_node(start_uwsgi) -> str:
    need_uwsgi("python3")
    proc = start_uwsgi(
        lambda port: ["--plugins", "python3", "--socket", f"127.0.0.1:{port}",
                      "--wsgi-file", HELLO_APP, "--master", "--processes", "2"],
        probe=lambda port: uwsgi_ok(f"127.0.0.1:{port}"))
    return f"127.0.0.1:{proc.port}"


@pytest.fixture(scope="module")
def http_router(start_brood, uwsgi_node: str) -> str:
    router = start_brood("--master", "--http", "127.0.0.1:0", "--http-to", uwsgi_node,
                         "--http-keepalive")
    return router.address_of("http socket 0")


@pytest.fixture(scope="module")
def fastrouter(start_brood, uwsgi_node: str) -> str:
    router = start_brood("--master", "--fastrouter", "127.0.0.1:0",
                         "--fastrouter-to", uwsgi_node)
    return router.address_of("fastrouter socket 0")


# ----------------------------------------------------------------- brood HTTP router

def test_http_router_answers(http_router: str) -> None:
    assert http(http_router, path="/")[::2] == (200, b"Hello World")

    status, _, body = http(http_router, path="/env?a=%20b", headers={"X-Under_score": "1"})
    env = json.loads(body)
    assert status == 200
    assert env["REQUEST_URI"] == "/env?a=%20b"
    assert env["QUERY_STRING"] == "a=%20b"
    assert env["PATH_INFO"] == "/env"
    assert env["HTTP_HOST"] == "localhost"
    assert env["HTTP_X_UNDER_SCORE"] == "1"

    payload = bytes(range(256)) * 200
    status, _, body = http(http_router, "POST", "/echo", body=payload)
    assert (status, body) == (200, payload)

    status, _, body = http(http_router, path="/big")
    assert (status, body) == (200, BIG)


def test_http_router_keepalive(http_router: str) -> None:
    with HttpConn(http_router) as conn:
        first = conn.request("GET", "/big")
        second = conn.request("POST", "/echo", body=b"second on the same connection")
        third = conn.request("GET", "/env?n=3")
    assert (first[0], first[2]) == (200, BIG)
    assert (second[0], second[2]) == (200, b"second on the same connection")
    assert third[0] == 200
    assert json.loads(third[2])["QUERY_STRING"] == "n=3"


def test_http_router_keepalive_unframed_answer(http_router: str) -> None:
    # "/" has no Content-Length. The router may frame it (chunked) and keep the
    # connection, or send it close-delimited (no length, no chunking) and close; it
    # must never leave the client waiting. (uWSGI also adds "Connection: close".)
    with HttpConn(http_router, timeout=5) as conn:
        status, headers, body = conn.request("GET", "/")
        assert (status, body) == (200, b"Hello World")
        framed = "content-length" in headers or "transfer-encoding" in headers
        if not framed or headers.get("connection", "").lower() == "close":
            assert conn.eof or conn.closed()
        else:
            assert conn.request("GET", "/")[::2] == (200, b"Hello World")


# ----------------------------------------------------------------- brood fastrouter

def test_fastrouter_raw_packets(fastrouter: str) -> None:
    assert uwsgi_call(fastrouter, "/")[::2] == (200, b"Hello World")

    status, _, body = uwsgi_call(fastrouter, "/env?x=y", host="node.example")
    env = json.loads(body)
    assert status == 200
    assert env["HTTP_HOST"] == "node.example"
    assert env["QUERY_STRING"] == "x=y"

    payload = bytes(range(256)) * 300
    assert uwsgi_call(fastrouter, "/echo", "POST", body=payload)[::2] == (200, payload)
    assert uwsgi_call(fastrouter, "/big")[::2] == (200, BIG)


def test_fastrouter_behind_nginx(fastrouter: str, start_nginx) -> None:
    need_nginx()
    nginx = start_nginx(f"""
        location / {{
            include uwsgi_params;
            uwsgi_pass {fastrouter};
        }}""")
    front = f"127.0.0.1:{nginx.port}"
    assert http(front, path="/", host="a.example")[::2] == (200, b"Hello World")
    form = b"field=" + b"v" * 5000
    assert http(front, "POST", "/echo", body=form,
                headers={"Content-Type": "application/x-www-form-urlencoded"}
                )[::2] == (200, form)
    assert http(front, path="/big")[::2] == (200, BIG)


# ----------------------------------------------------------------- brood rawrouter

@pytest.fixture(scope="module")
def rawrouter(start_brood, start_uwsgi) -> str:
    need_uwsgi("python3")
    node = start_uwsgi(
        lambda port: ["--plugins", "python3", "--http-socket", f"127.0.0.1:{port}",
                      "--wsgi-file", HELLO_APP, "--master", "--processes", "2"],
        probe=lambda port: http_ok(f"127.0.0.1:{port}"))
    router = start_brood("--master", "--rawrouter", "127.0.0.1:0",
                         "--rawrouter-to", f"127.0.0.1:{node.port}")
    return router.address_of("rawrouter socket 0")


def test_rawrouter_relays_http_to_uwsgi(rawrouter: str) -> None:
    assert http(rawrouter, path="/")[::2] == (200, b"Hello World")
    payload = bytes(range(256)) * 300
    assert http(rawrouter, "POST", "/echo", body=payload)[::2] == (200, payload)
    assert http(rawrouter, path="/big")[::2] == (200, BIG)


def test_rawrouter_under_wrk(rawrouter: str) -> None:
    # uWSGI's --http-socket closes after each answer without saying so: wrk counts a
    # 'read' error per request there (direct or relayed alike); anything else is ours.
    result = run_wrk(f"http://{rawrouter}/big", "-H", "Connection: close")
    assert result["requests"] > 0, result["output"]
    for key in ("connect", "write", "timeout", "non2xx"):
        assert result[key] == 0, f"{key} errors:\n{result['output']}"
