"""Worker lifecycle: signals, max-requests, reload-on-rss, threads, lazy apps, the
scoreboard and the access log."""

from __future__ import annotations

import json
import re
import signal
import threading
import time

import pytest
from _workerkit import HttpConn, WorkerProcess, http_get, wait_for

import brood.demo.hello
from brood.demo.hello import application as app
from brood.scoreboard import STATUS_BUSY, STATUS_IDLE
from brood.stats import worker_stats


def _start_slow(worker: WorkerProcess, seconds: float) -> tuple[HttpConn, object]:
    sock = worker.connect()
    conn = HttpConn(sock)
    conn.send(f"GET /sleep?s={seconds} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
    wait_for(lambda: worker.slot.status == STATUS_BUSY, what="request in progress")
    return conn, sock


def test_scoreboard_counters(tmp_path):
    with WorkerProcess(app, tmp_path, disable_logging=True) as w:
        assert w.slot.pid == w.pid and w.slot.accepting == 1
        assert http_get(w, "/").status == 200
        assert http_get(w, "/error").status == 500
        wait_for(lambda: w.slot.requests == 2, what="2 requests")
        assert w.slot.exceptions == 1
        assert w.slot.tx > 11
        assert w.slot.status == STATUS_IDLE and w.slot.request_start == 0
        assert w.slot.avg_rt > 0


def test_graceful_sighup_finishes_in_flight_request(tmp_path):
    with WorkerProcess(app, tmp_path, disable_logging=True) as w:
        conn, sock = _start_slow(w, 0.5)
        w.signal(signal.SIGHUP)
        resp = conn.response()
        assert resp.status == 200 and resp.body == b"slept\n"
        assert resp.headers["connection"] == "close"
        assert w.wait() == 0
        sock.close()


def test_graceful_sigterm_does_not_wait_for_idle_keepalive(tmp_path):
    with WorkerProcess(app, tmp_path, disable_logging=True) as w:
        sock = w.connect()
        conn = HttpConn(sock)
        conn.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        assert conn.response().status == 200
        wait_for(lambda: w.slot.requests == 1, what="request accounted")
        started = time.monotonic()
        w.signal(signal.SIGTERM)
        assert w.wait() == 0
        assert time.monotonic() - started < 5  # not the 15 s keep-alive timeout
        assert conn.closed()
        sock.close()


def test_sigint_stops_at_once(tmp_path):
    with WorkerProcess(app, tmp_path, disable_logging=True) as w:
        conn, sock = _start_slow(w, 30)
        started = time.monotonic()
        w.signal(signal.SIGINT)
        assert w.wait() == 0
        assert time.monotonic() - started < 5
        sock.close()


def test_max_requests_exits_zero(tmp_path):
    with WorkerProcess(app, tmp_path, max_requests=3, min_worker_lifetime=0,
                       disable_logging=True) as w:
        with w.connect() as sock:
            conn = HttpConn(sock)
            for _ in range(3):
                conn.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
                resp = conn.response()
                assert resp.status == 200
            assert resp.headers["connection"] == "close"  # the last one says so
        assert w.wait() == 0
        assert w.slot.requests == 3
        assert "max-requests" in w.log()


def test_a_young_worker_outlives_max_requests(tmp_path):
    """--min-worker-lifetime (60 s by default, as uWSGI): a worker that reaches
    --max-requests sooner serves on; a busy pool would otherwise spend itself forking."""
    with WorkerProcess(app, tmp_path, max_requests=3, disable_logging=True) as w:
        with w.connect() as sock:
            conn = HttpConn(sock)
            for _ in range(6):
                conn.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
                resp = conn.response()
                assert resp.status == 200 and "connection" not in resp.headers
        assert w.poll() is None and "max-requests" not in w.log()


def test_max_requests_delta_adds_per_worker(tmp_path):
    """Worker 3 of a pool with --max-requests 2 --max-requests-delta 2 goes at 2 + 2 * 2."""
    with WorkerProcess(app, tmp_path, worker_id=3, max_requests=2, max_requests_delta=2,
                       min_worker_lifetime=0, disable_logging=True) as w:
        with w.connect() as sock:
            conn = HttpConn(sock)
            for i in range(6):
                conn.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
                resp = conn.response()
                assert ("connection" in resp.headers) == (i == 5)
        assert w.wait() == 0
        assert "worker 3 reached max-requests (6)" in w.log()


def test_reload_on_rss_exits_after_request(tmp_path):
    with WorkerProcess(app, tmp_path, reload_on_rss=1, min_worker_lifetime=0,
                       disable_logging=True) as w:
        assert http_get(w).status == 200
        assert w.wait() == 0
        assert w.slot.rss > 1024 * 1024


def test_threads_serve_concurrently(tmp_path):
    with WorkerProcess(app, tmp_path, threads=2, disable_logging=True) as w:
        env = json.loads(http_get(w, "/env").body)
        assert env["wsgi.multithread"] is True
        results = []

        def slow():
            results.append(http_get(w, "/sleep?s=1").status)

        started = time.monotonic()
        threads = [threading.Thread(target=slow) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert results == [200, 200]
        assert time.monotonic() - started < 1.9
        wait_for(lambda: w.slot.requests == 3, what="3 requests")
        assert w.slot.status == STATUS_IDLE


def test_threads_are_the_workers_cores_in_the_stats(tmp_path):
    # uWSGI's stats list a worker's threads as its cores, each with its requests and
    # whether it is in one now (uwsgitop's per-core view): brood showed one core.
    with WorkerProcess(app, tmp_path, threads=3, disable_logging=True) as w:
        slow = [_start_slow(w, 1.0)]
        wait_for(lambda: sum(busy for _, busy in w.slot.core_stats()) == 1, what="1 busy core")
        slow.append(_start_slow(w, 1.0))
        wait_for(lambda: sum(busy for _, busy in w.slot.core_stats()) == 2,
                 what="2 busy cores")
        for conn, sock in slow:
            assert conn.response().status == 200
            sock.close()
        assert http_get(w, "/").status == 200
        wait_for(lambda: w.slot.requests == 3, what="3 requests")
        cores = w.slot.core_stats()
        assert len(cores) == 3 and not any(busy for _, busy in cores)
        assert sum(requests for requests, _ in cores) == 3
        assert sum(1 for requests, _ in cores if requests) >= 2  # the two slow ones overlapped
        doc = worker_stats([], w.board, backlog=100)["workers"][0]["cores"]
        assert [core["id"] for core in doc] == [0, 1, 2]
        assert [core["requests"] for core in doc] == [requests for requests, _ in cores]


def test_threads_graceful_stop(tmp_path):
    with WorkerProcess(app, tmp_path, threads=2, disable_logging=True) as w:
        conn, sock = _start_slow(w, 0.5)
        w.signal(signal.SIGHUP)
        assert conn.response().body == b"slept\n"
        assert w.wait() == 0
        sock.close()


def test_lazy_app_loaded_in_worker(tmp_path):
    with WorkerProcess(None, tmp_path, wsgi_file=brood.demo.hello.__file__,
                       disable_logging=True) as w:  # fmt: skip
        assert http_get(w).body == b"Hello World"


def test_lazy_app_load_error_exits_one(tmp_path):
    w = WorkerProcess(None, tmp_path, wsgi_file=str(tmp_path / "missing.py"))
    with w:
        assert w.wait() == 1
        assert "missing.py not found" in w.log()


ACCESS = re.compile(
    r"\[pid: (\d+)\|app: 0\|req: 1/1\] 127\.0\.0\.1 \(\) \{(\d+) vars in (\d+) bytes\} "
    r"\[\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4}\] GET /big\?x=1 => generated 65536 bytes "
    r"in \d+ msecs \(HTTP/1\.1 200\) (\d+) headers in (\d+) bytes \(1 switches on core 0\)\n"
)


def test_access_log_line(tmp_path):
    with WorkerProcess(app, tmp_path) as w:
        http_get(w, "/big?x=1")
        wait_for(lambda: "generated" in w.log(), what="access log line")
        match = ACCESS.search(w.log())
        assert match, w.log()
        assert int(match[1]) == w.pid
        assert int(match[4]) == 3  # Content-Type, Content-Length, Connection: close


@pytest.mark.parametrize("threads", [1, 2])
def test_a_request_waiting_on_a_parked_connection_is_served_when_the_worker_stops(
        tmp_path, threads):
    """--max-requests ends the worker while client A's next request waits on its parked
    keep-alive connection: A gets its answer, with Connection: close (the close used to
    reset the connection and lose it). With --threads, A's thread waits on A's socket."""
    with WorkerProcess(app, tmp_path, max_requests=2, min_worker_lifetime=0,
                       disable_logging=True, threads=threads) as w:
        with w.connect() as a_sock, w.connect() as b_sock:
            a, b = HttpConn(a_sock), HttpConn(b_sock)
            a.send(b"GET /sleep?s=0 HTTP/1.1\r\nHost: t\r\n\r\n")
            assert a.response().status == 200  # request 1: A is parked
            b.send(b"GET /sleep?s=0.3 HTTP/1.1\r\nHost: t\r\n\r\n")  # request 2, the last
            wait_for(lambda: w.slot.status == STATUS_BUSY, what="B in progress")
            a.send(b"GET /sleep?s=0 HTTP/1.1\r\nHost: t\r\n\r\n")  # waits in A's socket
            assert b.response().headers["connection"] == "close"
            answer = a.response()
            assert answer.status == 200 and answer.headers["connection"] == "close"
        assert w.wait() == 0
        assert w.log().count("reached max-requests") == 1  # not once more per last request


@pytest.mark.parametrize("threads", [1, 2])
def test_a_graceful_stop_answers_a_back_to_back_keep_alive_client(tmp_path, threads):
    """SIGHUP while a client sends requests back to back on one connection: every
    request it sent is answered, the last one with Connection: close (an answer that
    went out as keep-alive just before the stop used to be followed by a reset)."""
    import os
    import socket

    def client(port: int, outcome: list[str]) -> None:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            conn = HttpConn(sock)
            while True:
                try:
                    conn.send(b"GET /sleep?s=0 HTTP/1.1\r\nHost: t\r\n\r\n")
                    resp = conn.response()
                except Exception as exc:  # noqa: BLE001 - what the client saw
                    outcome.append(repr(exc))
                    return
                if resp.headers.get("connection") == "close":
                    outcome.append("close")
                    return

    for _ in range(3):
        with WorkerProcess(app, tmp_path, disable_logging=True, threads=threads) as w:
            outcome: list[str] = []
            thread = threading.Thread(target=client, args=(w.port, outcome))
            thread.start()
            wait_for(lambda: w.slot.requests > 50, what="traffic")
            os.kill(w.pid, signal.SIGHUP)
            thread.join(20)
            assert outcome == ["close"]
            assert w.wait() == 0


def test_idle_keep_alive_clients_hold_no_thread(tmp_path):
    """--threads 2 and two idle kept-alive clients: a third client is served at once
    (each thread used to wait on its own connection: the third waited READ_TIMEOUT),
    and the idle ones still get their next answers."""
    import socket

    with WorkerProcess(app, tmp_path, threads=2, disable_logging=True) as w, \
            w.connect() as a_sock, w.connect() as b_sock:
        idle = [HttpConn(a_sock), HttpConn(b_sock)]
        for conn in idle:
            conn.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            assert conn.response().status == 200
        with socket.create_connection(("127.0.0.1", w.port), timeout=3) as sock:
            third = HttpConn(sock)
            third.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            assert third.response().status == 200
            third.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            assert third.response().status == 200
        for conn in idle:
            conn.send(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            assert conn.response().status == 200
