"""Run a real ``python -m brood`` and talk to it: for any integration or interop test.

``BroodProcess`` wraps one started instance: its log (a file, so a chatty instance can
never block on a full pipe), waiting for log lines with a deadline, the addresses it
bound (read back from its ``... bound to TCP address A fd N`` lines; a client reaches
``:N`` on loopback), its stats, and a guaranteed stop (SIGINT, then SIGKILL of its whole
process group after a deadline).

Plain blocking clients for the two worker protocols: ``uwsgi_request`` and ``http_get``.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from brood.protocol.uwsgi import encode_packet

BIND_LINE = re.compile(
    r"(?P<label>[\w -]+?) (?:bound to|inherited) (?:TCP6?|UNIX) address (?P<addr>\S+) fd \d+"
)


class BroodProcess:
    """A ``brood`` started by a test; ``stop()`` (or the fixture) always ends it."""

    def __init__(self, args: list[str], log_path: Path, cwd: str | None = None,
                 env: dict[str, str] | None = None, prefix: Sequence[str] = ()) -> None:
        self.args = args
        self.log_path = log_path
        full_env = dict(os.environ)
        full_env.pop("BROOD_FDS", None)
        full_env.pop("BROOD_RELOADS", None)
        full_env.update(env or {})
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(  # prefix: e.g. ip netns exec NS (which execs brood)
            [*prefix, sys.executable, "-m", "brood", *args],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
            cwd=cwd, env=full_env, start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, pattern: str, count: int = 1, timeout: float = 20.0,
                     alive: bool = True) -> list[re.Match[str]]:
        """Wait until regex ``pattern`` matched ``count`` times; fail with the log if the
        deadline passes (or, with ``alive``, if the process exits first)."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            found = list(regex.finditer(self.log()))
            if len(found) >= count:
                return found
            if alive and self.proc.poll() is not None:
                raise AssertionError(f"brood exited ({self.proc.returncode}) before "
                                     f"{pattern!r}:\n{self.log()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {pattern!r} x{count}:\n{self.log()}")
            time.sleep(0.02)

    def wait_ready(self, count: int = 1, timeout: float = 20.0) -> None:
        """Wait for the ``count``-th ``brood: ready`` (one per master incarnation)."""
        self.wait_for_log(r"brood: ready", count=count, timeout=timeout)

    def address_of(self, label: str = "uwsgi socket 0") -> str:
        """The address the instance printed for ``label`` (latest incarnation)."""
        names = [m["addr"] for m in BIND_LINE.finditer(self.log()) if m["label"].endswith(label)]
        if not names:
            raise AssertionError(f"no bind line for {label!r}:\n{self.log()}")
        return names[-1]

    def port_of(self, label: str = "uwsgi socket 0") -> int:
        return int(self.address_of(label).rsplit(":", 1)[1])

    def stats(self, label: str = "stats server") -> dict:
        return json.loads(read_stats(self.address_of(label)))

    def send_signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def wait_exit(self, timeout: float = 20.0) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"brood did not exit within {timeout}s:\n{self.log()}")

    def stop(self, timeout: float = 10.0) -> None:
        """SIGINT, wait, then SIGKILL the process group (leftover children included)."""
        stop_session(self.proc, signal.SIGINT, timeout)
        self._log.close()


def stop_session(proc: subprocess.Popen, stop_signal: int, timeout: float) -> None:
    """Send ``stop_signal``, wait up to ``timeout``, then SIGKILL the process and its whole
    group (it was started with ``start_new_session``), leftover children included."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(stop_signal)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def _connect(address: str, timeout: float) -> socket.socket:
    if address.startswith("@"):
        sock = socket.socket(socket.AF_UNIX)
        target: object = "\0" + address[1:]
    elif address.startswith("/") or ":" not in address:
        sock = socket.socket(socket.AF_UNIX)
        target = address
    else:
        host, _, port = address.rpartition(":")
        host = host.strip("[]") or "127.0.0.1"
        if host == "0.0.0.0":
            host = "127.0.0.1"
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        target = (host, int(port))
    sock.settimeout(timeout)
    try:
        sock.connect(target)
    except OSError:
        sock.close()
        raise
    return sock


def _read_to_eof(sock: socket.socket) -> bytes:
    chunks = []
    while True:
        data = sock.recv(65536)
        if not data:
            return b"".join(chunks)
        chunks.append(data)


def read_stats(address: str, http: bool = False, timeout: float = 5.0) -> bytes:
    """Raw bytes a stats server sends (``http``: send a request first)."""
    with _connect(address, timeout) as sock:
        if http:
            sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
        return _read_to_eof(sock)


def _split_response(raw: bytes) -> tuple[int, bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0]
    parts = status_line.split()
    if len(parts) < 2 or not parts[1].isdigit():
        raise OSError(f"bad response: {raw[:80]!r}")
    return int(parts[1]), body


def uwsgi_request(address: str, path: str = "/", timeout: float = 10.0,
                  method: str = "GET") -> tuple[int, bytes]:
    """One request over the uwsgi protocol; (status, body). Raises OSError on failure."""
    query = ""
    if "?" in path:
        path, query = path.split("?", 1)
    pairs = [(b"REQUEST_METHOD", method.encode()), (b"REQUEST_URI", path.encode()),
             (b"PATH_INFO", path.encode()), (b"QUERY_STRING", query.encode()),
             (b"SERVER_PROTOCOL", b"HTTP/1.0"), (b"SERVER_NAME", b"localhost"),
             (b"SERVER_PORT", b"80"), (b"REMOTE_ADDR", b"127.0.0.1"),
             (b"REMOTE_PORT", b"1234"), (b"HTTP_HOST", b"localhost")]
    with _connect(address, timeout) as sock:
        sock.sendall(encode_packet(pairs))
        return _split_response(_read_to_eof(sock))


def http_get(address: str, path: str = "/", timeout: float = 10.0) -> tuple[int, bytes]:
    """One HTTP/1.0 GET; (status, body). Raises OSError on failure."""
    with _connect(address, timeout) as sock:
        sock.sendall(f"GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n".encode())
        return _split_response(_read_to_eof(sock))


def wait_until(predicate, timeout: float = 20.0, interval: float = 0.05, what: str = ""):
    """Poll ``predicate`` until it returns a true value; that value, or AssertionError."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        time.sleep(interval)


def write_fifo(path: Path, data: bytes, timeout: float = 20.0) -> None:
    """Write ``data`` once a master reads ``path`` (polls: it may be re-executing)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as exc:  # not there yet / nobody reading it yet
            if exc.errno not in (errno.ENOENT, errno.ENXIO) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)
            continue
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        return


def worker_pids(stats: dict) -> list[int]:
    return [w["pid"] for w in stats["workers"]]


def pid_alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie (exited, not reaped yet)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def listen_buffers(port: int) -> tuple[int, int]:
    """(rb, tb) of the listening TCP socket on ``port``, as ``ss -m`` shows them."""
    out = subprocess.run(["ss", "-ltnmH", f"sport = :{port}"], capture_output=True,
                         text=True, timeout=10).stdout
    found = re.search(r"rb(\d+),t\d+,tb(\d+)", out)
    assert found, out
    return int(found[1]), int(found[2])
