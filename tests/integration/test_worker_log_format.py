"""The worker's request lines: --log-format templates, and --log-4xx/--log-5xx with
--disable-logging, on a real forked worker (uwsgi and HTTP sockets on loopback)."""

from __future__ import annotations

import socket

from _workerkit import WorkerProcess, http_get, uwsgi_request, uwsgi_vars, wait_for

from brood.config.model import Config
from brood.listener import Listener
from brood.scoreboard import Scoreboard
from brood.workers.reqlog import RequestLog
from brood.workers.wsgi import Worker


def app(environ, start_response):
    """``/status/NNN`` answers NNN, ``/error`` raises (500), anything else 200 "ok"."""
    path = environ["PATH_INFO"]
    if path == "/error":
        raise RuntimeError("boom")
    status = path.rsplit("/", 1)[1] if path.startswith("/status/") else "200"
    body = b"ok"
    start_response(f"{status} X", [("Content-Type", "text/plain"),
                                   ("Content-Length", str(len(body)))])
    return [body]


def _lines(worker: WorkerProcess, marker: str) -> list[str]:
    return [line for line in worker.log().splitlines() if line.startswith(marker)]


def _wait_lines(worker: WorkerProcess, marker: str, count: int) -> list[str]:
    wait_for(lambda: len(_lines(worker, marker)) >= count, what=f"{count} lines")
    return _lines(worker, marker)


def test_format_on_http_socket(tmp_path):
    fmt = ('LOG %(addr) %(user) "%(method) %(uri) %(proto)" %(status) %(size) %(rsize) '
           '%(hsize) %(headers) %(host) "%(uagent)" "%(referer)" %(cl) %(pid) %(wid) '
           '%(core) %(var.HTTP_X_TRACE) %(var.QUERY_STRING) %(vars) %(pktsize) %(msecs)')
    with WorkerProcess(app, tmp_path, log_format=fmt) as w:
        resp = http_get(w, "/status/201?q=1", extra="User-Agent: probe/1\r\nX-Trace: t-1\r\n")
        assert resp.status == 201
        [line] = _wait_lines(w, "LOG ", 1)
    head_size = len(resp.raw_head)
    fields = line.split(" ")
    assert fields[:6] == ["LOG", "127.0.0.1", "-", '"GET', "/status/201?q=1", 'HTTP/1.1"']
    assert fields[6:11] == ["201", str(head_size + 2), "2", str(head_size), "3"]
    assert fields[11:15] == ["t", '"probe/1"', '"-"', "0"]
    assert fields[15:20] == [str(w.pid), "1", "0", "t-1", "q=1"]
    nvars, pktsize, msecs = (int(f) for f in fields[20:])
    assert nvars > 5 and pktsize > 50 and 0 <= msecs < 5000
    assert "generated" not in w.log()  # the format replaced the default line


def test_format_on_uwsgi_socket_with_logformat_alias_spelling(tmp_path):
    with WorkerProcess(app, tmp_path, protos=("uwsgi",),
                       logformat="U %(method) %(uri) %(status) %(vars) %(pktsize)") as w:
        pairs = uwsgi_vars("/status/418", HTTP_HOST="h")
        assert uwsgi_request(w, pairs).startswith(b"HTTP/1.1 418 ")
        [line] = _wait_lines(w, "U ", 1)
    packet = sum(len(k) + len(v) + 4 for k, v in pairs)
    assert line == f"U GET /status/418 418 {len(pairs)} {packet}"


def test_disable_logging_with_log_4xx_keeps_only_4xx_lines(tmp_path):
    with WorkerProcess(app, tmp_path, disable_logging=True, log_4xx=True) as w:
        for path in ("/", "/status/500", "/status/404", "/status/399", "/status/499"):
            http_get(w, path)
        # one request at a time: once the last line is there, every earlier one is too
        lines = _wait_lines(w, "[pid: ", 2)
    assert [line.split(" => ")[0].rsplit(" ", 1)[1] for line in lines] == [
        "/status/404", "/status/499"]
    assert "(HTTP/1.1 404)" in lines[0]


def test_disable_logging_with_log_5xx_and_a_format(tmp_path):
    with WorkerProcess(app, tmp_path, disable_logging=True, log_5xx=True,
                       log_format="E %(uri) %(status)") as w:
        for path in ("/", "/status/404", "/error", "/status/503", "/status/200"):
            http_get(w, path)
        http_get(w, "/status/599")
        lines = _wait_lines(w, "E ", 3)
    assert lines == ["E /error 500", "E /status/503 503", "E /status/599 599"]


def test_disable_logging_alone_logs_nothing(tmp_path):
    with WorkerProcess(app, tmp_path, disable_logging=True) as w:
        http_get(w, "/status/404")
        http_get(w, "/error")
        wait_for(lambda: "RuntimeError: boom" in w.log(), what="traceback logged")
        wait_for(lambda: w.slot.requests == 2, what="requests accounted")
        assert "[pid: " not in w.log()


def _worker(**options) -> Worker:
    """A Worker object (no fork, nothing served) over a loopback listener."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    cfg = Config.from_dict({k.replace("_", "-"): v for k, v in options.items()})
    try:
        return Worker(1, [Listener(sock, "t", "http")], app, cfg, Scoreboard(1).slot(1))
    finally:
        sock.close()


def test_default_worker_logs_through_the_class_method_alone():
    """The default line costs what it did: no per-instance log object, no new attribute
    (past 30 of them CPython 3.11 gives an object a real dict, and every attribute
    load on the per-request path gets slower)."""
    default = _worker()
    assert "request_log" not in vars(default) and "serve_request" not in vars(default)
    assert default.request_log.__func__ is Worker._access_log
    assert len(vars(default)) <= 30
    for options in ({"log_format": "%(uri)"}, {"disable_logging": True, "log_5xx": True}):
        assert isinstance(vars(_worker(**options))["request_log"], RequestLog)
    quiet = _worker(disable_logging=True)
    assert not quiet.logging and "request_log" not in vars(quiet)
    assert "serve_request" in vars(_worker(harakiri_verbose=True))


def test_a_utf8_uri_is_logged_as_sent(tmp_path):
    """Environ values are the request's bytes read as latin-1: the line gives those
    bytes back (``/café``), not their UTF-8 re-encoding (``/cafÃ©``), in the default
    line and in a --log-format one."""
    target = "/café?q=é".encode()
    for options in ({}, {"log_format": "LOG %(uri)"}):
        with WorkerProcess(app, tmp_path, **options) as w:
            with w.connect() as sock:
                sock.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                while sock.recv(65536):
                    pass
            wait_for(lambda: b"GET " + target in w.log_path.read_bytes()
                     or b"LOG " + target in w.log_path.read_bytes(), what="the line")
            assert "Ã" not in w.log_path.read_bytes().decode("utf-8")
        w.log_path.unlink()
