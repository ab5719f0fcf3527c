"""--threads: every serving thread waits on one epoll set, and idle connections wait
parked in it, not in a thread.

Why: a thread that waits on its own kept-alive connection is lost to every other
client until that client speaks or goes (READ_TIMEOUT): with ``-p 2 --threads 2``,
four idle keep-alive clients held the whole pool, and a fifth waited 15 s. Here the
listeners, the parked connections and the wake-up pipe sit in one epoll set; each
thread takes one event at a time (``maxevents=1``), serves it blocking, and parks the
connection again. A parked connection is armed one-shot: its next request goes to one
thread only, and it is out of ``parked`` while a thread serves it, so the sweep of
idle ones never closes a connection in use.

A graceful stop: the threads finish their requests and return; the worker then serves
what parked clients already sent, as the single-threaded loop does
(``Worker._last_requests``), with ``ep`` and ``listeners`` from here.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time
from typing import TYPE_CHECKING

from brood.workers.response import Core

if TYPE_CHECKING:
    from brood.workers.conn import Conn
    from brood.workers.wsgi import Endpoint, Worker

_ARMED = select.EPOLLIN | select.EPOLLONESHOT


class SharedPoll:
    """The epoll set the serving threads of one worker share."""

    def __init__(self, worker: Worker, tick: float, read_timeout: float,
                 recv_size: int) -> None:
        self.worker = worker
        self.tick = tick
        self.read_timeout = read_timeout
        self.recv_size = recv_size
        self.listeners: dict[int, Endpoint]
        self.ep, self.listeners = worker.listening_epoll()
        self.ep.register(worker.wake_r, select.EPOLLIN)
        self.lock = threading.Lock()  # over worker.parked and the sweep's clock
        self.next_sweep = time.monotonic() + tick

    def serve(self, core_id: int) -> None:
        """One serving thread, until the worker stops."""
        worker = self.worker
        core = Core(worker, core_id)
        poll = self.ep.poll
        listeners = self.listeners
        wake_r = worker.wake_r
        while not worker.stopping:
            worker.flush_account()
            events = poll(self.tick, 1)
            if worker.stopping:
                self._rearm(events)  # (for ``last_requests``)
                return
            for fd, _ in events:
                if fd == wake_r:
                    return
                endpoint = listeners.get(fd)
                if endpoint is not None:
                    self._accept_one(core, endpoint)
                else:
                    self._serve_parked(core, fd)
            self._sweep_due()

    def _rearm(self, events: list[tuple[int, int]]) -> None:
        """A parked connection's event taken, not served: armed again (one-shot)."""
        for fd, _ in events:
            if fd in self.worker.parked:
                with contextlib.suppress(OSError):
                    self.ep.modify(fd, _ARMED)

    def _accept_one(self, core: Core, endpoint: Endpoint) -> None:
        worker = self.worker
        conn = worker.accept_from(endpoint)
        if conn is None:
            return
        try:
            data = conn.sock.recv(self.recv_size, socket.MSG_DONTWAIT)
        except BlockingIOError:  # nothing sent yet (no TCP_DEFER_ACCEPT): wait parked
            self._park(conn)
            return
        except OSError:
            data = b""
        if not data:
            conn.sock.close()
            return
        conn.buf = data
        self._after(conn, worker._serve(core, conn))

    def _serve_parked(self, core: Core, fd: int) -> None:
        with self.lock:
            conn = self.worker.parked.pop(fd, None)
        if conn is None:
            return  # swept meanwhile
        try:  # (an event for an fd number closed and reused since: not this one's)
            ready = conn.sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except BlockingIOError:
            self._park(conn, again=True)
            return
        except OSError:
            ready = b""
        if not ready:  # the client closed
            self._drop(conn)
            return
        self._after(conn, self.worker._serve(core, conn))

    def _after(self, conn: Conn, keep: bool) -> None:
        if keep:
            self._park(conn, again=bool(conn.idle_since))  # (parked before: registered)
        else:
            self._drop(conn)

    def _park(self, conn: Conn, again: bool = False) -> None:
        """Into ``parked``, armed for its next request (``again``: in the set already)."""
        conn.idle_since = time.monotonic()
        with self.lock:
            self.worker.parked[conn.fd] = conn
        try:
            if again:
                self.ep.modify(conn.fd, _ARMED)
            else:
                self.ep.register(conn.fd, _ARMED)
        except OSError:
            with self.lock:
                self.worker.parked.pop(conn.fd, None)
            conn.sock.close()

    def _drop(self, conn: Conn) -> None:
        if conn.idle_since:  # (parked once: registered in the set)
            with contextlib.suppress(OSError, ValueError):
                self.ep.unregister(conn.fd)  # before close: a forked child may share it
        conn.sock.close()

    def _sweep_due(self) -> None:
        """Close parked connections idle for the read timeout (one thread at a time)."""
        now = time.monotonic()
        if now < self.next_sweep or not self.lock.acquire(blocking=False):
            return
        try:
            self.next_sweep = now + self.tick
            deadline = now - self.read_timeout
            parked = self.worker.parked
            idle = [c for c in parked.values() if c.idle_since < deadline]
            for conn in idle:
                del parked[conn.fd]
        finally:
            self.lock.release()
        for conn in idle:
            self._drop(conn)

    def last_requests(self) -> None:
        """After every thread returned, on a graceful stop: serve what parked clients
        already sent, or send within the stop's grace (the wake-up pipe, readable now,
        leaves the set first)."""
        worker = self.worker
        with contextlib.suppress(OSError, ValueError):
            self.ep.unregister(worker.wake_r)
        worker._last_requests(self.ep, self.listeners, Core(worker, 0))

    def close(self) -> None:
        for conn in list(self.worker.parked.values()):
            conn.sock.close()
        self.worker.parked.clear()
        self.ep.close()
