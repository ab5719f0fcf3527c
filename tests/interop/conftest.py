"""Helpers for the interop tests: real uWSGI, nginx and wrk next to real brood processes.

brood itself is started with ``_broodkit.BroodProcess`` (tests/integration), through the
same ``start_brood`` fixture the integration tests use. This file adds:

* ``need_uwsgi(*plugins)``, ``need_nginx()``, ``need_wrk()``: skip (with the reason) when
  a binary or a uWSGI plugin is missing;
* ``start_uwsgi(args_for_port, probe)``: a real uWSGI on a freshly reserved loopback port
  (retried when the port was taken meanwhile), ready once ``probe(port)`` succeeds;
  stopped with SIGINT (SIGTERM would *reload* it, WIRE §0), then SIGKILL;
* ``start_nginx(locations)``: nginx (master + 1 worker, every path in the test's tmp dir)
  on a reserved port, ready once its ``/__ready`` location answers; stopped with SIGTERM
  (fast shutdown), then SIGKILL;
* ``short_tmp``: a short tmp dir for unix sockets (pytest's tmp paths can pass 108 bytes);
* a blocking HTTP/1 client that keeps its connection (``HttpConn``) and a uwsgi-protocol
  client with a body (``uwsgi_call``), written here so they do not depend on brood's own
  parsers.
"""

from __future__ import annotations

import contextlib
import functools
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "integration"))

from _broodkit import BroodProcess, stop_session, wait_until  # noqa: E402

import brood.demo.hello  # noqa: E402

HELLO_APP = brood.demo.hello.__file__
BIG = brood.demo.hello.BIG
UWSGI_PARAMS = "/etc/nginx/uwsgi_params"


# --------------------------------------------------------------------------- skips

def _which(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin:/sbin")


UWSGI = _which("uwsgi")
NGINX = _which("nginx")
WRK = _which("wrk")


@functools.cache
def _uwsgi_has(plugins: str) -> bool:
    # --need-plugins exits non-zero when one of them cannot be loaded
    done = subprocess.run([UWSGI, "--need-plugins", plugins, "--version"],
                          capture_output=True, timeout=20)
    return done.returncode == 0


def need_uwsgi(*plugins: str) -> str:
    if UWSGI is None:
        pytest.skip("uwsgi is not installed")
    if plugins and not _uwsgi_has(",".join(plugins)):
        pytest.skip(f"a uWSGI plugin is missing (need {', '.join(plugins)})")
    return UWSGI


def need_nginx() -> str:
    if NGINX is None:
        pytest.skip("nginx is not installed")
    if not os.path.exists(UWSGI_PARAMS):
        pytest.skip(f"{UWSGI_PARAMS} is missing")
    return NGINX


def need_wrk() -> str:
    if WRK is None:
        pytest.skip("wrk is not installed")
    return WRK


# --------------------------------------------------------------------------- processes

def free_port() -> int:
    """A loopback port free right now (for programs that need a number, not :0)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ExtProcess:
    """A foreign program (uWSGI, nginx) with its output in a file and a sure stop."""

    def __init__(self, argv: list[str], log_path: Path, stop_signal: int,
                 cwd: str | None = None) -> None:
        self.argv = argv
        self.log_path = log_path
        self.stop_signal = stop_signal
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, cwd=cwd,
                                     start_new_session=True)
        self.port = 0

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        stop_session(self.proc, self.stop_signal, timeout)
        self._log.close()


BIND_FAILED = re.compile(r"Address already in use|bind\(\)[^\n]*failed")


def _start_on_port(make: Callable[[int], ExtProcess], probe: Callable[[int], bool],
                   extra_log: Callable[[ExtProcess], str] = lambda p: "",
                   timeout: float = 20.0, attempts: int = 3) -> ExtProcess:
    """Start ``make(port)`` on a reserved port until ``probe(port)`` says it serves;
    another port is tried when the first was taken between reservation and bind."""
    last = ""
    for _ in range(attempts):
        port = free_port()
        proc = make(port)
        proc.port = port
        deadline = time.monotonic() + timeout
        while True:
            text = proc.log() + extra_log(proc)
            if BIND_FAILED.search(text):
                proc.stop()
                last = text
                break
            if not proc.alive():
                raise AssertionError(f"{proc.argv[0]} exited ({proc.proc.returncode}):\n{text}")
            with contextlib.suppress(OSError, EOFError, ValueError, IndexError):
                if probe(port):
                    return proc
            if time.monotonic() > deadline:
                proc.stop()
                raise AssertionError(f"{proc.argv[0]} not ready in {timeout}s:\n{text}")
            time.sleep(0.05)
    raise AssertionError(f"could not bind a free port after {attempts} tries:\n{last}")


# The process fixtures are module-scoped: a test module starts its fronts once and all its
# tests share them (each start costs about a second); everything stops at module end.

@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Path:
    return tmp_path_factory.mktemp(request.module.__name__.rpartition(".")[2])


@pytest.fixture(scope="module")
def start_brood(run_dir: Path) -> Iterator[Callable[..., BroodProcess]]:
    """As the integration suite's fixture: ``start_brood(*args)`` -> a ready BroodProcess."""
    tmp_path = run_dir
    started: list[BroodProcess] = []

    def start(*args: str, wait: bool = True, timeout: float = 30.0) -> BroodProcess:
        proc = BroodProcess([str(a) for a in args], tmp_path / f"brood-{len(started)}.log")
        started.append(proc)
        if wait:
            proc.wait_ready(timeout=timeout)
        return proc

    try:
        yield start
    finally:
        for proc in started:
            proc.stop()


@pytest.fixture(scope="module")
def start_uwsgi(run_dir: Path) -> Iterator[Callable[..., ExtProcess]]:
    """``start_uwsgi(lambda port: [args...], probe=lambda port: bool)`` -> ready uWSGI."""
    tmp_path = run_dir
    started: list[ExtProcess] = []

    def start(args_for_port: Callable[[int], list[str]],
              probe: Callable[[int], bool]) -> ExtProcess:
        def make(port: int) -> ExtProcess:
            proc = ExtProcess([UWSGI or "uwsgi", *args_for_port(port)],
                              tmp_path / f"uwsgi-{len(started)}.log", signal.SIGINT,
                              cwd=str(tmp_path))
            started.append(proc)
            return proc
        return _start_on_port(make, probe)

    try:
        yield start
    finally:
        for proc in started:
            proc.stop()


NGINX_CONF = """\
{user}
master_process on;
worker_processes 1;
events {{ worker_connections 256; }}
http {{
    access_log {tmp}/access.log;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    server {{
        listen 127.0.0.1:{port};
        server_name localhost;
        location = /__ready {{ return 200 "nginx-ready"; }}
{locations}
    }}
}}
"""


@pytest.fixture(scope="module")
def start_nginx(run_dir: Path) -> Iterator[Callable[..., ExtProcess]]:
    """``start_nginx(locations)`` -> ready nginx; ``locations`` is the text of the
    server block's ``location`` directives (``include uwsgi_params`` works)."""
    tmp_path = run_dir
    started: list[ExtProcess] = []

    def start(locations: str) -> ExtProcess:
        def make(port: int) -> ExtProcess:
            run = tmp_path / f"nginx-{len(started)}"
            run.mkdir()
            user = f"user {pwd.getpwuid(0).pw_name};" if os.geteuid() == 0 else ""
            shutil.copy(UWSGI_PARAMS, run / "uwsgi_params")  # for `include uwsgi_params`
            conf = run / "nginx.conf"
            conf.write_text(NGINX_CONF.format(user=user, tmp=run, port=port,
                                              locations=locations))
            proc = ExtProcess([NGINX or "nginx", "-p", str(run), "-c", str(conf), "-e",
                               str(run / "error.log"), "-g",
                               f"daemon off; pid {run}/nginx.pid; error_log {run}/error.log;"],
                              run / "stdout.log", signal.SIGTERM, cwd=str(run))
            proc.run_dir = run  # type: ignore[attr-defined]
            started.append(proc)
            return proc

        def error_log(proc: ExtProcess) -> str:
            path = proc.run_dir / "error.log"  # type: ignore[attr-defined]
            return path.read_text(errors="replace") if path.exists() else ""

        def probe(port: int) -> bool:
            conn = HttpConn(f"127.0.0.1:{port}", timeout=2)
            with conn:
                status, _, body = conn.request("GET", "/__ready")
            return status == 200 and body == b"nginx-ready"

        return _start_on_port(make, probe, extra_log=error_log)

    try:
        yield start
    finally:
        for proc in started:
            proc.stop()


@pytest.fixture(scope="module")
def short_tmp() -> Iterator[Path]:
    """A short directory for unix sockets, removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="brood-io-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# --------------------------------------------------------------------------- clients

def _connect(address: str, timeout: float) -> socket.socket:
    if address.startswith("/"):
        sock = socket.socket(socket.AF_UNIX)
        target: object = address
    else:
        host, _, port = address.rpartition(":")
        sock = socket.socket()
        target = (host or "127.0.0.1", int(port))  # ":N" names every interface
    sock.settimeout(timeout)
    try:
        sock.connect(target)
    except OSError:
        sock.close()
        raise
    return sock


class HttpConn:
    """One client connection; ``request`` sends one request and reads one framed answer
    (Content-Length, chunked, or to EOF). ``closed()`` tells whether the peer closed."""

    def __init__(self, address: str, timeout: float = 10.0,
                 sock: socket.socket | None = None) -> None:
        self.address = address
        self.sock = sock if sock is not None else _connect(address, timeout)
        self.buf = b""
        self.eof = False

    def __enter__(self) -> HttpConn:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def _more(self) -> bool:
        data = self.sock.recv(1 << 20)
        if not data:
            self.eof = True
        self.buf += data
        return bool(data)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None, host: str = "localhost",
                version: str = "HTTP/1.1") -> tuple[int, dict[str, str], bytes]:
        hdrs = {"Host": host}
        if body is not None:
            hdrs["Content-Length"] = str(len(body))
        hdrs.update(headers or {})
        head = f"{method} {path} {version}\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in hdrs.items()) + "\r\n"
        self.send(head.encode("latin-1") + (body or b""))
        return self.response(method)

    def response(self, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
        """(status, lower-cased headers, decoded body)."""
        while b"\r\n\r\n" not in self.buf:
            if not self._more():
                raise EOFError(f"closed before a response head: {self.buf!r}")
        raw, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            return status, headers, b""
        if headers.get("transfer-encoding", "").lower() == "chunked":
            return status, headers, self._chunked()
        if "content-length" in headers:
            length = int(headers["content-length"])
            while len(self.buf) < length:
                if not self._more():
                    raise EOFError(f"closed inside a body ({len(self.buf)}/{length})")
            body, self.buf = self.buf[:length], self.buf[length:]
            return status, headers, body
        while self._more():
            pass
        body, self.buf = self.buf, b""
        return status, headers, body

    def _chunked(self) -> bytes:
        out = bytearray()
        while True:
            while b"\r\n" not in self.buf:
                if not self._more():
                    raise EOFError("closed inside a chunked body")
            size_line, self.buf = self.buf.split(b"\r\n", 1)
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                while not (self.buf.startswith(b"\r\n") or b"\r\n\r\n" in self.buf):
                    if not self._more():
                        raise EOFError("closed inside the chunked trailer")
                if self.buf.startswith(b"\r\n"):
                    self.buf = self.buf[2:]
                else:
                    self.buf = self.buf.split(b"\r\n\r\n", 1)[1]
                return bytes(out)
            while len(self.buf) < size + 2:
                if not self._more():
                    raise EOFError("closed inside a chunk")
            out += self.buf[:size]
            self.buf = self.buf[size + 2:]

    def closed(self) -> bool:
        """True when the peer closed the connection with nothing more to read."""
        return not self.buf and not self._more()


def http(address: str, method: str = "GET", path: str = "/", body: bytes | None = None,
         headers: dict[str, str] | None = None, host: str = "localhost",
         timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    """One request on a fresh connection (``Connection: close``)."""
    with HttpConn(address, timeout) as conn:
        return conn.request(method, path, body,
                            {"Connection": "close", **(headers or {})}, host=host)


def chunked(body: bytes, size: int = 1000) -> bytes:
    """``body`` as a chunked transfer coding (chunks of ``size`` bytes)."""
    parts = [b"%x\r\n%s\r\n" % (len(body[i:i + size]), body[i:i + size])
             for i in range(0, len(body), size)]
    return b"".join(parts) + b"0\r\n\r\n"


def encode_uwsgi(pairs: list[tuple[bytes, bytes]], modifier1: int = 0) -> bytes:
    """A uwsgi packet (WIRE §1.1-1.2), written here independently of brood's codec."""
    block = b"".join(len(k).to_bytes(2, "little") + k + len(v).to_bytes(2, "little") + v
                     for k, v in pairs)
    return bytes([modifier1]) + len(block).to_bytes(2, "little") + b"\x00" + block


def uwsgi_call(address: str, path: str = "/", method: str = "GET", body: bytes = b"",
               host: str = "localhost", extra: list[tuple[bytes, bytes]] | None = None,
               timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    """One request over the uwsgi protocol; the answer (an HTTP response) parsed."""
    path, _, query = path.partition("?")
    pairs = [(b"REQUEST_METHOD", method.encode()), (b"REQUEST_URI", path.encode()),
             (b"PATH_INFO", path.encode()), (b"QUERY_STRING", query.encode()),
             (b"SERVER_PROTOCOL", b"HTTP/1.1"), (b"SERVER_NAME", b"localhost"),
             (b"SERVER_PORT", b"80"), (b"REMOTE_ADDR", b"127.0.0.1"),
             (b"REMOTE_PORT", b"1234"), (b"HTTP_HOST", host.encode()),
             (b"CONTENT_LENGTH", str(len(body)).encode() if body else b"")]
    pairs += extra or []
    with HttpConn(address, sock=_connect(address, timeout)) as conn:
        conn.send(encode_uwsgi(pairs) + body)
        return conn.response(method)


def uwsgi_ok(address: str) -> bool:
    """Readiness probe for a uwsgi-protocol server running the demo app."""
    return uwsgi_call(address, timeout=2)[2] == b"Hello World"


def http_ok(address: str) -> bool:
    """Readiness probe for an HTTP front of the demo app."""
    return http(address, timeout=2)[2] == b"Hello World"


# Test modules import these helpers with ``from _interop import ...``: pytest imports every
# directory's conftest.py under the one name "conftest" (and drops the previous one from
# sys.modules), so that name cannot be imported reliably.
sys.modules["_interop"] = sys.modules[__name__]

__all__ = ["BIG", "HELLO_APP", "BroodProcess", "ExtProcess", "HttpConn", "chunked",
           "encode_uwsgi", "free_port", "http", "http_ok", "need_nginx", "need_uwsgi",
           "need_wrk", "uwsgi_call", "uwsgi_ok", "wait_until"]
