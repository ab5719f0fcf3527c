"""A graceful reload hands the router processes over (brood.master_children): new
connections are served by the next incarnation's routers at once, while the old ones
finish their open sessions; and children do not outlive a master killed with SIGKILL."""

from __future__ import annotations

import os
import re
import signal
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from _broodkit import BroodProcess, http_get, wait_until

NEW_CONNECTION_WITHIN = 2.0  # seconds after SIGHUP (the old code: the whole mercy)


@pytest.fixture
def echo_backend() -> Iterator[str]:
    """A loopback TCP echo server (one thread per connection); its address."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    done = threading.Event()

    def echo(conn: socket.socket) -> None:
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data)

    def serve() -> None:
        while not done.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            conn.settimeout(60)
            threading.Thread(target=echo, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.getsockname()[1]}"
    finally:
        done.set()
        thread.join(5)
        server.close()


def _exchange(sock: socket.socket, data: bytes) -> bytes:
    sock.sendall(data)
    got = b""
    while len(got) < len(data):
        chunk = sock.recv(65536)
        if not chunk:
            break
        got += chunk
    return got


def _router_pids(b: BroodProcess, kind: str) -> list[int]:
    return [int(m[1]) for m in re.finditer(rf"spawned uWSGI {kind} \d+ \(pid: (\d+)", b.log())]


def _gone(pid: int) -> bool:
    """No such process any more (a zombie counts as gone: it serves nothing)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def _group(pgid: int) -> list[int]:
    """Live processes of process group ``pgid`` (the instance's session)."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            found.append(int(name))
    return found


def _stop_and_check_nothing_left(b: BroodProcess) -> None:
    b.send_signal(signal.SIGINT)
    assert b.wait_exit(timeout=15) == 0
    assert _group(b.pid) == [], b.log()


def test_sighup_serves_new_connections_while_the_old_router_drains(start_brood,
                                                                   echo_backend) -> None:
    b = start_brood("--master", "--rawrouter", "127.0.0.1:0", "--rawrouter-to", echo_backend)
    host, port = b.address_of("rawrouter socket 0").rsplit(":", 1)
    address = (host, int(port))
    [old] = _router_pids(b, "rawrouter")
    with socket.create_connection(address, timeout=10) as held:
        assert _exchange(held, b"before") == b"before"
        b.send_signal(signal.SIGHUP)
        asked = time.monotonic()
        b.wait_for_log(r"rawrouter SIGHUP: graceful stop, 1 sessions")  # no longer accepts
        with socket.create_connection(address, timeout=10) as fresh:
            assert _exchange(fresh, b"new") == b"new"
        assert time.monotonic() - asked < NEW_CONNECTION_WITHIN
        b.wait_ready(count=2)
        assert not _gone(old)  # still finishing the held session, on the old config
        assert _exchange(held, b"after") == b"after"
    b.wait_for_log(rf"rawrouter 1 \(pid: {old}\) of the previous master exited "
                   r"\(exit status 0\)")
    assert not re.search(rf"\(pid: {old}\) died", b.log())  # no respawn, no "too fast"
    assert len(_router_pids(b, "rawrouter")) == 2  # the new one, not another
    _stop_and_check_nothing_left(b)


def test_a_sighup_during_the_re_exec_is_a_reload_not_a_death(start_brood,
                                                              echo_backend) -> None:
    """A second SIGHUP as the master re-executes (stop signals at their default action
    there, before): kept pending, it is the next incarnation's reload; the session held
    in the draining router lives on."""
    b = start_brood("--master", "--rawrouter", "127.0.0.1:0", "--rawrouter-to", echo_backend)
    host, port = b.address_of("rawrouter socket 0").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as held:
        assert _exchange(held, b"before") == b"before"
        b.send_signal(signal.SIGHUP)
        b.wait_for_log(r"binary reloading brood")
        b.send_signal(signal.SIGHUP)
        b.wait_for_log(r"\(reloads: 2\)")  # the second SIGHUP, taken by the next one
        b.wait_ready(count=2)
        assert b.proc.poll() is None
        with socket.create_connection((host, int(port)), timeout=10) as fresh:
            assert _exchange(fresh, b"new") == b"new"
        assert _exchange(held, b"after") == b"after"
    _stop_and_check_nothing_left(b)


def test_an_http_request_in_flight_finishes_across_two_reloads(start_brood,
                                                               hello_app) -> None:
    node = start_brood("--master", "--socket", "127.0.0.1:0", "--wsgi-file", hello_app,
                       "-p", "2", "--stats", "127.0.0.1:0")
    b = start_brood("--master", "--http", "127.0.0.1:0",
                    "--http-to", node.address_of("uwsgi socket 0"))
    front = b.address_of("http socket 0")
    [old] = _router_pids(b, "http")
    got: dict[str, object] = {}
    slow = threading.Thread(target=lambda: got.update(r=http_get(front, "/sleep?s=4",
                                                                 timeout=30)))
    slow.start()
    wait_until(lambda: any(w["status"] == "busy" for w in node.stats()["workers"]),
               what="the slow request at the node")
    b.send_signal(signal.SIGHUP)
    asked = time.monotonic()
    b.wait_for_log(r"http SIGHUP: graceful stop, 1 sessions")  # the old one no longer accepts
    assert http_get(front, timeout=10) == (200, b"Hello World")
    assert time.monotonic() - asked < NEW_CONNECTION_WITHIN
    b.wait_ready(count=2)
    b.send_signal(signal.SIGHUP)  # handed over again, with its first deadline
    b.wait_ready(count=3)
    assert len(re.findall(rf"\(pid: {old}\) of the previous master is finishing", b.log())) == 2
    slow.join(30)
    assert got["r"] == (200, b"slept\n")
    b.wait_for_log(rf"http 1 \(pid: {old}\) of the previous master exited")
    _stop_and_check_nothing_left(b)


def test_a_shutdown_stops_the_routers_still_draining(start_brood, echo_backend) -> None:
    b = start_brood("--master", "--rawrouter", "127.0.0.1:0", "--rawrouter-to", echo_backend,
                    "--rawrouter-processes", "2")
    host, port = b.address_of("rawrouter socket 0").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as held:
        assert _exchange(held, b"x") == b"x"
        b.send_signal(signal.SIGHUP)
        b.wait_ready(count=2)
        b.wait_for_log(r"of the previous master is finishing its sessions")
        asked = time.monotonic()
        _stop_and_check_nothing_left(b)  # not after the 60 s mercy
        assert time.monotonic() - asked < 10
        assert held.recv(16) == b""  # cut by the shutdown


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="needs /proc (Linux)")
def test_children_die_with_a_killed_master(start_brood, hello_app) -> None:
    b = start_brood("--master", "--http", "127.0.0.1:0", "--wsgi-file", hello_app, "-p", "2")
    children = [int(m[1]) for m in re.finditer(r"spawned uWSGI \w+ \d+ \(pid: (\d+)", b.log())]
    assert len(children) == 3, b.log()  # two workers and the http router
    os.kill(b.pid, signal.SIGKILL)
    b.proc.wait(10)
    wait_until(lambda: all(_gone(pid) for pid in children), timeout=5,
               what="the children to die with the master")


def _back_to_back(port: int, stop: threading.Event, outcome: list,
                  served: threading.Event | None = None) -> None:  # fmt: skip
    """GETs one after the other on one kept-alive connection until it is told to
    close (``Connection: close``) or ``stop``; what ended it goes in ``outcome``;
    ``served`` is set at the first answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        reader = sock.makefile("rb")
        answers = 0
        while not stop.is_set():
            sock.sendall(b"GET /sleep?s=0 HTTP/1.1\r\nHost: x\r\n\r\n")  # (a length)
            try:
                status = reader.readline()
            except OSError as exc:
                outcome.append(f"{exc!r} after {answers} answers")
                return
            if not status:
                outcome.append(f"EOF with a request unanswered after {answers} answers")
                return
            head = [status]
            while head[-1] not in (b"\r\n", b""):
                head.append(reader.readline())
            length = next(int(h.split(b":")[1]) for h in head
                          if h.lower().startswith(b"content-length"))
            reader.read(length)
            answers += 1
            if served is not None:
                served.set()
            if any(h.lower() == b"connection: close\r\n" for h in head):
                outcome.append("close")
                return
        outcome.append(f"stopped after {answers} answers")


def test_a_graceful_reload_answers_every_kept_alive_request(start_brood, hello_app) -> None:
    """Embedded mode, SIGHUP while a client sends GETs back to back on one connection:
    the request it sent just as the router began to drain is answered (with
    Connection: close), not lost with a connection closed under it."""
    b = start_brood("--http", "127.0.0.1:0", "--wsgi-file", hello_app, "-p", "2",
                    "--disable-logging")
    port = int(b.address_of("http socket 0").rsplit(":", 1)[1])
    for _ in range(3):
        stop, outcome, served = threading.Event(), [], threading.Event()
        client = threading.Thread(target=_back_to_back, args=(port, stop, outcome, served))
        client.start()
        # (its connection taken by this generation's router: one still in the listen
        # queue at the signal is the next one's, which has no reason to say close)
        assert served.wait(10)
        b.send_signal(signal.SIGHUP)
        client.join(20)
        stop.set()
        client.join(5)
        assert outcome == ["close"]
        b.wait_for_log(r"brood: ready", count=len(re.findall("binary reloading", b.log())) + 1)


def _answer_head(sock: socket.socket, rest: list[bytes] | None = None) -> bytes:
    """The head of one answer (what came up to its blank line; what came after it
    goes in ``rest``)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    head, _, after = data.partition(b"\r\n\r\n")
    if rest is not None:
        rest.append(after)
    return head


def test_a_head_still_coming_when_the_drain_begins_is_served(start_brood, hello_app) -> None:
    """Half a head, SIGHUP, and the rest after the fast lane's REST_WAIT (the general
    path holds it then): the request is answered, not cut with the draining process."""
    from brood.routers.http.lane import REST_WAIT

    b = start_brood("--http", "127.0.0.1:0", "--wsgi-file", hello_app, "--disable-logging")
    port = int(b.address_of("http socket 0").rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET /sleep?s=0 HTTP/1.1\r\nHost: x\r\n")  # (an answer with a length)
        b.send_signal(signal.SIGHUP)
        b.wait_for_log(r"http SIGHUP: graceful stop")
        time.sleep(REST_WAIT + 0.3)  # a slow client: the point of the test, not a wait
        sock.sendall(b"X-Late: 1\r\n\r\n")
        head = _answer_head(sock)
    assert head.startswith(b"HTTP/1.1 200 ") and b"\r\nConnection: close" in head


def test_a_request_on_a_kept_alive_general_path_connection_is_served_in_a_drain(
        start_brood, hello_app) -> None:
    """PROXY protocol connections never take the fast lane: one kept alive, SIGHUP, its
    next request is answered with Connection: close, not lost as the process ends."""
    b = start_brood("--http", "127.0.0.1:0", "--wsgi-file", hello_app, "--disable-logging",
                    "--http-enable-proxy-protocol")
    port = int(b.address_of("http socket 0").rsplit(":", 1)[1])
    request = b"GET /sleep?s=0 HTTP/1.1\r\nHost: x\r\n\r\n"  # (an answer with a length)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"PROXY TCP4 192.0.2.1 192.0.2.2 1234 80\r\n" + request)
        assert _answer_head(sock).startswith(b"HTTP/1.1 200 ")
        b.send_signal(signal.SIGHUP)
        b.wait_for_log(r"http SIGHUP: graceful stop")
        sock.sendall(request)
        head = _answer_head(sock)
    assert head.startswith(b"HTTP/1.1 200 ") and b"\r\nConnection: close" in head


SLOW_BODY_APP = '''
import os, time

def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "10")])
    def body():
        yield b"01234"
        if environ["PATH_INFO"] == "/gated":
            for _ in range(3000):
                if os.path.exists({gate!r}):
                    break
                time.sleep(0.01)
        yield b"56789"
    return body()
'''


@pytest.mark.parametrize("path", ["lane", "general"])
def test_an_answer_told_keep_alive_before_the_drain_keeps_its_connection(
        start_brood, tmp_path, path) -> None:
    """The answer's head went out keep-alive, then SIGHUP, then its body ended (after the
    drain's DRAIN_IDLE_GRACE: the grace counts from the answer's end too): the
    client's next request on that connection is answered (with Connection: close),
    not met by a close (the router used to close it as the drain had begun)."""
    from brood.routers.engine import DRAIN_IDLE_GRACE

    gate = tmp_path / "gate"
    app = tmp_path / "app.py"
    app.write_text(SLOW_BODY_APP.format(gate=str(gate)))
    extra = ["--http-enable-proxy-protocol"] if path == "general" else []
    b = start_brood("--http", "127.0.0.1:0", "--wsgi-file", str(app), "-p", "2",
                    "--disable-logging", *extra)
    port = int(b.address_of("http socket 0").rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        if extra:
            sock.sendall(b"PROXY TCP4 192.0.2.1 192.0.2.2 1234 80\r\n")
        sock.sendall(b"GET /gated HTTP/1.1\r\nHost: x\r\n\r\n")
        first: list[bytes] = []
        head = _answer_head(sock, first)
        assert head.startswith(b"HTTP/1.1 200 ") and b"Connection: close" not in head
        b.send_signal(signal.SIGHUP)
        b.wait_for_log(r"http SIGHUP: graceful stop")
        time.sleep(DRAIN_IDLE_GRACE + 0.2)  # the body ends past the drain's first grace
        gate.write_text("")
        body = first[0]
        while len(body) < 10:
            chunk = sock.recv(100)
            assert chunk, "the answer was cut"
            body += chunk
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        head = _answer_head(sock)
    assert head.startswith(b"HTTP/1.1 200 ") and b"\r\nConnection: close" in head
