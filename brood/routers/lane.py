"""A router's fast lane: the usual request served without a trio task.

Why. Per-request overhead decides a Python router (PERF.md). On a general path a request
costs trips through trio's scheduler (wait for the client's request, wait for the node's
answer), each a task switch and epoll_ctl calls, plus a task per connection. Here one
trio task serves every plain connection of a listener.

How it works. The lane keeps its own epoll set, edge-triggered, and waits on it with
``trio.lowlevel.wait_readable`` (an epoll fd is itself pollable); each wake-up serves
every ready socket with non-blocking calls, no task switch per socket.

This module is the part every front shares: the client's reads, the node's connect
(first pick of the resolver, a numeric TCP or a unix address, done at once or within
``--X-connect-timeout``), the request's send, the answer's relay (by splice(2) for long
bodies), back-pressure both ways, the counters and the timeouts. A front subclasses
``Lane`` and says what a request is (``_start``: parse, resolve, ``_open_node``), how its
answer is framed (``_answer_head``), what ends it (``_finish``) and how an error is
answered (``_fail_over``); anything it does not serve goes to its general path at a
clean point (``_to_general``: the front's ``resume`` serves the request from its first
byte, with retries, fallbacks and every error answer).

Timeouts are swept once a second (uWSGI checks its timeouts as often): a client that
sends no request in time, a connect, a silent node (``--X-timeout``), a client that
takes no byte of the answer for as long (its socket's send queue did not move),
``--X-session-max-age``.

Accepting: a connection that a sibling process holding fewer should take is left to it
(``brood.routers.net.spread``), and ``run`` itself looks again (``_retry_accepts``, as
after an accept pause): only the task that waits on the epoll set can go on with a
listener whose edge is spent.
"""

from __future__ import annotations

import _socket
import contextlib
import errno
import logging
import math
import os
import select
import socket
import time
from collections.abc import Iterator
from typing import Any

import trio

from brood.routers.engine import client_ip
from brood.routers.errors import NodeFailed, NodeTimeout, RoutingError
from brood.routers.net import sockio
from brood.routers.net.backend import LOCAL_LIMITS, FirstPick, overloaded
from brood.routers.net.listen import ACCEPT_BATCH, CLIENT_LEFT, run_connection
from brood.routers.net.relay import (
    HAS_SPLICE,
    PIPE_SIZE,
    SLOW_TAKE,
    EndFailed,
    client_room,
    linger,
    splice_pipeful,
)
from brood.routers.net.spread import DEFER
from brood.routers.node import Node

log = logging.getLogger("brood.routers")

# Edge-triggered, with EPOLLRDHUP: a short read normally means "drained, wait for the
# next edge", but a peer's close that came with the data raises no second edge, so once
# a hang-up was reported every socket is read until EOF.
_IN = select.EPOLLIN | select.EPOLLRDHUP | select.EPOLLET
_IN_OUT = _IN | select.EPOLLOUT
_HUP = select.EPOLLRDHUP | select.EPOLLHUP | select.EPOLLERR
_READ_EVENTS = select.EPOLLIN | _HUP
_WRITE_EVENTS = select.EPOLLOUT | select.EPOLLERR | select.EPOLLHUP
# Bytes per read: a read that fills it may have left more behind (edge-triggered: read
# again before waiting); a shorter one drained the socket.
RECV = 65536
# First read of an answer: its head and a short body whole; a longer body is spliced.
HEAD_RECV = 16384
# Answer bodies with at least this much left go node -> client by splice(2).
SPLICE_MIN = 16384
# Rest of a long answer: bigger reads, fewer calls.
BODY_RECV = 1 << 18
# Bytes one connection moves before the lane's other sockets get their turn (``later``).
TURN = 4 * PIPE_SIZE
SWEEP_EVERY = 1.0
# Sweeps come no closer than this: a timeout fires within it of its time (a sweep walks
# every connection; deadlines pushed on by traffic would otherwise wake it constantly).
SWEEP_MIN = 0.05
# A sweep woken for a deadline acts on deadlines this close too (timer granularity).
_EARLY = 0.005
_STREAM_NONBLOCK = socket.SOCK_STREAM | socket.SOCK_NONBLOCK
_NEVER = math.inf
_IN_PROGRESS = (errno.EINPROGRESS, errno.EALREADY, errno.EAGAIN)
# A stream socket's read(2)/write(2) are its recv/send without flags; os's wrappers parse
# their arguments for a fifth of the cost of the socket methods' (per call, per request).
_read, _write = os.read, os.write
# What a lane connection is doing.
IDLE, CONNECTING, WAITING, BODY = range(4)


class LaneConn:
    """One client connection in a lane and the request it is serving."""

    __slots__ = ("sock", "fd", "peer", "client_ip", "buf", "readable", "out_armed", "state",
                 "deadline", "hard", "key", "node", "up", "up_fd", "packet", "used", "started",
                 "sent", "remaining", "pending", "node_keep", "node_readable", "answer_head",
                 "counted", "held", "hup", "node_hup", "outq")

    def __init__(self, sock: socket.socket, peer: Any) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.peer = peer
        self.client_ip = client_ip(peer)
        self.buf = b""  # read from the client, not served yet
        self.readable = False  # an edge came while busy, or the last read filled RECV
        self.out_armed = False  # EPOLLOUT asked for (after a short send)
        self.state = IDLE
        self.deadline = math.inf
        self.hard = math.inf  # --X-session-max-age of the request in flight
        self.key: bytes | None = b""
        self.node: Node | None = None
        self.up: _socket.socket | None = None
        self.up_fd = -1
        self.packet = b""  # the request still to send (connect in progress, short send)
        self.used = 0  # bytes of ``buf`` the request in flight took
        self.started = 0.0
        self.sent = 0  # answer bytes written to the client
        self.remaining = 0  # answer body bytes still to relay; -1: until the node closes
        self.pending = b""  # answer bytes the client could not take yet
        self.node_keep = False
        self.node_readable = False
        self.answer_head = b""  # the start of an answer head that is not complete yet
        self.counted = False  # the request went out: a session and the node's ref are held
        self.held = False  # a session held before the request went out (FastLane.take)
        self.hup = False  # the client hung up (reads go on until EOF)
        self.node_hup = False  # the node hung up
        self.outq = -1  # the client's send queue at the last sweep (send_queue_moved)


class Lane:
    """The fast lane of one front; ``run`` is its task, in the sessions nursery.

    ``router`` is the front's connection handler: its ``engine``, and ``resume(sock,
    peer, buf)``, the general path for a connection whose ``buf`` was not served.
    ``timeout``: the node's idle limit (and a client's that takes no byte);
    ``first_timeout``: a new connection's time to send its first request."""

    conn_class: type[LaneConn] = LaneConn
    # What a client socket is registered for: its reads (EPOLLOUT asked for when a send
    # falls short), or both from the start.
    client_events = _IN
    # What --X-session-max-age bounds, in its log line: as the front's general path says.
    harakiri_of = "request"
    # What a node socket whose connect is in progress is registered for.
    connect_events = _IN_OUT
    # Whether a client's end of stream before any byte of the answer means it left
    # (``_client_left``: the node's connection and the session go at once, as uWSGI
    # does), or may be a half-close that still waits for the answer (HTTP, as haproxy
    # serves it). A reset always means it left.
    ends_on_client_eof = True

    def __init__(self, router: Any, sessions: trio.Nursery, *, timeout: float,
                 first_timeout: float) -> None:
        self.router = router
        self.engine = router.engine
        self.kind = self.engine.kind
        self.sessions = sessions
        self.timeout = timeout
        self.first_timeout = first_timeout
        self.ep = select.epoll()
        self.conns: dict[int, LaneConn] = {}  # client fd -> connection
        self.nodes: dict[int, LaneConn] = {}  # node fd -> connection
        harakiri = self.engine.settings.max_age  # (--X-session-max-age)
        self.harakiri = harakiri if harakiri > 0 else 0.0
        self.connect_timeout = self.engine.plan.connect_timeout
        self.sweep_scope: trio.CancelScope | None = None
        self.splice = HAS_SPLICE  # long answer bodies by splice(2)
        # Listening sockets the lane accepts on (``listening``): fd -> (socket, family).
        self.listeners: dict[int, tuple[socket.socket, int]] = {}
        self.backlog: set[int] = set()  # listeners that may hold more connections
        self.accept_paused = False  # out of fds or memory: accepting again at retry_at
        # Connections that used up their turn with bytes still to move (``_resume``).
        self.later: dict[int, LaneConn] = {}
        # Whether accepted connections have TCP_NODELAY from their listener already
        # (``listening``); False once a listener did not have it from the start.
        self.accepted_nodelay = True
        # This process's share of the client connections (``brood.routers.net.spread``),
        # and the listeners whose connections were left to a sibling that holds fewer.
        self.spread = self.engine.spread
        # Deferred listener fd -> (the siblings' accepts by then, whether they accepted
        # none over a DEFER already).
        self.deferred: dict[int, tuple[int, bool]] = {}
        # When run() accepts again (trio's clock): deferred listeners, or after a pause.
        self.retry_at = _NEVER
        self.resume_at = _NEVER  # the end of an accept pause (trio's clock)

    # -- what a front says ----------------------------------------------------------------
    def _start(self, conn: LaneConn) -> None:
        """Serve the request at the start of ``conn.buf`` (``_open_node``), or hand the
        connection to the general path (``_to_general``)."""
        raise NotImplementedError

    def _answer_head(self, conn: LaneConn, data: bytes) -> bytes | None:
        """The answer's first bytes: set ``state`` (BODY), ``remaining`` and ``node_keep``
        and give back the part to send now; None when the general path took over, the
        node failed, or more of the head must come first (kept in ``answer_head``)."""
        raise NotImplementedError

    def _finish(self, conn: LaneConn, complete: bool) -> None:
        """The answer went out (``complete``: whole, by its framing): close the node
        (``_close_node``) and go on with the connection or drop it."""
        raise NotImplementedError

    def _fail_over(self, conn: LaneConn, error: RoutingError) -> None:
        """Answer ``error`` to a client that has no byte of the answer yet."""
        raise NotImplementedError

    def _resume(self, conn: LaneConn) -> None:
        """Go on with a connection put in ``later``: the lane's other sockets and trio's
        other tasks had their turn since."""
        if conn.state >= WAITING:  # the answer in flight goes on
            self._pump(conn)

    def _idle_expired(self, conn: LaneConn) -> None:
        """No request came in time: a quiet close."""
        self._drop(conn)

    def _accepted(self, sock: socket.socket, peer: Any) -> None:
        """A connection the lane accepted itself (``listening``)."""
        self.adopt(sock, peer)

    # -- the task -----------------------------------------------------------------------
    async def run(self) -> None:
        """Serve the lane's sockets until cancelled; then close them all."""
        ep = self.ep
        epfd = ep.fileno()
        poll = ep.poll
        conns, nodes, listeners = self.conns, self.nodes, self.listeners
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._sweep_forever)
                while True:
                    if self.backlog or self.later:  # work left: other tasks run first
                        await trio.lowlevel.checkpoint()
                        for fd in list(self.backlog):
                            self._accept(fd)
                        if self.later:
                            self._resume_later()
                    elif self.retry_at == _NEVER:
                        await trio.lowlevel.wait_readable(epfd)
                    else:  # accepting again is due: wait until then at most
                        with trio.move_on_at(self.retry_at):
                            await trio.lowlevel.wait_readable(epfd)
                    if self.retry_at != _NEVER and self.retry_at <= trio.current_time():
                        self._retry_accepts()
                    for fd, events in poll(0):
                        conn = conns.get(fd)
                        try:
                            if conn is not None:
                                self._client_event(conn, events)
                            else:
                                conn = nodes.get(fd)
                                if conn is not None:
                                    self._node_event(conn, events)
                                elif fd in listeners:
                                    self._listener_event(fd)
                        except Exception:
                            log.exception("%s: fast lane failed on %s", self.kind,
                                          conn.peer if conn else fd)
                            if conn is not None:
                                self._drop(conn)
        finally:
            for conn in list(conns.values()):
                self._drop(conn)
            ep.close()

    def _resume_later(self) -> None:
        later, self.later = self.later, {}
        conns = self.conns
        for fd, conn in later.items():
            if conns.get(fd) is conn:  # not dropped since (its fd may be another's now)
                try:
                    self._resume(conn)
                except Exception:  # as in run(): this connection goes, the lane stays
                    log.exception("%s: fast lane failed on %s", self.kind, conn.peer)
                    self._drop(conn)

    @contextlib.contextmanager
    def listening(self, lsock: socket.socket, inherits_nodelay: bool) -> Iterator[None]:
        """Accept on ``lsock`` in the lane while the block runs: a connection costs no
        trip through trio's scheduler and no epoll_ctl to wait for the next one. The
        caller ends the block to stop accepting (a graceful stop), before it closes
        ``lsock``: an fd must leave the epoll set before it closes (a dup of it would
        keep the registration alive under a number the next socket may get).
        ``inherits_nodelay``: what ``listener_nodelay`` said of ``lsock`` (asked once:
        the second time it would find the option it set itself)."""
        fd = lsock.fileno()
        if not inherits_nodelay:
            self.accepted_nodelay = False
        self.listeners[fd] = (lsock, int(lsock.family))
        self.ep.register(fd, select.EPOLLIN | select.EPOLLET)  # queued ones: an edge at once
        try:
            yield
        finally:
            del self.listeners[fd]
            self.backlog.discard(fd)
            with contextlib.suppress(OSError, ValueError):  # ValueError: the lane ended
                self.ep.unregister(fd)

    def _accept(self, fd: int, deferred: tuple[int, bool] | None = None) -> None:
        """Take up to ``ACCEPT_BATCH`` connections from a listener; ``backlog`` says
        when it may hold more (edge-triggered: no new edge for those). Connections a
        sibling process should take are left to it (``_defer``). ``deferred``: they were
        left to the siblings already (``self.deferred``); if it is still not this
        process's turn and they accepted none over two DEFERs (one could be a sibling's
        own DEFER, ending with this one), they are not taking them, and what is queued is
        taken here (a batch)."""
        self.backlog.discard(fd)
        entry = self.listeners.get(fd)
        if entry is None:
            return
        lsock, family = entry
        accept = lsock._accept  # type: ignore[attr-defined]
        spread = self.spread
        shared = balance = spread.shared
        for _ in range(ACCEPT_BATCH):
            if balance and not spread.my_turn():
                seen = spread.wait_again(deferred)
                if seen is not None:
                    self._defer(fd, seen)
                    return
                balance = False
            deferred = None
            try:
                cfd, peer = accept()
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno in CLIENT_LEFT:
                    continue  # the client left before we took it
                # Out of fds or memory (the connection stays queued), or worse: run()
                # tries again a second later, with one line per pause.
                if not self.accept_paused:
                    log.error("accept on %s: %s, pausing", lsock.getsockname(),
                              exc.strerror or exc)
                    self.accept_paused = True
                    self.resume_at = trio.current_time() + SWEEP_EVERY
                    self._retry_within(SWEEP_EVERY)
                return
            if shared:
                spread.took()
            # The C-level type, family and type given: no getsockname/getsockopt.
            sock = _socket.socket(family, socket.SOCK_STREAM, 0, cfd)
            try:
                self._accepted(sock, peer)  # type: ignore[arg-type]
            except Exception:  # as in run(): this connection goes, accepting goes on
                log.exception("%s: fast lane failed on %s", self.kind, peer)
                conn = self.conns.get(cfd)
                if conn is not None:
                    self._drop(conn)
                else:
                    sock.close()
        self.backlog.add(fd)

    def _listener_event(self, fd: int) -> None:
        """New connections on a listener. One left to a sibling keeps waiting for its
        retry (a stream of connects must not start its looks over), unless it is this
        process's turn by now: then they are taken at once."""
        if fd in self.deferred:
            if not self.spread.my_turn():
                return
            del self.deferred[fd]
        self._accept(fd)

    def _defer(self, fd: int, seen: tuple[int, bool]) -> None:
        """Leave what listener ``fd`` holds to a sibling for ``DEFER`` at most; then
        run() looks again (``_retry_accepts``). ``seen``: ``Spread.wait_again``'s note."""
        self.deferred[fd] = seen
        self._retry_within(DEFER)

    def _retry_within(self, delay: float) -> None:
        self.retry_at = min(self.retry_at, trio.current_time() + delay)

    def _retry_accepts(self) -> None:
        """Accept again: after a pause (out of fds or memory), and on deferred listeners.
        In run() itself, so that a batch that leaves more queued (``backlog``) goes on
        at once: the listener's edge is spent. A pause goes on to its end, deferred
        listeners with it (an accept fails then, whatever is queued)."""
        self.retry_at = _NEVER
        deferred, self.deferred = self.deferred, {}
        if self.accept_paused:
            now = trio.current_time()
            if now < self.resume_at:
                self.deferred = deferred
                self._retry_within(self.resume_at - now)
                return
            self.accept_paused = False
            for fd in list(self.listeners):
                if fd not in deferred:  # those take their own second look, below
                    self._accept(fd)
        for fd, seen in deferred.items():
            self._accept(fd, seen)

    def adopt(self, sock: socket.socket, peer: Any) -> LaneConn:
        """Take an accepted connection: it is served from its first request on."""
        sock.setblocking(False)
        if not self.accepted_nodelay and sock.family != socket.AF_UNIX:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return self._take(sock, peer, self.first_timeout)

    def _take(self, sock: socket.socket, peer: Any, wait: float) -> LaneConn:
        """A non-blocking client socket into the lane's table and epoll set; ``wait``:
        its time to send a request."""
        conn = self.conn_class(sock, peer)
        conn.deadline = time.monotonic() + wait
        self.conns[conn.fd] = conn
        self.spread.opened()
        self.ep.register(conn.fd, self.client_events)  # bytes there: the first edge at once
        return conn

    # -- client side --------------------------------------------------------------------
    def _client_event(self, conn: LaneConn, events: int) -> None:
        if events & _HUP:
            conn.hup = True
            if conn.state in (CONNECTING, WAITING) and not conn.sent and not conn.pending:
                gone = sockio.peer_gone(conn.sock)
                if gone == sockio.RESET or (gone == sockio.EOF and self.ends_on_client_eof):
                    self._client_left(conn)
                    return
        if events & _READ_EVENTS:
            if conn.state == IDLE:
                self._read_request(conn)
                return
            conn.readable = True  # served once the answer in flight is done
        if events & _WRITE_EVENTS and conn.pending:
            # The client took bytes: a slow reader that keeps reading is not idle.
            conn.deadline = time.monotonic() + self.timeout
            self._pump(conn)

    def _read_request(self, conn: LaneConn) -> None:
        try:
            data = _read(conn.fd, RECV)
        except BlockingIOError:
            conn.readable = False
            return
        except OSError:
            self._drop(conn)
            return
        if not data:
            self._drop(conn)  # closed between requests: a quiet close
            return
        conn.readable = len(data) == RECV or conn.hup
        conn.buf = conn.buf + data if conn.buf else data
        self._start(conn)

    # -- node side ----------------------------------------------------------------------
    def _open_node(self, conn: LaneConn, node: Node, packet: bytes, used: int) -> None:
        """Connect to ``node`` and send ``packet``, the request that took ``used`` bytes
        of ``conn.buf``; a node the lane cannot reach at once goes to the general path."""
        if self._dial(conn, node) is None:
            return
        now = time.monotonic()
        conn.used = used
        conn.started = now
        conn.sent = 0
        if self.harakiri:
            conn.hard = now + self.harakiri
        conn.node_readable = conn.node_hup = False
        # A TCP connect "in progress" to a loopback node is done already (the handshake
        # ran inside connect): the send says so, with no second call to ask.
        self._send_request(conn, packet, now)

    def _dial(self, conn: LaneConn, node: Node) -> int | None:
        """Start connecting ``conn`` to ``node`` (``conn.up``): connect's errno, 0 when
        done, else in progress; None when the connection went to the general path (a
        name to resolve, a full unix backlog, a refused connect)."""
        target = sockio.node_address(node.name)
        if target is None:  # a name to resolve: the general path connects to this node
            self._to_general(conn, (node, None))
            return None
        family, addr = target
        # The C-level socket type: the Python wrapper class costs more than the syscall.
        try:
            up = _socket.socket(family, _STREAM_NONBLOCK)  # no fcntl/ioctl to make it so
        except OSError as exc:
            if exc.errno in LOCAL_LIMITS:  # this process's limit: no node is to blame
                self._fail_over(conn, overloaded(node, exc))  # nothing of it went out
            else:
                self._connect_failed(conn, node, exc.errno or errno.EIO)
            return None
        try:
            err = up.connect_ex(addr)
        except OSError as exc:
            err = exc.errno or errno.EIO
        if err and not (err in _IN_PROGRESS and family != socket.AF_UNIX):
            up.close()
            if err == errno.EAGAIN:  # a unix socket's backlog is full: the general path waits
                self._to_general(conn, (node, None))
            else:
                self._connect_failed(conn, node, err)
            return None
        conn.node, conn.up = node, up
        conn.up_fd = up.fileno()
        self.nodes[conn.up_fd] = conn
        return err

    def _await_connect(self, conn: LaneConn, now: float) -> None:
        """The connect is really in progress: wait for writability, within the timeout."""
        conn.state = CONNECTING
        conn.deadline = now + self.connect_timeout
        self._sweep_within(self.connect_timeout)  # a connect timeout is kept to the millisecond
        self.ep.register(conn.up_fd, self.connect_events)

    def _sweep_within(self, delay: float) -> None:
        """Have the sweep run within ``delay`` seconds, not only at its next tick."""
        due = trio.current_time() + delay
        scope = self.sweep_scope
        if scope is not None and due < scope.deadline:
            scope.deadline = due

    def _send_request(self, conn: LaneConn, packet: bytes, now: float) -> None:
        """The request goes out; the node's answer is awaited."""
        up = conn.up
        try:
            sent = _write(conn.up_fd, packet)
        except BlockingIOError:
            # A fresh socket's buffer is empty: it is not connected yet (an event that
            # came for another socket that had this fd number before says nothing).
            conn.packet = packet
            if conn.state != CONNECTING:
                self._await_connect(conn, now)
            return
        except OSError as exc:
            node = conn.node
            self._close_node(conn)
            self._connect_failed(conn, node, exc.errno or errno.EIO)  # type: ignore[arg-type]
            return
        node = conn.node
        node.requests += 1  # type: ignore[union-attr]
        node.last_requests += 1  # type: ignore[union-attr]
        node.ref += 1  # type: ignore[union-attr]
        node.rx += sent  # type: ignore[union-attr]
        if node.grace_until:  # type: ignore[union-attr]
            node.clear_grace()  # type: ignore[union-attr]
        if conn.held:
            conn.held = False  # the request's session from here on
        else:
            self.engine.session_opened()
        conn.counted = True
        conn.buf = conn.buf[conn.used:]
        conn.deadline = now + self.timeout
        if self.timeout < SWEEP_EVERY:  # (sooner than the next sweep may look)
            self._sweep_within(self.timeout)
        if sent == len(packet):
            conn.packet = b""
            if conn.state == CONNECTING:
                self.ep.modify(conn.up_fd, _IN)
            else:
                self.ep.register(conn.up_fd, _IN)
        else:
            conn.packet = packet[sent:]
            if up.family != socket.AF_UNIX:  # type: ignore[union-attr]
                # One send is one segment out at once; the rest of a long packet goes
                # out without Nagle's wait for an ACK.
                up.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # type: ignore[union-attr]
            if conn.state != CONNECTING:
                self.ep.register(conn.up_fd, _IN_OUT)
        conn.state = WAITING

    def _connect_failed(self, conn: LaneConn, node: Node,
                        failure: int | trio.TooSlowError) -> None:
        """The first pick did not connect (``failure``: an errno, or the timeout): the
        general path serves the request from its first byte, going on from this failed
        attempt as from its own, so marks, retries, fallbacks, the log lines and the
        answer when all fail (502, or 503 when no node is left) are exactly its own."""
        exc = OSError(failure, _strerror(failure)) if isinstance(failure, int) else failure
        self._to_general(conn, (node, exc))

    def _node_event(self, conn: LaneConn, events: int) -> None:
        if conn.state == CONNECTING:
            err = conn.up.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)  # type: ignore[union-attr]
            if err:
                node = conn.node
                self._close_node(conn)
                self._connect_failed(conn, node, err)  # type: ignore[arg-type]
                return
            self._send_request(conn, conn.packet, time.monotonic())
            return
        if events & _WRITE_EVENTS and conn.packet:
            try:
                sent = _write(conn.up_fd, conn.packet)
            except BlockingIOError:
                sent = 0
            except OSError as exc:
                self._node_failed(conn, f"{exc.strerror or exc}")
                return
            conn.node.rx += sent  # type: ignore[union-attr]
            conn.packet = conn.packet[sent:]
            if not conn.packet:
                self.ep.modify(conn.up_fd, _IN)
        if events & _READ_EVENTS:
            if events & _HUP:
                conn.node_hup = True
            conn.node_readable = True
            self._pump(conn)

    def _pump(self, conn: LaneConn) -> None:
        """Move the answer node -> client as far as the sockets allow, up to ``TURN``."""
        node = conn.node
        end_of_turn = conn.sent + TURN
        while True:
            if conn.pending:
                if not self._flush(conn):
                    return
                if conn.remaining == 0:
                    self._finish(conn, True)
                    return
            if not conn.node_readable or conn.packet:
                return
            if conn.sent >= end_of_turn:
                self.later[conn.fd] = conn
                return
            if conn.state == BODY and (conn.remaining >= SPLICE_MIN or conn.remaining < 0) \
                    and self.splice:
                if not self._splice_body(conn):
                    return
                if conn.remaining == 0:
                    self._finish(conn, True)
                    return
                continue
            want = HEAD_RECV if conn.state == WAITING else RECV if conn.remaining < 0 else min(
                conn.remaining, BODY_RECV)
            try:
                data = _read(conn.up_fd, want)
            except BlockingIOError:
                conn.node_readable = False
                return
            except OSError as exc:
                self._node_failed(conn, f"{exc.strerror or exc}")
                return
            if len(data) < want and not conn.node_hup:
                conn.node_readable = False  # drained: the next edge says when there is more
            node.tx += len(data)  # type: ignore[union-attr]
            conn.deadline = time.monotonic() + self.timeout  # a byte in: not idle
            if conn.state == WAITING:
                data = self._answer_start(conn, data)
                if data is None:
                    if conn.up is None or not conn.node_readable:
                        return  # handed over, failed, or waiting for the head's next edge
                    continue  # part of a head and more to read (the node's close, say)
            elif not data:
                if conn.remaining < 0:
                    self._finish(conn, True)  # close-delimited: this is its end
                else:
                    self._cut_short(conn)
                return
            elif conn.remaining > 0:
                if len(data) > conn.remaining:
                    data = data[:conn.remaining]  # bytes past the framing are dropped
                conn.remaining -= len(data)
            conn.pending = data
            if not self._flush(conn):
                return
            if conn.remaining == 0:
                self._finish(conn, True)
                return

    def _answer_start(self, conn: LaneConn, data: bytes) -> bytes | None:
        """The answer's first bytes read (or the next part of its head): what to send
        now (``_answer_head``), or None."""
        if not data:
            self._node_failed(conn, "node closed before a complete response head"
                              if conn.answer_head else "node closed without answering")
            return None
        if conn.answer_head:
            data = conn.answer_head + data
        return self._answer_head(conn, data)

    def _answer_read(self, conn: LaneConn, data: bytes) -> None:
        """A front's own first read of the answer (``data``, at most ``HEAD_RECV``
        bytes) that it did not serve itself: the lane goes on with it from there."""
        conn.node_readable = len(data) == HEAD_RECV or conn.node_hup
        conn.deadline = time.monotonic() + self.timeout  # (a part of a head too)
        out = self._answer_start(conn, data)
        if out is not None:
            conn.pending = out
        elif conn.up is None or not conn.node_readable:
            return
        self._pump(conn)

    def _splice_body(self, conn: LaneConn) -> bool:
        """Part of a long answer body node -> client through a pooled pipe (splice: the
        bytes never enter Python). True when more can be moved at once; False when the
        lane waits for an edge, or the connection ended (finished, failed, dropped)."""
        remaining = conn.remaining
        want = PIPE_SIZE if remaining < 0 or remaining > PIPE_SIZE else remaining
        if want > SLOW_TAKE:  # room asked (2 syscalls) only once the answer is long
            want = client_room(conn.sock, want) if conn.sent >= SLOW_TAKE else SLOW_TAKE
        try:
            moved, out, rest = splice_pipeful(conn.up_fd, conn.fd, want)
        except BlockingIOError:
            conn.node_readable = False
            return False
        except EndFailed as failed:
            exc = failed.error
            if failed.end == conn.fd:
                log.debug("%s: client %s gone: %s", self.kind, conn.peer, exc)
                self._drop(conn)
            elif getattr(exc, "errno", None) == errno.EINVAL:  # no splice here: copy
                self.splice = False
                return True
            else:
                self._node_failed(conn, f"{getattr(exc, 'strerror', None) or exc}")
            return False
        if not moved:  # the node closed: the end of a close-delimited answer, or cut short
            if remaining > 0:
                self._cut_short(conn)
            else:
                self._finish(conn, True)
            return False
        conn.node.tx += moved  # type: ignore[union-attr]
        if remaining > 0:
            conn.remaining = remaining - moved
        conn.sent += out
        conn.deadline = time.monotonic() + self.timeout
        if rest:  # the client is full: the rest waits in Python
            conn.pending = rest
            self._wait_writable(conn)
            return False
        return conn.node_readable

    def _flush(self, conn: LaneConn) -> bool:
        """Send ``conn.pending``; True when all of it went."""
        data = conn.pending
        try:
            sent = _write(conn.fd, data)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            log.debug("%s: client %s gone: %s", self.kind, conn.peer, exc)
            self._drop(conn)
            return False
        conn.sent += sent
        if sent == len(data):
            conn.pending = b""
            return True
        conn.pending = data[sent:]
        self._wait_writable(conn)
        return False

    def _wait_writable(self, conn: LaneConn) -> None:
        """The client is full: its EPOLLOUT edge resumes ``conn.pending``."""
        note_send_queue(conn, conn.fd)
        if not conn.out_armed:
            conn.out_armed = True
            self.ep.modify(conn.fd, _IN_OUT)

    def _cut_short(self, conn: LaneConn) -> None:
        """The node closed inside a framed answer: said, and the client's connection
        closes (it sees the answer end early)."""
        self.engine.log_failure(conn.peer, f"node {conn.node.name}: answer cut short, "  # type: ignore[union-attr]
                                           f"{conn.remaining} bytes missing")
        conn.node_keep = False
        self._finish(conn, False)

    def _client_left(self, conn: LaneConn) -> None:
        """The client closed while its node works on the answer: no one will read it."""
        log.debug("%s: client %s gone before the answer of %s", self.kind, conn.peer,
                  conn.node.name if conn.node else "-")
        self._drop(conn)

    def _node_failed(self, conn: LaneConn, reason: str) -> None:
        """The node broke off after the request went out: 502, or a close once the
        client has part of the answer."""
        error = NodeFailed(f"node {conn.node.name}: {reason}")  # type: ignore[union-attr]
        self._close_node(conn)
        self._error(conn, error)

    def _error(self, conn: LaneConn, error: RoutingError) -> None:
        if conn.sent or conn.pending:
            self.engine.log_failure(conn.peer, error)
            self._drop(conn)
            return
        self._fail_over(conn, error)

    # -- hand-overs and closes ------------------------------------------------------------
    def _to_general(self, conn: LaneConn,
                    first_pick: FirstPick | None = None) -> None:
        """Between requests (nothing went to a node): the general path goes on
        (``first_pick``: the node the lane took for the request in ``buf``, and how its
        connect failed, None when the lane did not try it)."""
        self._hand_over(conn, self.router.resume, conn.buf, first_pick)

    def _hand_over(self, conn: LaneConn, handler: Any, *args: Any) -> None:
        """``conn`` leaves the lane for ``handler(sock, peer, *args)``, a task of its own.
        Until that task starts, the engine counts it as handed over: a drain ending in
        between would cut it (the handler registers the connection as it starts)."""
        tsock = trio.socket.from_stdlib_socket(self._release(conn))
        self.engine.handing_over += 1
        self.sessions.start_soon(run_connection, self.spread, _taken_over, tsock, conn.peer,
                                 self.engine, handler, *args)

    def _close_answered(self, conn: LaneConn) -> None:
        """Close a connection whose answer went out whole. With request bytes left
        unread (pipelined ones, read or not), the close would be a reset, and a reset
        throws away the tail of the answer still on its way: the connection then leaves
        the lane to half-close and drop what comes for a moment first (``linger``), as
        nginx's lingering close."""
        if conn.buf or conn.readable or sockio.unread(conn.fd):
            self._close_node(conn)
            self._hand_over(conn, _linger_then_close)
        else:
            self._drop(conn)

    def _release(self, conn: LaneConn) -> socket.socket:
        """Take the client socket out of the lane (it stays open), as a stdlib socket
        (trio's wrap needs one; the lane's own accepts are the C-level type)."""
        del self.conns[conn.fd]  # still this process's: run_connection's close counts it
        self.ep.unregister(conn.fd)
        sock = conn.sock
        if type(sock) is not socket.socket:
            sock = socket.socket(sock.family, sock.type, sock.proto, sock.detach())
        return sock

    def _close_node(self, conn: LaneConn, over: bool = False) -> None:
        """Close the node socket (if any) and give back what the request held.

        ``over``: the node gave its whole answer; the close is then a reset
        (``sockio.reset_on_close``)."""
        up = conn.up
        if up is None:
            return
        self.nodes.pop(conn.up_fd, None)
        if over:
            sockio.reset_on_close(up)
        up.close()  # the kernel drops it from the epoll set
        conn.up, conn.up_fd = None, -1
        conn.packet = b""
        if conn.counted:
            conn.counted = False
            conn.node.ref -= 1  # type: ignore[union-attr]
            self.engine.session_closed()

    def _drop(self, conn: LaneConn) -> None:
        """Close a connection and anything it holds."""
        if conn.fd not in self.conns:
            return
        self._close_node(conn)
        del self.conns[conn.fd]
        self.spread.closed()
        conn.state = IDLE
        if conn.held:
            conn.held = False
            self.engine.session_closed()
        conn.sock.close()

    # -- timeouts -------------------------------------------------------------------------
    async def _sweep_forever(self) -> None:
        """Sweep when the soonest deadline seen at the last sweep is due (at least
        ``SWEEP_MIN`` apart, at most ``SWEEP_EVERY``), and when a pending connect's
        timeout is (``_sweep_within``). A deadline set since is at least a second out
        or a connect's: the next sweep sees it in time."""
        delay = SWEEP_EVERY
        while True:
            with trio.CancelScope(deadline=trio.current_time() + delay) as scope:
                self.sweep_scope = scope
                await trio.sleep_forever()
            now = time.monotonic()
            soonest = self.sweep(now + _EARLY)
            delay = min(SWEEP_EVERY, max(SWEEP_MIN, soonest - now))

    def sweep(self, now: float) -> float:
        """Act on every deadline passed; the soonest of those still ahead."""
        due, soonest = [], math.inf
        for c in self.conns.values():
            deadline = c.deadline if c.deadline < c.hard else c.hard
            if deadline <= now:
                due.append(c)
            elif deadline < soonest:
                soonest = deadline
        for conn in due:
            try:
                self._expire(conn, now)
            except Exception:  # as in run(): this connection goes, the lane stays
                log.exception("%s: fast lane failed on %s", self.kind, conn.peer)
                self._drop(conn)
        return soonest

    def _expire(self, conn: LaneConn, now: float) -> None:
        """A deadline of ``conn`` passed."""
        state = conn.state
        if state == IDLE:
            self._idle_expired(conn)
        elif conn.hard <= now:
            self.engine.log_failure(conn.peer, f"{self.harakiri_of} older than "
                                               f"{self.harakiri:g}s cut (--{self.engine.kind}"
                                               f"-session-max-age)")
            self._drop(conn)
        elif state == CONNECTING:
            node = conn.node
            self._close_node(conn)
            self._connect_failed(conn, node, trio.TooSlowError())  # type: ignore[arg-type]
        elif conn.pending:  # waiting for the client to take bytes, not for the node
            if send_queue_moved(conn, conn.fd):
                conn.deadline = now + self.timeout  # slow, but still reading
            else:
                self.engine.log_failure(conn.peer, f"client took no byte for "
                                                   f"{self.timeout:g}s")
                self._drop(conn)
        else:
            self._close_node(conn)
            self._error(conn, NodeTimeout(f"node {conn.node.name} silent for "  # type: ignore[union-attr]
                                          f"{self.timeout:g}s"))


def note_send_queue(holder: Any, fd: int) -> None:
    """Note ``fd``'s send queue in ``holder.outq`` as a send to it falls short: what
    ``send_queue_moved`` compares with when the idle deadline passes."""
    holder.outq = sockio.send_queue(fd)


def send_queue_moved(holder: Any, fd: int) -> bool:
    """Whether ``fd``'s peer took bytes since the last look: its send queue (SIOCOUTQ)
    changed from ``holder.outq``. A slow reader drains a large send buffer without an
    EPOLLOUT edge for a long time; this tells it from a stalled one."""
    queued = sockio.send_queue(fd)
    moved = queued != holder.outq
    holder.outq = queued
    return moved and queued >= 0


def _strerror(err: int) -> str:
    try:
        return os.strerror(err)
    except ValueError:
        return str(err)


async def _linger_then_close(sock: trio.socket.SocketType, peer: Any) -> None:
    """A connection handed over by ``Lane._close_answered``: run_connection closes it."""
    await linger(sock)


async def _taken_over(sock: Any, peer: Any, engine: Any, handler: Any, *args: Any) -> None:
    """A handed-over connection's task has started: ``handler`` takes it from here."""
    engine.handing_over -= 1
    await handler(sock, peer, *args)
