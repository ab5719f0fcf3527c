"""The HTTP router's request lines from a real ``brood``: one per request (fast lane and
general path), none under --disable-logging, 5xx still with --log-5xx, an
--http-log-format template, --logto as where they go, a line for a request refused
before its head was read, and in embedded mode one line per request (the worker's,
or the router's for its own answers)."""

from __future__ import annotations

import re
import socket
from pathlib import Path

from _broodkit import BIND_LINE, BroodProcess, wait_until

# The default line (brood.routers.http.accesslog).
LINE = re.compile(
    r"^\[pid: (?P<pid>\d+)\|router: http\] (?P<addr>\S+) \(\) \{node (?P<node>\S+)\} "
    r"\[(?P<time>[^\]]+)\] (?P<method>\S+) (?P<uri>\S+) => generated (?P<size>\d+) bytes "
    r"in (?P<msecs>\d+) msecs \((?P<proto>\S+) (?P<status>\d+)\)$", re.MULTILINE)


def exchange(address: str, request: bytes) -> bytes:
    """Send ``request`` (one that ends with the connection's close), read to EOF."""
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=20) as sock:
        sock.sendall(request)
        chunks = []
        while data := sock.recv(65536):
            chunks.append(data)
    return b"".join(chunks)


def status_of(raw: bytes) -> int:
    return int(raw.split(b" ", 2)[1])


def router_pid(b: BroodProcess, log: str | None = None) -> int:
    found = re.search(r"spawned uWSGI http 1 \(pid: (\d+)", log or b.log())
    assert found, b.log()
    return int(found[1])


def wait_lines(b: BroodProcess, count: int) -> None:
    wait_until(lambda: len(LINE.findall(b.log())) >= count or b.proc.poll() is not None,
               what=f"{count} request lines")
    assert b.proc.poll() is None, b.log()


def start_router(start_brood, hello_app: str, *flags: str) -> BroodProcess:
    """An HTTP router in front of a worker pool of its own instance: the router writes
    the lines (a brood that runs workers leaves those to them)."""
    pool = start_brood("--master", "--socket", "127.0.0.1:0", "--wsgi-file", hello_app,
                       "--disable-logging")
    return start_brood("--master", "--http", "127.0.0.1:0", "--http-to", pool.address_of(),
                       *flags)


def lines_after_stop(b: BroodProcess) -> list[re.Match[str]]:
    """The router's lines once it has exited: every line it had queued is out."""
    b.stop()
    return list(LINE.finditer(b.log()))


GET = b"GET %s HTTP/1.0\r\nHost: localhost\r\n\r\n"
# A chunked request body: the general path serves it (the fast lane takes none).
CHUNKED_POST = (b"POST /echo HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")


def test_one_line_per_request_fast_lane_and_general_path(start_brood, hello_app) -> None:
    b = start_router(start_brood, hello_app)
    address = b.address_of("http socket 0")
    answers = [("GET", "/?a=1", exchange(address, GET % b"/?a=1")),
               ("GET", "/big", exchange(address, GET % b"/big")),
               ("POST", "/echo", exchange(address, CHUNKED_POST))]
    assert [status_of(raw) for _, _, raw in answers] == [200, 200, 200]
    assert answers[2][2].endswith(b"hello")
    wait_lines(b, 3)
    found = lines_after_stop(b)
    assert [(m["method"], m["uri"], int(m["status"]), int(m["size"])) for m in found] == [
        (method, uri, 200, len(raw)) for method, uri, raw in answers]
    pid = router_pid(b)
    for m in found:
        assert int(m["pid"]) == pid and m["addr"] == "127.0.0.1"
        assert m["node"] != "-" and int(m["msecs"]) < 10_000
    assert [m["proto"] for m in found] == ["HTTP/1.0", "HTTP/1.0", "HTTP/1.1"]


def test_disable_logging_writes_none(start_brood, hello_app) -> None:
    served = {}
    for flags in ((), ("--disable-logging",)):
        b = start_router(start_brood, hello_app, *flags)
        address = b.address_of("http socket 0")
        assert status_of(exchange(address, GET % b"/")) == 200
        assert status_of(exchange(address, CHUNKED_POST)) == 200
        served[flags] = lines_after_stop(b)
    assert len(served[()]) == 2  # the same requests without the flag: a line each
    assert served[("--disable-logging",)] == []


def test_log_5xx_with_disable_logging_logs_the_502(start_brood) -> None:
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))  # bound, never listening: connects are refused
    try:
        node = f"127.0.0.1:{dead.getsockname()[1]}"
        b = start_brood("--master", "--http", "127.0.0.1:0", "--http-to", node,
                        "--disable-logging", "--log-5xx")
        raw = exchange(b.address_of("http socket 0"), GET % b"/gone?x=1")
    finally:
        dead.close()
    assert status_of(raw) == 502
    b.wait_for_log(r"\(HTTP/1\.0 502\)")
    [m] = lines_after_stop(b)
    assert (m["method"], m["uri"], m["status"], int(m["size"])) == ("GET", "/gone?x=1", "502",
                                                                    len(raw))


def test_log_5xx_keeps_5xx_and_drops_2xx(start_brood, hello_app) -> None:
    b = start_router(start_brood, hello_app, "--disable-logging", "--log-5xx")
    address = b.address_of("http socket 0")
    assert status_of(exchange(address, GET % b"/")) == 200
    error = exchange(address, GET % b"/error")
    assert status_of(error) == 500
    b.wait_for_log(r"router: http\][^\n]*\(HTTP/1\.0 500\)")
    [m] = lines_after_stop(b)
    assert (m["uri"], m["status"], int(m["size"])) == ("/error", "500", len(error))


def test_http_log_format_replaces_the_line(start_brood, hello_app) -> None:
    b = start_router(start_brood, hello_app, "--http-log-format",
                    "ACCESS %(method) %(uri) %(proto) %(status) %(size) host=%(host) "
                    "ua=%(uagent) node=%(node)")
    address = b.address_of("http socket 0")
    raw = exchange(address, b"GET /x?y=2 HTTP/1.0\r\nHost: example.test\r\n"
                            b"User-Agent: probe/1\r\n\r\n")
    assert status_of(raw) == 200
    [line] = [m[0] for m in b.wait_for_log(r"ACCESS [^\n]*")]
    assert re.fullmatch(rf"ACCESS GET /x\?y=2 HTTP/1\.0 200 {len(raw)} host=example\.test "
                        r"ua=probe/1 node=\S+", line), line
    assert not lines_after_stop(b)  # the template replaced the default line


def test_lines_go_to_the_logto_file(start_brood, hello_app, tmp_path: Path) -> None:
    logfile = tmp_path / "logto.log"
    pool = start_brood("--master", "--socket", "127.0.0.1:0", "--wsgi-file", hello_app)
    b = start_brood("--master", "--http", "127.0.0.1:0", "--http-to", pool.address_of(),
                    "--logto", str(logfile), wait=False)
    text = wait_until(lambda: logfile.exists() and "brood: ready" in logfile.read_text()
                      and logfile.read_text(), what="ready in the --logto file")
    [address] = [m["addr"] for m in BIND_LINE.finditer(text)
                 if m["label"].endswith("http socket 0")]
    raw = exchange(address, GET % b"/logged")
    assert status_of(raw) == 200
    found = wait_until(lambda: list(LINE.finditer(logfile.read_text())),
                       what="a request line in the --logto file")
    assert [(m["uri"], int(m["size"])) for m in found] == [("/logged", len(raw))]
    assert int(found[0]["pid"]) == router_pid(b, logfile.read_text())
    assert not LINE.search(b.log())


def test_a_request_refused_before_its_head_gets_a_line(start_brood) -> None:
    b = start_brood("--master", "--http", "127.0.0.1:0", "--http-to", "127.0.0.1:9")
    raw = exchange(b.address_of("http socket 0"), b"GET / HTTP/1.1\r\nBad Header\r\n\r\n")
    assert status_of(raw) == 400
    [m] = wait_until(lambda: list(LINE.finditer(b.log())), what="the 400's request line")
    assert (m["method"], m["uri"], m["proto"], m["status"], int(m["size"]), m["node"]) == (
        "-", "-", "-", "400", len(raw), "-")


def test_embedded_mode_writes_one_line_per_request(start_brood, hello_app) -> None:
    """The worker's line for what it answered (as uWSGI's workers write it), the
    router's for its own answer (a 400 no worker saw)."""
    b = start_brood("--master", "--http", "127.0.0.1:0", "--wsgi-file", hello_app)
    address = b.address_of("http socket 0")
    assert status_of(exchange(address, GET % b"/?served")) == 200
    assert status_of(exchange(address, b"GET / HTTP/1.1\r\nBad Header\r\n\r\n")) == 400
    b.wait_for_log(r"GET /\?served => generated")
    b.wait_for_log(r"\(- 400\)")
    b.stop()
    log = b.log()
    assert len(re.findall(r"GET /\?served => generated", log)) == 1, log
    assert not re.search(r"router: http\][^\n]*/\?served", log), log
    assert [m["status"] for m in LINE.finditer(log)] == ["400"]
