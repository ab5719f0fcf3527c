"""nginx ``uwsgi_pass`` (Debian uwsgi_params, WIRE §1.5) -> brood ``--socket`` workers."""

from __future__ import annotations

import json

import pytest
from _interop import BIG, HELLO_APP, HttpConn, chunked, http, need_nginx

pytestmark = pytest.mark.interop


@pytest.fixture(scope="module")
def front(start_brood, start_nginx) -> str:
    need_nginx()
    workers = start_brood("--socket", "127.0.0.1:0", "--wsgi-file", HELLO_APP,
                          "--master", "--processes", "2")
    nginx = start_nginx(f"""
        location / {{
            include uwsgi_params;
            uwsgi_pass {workers.address_of("uwsgi socket 0")};
        }}""")
    return f"127.0.0.1:{nginx.port}"


def test_get_with_query_and_vars(front: str) -> None:
    status, headers, body = http(front, path="/hello?a=1&b=two")
    assert (status, body) == (200, b"Hello World")

    port = front.rsplit(":", 1)[1]
    status, headers, body = http(front, path="/env?x=%41y&z=1",
                                 host=f"Example.TEST:{port}", headers={"X-Custom": "v1"})
    assert status == 200
    assert headers["content-type"] == "application/json"
    env = json.loads(body)
    assert env["REQUEST_METHOD"] == "GET"
    assert env["REQUEST_URI"] == "/env?x=%41y&z=1"
    assert env["QUERY_STRING"] == "x=%41y&z=1"
    assert env["PATH_INFO"] == "/env"
    # Debian's uwsgi_params sends $host: lower-cased, without the port
    assert env["HTTP_HOST"] == "example.test"
    assert env["SERVER_PORT"] == port
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert env["REQUEST_SCHEME"] == "http"
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert env["DOCUMENT_ROOT"]
    assert env["HTTP_X_CUSTOM"] == "v1"
    assert env["wsgi.url_scheme"] == "http"


def test_post_form_echoed(front: str) -> None:
    form = b"name=brood&lang=python&x=" + b"%26" * 50
    status, headers, body = http(front, "POST", "/echo", body=form,
                                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert (status, body) == (200, form)

    status, _, body = http(front, "POST", "/env", body=form,
                           headers={"Content-Type": "application/x-www-form-urlencoded"})
    env = json.loads(body)
    assert env["CONTENT_TYPE"] == "application/x-www-form-urlencoded"
    assert env["CONTENT_LENGTH"] == str(len(form))


def test_chunked_post_dechunked_by_nginx(front: str) -> None:
    payload = bytes(range(256)) * 300  # 76800 bytes, every byte value
    with HttpConn(front) as conn:
        conn.send(b"POST /echo HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n"
                  b"Connection: close\r\n\r\n" + chunked(payload, 7000))
        status, _, body = conn.response("POST")
    assert status == 200
    assert len(body) == len(payload)
    assert body == payload


def test_big_response_intact(front: str) -> None:
    status, headers, body = http(front, path="/big")
    assert status == 200
    assert len(body) == 65536
    assert body == BIG
