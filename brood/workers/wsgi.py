"""The worker process: a blocking accept loop running the WSGI app (run_worker).

How it works. The master forks, then calls ``run_worker`` in the child. With one
listener and one thread the loop is a plain blocking ``accept`` (the fastest shape in
Python); with several listeners or --threads, each serving thread polls the
listeners plus a wake-up pipe. Accepted sockets inherit TCP_NODELAY and the read
timeout from the listener, where they are set once at start.

Signals: SIGHUP/SIGTERM ask for a graceful stop (finish the requests in progress, do
not wait for idle keep-alive connections, return 0); SIGINT/SIGQUIT stop at once.
In the blocking shape the handler only interrupts the loop while it is idle (in
accept, or waiting for the next keep-alive request): it raises ``_Stop`` there and
just sets a flag otherwise. In the polling shape it writes the wake-up pipe, which
every thread polls. The master kills hung workers (harakiri) with SIGKILL itself.
"""

from __future__ import annotations

import _socket
import contextlib
import os
import select
import signal
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from brood.config.model import Config
from brood.listener import Listener
from brood.scoreboard import STATUS_BUSY, STATUS_IDLE, WorkerSlot
from brood.workers.http import serve_http
from brood.workers.loader import AppLoadError, WSGIApp, load_app, option
from brood.workers.response import Core, FileWrapper
from brood.workers.uwsgi import serve_uwsgi

# Idle keep-alive connections and silent clients are dropped after this long.
READ_TIMEOUT = 15
_PAGE = os.sysconf("SC_PAGE_SIZE")


class _Stop(BaseException):
    """Raised by the graceful-stop handler while the loop is idle."""


class _Abort(BaseException):
    """Raised by the immediate-stop handler wherever the worker is."""


class Endpoint:
    """What a worker needs to know about one listener, computed once."""

    def __init__(self, listener: Listener) -> None:
        self.sock = listener.sock
        self.proto = listener.proto
        self.serve = serve_http if listener.proto == "http" else serve_uwsgi
        self.tcp = listener.sock.family in (socket.AF_INET, socket.AF_INET6)
        if self.tcp:
            host, port = listener.sock.getsockname()[:2]
            self.server_name_str = host
            self.server_port_str = str(port)
        else:
            self.server_name_str = listener.name
            self.server_port_str = ""

    def remote(self, addr: Any) -> tuple[str, int]:
        if self.tcp:
            return addr[0], addr[1]
        return "", 0

    def peer(self, addr: Any) -> str:
        host, port = self.remote(addr)
        return f"{host}:{port}" if self.tcp else "unix"

    def prepare(self, blocking: bool) -> None:
        """Options inherited by accepted sockets; same in every worker (shared fd)."""
        sock = self.sock
        if self.tcp:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", READ_TIMEOUT, 0))
        sock.setblocking(blocking)


class Worker:
    """Per-process state shared by the serving threads."""

    def __init__(
        self, worker_id: int, listeners: list[Listener], app: WSGIApp | None, cfg: Config,
        slot: WorkerSlot,
    ) -> None:  # fmt: skip
        self.id = worker_id
        self.app = app
        self.cfg = cfg
        self.slot = slot
        self.pid = os.getpid()
        self.endpoints = [Endpoint(li) for li in listeners]
        self.threads = max(1, int(option(cfg, "threads", 1) or 1))
        self.max_requests = int(option(cfg, "max-requests", 0) or 0)
        self.reload_on_rss = int(option(cfg, "reload-on-rss", 0) or 0) * 1024 * 1024
        self.limit_post = int(option(cfg, "limit-post", 0) or 0)
        self.buffer_size = int(option(cfg, "buffer-size", 4096) or 4096)
        self.logging = not option(cfg, "disable-logging", False)
        self.multithread = self.threads > 1
        self.multiprocess = int(option(cfg, "processes", 1) or 1) > 1
        self.errors = sys.stderr
        self.file_wrapper = FileWrapper
        self.extra_environ = {"wsgi.input_terminated": True}
        self.requests = 0
        self.stopping = False
        self.idle = False
        self.blocking = len(self.endpoints) == 1 and self.threads == 1
        self.lock = threading.Lock() if self.threads > 1 else None
        self.busy: dict[int, int] = {}  # core id -> request start (threaded mode)
        self.wake_r, self.wake_w = (-1, -1) if self.blocking else os.pipe()
        self._ctime_sec = -1
        self._ctime = ""
        self.recv_idle: Callable[[socket.socket], bytes] = (
            self._recv_idle_blocking if self.blocking else self._recv_idle_poll
        )

    # -- signals ---------------------------------------------------------------------

    def install_signals(self) -> None:
        signal.signal(signal.SIGHUP, self._on_graceful)
        signal.signal(signal.SIGTERM, self._on_graceful)
        signal.signal(signal.SIGINT, self._on_abort)
        signal.signal(signal.SIGQUIT, self._on_abort)

    def _on_graceful(self, signum: int, frame: Any) -> None:
        self.stop()
        if self.idle:
            raise _Stop

    def _on_abort(self, signum: int, frame: Any) -> None:
        self.stopping = True
        raise _Abort

    def stop(self) -> None:
        """Ask every serving thread to finish its request and return."""
        self.stopping = True
        if self.wake_w >= 0:
            with contextlib.suppress(OSError):
                os.write(self.wake_w, b"x")

    # -- loops -----------------------------------------------------------------------

    def serve_blocking(self) -> None:
        """One listener, one thread: blocking accept, interrupted by _Stop when idle."""
        endpoint = self.endpoints[0]
        accept = endpoint.sock._accept  # (fd, addr): no Python-level socket wrapper
        family, type_, proto = endpoint.sock.family, endpoint.sock.type, endpoint.sock.proto
        serve = endpoint.serve
        core = Core(self, 0)
        new_socket = _socket.socket  # the C type: no Python-level __init__ per connection
        while True:
            self.idle = True
            if self.stopping:
                return
            try:
                fd, addr = accept()
            except (BlockingIOError, InterruptedError):
                continue  # the listener's read timeout expired: nothing to do
            except OSError as exc:
                self.idle = False
                self._accept_failed(exc)
                continue
            self.idle = False
            conn = new_socket(family, type_, proto, fd)
            self._handle(core, conn, addr, endpoint, serve)

    def serve_polling(self, core_id: int) -> None:
        """Several listeners or threads: poll the listeners and the wake-up pipe."""
        poller = select.poll()
        by_fd = {}
        for endpoint in self.endpoints:
            poller.register(endpoint.sock.fileno(), select.POLLIN)
            by_fd[endpoint.sock.fileno()] = endpoint
        poller.register(self.wake_r, select.POLLIN)
        core = Core(self, core_id)
        while not self.stopping:
            for fd, _ in poller.poll():
                if fd == self.wake_r or self.stopping:
                    return
                endpoint = by_fd[fd]
                try:
                    conn, addr = endpoint.sock.accept()
                except (BlockingIOError, InterruptedError):
                    continue  # another worker or thread took it
                except OSError as exc:
                    self._accept_failed(exc)
                    continue
                conn.setblocking(True)
                self._handle(core, conn, addr, endpoint, endpoint.serve)

    def _accept_failed(self, exc: OSError) -> None:
        self.log(f"accept(): {exc}")
        time.sleep(0.1)  # fd exhaustion and friends: do not spin

    def _handle(self, core: Core, conn: socket.socket, addr: Any, endpoint: Endpoint,
                serve: Callable[..., None]) -> None:  # fmt: skip
        core.sock = conn
        try:
            serve(core, conn, addr, endpoint)
        except OSError:
            pass  # the client went away
        except Exception as exc:
            self.log(f"connection from {endpoint.peer(addr)} failed: {exc!r}")
        finally:
            core.sock = None
            conn.close()

    def _recv_idle_blocking(self, conn: socket.socket) -> bytes:
        """Wait for the next keep-alive request; a graceful stop cuts the wait."""
        self.idle = True
        try:
            if self.stopping:
                return b""
            return conn.recv(65536)
        except (BlockingIOError, InterruptedError):
            return b""
        finally:
            self.idle = False

    def _recv_idle_poll(self, conn: socket.socket) -> bytes:
        if self.stopping:
            return b""
        poller = select.poll()
        poller.register(conn.fileno(), select.POLLIN)
        poller.register(self.wake_r, select.POLLIN)
        events = poller.poll(READ_TIMEOUT * 1000)
        if not events or self.stopping or any(fd == self.wake_r for fd, _ in events):
            return b""
        return conn.recv(65536)

    # -- one request -----------------------------------------------------------------

    def may_keep_alive(self) -> bool:
        """False when this request will be the worker's last one."""
        if self.stopping:
            return False
        return not self.max_requests or self.requests + 1 < self.max_requests

    def serve_request(self, core: Core, environ: dict[str, Any], vsize: int, nvars: int) -> bool:
        """Account, run and log one request; True when the connection may go on."""
        start = time.time()
        start_us = int(start * 1000000)
        lock = self.lock
        if lock is None:
            self.slot.begin_request(start_us)
        else:
            with lock:
                self.busy[core.id] = start_us
                self.slot.begin_request(min(self.busy.values()))
        keep, failed = core.serve(environ)
        end = time.time()
        sent = core.sent + core.hsize
        if lock is None:
            self.slot.end_request(int(end * 1000000), sent, failed)
            self.requests += 1
        else:
            with lock:
                del self.busy[core.id]
                self.slot.end_request(int(end * 1000000), sent, failed)
                if self.busy:
                    self.slot.request_start = min(self.busy.values())
                    self.slot.in_request = 1
                    self.slot.status = STATUS_BUSY
                self.requests += 1
        if self.logging:
            self._access_log(core, environ, start, end, vsize, nvars)
        if self.max_requests and self.requests >= self.max_requests:
            self.log(f"worker {self.id} reached max-requests ({self.max_requests}), stopping")
            self.stop()
        elif self.reload_on_rss:
            self._check_rss()
        return keep and not self.stopping

    def _check_rss(self) -> None:
        with open("/proc/self/statm", "rb") as f:
            fields = f.read().split()
        vsz, rss = int(fields[0]) * _PAGE, int(fields[1]) * _PAGE
        self.slot.vsz = vsz
        self.slot.rss = rss
        if rss > self.reload_on_rss:
            self.log(f"worker {self.id} rss {rss // 1048576} MB over reload-on-rss, stopping")
            self.stop()

    # -- logging ---------------------------------------------------------------------

    def log(self, message: str) -> None:
        """One line on fd 2, in one write (no Python buffer across fork)."""
        with contextlib.suppress(OSError):
            os.write(2, (message + "\n").encode("utf-8", "replace"))

    def _access_log(self, core: Core, environ: dict[str, Any], start: float, end: float,
                    vsize: int, nvars: int) -> None:  # fmt: skip
        sec = int(start)
        if sec != self._ctime_sec:
            self._ctime_sec = sec
            self._ctime = time.ctime(sec)
        uri = environ.get("REQUEST_URI") or environ.get("PATH_INFO", "")
        line = (
            f"[pid: {self.pid}|app: 0|req: {self.requests}/{self.requests}] "
            f"{environ.get('REMOTE_ADDR', '')} ({environ.get('REMOTE_USER', '')}) "
            f"{{{nvars} vars in {vsize} bytes}} [{self._ctime}] "
            f"{environ.get('REQUEST_METHOD', '')} {uri} => generated {core.sent} bytes in "
            f"{int((end - start) * 1000)} msecs ({environ.get('SERVER_PROTOCOL', 'HTTP/1.0')} "
            f"{core.code}) {core.hcount} headers in {core.hsize} bytes "
            f"(1 switches on core {core.id})\n"
        )
        with contextlib.suppress(OSError):
            os.write(2, line.encode("utf-8", "replace"))

    # -- lifecycle -------------------------------------------------------------------

    def run(self) -> int:
        for endpoint in self.endpoints:
            endpoint.prepare(self.blocking)
        self.slot.status = STATUS_IDLE
        self.slot.accepting = 1
        try:
            if self.blocking:
                self.serve_blocking()
            elif self.threads == 1:
                self.serve_polling(0)
            else:
                self._run_threads()
        except _Stop:
            pass
        finally:
            self.idle = False
            self.slot.accepting = 0
            _quiet_signals()
        return 0

    def _run_threads(self) -> None:
        threads = [
            threading.Thread(target=self.serve_polling, args=(i,), daemon=True,
                             name=f"brood-worker-{self.id}-core-{i}")
            for i in range(self.threads)
        ]  # fmt: skip
        for t in threads:
            t.start()
        for t in threads:
            t.join()


def _exit_now(signum: int, frame: Any) -> None:
    os._exit(0)


def _quiet_signals() -> None:
    """Once the loop is over, a late signal must not raise into the caller's exit path."""
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, _exit_now)
    signal.signal(signal.SIGQUIT, _exit_now)


def run_worker(
    worker_id: int, listeners: list[Listener], app: WSGIApp | None, cfg: Config, slot: WorkerSlot
) -> int:
    """Serve in a forked worker until stopped; the value is the process exit status.

    ``app=None`` means --lazy-apps: the app is loaded here, after the fork; when that
    fails the error is logged and the status is 1.
    """
    slot.pid = os.getpid()
    if not slot.last_spawn:
        slot.last_spawn = int(time.time())
    slot.status = STATUS_IDLE
    worker = Worker(worker_id, listeners, app, cfg, slot)
    worker.install_signals()
    try:
        if worker.app is None:
            try:
                worker.app = load_app(cfg)
            except AppLoadError as exc:
                worker.log(f"worker {worker_id}: {exc}")
                return 1
        return worker.run()
    except (_Abort, _Stop):
        return 0
    finally:
        _quiet_signals()
