"""--http-socket workers: real loopback connections to a forked run_worker."""

from __future__ import annotations

import io
import json
import socket

import pytest
from _workerkit import HttpConn, WorkerProcess, http_get, recv_all, wait_for

from brood.demo.hello import application as demo

CLOSED: list[str] = []  # lives in the worker process; /closed reports it


class Tracked:
    """An iterable whose close() the server must call."""

    def __init__(self, parts: list[bytes], fail: bool = False) -> None:
        self.parts = parts
        self.fail = fail

    def __iter__(self):
        yield from self.parts
        if self.fail:
            raise RuntimeError("fails while iterating")

    def close(self) -> None:
        CLOSED.append("x")


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/closed":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [str(len(CLOSED)).encode()]
    if path == "/tracked":
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"w1,")
        return Tracked([b"i1,", b"", b"i2"])
    if path == "/tracked-fail":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Tracked([b"part"], fail=True)
    if path == "/exc-before":
        start_response("200 OK", [("Content-Type", "text/plain")])
        try:
            raise ValueError("oops")
        except ValueError:
            import sys

            start_response("503 Busy", [("Content-Length", "4")], sys.exc_info())
        return [b"busy"]
    if path == "/exc-after":
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"started")
        try:
            raise ValueError("late")
        except ValueError:
            import sys

            start_response("500 Oops", [], sys.exc_info())
        return [b"never"]
    if path in ("/304", "/204"):  # a body the status forbids
        start_response(f"{path[1:]} Nothing", [("Content-Type", "text/plain")])
        return [b"should not be sent"]
    if path == "/crlf":
        start_response("200 OK", [("X-Bad", "a\r\nInjected: yes")])
        return [b"x"]
    if path == "/bytesfile":
        start_response("200 OK", [])
        return environ["wsgi.file_wrapper"](io.BytesIO(b"from a BytesIO"), 4)
    if path == "/input":
        inp = environ["wsgi.input"]
        first = inp.readline()
        rest = list(inp)
        data = {
            "first": first.decode(),
            "rest": [line.decode() for line in rest],
            "eof": inp.read(),
            "cl": environ.get("CONTENT_LENGTH"),
            "terminated": environ.get("wsgi.input_terminated"),
        }
        data["eof"] = data["eof"].decode()
        body = json.dumps(data).encode()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [body]
    return demo(environ, start_response)


@pytest.fixture
def worker(tmp_path):
    with WorkerProcess(app, tmp_path, disable_logging=True) as w:
        yield w


def test_get_hello_adds_content_length(worker):
    resp = http_get(worker, "/")
    assert resp.status == 200
    assert resp.body == b"Hello World"
    assert resp.headers["content-length"] == "11"
    assert resp.headers["connection"] == "close"
    assert resp.raw_head.startswith(b"HTTP/1.1 200 OK\r\n")


@pytest.mark.parametrize("target", ["/static/../env", "/a/./b/../../env?q=1", "/a/%2e%2e/env"])
def test_path_info_without_dot_segments(worker, target):
    """As the HTTP router (and uWSGI's --http-socket): the app sees the path it names."""
    resp = http_get(worker, target)
    environ = json.loads(resp.body)
    assert (environ["PATH_INFO"], environ["REQUEST_URI"]) == ("/env", target)


def test_keep_alive_and_pipelining(worker):
    with worker.connect() as sock:
        conn = HttpConn(sock)
        conn.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        assert conn.response().body == b"Hello World"
        conn.send(b"GET /big HTTP/1.1\r\nHost: t\r\n\r\nGET /echo HTTP/1.1\r\nHost: t\r\n\r\n")
        assert len(conn.response().body) == 65536
        assert conn.response().body == b""
        conn.send(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        assert conn.response().status == 200
        assert conn.closed()


def test_post_body_streamed_in_pieces(worker):
    with worker.connect() as sock:
        conn = HttpConn(sock)
        conn.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nhello")
        conn.send(b" body")
        resp = conn.response()
        assert resp.body == b"hello body"
        # the connection stays usable: the body was consumed exactly
        conn.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        assert conn.response().body == b"Hello World"


def test_input_readline_iteration_never_reads_past_body(worker):
    with worker.connect() as sock:
        conn = HttpConn(sock)
        body = b"line1\nline2\nline3"
        conn.send(b"POST /input HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % len(body))
        conn.send(body + b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        data = json.loads(conn.response().body)
        assert data == {"first": "line1\n", "rest": ["line2\n", "line3"], "eof": "",
                        "cl": "17", "terminated": True}  # fmt: skip
        assert conn.response().body == b"Hello World"


def test_chunked_request_body_is_dechunked(worker):
    with worker.connect() as sock:
        conn = HttpConn(sock)
        conn.send(b"POST /input HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
        conn.send(b"5\r\nab\ncd\r\n")
        conn.send(b"3\r\nef\n\r\n2\r\ngh\r\n0\r\n\r\n")
        data = json.loads(conn.response().body)
        assert data["first"] == "ab\n"
        assert data["rest"] == ["cdef\n", "gh"]
        assert data["cl"] is None and data["terminated"] is True
        conn.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        assert conn.response().body == b"Hello World"


def test_expect_100_continue_sent_when_app_reads(worker):
    with worker.connect() as sock:
        sock.sendall(
            b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n"
        )
        interim = b""
        while b"\r\n\r\n" not in interim:
            interim += sock.recv(1)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"data")
        resp = HttpConn(sock).response()
        assert resp.body == b"data"


def test_expect_100_not_sent_when_app_ignores_body(worker):
    with worker.connect() as sock:
        sock.sendall(
            b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n"
        )
        conn = HttpConn(sock)
        resp = conn.response()
        assert resp.status == 200 and resp.body == b"Hello World"
        assert conn.closed()  # the client may still send the body: cannot keep it


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET / HTTP/2.0\r\nHost: t\r\n\r\n", 505),
        (b"GET / HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 5000 + b"\r\n\r\n", 431),
        (b"GET / HTTP/1.1\r\n\r\n", 400),
        (
            b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
            400,
        ),
    ],
)
def test_bad_requests_get_status_and_close(worker, request_bytes, status):
    with worker.connect() as sock:
        sock.sendall(request_bytes)
        raw = recv_all(sock)
    assert raw.startswith(b"HTTP/1.1 %d " % status)
    assert http_get(worker).status == 200  # the worker goes on


def test_limit_post_413_without_reading_body(tmp_path):
    with WorkerProcess(app, tmp_path, limit_post=100, disable_logging=True) as w:
        with w.connect() as sock:
            sock.sendall(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n")
            raw = recv_all(sock)
        assert raw.startswith(b"HTTP/1.1 413 ")
        with w.connect() as sock:
            conn = HttpConn(sock)
            conn.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n" + b"x" * 100)
            assert conn.response().body == b"x" * 100
        with w.connect() as sock:
            sock.sendall(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                         b"c8\r\n" + b"y" * 200 + b"\r\n0\r\n\r\n")  # fmt: skip
            assert recv_all(sock).startswith(b"HTTP/1.1 413 ")


def test_head_sends_no_body(worker):
    with worker.connect() as sock:
        conn = HttpConn(sock)
        conn.send(b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\n")
        resp = conn.response(b"HEAD")
        assert resp.status == 200 and resp.headers["content-length"] == "11"
        conn.send(b"HEAD /stream HTTP/1.1\r\nHost: t\r\n\r\n")
        resp = conn.response(b"HEAD")
        assert "transfer-encoding" not in resp.headers
        conn.send(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        assert conn.response().body == b"Hello World"  # nothing stray was sent


def test_no_body_after_a_304_or_204_whatever_the_app_returns(worker):
    """The body would be read as the start of the next answer on the connection."""
    with worker.connect() as sock:
        conn = HttpConn(sock)
        for path in (b"/304", b"/204"):
            conn.send(b"GET " + path + b" HTTP/1.1\r\nHost: t\r\n\r\n")
            resp = conn.response(b"HEAD")  # (read as having no body, as a client does)
            assert resp.status == int(path[1:]) and resp.body == b""
        conn.send(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        resp = conn.response()
        assert resp.status == 200 and resp.body == b"Hello World"


def test_http10_gets_http10_and_close(worker):
    with worker.connect() as sock:
        sock.sendall(b"GET /stream HTTP/1.0\r\n\r\n")
        raw = recv_all(sock)
    assert raw.startswith(b"HTTP/1.0 200 OK\r\n")
    assert raw.endswith(b"first\nsecond\nthird\n")
    assert b"chunked" not in raw


def test_write_then_iterable_chunked_and_close_called(worker):
    with worker.connect() as sock:
        conn = HttpConn(sock)
        conn.send(b"GET /tracked HTTP/1.1\r\nHost: t\r\n\r\n")
        resp = conn.response()
        assert resp.headers["transfer-encoding"] == "chunked"
        assert resp.body == b"w1,i1,i2"
        conn.send(b"GET /tracked-fail HTTP/1.1\r\nHost: t\r\n\r\n")
        with pytest.raises(EOFError):
            conn.response()  # headers went out, then the app failed: cut short
    assert http_get(worker, "/closed").body == b"2"


def test_file_wrapper_sendfile_and_plain_filelike(worker):
    import brood.demo.hello as hello

    resp = http_get(worker, "/file")
    with open(hello.__file__, "rb") as f:
        assert resp.body == f.read()
    assert resp.headers["content-length"] == str(len(resp.body))
    assert http_get(worker, "/bytesfile").body == b"from a BytesIO"


def test_exc_info_replaces_headers_before_sending(worker):
    resp = http_get(worker, "/exc-before")
    assert resp.status == 503 and resp.body == b"busy"


def test_exc_info_after_headers_closes_connection(worker):
    with worker.connect() as sock:
        sock.sendall(b"GET /exc-after HTTP/1.1\r\nHost: t\r\n\r\n")
        raw = recv_all(sock)
    assert raw.startswith(b"HTTP/1.1 200 OK")
    assert b"never" not in raw
    wait_for(lambda: "ValueError: late" in worker.log(), what="traceback logged")


def test_app_error_500_and_worker_survives(worker):
    resp = http_get(worker, "/error")
    assert resp.status == 500
    assert http_get(worker, "/").status == 200
    assert worker.slot.exceptions == 1
    log = worker.log()
    assert "GET /error" in log and "RuntimeError: demo error" in log


def test_header_injection_refused(worker):
    assert http_get(worker, "/crlf").status == 500
    assert "CR or LF" in worker.log()


def test_environ_from_http_head(worker):
    resp = http_get(worker, "/env?a=1&b=%20", extra="X-Twice: 1\r\nX-Twice: 2\r\n")
    env = json.loads(resp.body)
    assert env["QUERY_STRING"] == "a=1&b=%20"
    assert env["REQUEST_URI"] == "/env?a=1&b=%20"
    assert env["HTTP_X_TWICE"] == "1, 2"
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert env["SERVER_PORT"] == str(worker.port)
    assert env["SERVER_NAME"] == socket.gethostname()  # as uWSGI, not the bound address
    assert env["wsgi.url_scheme"] == "http"
    assert env["wsgi.multithread"] is False
    assert "UWSGI_ROUTER" not in env


def test_client_disconnect_mid_body_keeps_worker(worker):
    sock = worker.connect()
    sock.sendall(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nabc")
    sock.close()
    wait_for(lambda: worker.slot.requests == 1, what="request accounted")
    assert http_get(worker).status == 200


def test_tcp_nodelay_on_listener(worker):
    # accepted sockets inherit it from the listening socket the worker configured
    with worker.connect() as sock:
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) in (0, 1)
    assert http_get(worker).status == 200
