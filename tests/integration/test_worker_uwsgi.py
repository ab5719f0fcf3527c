"""uwsgi-protocol workers: packets in, raw HTTP out, then close."""

from __future__ import annotations

import json

import pytest
from _workerkit import WorkerProcess, http_get, recv_all, uwsgi_request, uwsgi_vars, wait_for

from brood.demo.hello import application as app
from brood.protocol.uwsgi import encode_header


@pytest.fixture
def worker(tmp_path):
    with WorkerProcess(app, tmp_path, protos=("uwsgi",), disable_logging=True) as w:
        yield w


def test_get_answers_with_request_protocol(worker):
    raw = uwsgi_request(worker, uwsgi_vars("/"))
    assert raw == b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nHello World"


def test_missing_server_protocol_means_http10(worker):
    raw = uwsgi_request(worker, uwsgi_vars("/", proto=None))
    assert raw.startswith(b"HTTP/1.0 200 OK\r\n")


def test_post_body_follows_the_vars(worker):
    body = b"z" * 200000
    raw = uwsgi_request(worker, uwsgi_vars("/echo", "POST", CONTENT_LENGTH=str(len(body))), body)
    head, _, got = raw.partition(b"\r\n\r\n")
    assert got == body


def test_environ_last_value_wins_and_https(worker):
    pairs = uwsgi_vars("/env") + [(b"X_DUP", b"1"), (b"X_DUP", b"2"), (b"HTTPS", b"on")]
    raw = uwsgi_request(worker, pairs)
    env = json.loads(raw.partition(b"\r\n\r\n")[2])
    assert env["X_DUP"] == "2"
    assert env["wsgi.url_scheme"] == "https"
    assert env["SCRIPT_NAME"] == ""


def test_packet_over_buffer_size_answered_and_worker_survives(worker):
    pairs = uwsgi_vars("/", HTTP_X_BIG="a" * 5000)
    raw = uwsgi_request(worker, pairs)
    assert raw.startswith(b"HTTP/1.0 431 ")
    assert "invalid uwsgi request" in worker.log()
    assert uwsgi_request(worker, uwsgi_vars("/")).endswith(b"Hello World")


def test_bigger_buffer_size_accepts_it(tmp_path):
    with WorkerProcess(app, tmp_path, protos=("uwsgi",), buffer_size=16384,
                       disable_logging=True) as w:  # fmt: skip
        raw = uwsgi_request(w, uwsgi_vars("/", HTTP_X_BIG="a" * 5000))
        assert raw.endswith(b"Hello World")


def test_malformed_vars_block_is_400(worker):
    with worker.connect() as sock:
        sock.sendall(encode_header(0, 4, 0) + b"\x00\x00ab")
        assert recv_all(sock).startswith(b"HTTP/1.0 400 ")
    assert uwsgi_request(worker, uwsgi_vars("/")).endswith(b"Hello World")


def test_limit_post_413(tmp_path):
    with WorkerProcess(app, tmp_path, protos=("uwsgi",), limit_post=10,
                       disable_logging=True) as w:  # fmt: skip
        raw = uwsgi_request(w, uwsgi_vars("/echo", "POST", CONTENT_LENGTH="11"), b"x" * 11)
        assert raw.startswith(b"HTTP/1.1 413 ")


def test_http_and_uwsgi_listeners_in_one_worker(tmp_path):
    with WorkerProcess(app, tmp_path, protos=("uwsgi", "http", "unix-http"),
                       disable_logging=True) as w:  # fmt: skip
        assert uwsgi_request(w, uwsgi_vars("/"), index=0).endswith(b"Hello World")
        assert http_get(w, "/", index=1).body == b"Hello World"
        env = json.loads(http_get(w, "/env", index=2).body)
        assert env["REMOTE_ADDR"] == ""
        wait_for(lambda: w.slot.requests == 3, what="3 requests accounted")


def test_unread_body_does_not_reset_the_answer(worker):
    body = b"q" * 300000
    raw = uwsgi_request(worker, uwsgi_vars("/", "POST", CONTENT_LENGTH=str(len(body))), body)
    assert raw.endswith(b"Hello World")
