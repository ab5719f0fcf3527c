"""The worker process: the serving loop running the WSGI app (run_worker).

How it works. The master forks, then calls ``run_worker`` in the child. With one
thread (the default) the worker runs an epoll loop over its listeners and the
keep-alive connections it has parked: it serves one request at a time, start to end,
blocking, but never waits on one client while another has a request ready. A
connection is parked after a response when nothing more of it is buffered, and served
again when epoll says it is readable; idle ones are closed after READ_TIMEOUT. Without
parking, a keep-alive client would hold the worker to itself and every other client
would wait (with 64 clients and 2 workers, 62 of them for good). New connections are
accepted without waiting (listeners are non-blocking, TCP ones accept only once the
request has arrived: TCP_DEFER_ACCEPT, as uWSGI does) and served at once; while
nothing is parked the loop keeps accepting without polling. With --threads, the
serving threads share one epoll set of listeners, parked connections and a wake-up
pipe (``brood.workers.threaded``): an idle kept-alive client holds no thread.
Accepted sockets inherit TCP_NODELAY and the read timeout from the listener, where
they are set once at start.

Signals: SIGHUP/SIGTERM ask for a graceful stop (finish the requests in progress,
serve a request already waiting on a parked keep-alive connection or coming within
``STOP_GRACE``, with Connection: close, then return 0); SIGINT/SIGQUIT stop at once.
In the single-threaded loop the handler only interrupts the loop while it is idle
(waiting in epoll): it raises ``_Stop`` there and just sets a flag otherwise. In the
threaded shape it writes the wake-up pipe, which every thread polls. The master kills
hung workers (harakiri) with SIGKILL itself; with --harakiri-verbose each core publishes
the request it serves in the scoreboard, for the master to log then.

Request lines (``_setup_request_log``): the default uWSGI-style line, or a --log-format
one (``reqlog``), for every request or, with --disable-logging, only those uWSGI's
exceptions ask for (--log-4xx, --log-slow... ``reqlog.LogRules``); chosen once, so a
request pays one call at most and the default worker what it paid before these options
existed, plus the two attribute loads of --log-micros and --log-x-forwarded-for.
"""

from __future__ import annotations

import _socket
import contextlib
import os
import resource
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
from brood.scoreboard import STATUS_IDLE, WorkerSlot
from brood.signals import release_stops, stops_blocked
from brood.sockets import defer_accept
from brood.workers import reqlog
from brood.workers.account import Account
from brood.workers.conn import Conn
from brood.workers.environ import http_base
from brood.workers.http import serve_http
from brood.workers.loader import AppLoadError, WSGIApp, load_app, option
from brood.workers.recycle import MB, ExceptionRule, exception_rule, memory_over
from brood.workers.response import Core, FileWrapper
from brood.workers.static import STATIC_KEY, StaticFront, header_rules, static_from_config
from brood.workers.threaded import SharedPoll
from brood.workers.uwsgi import serve_uwsgi

_EXCEPTION_FILTERS = ("reload-on-exception-type", "reload-on-exception-value",
                      "reload-on-exception-repr")
# Idle keep-alive connections and silent clients are dropped after this long.
READ_TIMEOUT = 15
_PAGE = os.sysconf("SC_PAGE_SIZE")
_RECV = 65536
# One wake-up per new connection across the worker processes sharing a listener.
_EXCLUSIVE = getattr(select, "EPOLLEXCLUSIVE", 0)
# Parked keep-alive connections per worker: past this, responses say Connection: close.
# Half the fd limit leaves room for the app's own files and sockets.
_PARKED_CAP = 4096
# The epoll loop wakes at least this often (idle sweeps; a lost signal is noticed).
_TICK = 1.0
# A graceful stop keeps parked keep-alive connections this long for a request their
# clients may have sent just as it began: served (its answer says close), not reset.
STOP_GRACE = 0.25


class _Stop(BaseException):
    """Raised by the graceful-stop handler while the loop is idle."""


class _Abort(BaseException):
    """Raised by the immediate-stop handler wherever the worker is."""


class Endpoint:
    """What a worker needs to know about one listener, computed once."""

    def __init__(self, listener: Listener) -> None:
        self.sock = listener.sock
        self.proto = listener.proto
        self.serve: Callable[[Core, Conn], bool] = (
            serve_http if listener.proto == "http" else serve_uwsgi
        )
        self.tcp = listener.sock.family in (socket.AF_INET, socket.AF_INET6)
        self.family, self.type, self.proto_num = (
            listener.sock.family, listener.sock.type, listener.sock.proto
        )  # fmt: skip
        # SERVER_NAME: the host's name, as uWSGI's --http-socket gives it (and the HTTP
        # router, for the requests it forwards), not the address bound.
        self.server_name_str = socket.gethostname()
        if self.tcp:
            self.server_port_str = str(listener.sock.getsockname()[1])
        else:
            self.server_port_str = ""
        self.environ_base: dict[str, Any] = {}  # set by the Worker (http listeners)

    def prepare(self, defer: bool = True) -> None:
        """Options inherited by accepted sockets, and a non-blocking accept; the same
        in every worker (the listener is shared). ``defer``: accept only once the
        client has sent something (not --no-defer-accept): the first recv never waits,
        and a silent connection never takes a worker."""
        sock = self.sock
        if self.tcp:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            defer_accept(sock, READ_TIMEOUT if defer else 0)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", READ_TIMEOUT, 0))
        sock.setblocking(False)

    def accept(self) -> Conn:
        """A new connection (blocking socket); BlockingIOError when none is queued."""
        fd, addr = self.sock._accept()  # no Python-level socket wrapper
        try:
            sock = _socket.socket(self.family, self.type, self.proto_num, fd)
        except BaseException:
            os.close(fd)
            raise
        return Conn(sock, addr, self)  # type: ignore[arg-type]


def _parked_cap() -> int:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return _PARKED_CAP
    return max(16, min(_PARKED_CAP, soft // 2))


class Worker:
    """Per-process state shared by the serving threads."""

    # --max-requests, --reload-on-rss and --reload-on-as recycle a worker only from this
    # time on (--min-worker-lifetime); set per worker only with one of them (a 31st
    # attribute would give every worker a real dict, slower on the per-request path).
    recyclable_at = 0.0
    # --reload-on-exception*: whether an exception the app raised recycles the worker
    # (brood.workers.recycle); asked by Core only when the app raised.
    exception_rule: ExceptionRule | None = None
    # --static-map & co., --add-header, --del-header: the app runs behind it (set per
    # worker only with one of them)
    front: StaticFront | None = None

    def __init__(
        self, worker_id: int, listeners: list[Listener], app: WSGIApp | None, cfg: Config,
        slot: WorkerSlot,
    ) -> None:  # fmt: skip
        self.id = worker_id
        self.app = app
        self.cfg = cfg
        self.slot = slot
        self.account = Account(slot)
        self.pid = os.getpid()
        self.endpoints = [Endpoint(li) for li in listeners]
        self.threads = max(1, int(option(cfg, "threads", 1) or 1))
        self.max_requests = int(option(cfg, "max-requests", 0) or 0)
        if self.max_requests:
            self.max_requests += (worker_id - 1) * int(option(cfg, "max-requests-delta", 0) or 0)
        rss_limit = int(option(cfg, "reload-on-rss", 0) or 0) * MB
        as_limit = int(option(cfg, "reload-on-as", 0) or 0) * MB
        # (rss, address space) in bytes, read after each request; () when neither is on
        self.memory_limits = (rss_limit, as_limit) if rss_limit or as_limit else ()
        if self.max_requests or self.memory_limits:  # (else the class's: see recyclable_at)
            self.recyclable_at = time.time() + int(option(cfg, "min-worker-lifetime", 60) or 0)
        self.limit_post = int(option(cfg, "limit-post", 0) or 0)
        self.buffer_size = int(option(cfg, "buffer-size", 4096) or 4096)
        self._setup_request_log(cfg)
        if option(cfg, "memory-report", False):
            self._setup_memory_report()
        self.multithread = self.threads > 1
        self.multiprocess = int(option(cfg, "processes", 1) or 1) > 1
        self.errors = sys.stderr
        self.file_wrapper = (None if option(cfg, "wsgi-disable-file-wrapper", False)
                             else FileWrapper)
        self.extra_environ = {"wsgi.input_terminated": True}
        for endpoint in self.endpoints:
            endpoint.environ_base = http_base(
                server_name=endpoint.server_name_str,
                server_port=endpoint.server_port_str,
                errors=self.errors,
                multithread=self.multithread,
                multiprocess=self.multiprocess,
                file_wrapper=self.file_wrapper,
                extra=self.extra_environ,
            )
        self.requests = 0
        self.stopping = False
        self.idle = False
        # one thread: the epoll loop; more: threads sharing an epoll set, which a
        # graceful stop wakes through a pipe
        self.lock = threading.Lock() if self.threads > 1 else None
        self.busy: dict[int, int] = {}  # core id -> request start (threaded mode)
        self.wake_r, self.wake_w = (-1, -1) if self.threads == 1 else os.pipe()
        self.parked: dict[int, Conn] = {}  # fd -> connection (parked keep-alive)
        self.parked_cap = _parked_cap()
        self._ctime_sec = -1
        self._ctime = ""
        rule = exception_rule(bool(option(cfg, "reload-on-exception", False)),
                              [str(v) for name in _EXCEPTION_FILTERS
                               for v in option(cfg, name, None) or ()])
        if rule is not None:  # (else the class's None: the default worker stores nothing)
            self.exception_rule = rule
        static = static_from_config(cfg, self.log)
        added, dropped = header_rules(cfg)
        if static is not None or added or dropped:
            self.front = StaticFront(None, static, added, dropped)
            if static is not None and self.request_log == self._access_log:
                self.request_log = self._static_access_log  # type: ignore[method-assign]
        if option(cfg, "harakiri-verbose", False):
            # the master logs what each core serves when it kills the worker; only
            # then is it published (an instance attribute: no test per request)
            self.serve_request = self._serve_request_published  # type: ignore[method-assign]

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

    def listening_epoll(self) -> tuple[Any, dict[int, Endpoint]]:
        """A new epoll set watching the listeners, and the listeners by fd."""
        ep = select.epoll()
        listeners: dict[int, Endpoint] = {}
        for endpoint in self.endpoints:
            fd = endpoint.sock.fileno()
            try:
                ep.register(fd, select.EPOLLIN | _EXCLUSIVE)
            except OSError:  # a kernel without EPOLLEXCLUSIVE: every worker wakes
                ep.register(fd, select.EPOLLIN)
            listeners[fd] = endpoint
        return ep, listeners

    def serve_events(self) -> None:
        """One thread: epoll over the listeners and the parked connections."""
        ep, listeners = self.listening_epoll()
        parked = self.parked
        core = Core(self, 0)
        poll = ep.poll
        flush = self.account.flush
        monotonic = time.monotonic
        next_sweep = monotonic() + _TICK
        try:
            while True:
                flush()  # the counters reach the scoreboard before any wait
                self.idle = True
                try:
                    events = [] if self.stopping else poll(_TICK)
                except _Stop:  # a graceful signal while waiting
                    events = []
                self.idle = False
                if self.stopping:
                    self._last_requests(ep, listeners, core)
                    return
                now = monotonic()
                for fd, _ in events:
                    endpoint = listeners.get(fd)
                    if endpoint is not None:
                        self._accept_all(core, endpoint, ep, now)
                    else:
                        conn = parked.get(fd)
                        if conn is not None and not self._serve(core, conn):
                            self._unpark(ep, conn)
                            conn.sock.close()
                        elif conn is not None:
                            conn.idle_since = now
                    if self.stopping:
                        self._last_requests(ep, listeners, core)
                        return
                if now >= next_sweep:
                    next_sweep = now + _TICK
                    self._sweep(ep, now)
        finally:
            self.idle = False
            for conn in list(parked.values()):
                conn.sock.close()
            parked.clear()
            ep.close()

    def _last_requests(self, ep: Any, listeners: dict[int, Endpoint], core: Core) -> None:
        """A graceful stop: each parked connection whose client already sent a request
        (or sends one within ``STOP_GRACE``) gets it served, its answer saying close,
        instead of a close that resets it and loses the request; then all are closed.
        No new connection is taken meanwhile (they wait for the next worker)."""
        for fd in listeners:
            with contextlib.suppress(OSError, ValueError):
                ep.unregister(fd)
        parked = self.parked
        deadline = time.monotonic() + STOP_GRACE
        while parked:
            left = deadline - time.monotonic()
            events = ep.poll(max(left, 0.0))
            if not events and left <= 0:
                return
            for fd, _ in events:
                conn = parked.get(fd)
                if conn is not None:
                    self._serve(core, conn)
                    self._unpark(ep, conn)
                    conn.sock.close()

    def _accept_all(self, core: Core, endpoint: Endpoint, ep: Any, now: float) -> None:
        """Accept and serve new connections; go on while nothing else is parked."""
        parked = self.parked
        while True:
            conn = self.accept_from(endpoint)
            if conn is None:
                return
            try:
                data = conn.sock.recv(_RECV, socket.MSG_DONTWAIT)
            except BlockingIOError:  # nothing sent yet (no TCP_DEFER_ACCEPT): wait in epoll
                data = None
            except OSError:
                data = b""
            if data is None:
                keep = True
            elif data:
                conn.buf = data
                keep = self._serve(core, conn)
            else:
                keep = False
            if keep:
                conn.idle_since = now
                parked[conn.fd] = conn
                ep.register(conn.fd, select.EPOLLIN)
            else:
                conn.sock.close()
            if parked or self.stopping:
                return

    def _unpark(self, ep: Any, conn: Conn) -> None:
        del self.parked[conn.fd]
        with contextlib.suppress(OSError, ValueError):
            ep.unregister(conn.fd)  # before close: a forked child may share the socket

    def _sweep(self, ep: Any, now: float) -> None:
        """Close parked connections idle for READ_TIMEOUT."""
        deadline = now - READ_TIMEOUT
        for conn in [c for c in self.parked.values() if c.idle_since < deadline]:
            self._unpark(ep, conn)
            conn.sock.close()

    def accept_from(self, endpoint: Endpoint) -> Conn | None:
        """A new connection; None when none is queued (another worker or thread took
        it) or the accept failed (said)."""
        try:
            return endpoint.accept()
        except (BlockingIOError, InterruptedError):
            return None
        except OSError as exc:
            self._accept_failed(exc)
            return None

    def _accept_failed(self, exc: OSError) -> None:
        self.log(f"accept(): {exc}")
        time.sleep(0.1)  # fd exhaustion and friends: do not spin

    def _serve(self, core: Core, conn: Conn) -> bool:
        """Serve what ``conn`` has ready; True when it stays open for another request."""
        core.sock = conn.sock
        try:
            return conn.endpoint.serve(core, conn)
        except OSError:
            return False  # the client went away
        except Exception as exc:
            self.log(f"connection from {conn.peer()} failed: {exc!r}")
            return False
        finally:
            core.sock = None

    def flush_account(self) -> None:
        """Threads: store the scoreboard counters before this thread waits."""
        with self.lock or contextlib.nullcontext():
            self.account.flush()

    # -- one request -----------------------------------------------------------------

    def may_keep_alive(self) -> bool:
        """False when this request will be the worker's last one, or the connection's
        (the parking lot is full)."""
        if self.stopping or len(self.parked) >= self.parked_cap:
            return False
        return (not self.max_requests or self.requests + 1 < self.max_requests
                or time.time() < self.recyclable_at)

    def serve_request(self, core: Core, environ: dict[str, Any], vsize: int, nvars: int) -> bool:
        """Account, run and log one request; True when the connection may go on."""
        start = time.time()
        start_us = int(start * 1000000)
        lock = self.lock
        account = self.account
        if lock is None:
            account.begin(start_us)
        else:
            with lock:
                self.busy[core.id] = start_us
                account.begin(min(self.busy.values()))
                self.slot.begin_core(core.id, start_us)
        keep, failed = core.serve(environ)
        end = time.time()
        sent = core.sent + core.hsize
        if lock is None:
            account.end(int(end * 1000000), sent, failed)
            self.requests += 1
        else:
            with lock:
                del self.busy[core.id]
                self.slot.end_core(core.id)
                account.end(int(end * 1000000), sent, failed)
                if self.busy:  # another thread is still in a request: the oldest one
                    account.begin(min(self.busy.values()))
                self.requests += 1
        if self.logging:
            self.request_log(core, environ, start, end, vsize, nvars)
        if (self.max_requests and self.requests >= self.max_requests
                and end >= self.recyclable_at and not self.stopping):  # (said once)
            self.log(f"worker {self.id} reached max-requests ({self.max_requests}), stopping")
            self.stop()
        elif self.memory_limits:
            self._check_memory()
        # What the answer told the client: a stop after it was sent leaves the connection
        # to ``_last_requests`` (the client may already be sending its next request).
        return keep

    def _serve_request_published(self, core: Core, environ: dict[str, Any], vsize: int,
                                 nvars: int) -> bool:
        """``serve_request`` with the request's facts in the scoreboard meanwhile
        (--harakiri-verbose)."""
        uri = environ.get("REQUEST_URI") or environ.get("PATH_INFO", "")
        text = (f"{environ.get('REMOTE_ADDR', '')} - {environ.get('REQUEST_METHOD', '')} "
                f"{uri}")
        slot = self.slot
        slot.publish_request(core.id, int(time.time() * 1000000),
                             text.encode("utf-8", "replace"))
        try:
            return Worker.serve_request(self, core, environ, vsize, nvars)
        finally:
            slot.clear_request(core.id)

    def _read_memory(self) -> tuple[int, int]:
        """(address space, resident set) in bytes, also stored for the stats."""
        with open("/proc/self/statm", "rb") as f:
            fields = f.read().split()
        vsz, rss = int(fields[0]) * _PAGE, int(fields[1]) * _PAGE
        self.slot.vsz = vsz
        self.slot.rss = rss
        return vsz, rss

    def _check_memory(self) -> None:
        """--reload-on-rss / --reload-on-as, after a request."""
        vsz, rss = self._read_memory()
        why = memory_over(rss, vsz, *self.memory_limits)
        if why is not None and time.time() >= self.recyclable_at:
            self.log(f"worker {self.id} {why}, stopping")
            self.stop()

    def recycle_after_exception(self, exc: BaseException) -> None:
        """The app raised an exception --reload-on-exception* names: this request's
        answer closes its connection, and the worker stops once its requests are done
        (uWSGI's exits at once, the client getting no answer)."""
        if not self.stopping:
            self.log(f"... monitored exception detected ({type(exc).__name__}), worker "
                     f"{self.id} (pid: {self.pid}) stops after this request ...")
            self.stop()

    # -- logging ---------------------------------------------------------------------

    def log(self, message: str) -> None:
        """One line on fd 2, in one write (no Python buffer across fork)."""
        with contextlib.suppress(OSError):
            os.write(2, (message + "\n").encode("utf-8", "replace"))

    def _setup_request_log(self, cfg: Config) -> None:
        """Whether requests are logged and how. The default line needs nothing more
        (``request_log`` is the class's ``_access_log``); a --log-format, or
        --disable-logging with one of uWSGI's exceptions (--log-4xx, --log-slow...), sets
        a ``reqlog.RequestLog`` as this worker's ``request_log`` instead. --log-micros
        and --log-x-forwarded-for set what the line says. Nothing else is stored: the
        default worker keeps its attributes (and so its attribute loads) as they were."""
        rules = reqlog.LogRules.from_config(cfg)
        fmt = option(cfg, "log-format", None)
        if option(cfg, "log-micros", False):
            self._time_scale, self._time_unit = 1_000_000, "micros"
        if option(cfg, "log-x-forwarded-for", False):
            self.log_x_forwarded_for = True
        self.logging = rules.any
        if fmt or (self.logging and not rules.everything):
            self.request_log = reqlog.RequestLog(  # type: ignore[method-assign]
                self, self._access_log, str(fmt) if fmt else None, rules)

    def _setup_memory_report(self) -> None:
        """--memory-report: each request reads the worker's memory for the stats
        (uwsgitop's RSS and VSZ columns) and, as uWSGI, starts the default request line
        with it; a --log-format line has %(rss) and %(vsz) for that."""
        default = self.logging and self.request_log == self._access_log
        lines = self.request_log if self.logging else None

        def report(core: Core, environ: dict[str, Any], start: float, end: float,
                   vsize: int, nvars: int) -> None:  # fmt: skip
            vsz, rss = self._read_memory()
            if default:
                self._access_log(core, environ, start, end, vsize, nvars,
                                 f"{{address space usage: {vsz} bytes/{vsz >> 20}MB}} "
                                 f"{{rss usage: {rss} bytes/{rss >> 20}MB}} ")
            elif lines is not None:
                lines(core, environ, start, end, vsize, nvars)

        self.request_log = report  # type: ignore[method-assign]
        self.logging = True

    def _static_access_log(self, core: Core, environ: dict[str, Any], start: float,
                           end: float, vsize: int, nvars: int) -> None:  # fmt: skip
        """The default line, said as uWSGI says it for a static file: app -1, req -1,
        0 switches, and 200 for a 206."""
        self._access_log(core, environ, start, end, vsize, nvars,
                         static=STATIC_KEY in environ)

    def _access_log(self, core: Core, environ: dict[str, Any], start: float, end: float,
                    vsize: int, nvars: int, prefix: str = "",
                    static: bool = False) -> None:  # fmt: skip
        sec = int(start)
        if sec != self._ctime_sec:
            self._ctime_sec = sec
            self._ctime = time.ctime(sec)
        uri = environ.get("REQUEST_URI") or environ.get("PATH_INFO", "")
        addr = environ.get("REMOTE_ADDR", "")
        if self.log_x_forwarded_for:
            addr = environ.get("HTTP_X_FORWARDED_FOR", addr)
        # uWSGI's words for a file sent with sendfile: "via sendfile()", no switches
        via, switches = (" via sendfile() ", 0) if core.sendfile else (" ", 1)
        code = core.code
        if static:
            app_req, switches, code = "-1|req: -1", 0, 200 if code == 206 else code
        else:
            app_req = f"0|req: {self.requests}"
        line = (
            f"{prefix}[pid: {self.pid}|app: {app_req}/"
            f"{self.account.total_requests()}] "
            f"{addr} ({environ.get('REMOTE_USER', '')}) "
            f"{{{nvars} vars in {vsize} bytes}} [{self._ctime}] "
            f"{environ.get('REQUEST_METHOD', '')} {uri} => generated {core.sent} bytes in "
            f"{int((end - start) * self._time_scale)} {self._time_unit}{via}"
            f"({environ.get('SERVER_PROTOCOL', 'HTTP/1.0')} "
            f"{code}) {core.hcount} headers in {core.hsize} bytes "
            f"({switches} switches on core {core.id})\n"
        )
        reqlog.write_line(reqlog.line_bytes(line), self.lock)

    request_log = _access_log  # a worker with --log-format or --log-4xx... shadows it
    # What the default line says, unless --log-micros / --log-x-forwarded-for
    _time_scale, _time_unit = 1000, "msecs"
    log_x_forwarded_for = False

    # -- lifecycle -------------------------------------------------------------------

    def run(self) -> int:
        front = self.front
        if front is not None and front.app is None:  # the app behind static files
            front.app = self.app
            self.app = front
        defer = not option(self.cfg, "no-defer-accept", False)
        for endpoint in self.endpoints:
            endpoint.prepare(defer)
        self.slot.status = STATUS_IDLE
        self.slot.accepting = 1
        try:
            if self.threads == 1:
                self.serve_events()
            else:
                self._run_threads()
        except _Stop:
            pass
        finally:
            self.idle = False
            self.slot.accepting = 0
            self.account.close()
            _quiet_signals()
        return 0

    def _run_threads(self) -> None:
        """Serve on ``--threads`` threads until each has returned.

        Signals: only this (the main) thread takes them, as the serving threads start
        with them blocked; a signal the kernel handed to a serving thread would only be
        noted, and Python would run its handler when this thread next ran bytecode,
        which it does not while it waits. It waits in a read of a pipe each thread
        writes to as it ends: a signal interrupts the read, and a handler that raises
        (``_Abort``) leaves it cleanly, which ``Thread.join`` does not always do."""
        ended_r, ended_w = os.pipe()
        shared = SharedPoll(self, _TICK, READ_TIMEOUT, _RECV)

        def serve(core: int) -> None:
            try:
                shared.serve(core)
            finally:
                os.write(ended_w, b"x")

        threads = [
            threading.Thread(target=serve, args=(i,), daemon=True,
                             name=f"brood-worker-{self.id}-core-{i}")
            for i in range(self.threads)
        ]  # fmt: skip
        with stops_blocked():  # the threads keep them blocked
            for t in threads:
                t.start()
        running = len(threads)
        while running:
            running -= len(os.read(ended_r, running))
        # Closed only once every thread wrote: after an _Abort the process exits soon,
        # and a thread must not write into a number reused meanwhile.
        os.close(ended_r)
        os.close(ended_w)
        try:
            shared.last_requests()
        finally:
            shared.close()


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
    release_stops()  # held since the fork: the handlers above take them now
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
