"""One ini through real uWSGI 2.0.21 and brood: the worker-pool options production
files use (http11-socket, reload-on-exception-type/-value, touch-workers-reload,
socket-sndbuf/-rcvbuf) do the same on both.

Where they differ by design, the test says so: an exception that recycles the worker
gets no answer from uWSGI (its worker exits at once) and a 500 from brood; brood's
HTTP/1.1 answers are framed (Content-Length or chunked) where uWSGI's http11 socket
sends what the app gave.
"""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path

import pytest
from _broodkit import listen_buffers, wait_until
from _interop import need_uwsgi

pytestmark = pytest.mark.interop

APP = """\
import os

def application(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/runtime":
        raise RuntimeError("runtime boom")
    if path == "/value":
        raise ValueError("value boom")
    body = str(os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]
"""

INI = """\
[uwsgi]
plugins = python3
master = true
processes = 1
http11-socket = {address}
wsgi-file = {app}
; uWSGI 2.0 compares every filter with the exception's message: this names none
reload-on-exception-type = RuntimeError
reload-on-exception-value = value boom
touch-workers-reload = {touch}
socket-sndbuf = 65536
socket-rcvbuf = 32768
"""


class Conn:
    """One kept-alive HTTP/1.1 connection (answers framed by Content-Length)."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.buf = b""

    def get(self, path: str) -> tuple[int, bytes]:
        self.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        while b"\r\n\r\n" not in self.buf:
            self._more()
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        length = int(re.search(rb"Content-Length: (\d+)", head)[1])
        while len(self.buf) < length:
            self._more()
        body, self.buf = self.buf[:length], self.buf[length:]
        return int(head.split()[1]), body

    def _more(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise EOFError("closed")
        self.buf += data

    def close(self) -> None:
        self.sock.close()


def _get(port: int, path: str) -> tuple[int, bytes] | None:
    """One request on a new connection; None when the server answered nothing."""
    conn = Conn(port)
    try:
        return conn.get(path)
    except (EOFError, OSError):
        return None
    finally:
        conn.close()


def _pid(port: int) -> int:
    answer = _get(port, "/")
    assert answer is not None and answer[0] == 200
    return int(answer[1])


def _touch(path: Path) -> None:
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))


def _exercise(port: int, touch: Path, log) -> dict[str, object]:
    """What one server does with the ini; the facts both must share."""
    facts: dict[str, object] = {}
    conn = Conn(port)
    first = conn.get("/")
    second = conn.get("/")  # the same connection: kept alive
    conn.close()
    pid = int(first[1])
    facts["kept alive"] = first == second
    facts["runtime"] = _get(port, "/runtime")
    facts["RuntimeError (no message filter) keeps the worker"] = _pid(port) == pid
    facts["value"] = _get(port, "/value")
    after = wait_until(lambda: (p := _pid(port)) != pid and p, what="a fresh worker")
    facts["'value boom' recycled the worker"] = True
    _touch(touch)
    wait_until(lambda: _pid(port) != after, what="the workers reloaded")
    facts["touch line"] = bool(re.search(
        rf"\*\*\* {re.escape(str(touch))} has been touched\.\.\. workers reload !!! \*\*\*",
        log()))
    facts["skmem"] = listen_buffers(port)
    return facts


def test_one_ini_same_recycling(start_uwsgi, start_brood, run_dir) -> None:
    need_uwsgi("python3")
    app = run_dir / "pidapp.py"
    app.write_text(APP)
    touches = {name: run_dir / f"{name}.touch" for name in ("uwsgi", "brood")}
    for path in touches.values():
        path.write_text("")

    def uwsgi_args(port: int) -> list[str]:
        ini = run_dir / f"uwsgi-{port}.ini"
        ini.write_text(INI.format(address=f"127.0.0.1:{port}", app=app,
                                  touch=touches["uwsgi"]))
        return ["--ini", str(ini)]

    uwsgi = start_uwsgi(uwsgi_args, probe=lambda port: _get(port, "/") is not None)
    ini = run_dir / "brood.ini"
    ini.write_text(INI.format(address="127.0.0.1:0", app=app, touch=touches["brood"]))
    brood = start_brood("--ini", ini)

    theirs = _exercise(uwsgi.port, touches["uwsgi"], uwsgi.log)
    ours = _exercise(brood.port_of("uwsgi socket 0"), touches["brood"], brood.log)

    # by design: uWSGI's recycled worker exits answering nothing, brood's answers 500;
    # an exception that recycles nothing is a 500 on brood (uWSGI answers nothing too)
    assert theirs.pop("value") is None
    assert ours.pop("value")[0] == 500
    theirs.pop("runtime")
    assert ours.pop("runtime")[0] == 500
    assert ours == theirs
    assert ours["kept alive"] and ours["touch line"]
    assert ours["skmem"] == (65536, 131072)
