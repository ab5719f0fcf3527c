"""nginx ``uwsgi_pass`` -> brood ``--fastrouter`` -> brood ``--socket`` workers.

The fastrouter's key is HTTP_HOST, which Debian's uwsgi_params fills with nginx's
``$host`` (lower case, no port: WIRE §1.5, §7.1)."""

from __future__ import annotations

import json

import pytest
from _interop import BIG, HELLO_APP, HttpConn, chunked, http, need_nginx

pytestmark = pytest.mark.interop


def nginx_to(start_nginx, address: str):
    return start_nginx(f"""
        location / {{
            include uwsgi_params;
            uwsgi_pass {address};
        }}""")


@pytest.fixture(scope="module")
def static_front(start_brood, start_nginx) -> str:
    need_nginx()
    workers = start_brood("--socket", "127.0.0.1:0", "--wsgi-file", HELLO_APP,
                          "--master", "--processes", "2")
    router = start_brood("--master", "--fastrouter", "127.0.0.1:0",
                         "--fastrouter-to", workers.address_of("uwsgi socket 0"))
    nginx = nginx_to(start_nginx, router.address_of("fastrouter socket 0"))
    return f"127.0.0.1:{nginx.port}"


@pytest.fixture(scope="module")
def pattern_front(start_brood, start_nginx, short_tmp) -> str:
    need_nginx()
    start_brood("--socket", str(short_tmp / "example.test.sock"), "--wsgi-file", HELLO_APP,
                "--master", "--processes", "2")
    router = start_brood("--master", "--fastrouter", "127.0.0.1:0",
                         "--fastrouter-use-pattern", str(short_tmp / "%s.sock"))
    nginx = nginx_to(start_nginx, router.address_of("fastrouter socket 0"))
    return f"127.0.0.1:{nginx.port}"


def check_answers(front: str, host: str) -> None:
    status, _, body = http(front, path="/", host=host)
    assert (status, body) == (200, b"Hello World")

    status, _, body = http(front, path="/env?k=v", host=host)
    env = json.loads(body)
    assert status == 200
    assert env["HTTP_HOST"] == host.split(":")[0].lower()
    assert env["QUERY_STRING"] == "k=v"
    assert env["REQUEST_URI"] == "/env?k=v"

    form = b"a=1&b=" + b"z" * 3000
    status, _, body = http(front, "POST", "/echo", body=form, host=host,
                           headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert (status, body) == (200, form)

    payload = bytes(range(256)) * 100
    with HttpConn(front) as conn:
        conn.send(f"POST /echo HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n"
                  "Connection: close\r\n\r\n".encode() + chunked(payload, 4096))
        status, _, body = conn.response("POST")
    assert (status, body) == (200, payload)

    status, _, body = http(front, path="/big", host=host)
    assert status == 200
    assert body == BIG


def test_static_fastrouter_to(static_front: str) -> None:
    check_answers(static_front, "anything.example")


def test_pattern_unix_socket_by_host(pattern_front: str) -> None:
    # nginx's $host drops the port and lower-cases: the key is "example.test"
    port = pattern_front.rsplit(":", 1)[1]
    check_answers(pattern_front, f"Example.Test:{port}")


def test_pattern_unknown_host_is_an_error(pattern_front: str) -> None:
    # uWSGI's fastrouter closes silently (nginx then says 502); brood may answer 503
    status, _, _ = http(pattern_front, path="/", host="nobody.test")
    assert status in (502, 503)
    status, _, body = http(pattern_front, path="/", host="example.test")
    assert (status, body) == (200, b"Hello World")
