"""The workers' request log through a real ``brood``: a --log-format (or its alias
--logformat) with -L and --log-5xx, and a bad format refused before anything starts."""

from __future__ import annotations

import re
import socket
import subprocess
import sys

import pytest
from _broodkit import http_get, uwsgi_request, wait_until, worker_pids


def test_logformat_with_disable_logging_and_log_5xx(start_brood, hello_app) -> None:
    b = start_brood("--socket", "127.0.0.1:0", "--wsgi-file", hello_app, "-L", "--log-5xx",
                    "--logformat", "REQ %(method) %(uri) %(status) wid=%(wid) pid=%(pid)",
                    "--stats", "127.0.0.1:0")
    address = b.address_of("uwsgi socket 0")
    pid = worker_pids(b.stats())[0]
    assert uwsgi_request(address, "/")[0] == 200
    assert uwsgi_request(address, "/error")[0] == 500
    assert uwsgi_request(address, "/big")[0] == 200
    assert uwsgi_request(address, "/error", method="POST")[0] == 500
    lines = [m[0] for m in b.wait_for_log(r"REQ [^\n]*", count=2)]
    assert lines == [f"REQ GET /error 500 wid=1 pid={pid}",
                     f"REQ POST /error 500 wid=1 pid={pid}"]
    assert "generated" not in b.log()


def test_default_line_when_no_format(start_brood, hello_app) -> None:
    b = start_brood("--http-socket", "127.0.0.1:0", "--wsgi-file", hello_app)
    assert http_get(b.address_of("uwsgi socket 0"), "/?a=1") == (200, b"Hello World")
    [line] = [m[0] for m in b.wait_for_log(r"\[pid: \d+\|app: 0\|req: 1/1\][^\n]*")]
    assert " GET /?a=1 => generated 11 bytes in " in line
    assert re.search(r"\(HTTP/1\.0 200\) 2 headers in \d+ bytes \(1 switches on core 0\)$",
                     line), line


def test_request_lines_count_the_worker_and_the_whole_instance(start_brood, hello_app) -> None:
    """``req: N/TOTAL`` as uWSGI: this worker's requests, then all workers' since the
    start; a worker respawned by --max-requests starts again at 1, the total goes on."""
    b = start_brood("--http-socket", "127.0.0.1:0", "--wsgi-file", hello_app, "-p", "2",
                    "--max-requests", "2", "--min-worker-lifetime", "0")
    address = b.address_of("uwsgi socket 0")
    for _ in range(6):
        assert http_get(address, "/")[0] == 200
    found = b.wait_for_log(r"\[pid: (\d+)\|app: 0\|req: (\d+)/(\d+)\]", count=6)
    assert sorted(int(m[3]) for m in found) == [1, 2, 3, 4, 5, 6]
    seen: dict[str, int] = {}
    for m in sorted(found, key=lambda m: int(m[3])):
        seen[m[1]] = seen.get(m[1], 0) + 1
        assert int(m[2]) == seen[m[1]] <= 2  # each process serves at most 2
    assert len(seen) >= 3  # respawned processes started again at 1


@pytest.mark.parametrize("quiet", [False, True])
def test_memory_report_in_the_line_and_the_stats(start_brood, hello_app, quiet) -> None:
    """As uWSGI's --memory-report: the request line starts with the worker's memory,
    and the stats have it (uwsgitop's RSS and VSZ columns were 0), logging or not."""
    b = start_brood("--http-socket", "127.0.0.1:0", "--wsgi-file", hello_app,
                    "--memory-report", "--stats", "127.0.0.1:0",
                    *(["--disable-logging"] if quiet else []))
    assert http_get(b.address_of("uwsgi socket 0"), "/")[0] == 200
    wait_until(lambda: b.stats()["workers"][0]["rss"] > 0, what="rss in the stats")
    worker = b.stats()["workers"][0]
    assert worker["vsz"] > worker["rss"] > 1 << 20
    if quiet:
        assert "address space usage" not in b.log()
        return
    [m] = b.wait_for_log(r"\{address space usage: (\d+) bytes/(\d+)MB\} "
                         r"\{rss usage: (\d+) bytes/(\d+)MB\} \[pid: \d+\|app: 0\|req: 1/1\]")
    assert int(m[1]) >> 20 == int(m[2]) and int(m[3]) >> 20 == int(m[4]) > 0


@pytest.mark.parametrize("spelling", ["--log-format", "--logformat"])
def test_an_unclosed_log_variable_stops_start_up(spelling, tmp_path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "brood", "--socket", "127.0.0.1:0",
         "--wsgi-file", str(tmp_path / "never-loaded.py"), spelling, "%(uri) %(bogus"],
        capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1] == "brood: --log-format: unclosed %( at offset 7"
    assert "Traceback" not in done.stderr


def test_a_logvar_is_said_at_start_and_written_as_a_dash(start_brood, hello_app) -> None:
    """A uWSGI ini's --log-format with a logvar (set by apps through uWSGI's uwsgi
    module) runs: the start says the name, the lines write "-" there, as uWSGI does."""
    b = start_brood("--http-socket", "127.0.0.1:0", "--wsgi-file", hello_app,
                    "--log-format", "REQ %(uri) user=%(user_id) %(status)")
    assert "--log-format: %(user_id) is no request variable brood knows" in b.log()
    assert http_get(b.address_of("uwsgi socket 0"), "/x")[0] == 200
    assert b.wait_for_log(r"REQ [^\n]*")[0][0] == "REQ /x user=- 200"


def test_log_ioerror_keeps_the_line_of_a_client_gone_mid_body(start_brood, hello_app) -> None:
    """-L --log-ioerror: a request whose client left before its whole body came still
    gets a line (uWSGI's "log requests with io errors"); a whole one does not."""
    b = start_brood("--http-socket", "127.0.0.1:0", "--wsgi-file", hello_app, "-L",
                    "--log-ioerror")
    address = b.address_of("uwsgi socket 0")
    assert http_get(address, "/")[0] == 200
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
        sock.shutdown(socket.SHUT_WR)
        sock.recv(65536)  # the worker gives up on the body and closes
    [line] = [m[0] for m in b.wait_for_log(r"\[pid: \d+\|app: 0\|req: \d+/\d+\][^\n]*")]
    assert " POST /echo => generated " in line, line
    assert " GET / " not in b.log()
