"""Helpers for the worker tests: fork a child running ``run_worker`` on loopback
listeners (no master), and small blocking clients for HTTP and uwsgi."""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path
from typing import Any

from brood.config.model import Config
from brood.listener import Listener
from brood.protocol.chunked import ChunkedDecoder
from brood.protocol.http1 import parse_response_head
from brood.protocol.uwsgi import encode_packet
from brood.scoreboard import Scoreboard
from brood.workers.wsgi import run_worker

DEADLINE = 10.0


def wait_for(predicate, timeout: float = DEADLINE, what: str = "condition") -> None:
    """Poll ``predicate`` until true or fail after ``timeout`` seconds."""
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


class WorkerProcess:
    """One forked worker; ``protos`` lists the listeners ("http", "uwsgi", "unix-http")."""

    def __init__(self, app: Any, tmp_path: Path, protos: tuple[str, ...] = ("http",),
                 worker_id: int = 1, **options: Any) -> None:  # fmt: skip
        self.cfg = Config.from_dict({k.replace("_", "-"): v for k, v in options.items()})
        self.log_path = tmp_path / "worker.log"
        self.board = Scoreboard(worker_id, cores=int(options.get("threads") or 1))
        self.slot = self.board.slot(worker_id)
        self.listeners: list[Listener] = []
        self.addresses: list[Any] = []
        for i, proto in enumerate(protos):
            if proto.startswith("unix-"):
                path = str(tmp_path / f"w{i}.sock")
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.bind(path)
                name, kind, addr = path, proto[5:], path
            else:
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.bind(("127.0.0.1", 0))
                addr = sock.getsockname()
                name, kind = f"127.0.0.1:{addr[1]}", proto
            sock.listen(64)
            self.listeners.append(Listener(sock, name, kind))
            self.addresses.append(addr)
        self.pid = os.fork()
        if self.pid == 0:  # pragma: no cover - child
            status = 99
            try:
                fd = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
                os.dup2(fd, 2)
                status = run_worker(worker_id, self.listeners, app, self.cfg, self.slot)
            except BaseException as exc:  # noqa: BLE001
                os.write(2, f"worker harness: {exc!r}\n".encode())
            finally:
                os._exit(status)
        for listener in self.listeners:
            listener.sock.close()
        self.status: int | None = None
        wait_for(lambda: self.slot.accepting == 1 or self.poll() is not None, what="worker ready")

    @property
    def port(self) -> int:
        return self.addresses[0][1]

    def connect(self, index: int = 0) -> socket.socket:
        addr = self.addresses[index]
        family = socket.AF_UNIX if isinstance(addr, str) else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.settimeout(DEADLINE)
        sock.connect(addr)
        return sock

    def poll(self) -> int | None:
        if self.status is None:
            pid, raw = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status = os.waitstatus_to_exitcode(raw)
        return self.status

    def wait(self, timeout: float = DEADLINE) -> int:
        wait_for(lambda: self.poll() is not None, timeout, "worker exit")
        return self.status  # type: ignore[return-value]

    def signal(self, signum: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, signum)

    def stop(self) -> int:
        """SIGINT, then SIGKILL if it does not go."""
        if self.poll() is None:
            os.kill(self.pid, signal.SIGINT)
            try:
                return self.wait(5.0)
            except AssertionError:
                os.kill(self.pid, signal.SIGKILL)
                return self.wait()
        return self.status  # type: ignore[return-value]

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def __enter__(self) -> WorkerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def recv_all(sock: socket.socket) -> bytes:
    """Read until the peer closes."""
    chunks = []
    while True:
        data = sock.recv(65536)
        if not data:
            return b"".join(chunks)
        chunks.append(data)


class Response:
    def __init__(self, status: int, headers: dict[str, str], body: bytes, raw_head: bytes):
        self.status = status
        self.headers = headers
        self.body = body
        self.raw_head = raw_head


class HttpConn:
    """A keep-alive HTTP/1.1 client reading one framed response at a time."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _more(self) -> bool:
        data = self.sock.recv(65536)
        self.buf += data
        return bool(data)

    def response(self, method: bytes = b"GET") -> Response:
        while True:
            head = parse_response_head(self.buf, request_method=method)
            if head is not None:
                break
            if not self._more():
                raise EOFError(f"closed before a response head: {self.buf!r}")
        raw_head, self.buf = self.buf[: head.size], self.buf[head.size :]
        headers = {k.decode().lower(): v.decode() for k, v in head.headers}
        if head.body_kind == "none":
            body = b""
        elif head.body_kind == "length":
            while len(self.buf) < head.content_length and self._more():
                pass
            body, self.buf = self.buf[: head.content_length], self.buf[head.content_length :]
        elif head.body_kind == "chunked":
            dec = ChunkedDecoder()
            parts = dec.feed(self.buf)
            while not dec.done:
                data = self.sock.recv(65536)
                if not data:
                    raise EOFError("closed inside a chunked body")
                parts += dec.feed(data)
            body, self.buf = b"".join(parts), dec.rest
        else:
            while self._more():
                pass
            body, self.buf = self.buf, b""
        return Response(head.status, headers, body, raw_head)

    def closed(self) -> bool:
        """True when the server has closed (EOF with nothing pending)."""
        try:
            return not self.buf and self.sock.recv(1) == b""
        except ConnectionResetError:
            return True


def http_get(worker: WorkerProcess, path: str = "/", extra: str = "", index: int = 0) -> Response:
    """One request with Connection: close."""
    with worker.connect(index) as sock:
        conn = HttpConn(sock)
        conn.send(f"GET {path} HTTP/1.1\r\nHost: t\r\n{extra}Connection: close\r\n\r\n".encode())
        return conn.response()


def uwsgi_request(worker: WorkerProcess, pairs: list[tuple[bytes, bytes]], body: bytes = b"",
                  index: int = 0, limit: int = 65535) -> bytes:  # fmt: skip
    """Send a uwsgi packet (+ body) and return the raw answer up to the close."""
    with worker.connect(index) as sock:
        sock.sendall(encode_packet(pairs, limit=limit) + body)
        return recv_all(sock)


def uwsgi_vars(path: str = "/", method: str = "GET", proto: str | None = "HTTP/1.1",
               **extra: str) -> list[tuple[bytes, bytes]]:  # fmt: skip
    pairs = [(b"REQUEST_METHOD", method.encode()), (b"PATH_INFO", path.encode()),
             (b"REQUEST_URI", path.encode()), (b"QUERY_STRING", b""),
             (b"SERVER_NAME", b"t"), (b"SERVER_PORT", b"80"), (b"REMOTE_ADDR", b"127.0.0.1")]  # fmt: skip
    if proto:
        pairs.append((b"SERVER_PROTOCOL", proto.encode()))
    pairs += [(k.encode(), v.encode()) for k, v in extra.items()]
    return pairs
