"""Keep-alive connections on a single-threaded worker: parked, not waited on."""

from __future__ import annotations

import signal
import socket
import time

from _workerkit import HttpConn, WorkerProcess, http_get, wait_for

from brood.demo.hello import application as app

GET = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"


def test_idle_keepalive_client_does_not_hold_the_worker(tmp_path):
    with WorkerProcess(app, tmp_path, disable_logging=True) as w, w.connect() as first:
        a = HttpConn(first)
        a.send(GET)
        assert a.response().body == b"Hello World"
        # ``first`` stays open and idle: a second client is served at once
        started = time.monotonic()
        assert http_get(w, "/").body == b"Hello World"
        assert time.monotonic() - started < 5  # not the 15 s keep-alive timeout
        a.send(GET)  # and the parked connection still works
        assert a.response().body == b"Hello World"


def test_many_keepalive_clients_interleave(tmp_path):
    with WorkerProcess(app, tmp_path, disable_logging=True) as w:
        socks = [w.connect() for _ in range(8)]
        try:
            conns = [HttpConn(s) for s in socks]
            for _ in range(3):
                for c in conns:
                    c.send(GET)
                for c in conns:
                    assert c.response().body == b"Hello World"
            wait_for(lambda: w.slot.requests == 24, what="24 requests accounted")
        finally:
            for s in socks:
                s.close()


def test_connection_silent_after_connect_does_not_hold_the_worker(tmp_path):
    # connected, sends nothing (unix sockets have no deferred accept)
    with (
        WorkerProcess(app, tmp_path, protos=("unix-http",), disable_logging=True) as w,
        w.connect(),
    ):
        started = time.monotonic()
        assert http_get(w, "/").body == b"Hello World"
        assert time.monotonic() - started < 5


def test_pipelined_requests_after_parking(tmp_path):
    with WorkerProcess(app, tmp_path, disable_logging=True) as w, w.connect() as sock:
        conn = HttpConn(sock)
        conn.send(GET)
        assert conn.response().status == 200
        conn.send(GET + b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n" + GET)
        assert conn.response().body == b"Hello World"
        assert len(conn.response().body) == 65536
        assert conn.response().body == b"Hello World"


def test_graceful_stop_closes_parked_connections(tmp_path):
    with WorkerProcess(app, tmp_path, disable_logging=True) as w:
        socks = [w.connect() for _ in range(3)]
        try:
            conns = [HttpConn(s) for s in socks]
            for c in conns:
                c.send(GET)
                assert c.response().status == 200
            w.signal(signal.SIGHUP)
            assert w.wait() == 0
            assert all(c.closed() for c in conns)
        finally:
            for s in socks:
                s.close()


def test_peer_reset_while_parked_keeps_the_worker(tmp_path):
    with WorkerProcess(app, tmp_path, disable_logging=True) as w:
        sock = w.connect()
        conn = HttpConn(sock)
        conn.send(GET)
        assert conn.response().status == 200
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        sock.close()  # RST to the parked connection
        assert http_get(w, "/").status == 200
        assert w.poll() is None
