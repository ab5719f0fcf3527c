"""The HTTP router's fast lane: the usual request served without a trio task.

Why. Per-request overhead decides a Python router (PERF.md). On the general path a
keep-alive request costs two trips through trio's scheduler (wait for the client's next
request, wait for the node's answer), each a task switch and epoll_ctl calls, plus a
task per connection. Here one trio task serves every plain connection of a listener.

How it works. The lane keeps its own epoll set, edge-triggered, and waits on it with
``trio.lowlevel.wait_readable`` (an epoll fd is itself pollable); each wake-up serves
every ready socket with non-blocking calls, no task switch per socket. It serves a
request whole when it is the usual one:

* the complete head arrived in one read, parsed by ``parse_request_head``, no body,
  no upgrade, no ``Expect``, not a ``--http-manage-source`` SOURCE;
* the node (first pick of the resolver) has a numeric TCP or a unix address and the
  connect completes at once or within ``--http-connect-timeout``;
* the answer is framed by Content-Length, has no body, or ends with the close (when
  neither ``--http-auto-chunked`` nor ``--http-auto-gzip`` would re-frame it).

Anything else is handed to the general path (``HttpRouter``) at a clean point: before
the request went out (the general path serves it from its first byte, with retries,
fallbacks and every error answer: a head cut in two reads, a bad head, a body, a node
that refuses, no node), or once the answer's first bytes are in
(``HttpRouter.resume_answer`` relays the rest: chunked, 1xx, 101, a head longer than one
read). When that request is done and the connection goes on, it comes back to the lane
(``readopt``). Errors after the request went out: 502 / 504 answered through
``HttpRouter.fail`` when no byte reached the client, else a logged close.

Timeouts are swept once a second (uWSGI checks its timeouts as often): an idle client
(``--http-headers-timeout`` for a new connection, the keep-alive idle time after), a
connect, a silent node (``--http-timeout``), a client that takes no byte of the answer
for as long (its socket's send queue did not move), ``--http-harakiri``.

Counters as on the general path: the node's requests/ref/tx/rx, the engine's sessions
(a graceful stop waits for the lane's requests too), the access log line.
"""

from __future__ import annotations

import _socket
import errno
import fcntl
import logging
import math
import os
import select
import socket
import struct
import termios
import time
from typing import TYPE_CHECKING, Any

import trio

from brood.protocol.errors import BadResponse, ProtocolError
from brood.protocol.http1 import RequestHead, parse_request_head, parse_response_framing
from brood.protocol.uwsgi import MAX_VARS_SIZE, encode_vars, pack_header
from brood.protocol.vars import encode_connection_vars, encode_head_vars
from brood.routers.engine import Upstream, client_ip
from brood.routers.errors import NodeFailed, NodeTimeout, RoutingError
from brood.routers.http import accesslog
from brood.routers.http.body import Client, peer_address
from brood.routers.http.h1 import build_vars_block, has_forwarded_for
from brood.routers.http.response import RESPONSE_HEAD_LIMIT
from brood.routers.net import sockio
from brood.routers.net.listen import run_connection
from brood.routers.net.relay import HAS_SPLICE, PIPE_SIZE, SPLICE_FLAGS, give_pipe, take_pipe
from brood.routers.node import Node

if TYPE_CHECKING:
    from brood.routers.http.router import HttpRouter

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
SWEEP_EVERY = 1.0
# A sweep woken for a deadline acts on deadlines this close too (timer granularity).
_EARLY = 0.005
_STREAM_NONBLOCK = socket.SOCK_STREAM | socket.SOCK_NONBLOCK
_OUTQ = struct.Struct("i")
_OUTQ_BUF = bytes(_OUTQ.size)
_IN_PROGRESS = (errno.EINPROGRESS, errno.EALREADY, errno.EAGAIN)
# What a lane connection is doing.
_IDLE, _CONNECTING, _WAITING, _BODY = range(4)


class LaneConn:
    """One client connection in the lane and the request it is serving."""

    __slots__ = ("sock", "fd", "peer", "remote_addr", "remote_port", "client_ip", "buf",
                 "readable", "out_armed", "state", "deadline", "hard", "head", "key",
                 "node", "up", "up_fd", "packet", "started", "sent", "remaining",
                 "pending", "status", "node_keep", "node_readable", "answer_head", "counted",
                 "hup", "node_hup", "vars_mid", "outq")

    def __init__(self, sock: socket.socket, peer: Any) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.peer = peer
        self.remote_addr, self.remote_port = peer_address(peer)
        self.client_ip = client_ip(peer)
        self.buf = b""  # read from the client, not served yet
        self.readable = False  # an edge came while busy, or the last read filled RECV
        self.out_armed = False  # EPOLLOUT asked for (after a short send)
        self.state = _IDLE
        self.deadline = math.inf
        self.hard = math.inf  # --http-harakiri of the request in flight
        self.head: RequestHead | None = None
        self.key = b""
        self.node: Node | None = None
        self.up: _socket.socket | None = None
        self.up_fd = -1
        self.packet = b""  # the uwsgi packet still to send (connect in progress, short send)
        self.started = 0.0
        self.sent = 0  # answer bytes written to the client
        self.remaining = 0  # answer body bytes still to relay; -1: until the node closes
        self.pending = b""  # answer bytes the client could not take yet
        self.status = 0
        self.node_keep = False
        self.node_readable = False
        self.answer_head = b""  # the start of an answer head that is not complete yet
        self.counted = False  # the request went out: a session and the node's ref are held
        self.hup = False  # the client hung up (reads go on until EOF)
        self.node_hup = False  # the node hung up
        self.vars_mid = b""  # the encoded vars of this connection (encode_connection_vars)
        self.outq = -1  # the client's send queue at the last sweep (_client_queue_moved)


class Lane:
    """The fast lane of one ``HttpRouter``; ``run`` is its task, in the sessions nursery."""

    def __init__(self, router: HttpRouter, sessions: trio.Nursery) -> None:
        self.router = router
        self.engine = router.engine
        self.settings = router.settings
        self.sessions = sessions
        self.ep = select.epoll()
        self.conns: dict[int, LaneConn] = {}  # client fd -> connection
        self.nodes: dict[int, LaneConn] = {}  # node fd -> connection
        harakiri = self.engine.settings.harakiri
        self.harakiri = harakiri if harakiri > 0 else 0.0
        self.connect_timeout = self.engine.plan.connect_timeout
        extra = self.settings.extra_vars
        self.extra_block = encode_vars(extra) if extra else b""
        self.sweep_scope: trio.CancelScope | None = None
        self.splice = HAS_SPLICE  # long answer bodies by splice(2)

    # -- the task -----------------------------------------------------------------------
    async def run(self) -> None:
        """Serve the lane's sockets until cancelled; then close them all."""
        ep = self.ep
        epfd = ep.fileno()
        poll = ep.poll
        conns, nodes = self.conns, self.nodes
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._sweep_forever)
                while True:
                    await trio.lowlevel.wait_readable(epfd)
                    for fd, events in poll(0):
                        conn = conns.get(fd)
                        try:
                            if conn is not None:
                                self._client_event(conn, events)
                            else:
                                conn = nodes.get(fd)
                                if conn is not None:
                                    self._node_event(conn, events)
                        except Exception:
                            log.exception("http: fast lane failed on %s", conn.peer if conn
                                          else fd)
                            if conn is not None:
                                self._drop(conn)
        finally:
            for conn in list(conns.values()):
                self._drop(conn)
            ep.close()

    def adopt(self, sock: socket.socket, peer: Any) -> None:
        """Take an accepted connection: it is served from its first request on."""
        sock.setblocking(False)
        if sock.family != socket.AF_UNIX:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._take(sock, peer)

    def _take(self, sock: socket.socket, peer: Any) -> LaneConn:
        """A non-blocking client socket into the lane's table and epoll set."""
        conn = LaneConn(sock, peer)
        settings = self.settings
        conn.vars_mid = encode_connection_vars(
            remote_addr=conn.remote_addr, remote_port=conn.remote_port,
            server_name=None if settings.server_name_as_http_host else settings.server_name,
            server_port=self.router.server_port)
        conn.deadline = time.monotonic() + self.settings.headers_timeout
        self.conns[conn.fd] = conn
        self.ep.register(conn.fd, _IN)  # bytes already there raise the first edge at once
        return conn

    def readopt(self, sock: socket.socket, peer: Any, buf: bytes) -> None:
        """Take back a connection the general path served a request of; ``buf``: what
        it read past that request (the start of the next one, served at once). The
        socket is non-blocking with TCP_NODELAY already (``adopt`` made it so)."""
        conn = self._take(sock, peer)
        conn.deadline = time.monotonic() + self.settings.keepalive_idle
        if buf:
            conn.buf = bytes(buf)
            try:
                self._start(conn)
            except Exception:  # as in run(): this connection goes, the lane stays
                log.exception("http: fast lane failed on %s", conn.peer)
                self._drop(conn)

    # -- client side --------------------------------------------------------------------
    def _client_event(self, conn: LaneConn, events: int) -> None:
        if events & _HUP:
            conn.hup = True
        if events & _READ_EVENTS:
            if conn.state == _IDLE:
                self._read_request(conn)
                return
            conn.readable = True  # served once the answer in flight is done
        if events & _WRITE_EVENTS and conn.pending:
            # The client took bytes: a slow reader that keeps reading is not idle.
            conn.deadline = time.monotonic() + self.settings.timeout
            self._pump(conn)

    def _read_request(self, conn: LaneConn) -> None:
        try:
            data = conn.sock.recv(RECV)
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

    def _start(self, conn: LaneConn) -> None:
        """Serve the request at the start of ``conn.buf``, or hand the connection over."""
        settings = self.settings
        router = self.router
        buf = conn.buf
        try:
            head = parse_request_head(buf, settings.head_limit)
        except ProtocolError:
            self._to_general(conn)  # it answers 400/431/505 and says why
            return
        if (head is None or head.chunked or head.content_length or head.upgrade is not None
                or head.expect_continue
                or (settings.manage_source and head.method == b"SOURCE")):
            self._to_general(conn)
            return
        key = head.host if head.host is not None else settings.server_name
        try:
            xff = has_forwarded_for(buf, head.size)
            block = None
            if not xff and (head.host is not None or not settings.server_name_as_http_host):
                block = encode_head_vars(head, conn.vars_mid,
                                         name_from_host=settings.server_name_as_http_host,
                                         extra_block=self.extra_block)
            if block is None:  # X-Forwarded-For to extend, a repeated name, no Host to name
                block = build_vars_block(head, conn, settings,  # type: ignore[arg-type]
                                         server_port=router.server_port, https=False,
                                         content_length=None, forwarded_for=xff)
        except ProtocolError:
            self._to_general(conn)
            return
        if len(block) > MAX_VARS_SIZE:
            self._to_general(conn)
            return
        engine = self.engine
        node = engine.resolver.resolve(key, engine.clock(), conn.client_ip, ())
        if node is None:
            self._to_general(conn)  # no node: fallbacks or 503 there
            return
        target = sockio.node_address(node.name)
        if target is None:
            self._to_general(conn)
            return
        family, addr = target
        # The C-level socket type: the Python wrapper class costs more than the syscall.
        up = _socket.socket(family, _STREAM_NONBLOCK)  # no fcntl/ioctl to make it so
        try:
            err = up.connect_ex(addr)
        except OSError as exc:
            err = exc.errno or errno.EIO
        if err and not (err in _IN_PROGRESS and family != socket.AF_UNIX):
            up.close()
            if err == errno.EAGAIN:  # a unix socket's backlog is full: the general path waits
                self._to_general(conn)
            else:
                self._connect_failed(conn, node, err)
            return
        m1 = node.modifier1 if settings.modifier1 is None else settings.modifier1
        m2 = node.modifier2 if settings.modifier2 is None else settings.modifier2
        now = time.monotonic()
        conn.head, conn.key, conn.node, conn.up = head, key, node, up
        conn.up_fd = up.fileno()
        conn.packet = pack_header(m1, len(block), m2) + block  # in range: checked above
        conn.started = now
        conn.sent = conn.status = 0
        conn.hard = now + self.harakiri if self.harakiri else math.inf
        conn.node_readable = conn.node_hup = False
        self.nodes[conn.up_fd] = conn
        # A TCP connect "in progress" to a loopback node is done already (the handshake
        # ran inside connect): the send says so, with no second call to ask.
        self._send_request(conn, now)

    def _await_connect(self, conn: LaneConn, now: float) -> None:
        """The connect is really in progress: wait for writability, within the timeout."""
        conn.state = _CONNECTING
        conn.deadline = now + self.connect_timeout
        due = trio.current_time() + self.connect_timeout
        scope = self.sweep_scope
        if scope is not None and due < scope.deadline:
            scope.deadline = due  # a connect timeout is kept to the millisecond
        self.ep.register(conn.up_fd, _IN_OUT)

    def _send_request(self, conn: LaneConn, now: float) -> None:
        """The request goes out; the node's answer is awaited."""
        node = conn.node
        up = conn.up
        packet = conn.packet
        try:
            sent = up.send(packet)  # type: ignore[union-attr]
        except BlockingIOError:
            if conn.state != _CONNECTING:  # a fresh socket's buffer is empty: not connected
                self._await_connect(conn, now)
                return
            sent = 0
        except OSError as exc:
            self._close_node(conn)
            self._connect_failed(conn, node, exc.errno or errno.EIO)  # type: ignore[arg-type]
            return
        if sent < len(packet) and up.family != socket.AF_UNIX:  # type: ignore[union-attr]
            # One send is one segment out at once; the rest of a long packet goes out
            # without Nagle's wait for an ACK.
            up.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # type: ignore[union-attr]
        node.requests += 1  # type: ignore[union-attr]
        node.ref += 1  # type: ignore[union-attr]
        node.tx += sent  # type: ignore[union-attr]
        if node.grace_until:  # type: ignore[union-attr]
            node.clear_grace()  # type: ignore[union-attr]
        self.engine.session_opened()
        conn.counted = True
        conn.buf = conn.buf[conn.head.size:]  # type: ignore[union-attr]
        conn.packet = packet[sent:] if sent < len(packet) else b""
        conn.deadline = now + self.settings.timeout
        if conn.state == _CONNECTING:
            if not conn.packet:
                self.ep.modify(conn.up_fd, _IN)
        else:
            self.ep.register(conn.up_fd, _IN_OUT if conn.packet else _IN)
        conn.state = _WAITING

    def _connect_failed(self, conn: LaneConn, node: Node, err: int) -> None:
        """The first pick did not connect: the general path serves the request from its
        first byte and connects itself, so marks, retries, fallbacks and the answer when
        all fail (502, or 503 when no node is left) are exactly its own."""
        log.debug("http: fast lane: node %s: %s", node.name, _strerror(err))
        self._to_general(conn)

    # -- node side ----------------------------------------------------------------------
    def _node_event(self, conn: LaneConn, events: int) -> None:
        if conn.state == _CONNECTING:
            err = conn.up.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)  # type: ignore[union-attr]
            if err:
                node = conn.node
                self._close_node(conn)
                self._connect_failed(conn, node, err)  # type: ignore[arg-type]
                return
            self._send_request(conn, time.monotonic())
            return
        if events & _WRITE_EVENTS and conn.packet:
            try:
                sent = conn.up.send(conn.packet)  # type: ignore[union-attr]
            except BlockingIOError:
                sent = 0
            except OSError as exc:
                self._node_failed(conn, f"{exc.strerror or exc}")
                return
            conn.node.tx += sent  # type: ignore[union-attr]
            conn.packet = conn.packet[sent:]
            if not conn.packet:
                self.ep.modify(conn.up_fd, _IN)
        if events & _READ_EVENTS:
            if events & _HUP:
                conn.node_hup = True
            conn.node_readable = True
            self._pump(conn)

    def _pump(self, conn: LaneConn) -> None:
        """Move the answer node -> client as far as the sockets allow."""
        node = conn.node
        while True:
            if conn.pending:
                if not self._flush(conn):
                    return
                if conn.remaining == 0:
                    self._finish(conn, True)
                    return
            if not conn.node_readable or conn.packet:
                return
            if conn.state == _BODY and (conn.remaining >= SPLICE_MIN or conn.remaining < 0) \
                    and self.splice:
                if not self._splice_body(conn):
                    return
                if conn.remaining == 0:
                    self._finish(conn, True)
                    return
                continue
            want = HEAD_RECV if conn.state == _WAITING else RECV if conn.remaining < 0 else min(
                conn.remaining, BODY_RECV)
            try:
                data = conn.up.recv(want)  # type: ignore[union-attr]
            except BlockingIOError:
                conn.node_readable = False
                return
            except OSError as exc:
                self._node_failed(conn, f"{exc.strerror or exc}")
                return
            if len(data) < want and not conn.node_hup:
                conn.node_readable = False  # drained: the next edge says when there is more
            node.rx += len(data)  # type: ignore[union-attr]
            if conn.state == _WAITING:
                if not data:
                    self._node_failed(conn, "node closed before a complete response head"
                                      if conn.answer_head else "node closed without answering")
                    return
                if conn.answer_head:
                    data = conn.answer_head + data
                data = self._answer_head(conn, data)
                if data is None:
                    if conn.up is None or not conn.node_readable:
                        return  # handed over, failed, or waiting for the head's next edge
                    continue  # part of a head and more to read (the node's close, say)
            elif not data:
                if conn.remaining < 0:
                    self._finish(conn, True)  # close-delimited: this is its end
                else:
                    conn.node_keep = False  # truncated by the node
                    self._finish(conn, False)
                return
            elif conn.remaining > 0:
                if len(data) > conn.remaining:
                    data = data[:conn.remaining]  # bytes past the framing are dropped
                conn.remaining -= len(data)
            conn.deadline = time.monotonic() + self.settings.timeout
            conn.pending = data
            if not self._flush(conn):
                return
            if conn.remaining == 0:
                self._finish(conn, True)
                return

    def _splice_body(self, conn: LaneConn) -> bool:
        """Part of a long answer body node -> client through a pooled pipe (splice: the
        bytes never enter Python). True when more can be moved at once; False when the
        lane waits for an edge, or the connection ended (finished, failed, dropped)."""
        remaining = conn.remaining
        want = PIPE_SIZE if remaining < 0 or remaining > PIPE_SIZE else remaining
        pipe = take_pipe()
        try:
            moved = os.splice(conn.up_fd, pipe[1], want, flags=SPLICE_FLAGS)
        except BlockingIOError:
            give_pipe(pipe, True)
            conn.node_readable = False
            return False
        except OSError as exc:
            give_pipe(pipe, True)
            if exc.errno == errno.EINVAL:  # this kernel cannot splice these: copy instead
                self.splice = False
                return True
            self._node_failed(conn, f"{exc.strerror or exc}")
            return False
        if not moved:  # the node closed: the end of a close-delimited answer, or cut short
            give_pipe(pipe, True)
            if remaining > 0:
                conn.node_keep = False
            self._finish(conn, remaining < 0)
            return False
        conn.node.rx += moved  # type: ignore[union-attr]
        if remaining > 0:
            conn.remaining = remaining - moved
        # A short move does not say the socket is drained (a pipe may hold less than
        # asked: F_SETPIPE_SZ can fail): the next splice's EAGAIN does.
        try:
            out = os.splice(pipe[0], conn.fd, moved, flags=SPLICE_FLAGS)
        except BlockingIOError:
            out = 0
        except OSError as exc:
            give_pipe(pipe, False)
            log.debug("http: client %s gone: %s", conn.peer, exc)
            self._drop(conn)
            return False
        conn.sent += out
        conn.deadline = time.monotonic() + self.settings.timeout
        if out < moved:  # the client is full: the rest waits in Python, the pipe goes back
            conn.pending = os.read(pipe[0], moved - out)
            give_pipe(pipe, True)
            self._wait_writable(conn)
            return False
        give_pipe(pipe, True)
        return conn.node_readable

    def _answer_head(self, conn: LaneConn, data: bytes) -> bytes | None:
        """The answer's first bytes: the part to send now, or None when the general path
        took over (or the node failed)."""
        try:
            answer = parse_response_framing(data, RESPONSE_HEAD_LIMIT, conn.head.method)  # type: ignore[union-attr]
        except BadResponse as exc:
            self._node_failed(conn, exc.reason)
            return None
        if answer is None:
            if len(data) < RECV:
                conn.answer_head = data
                return None  # wait for the rest of the head
            self._answer_to_general(conn, data)
            return None
        status, kind, length, keep_alive, size = answer
        settings = self.settings
        if status < 200 or kind == "chunked" or (
                kind == "close" and (settings.auto_chunked or settings.auto_gzip)):
            self._answer_to_general(conn, data)
            return None
        conn.answer_head = b""
        conn.status = status
        conn.node_keep = keep_alive
        conn.state = _BODY
        if kind == "length":
            total = size + length  # type: ignore[operator]
            if len(data) >= total:
                conn.remaining = 0
                return data if len(data) == total else data[:total]
            conn.remaining = total - len(data)
            return data
        if kind == "none":
            conn.remaining = 0
            return data[:size]
        conn.remaining = -1
        conn.node_keep = False
        return data

    def _flush(self, conn: LaneConn) -> bool:
        """Send ``conn.pending``; True when all of it went."""
        data = conn.pending
        try:
            sent = conn.sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            log.debug("http: client %s gone: %s", conn.peer, exc)
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
        if not conn.out_armed:
            conn.out_armed = True
            self.ep.modify(conn.fd, _IN_OUT)

    def _finish(self, conn: LaneConn, complete: bool) -> None:
        """The answer went out: close the node, log, then the next request or the close."""
        head, node = conn.head, conn.node
        self._close_node(conn)
        if accesslog.enabled():
            accesslog.log_request(self.settings.log_format, conn.remote_addr,
                                  conn.remote_port, head, conn.status, conn.sent,  # type: ignore[arg-type]
                                  conn.key, node.name,  # type: ignore[union-attr]
                                  time.monotonic() - conn.started)
        if not (complete and conn.node_keep and head.keep_alive  # type: ignore[union-attr]
                and self.settings.keepalive):
            self._drop(conn)
            return
        conn.state = _IDLE
        conn.head = None
        conn.hard = math.inf
        conn.deadline = time.monotonic() + self.settings.keepalive_idle
        if conn.buf:
            self._start(conn)  # pipelined
        elif conn.readable:
            self._read_request(conn)

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
        head, key = conn.head, conn.key
        sock = self._release(conn)
        tsock = trio.socket.from_stdlib_socket(sock)
        self.sessions.start_soon(run_connection, self._fail, tsock, conn.peer, error, head, key)

    async def _fail(self, tsock: Any, peer: Any, error: RoutingError, head: RequestHead,
                    key: bytes) -> None:
        client = Client(tsock, *peer_address(peer))
        await self.router.fail(client, peer, error.status, error, head, key)

    # -- hand-overs and closes ------------------------------------------------------------
    def _to_general(self, conn: LaneConn) -> None:
        """Between requests (nothing went to a node): the general path goes on."""
        buf = conn.buf
        sock = self._release(conn)
        tsock = trio.socket.from_stdlib_socket(sock)
        self.sessions.start_soon(run_connection, self.router.resume, tsock, conn.peer, buf)

    def _answer_to_general(self, conn: LaneConn, data: bytes) -> None:
        """Mid-answer: the general path relays the rest (``HttpRouter.resume_answer``)."""
        up = conn.up
        self.ep.unregister(conn.up_fd)
        del self.nodes[conn.up_fd]
        conn.up, conn.up_fd = None, -1
        conn.counted = False  # the session and the node's ref go with it
        up = socket.socket(up.family, up.type, up.proto, up.detach())  # type: ignore[union-attr]
        upstream = _Replay(self.engine, conn.node, trio.socket.from_stdlib_socket(up), data)  # type: ignore[arg-type]
        buf, head, key, started = conn.buf, conn.head, conn.key, conn.started
        sock = self._release(conn)
        tsock = trio.socket.from_stdlib_socket(sock)
        self.sessions.start_soon(run_connection, self.router.resume_answer, tsock, conn.peer,
                                 buf, head, key, upstream, started)

    def _release(self, conn: LaneConn) -> socket.socket:
        """Take the client socket out of the lane (it stays open)."""
        del self.conns[conn.fd]
        self.ep.unregister(conn.fd)
        return conn.sock

    def _close_node(self, conn: LaneConn) -> None:
        """Close the node socket (if any) and give back what the request held."""
        up = conn.up
        if up is None:
            return
        self.nodes.pop(conn.up_fd, None)
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
        conn.state = _IDLE
        conn.sock.close()

    # -- timeouts -------------------------------------------------------------------------
    async def _sweep_forever(self) -> None:
        """Sweep once a second, and when a pending connect's timeout is due."""
        while True:
            with trio.CancelScope(deadline=trio.current_time() + SWEEP_EVERY) as scope:
                self.sweep_scope = scope
                await trio.sleep_forever()
            self.sweep(time.monotonic() + _EARLY)

    def sweep(self, now: float) -> None:
        """Act on every deadline passed."""
        for conn in [c for c in self.conns.values() if c.deadline <= now or c.hard <= now]:
            state = conn.state
            if state == _IDLE:
                self._drop(conn)  # idle too long: a quiet close, as on the general path
            elif state == _CONNECTING:
                node = conn.node
                self._close_node(conn)
                engine = self.engine
                engine.resolver.on_connect_failed(node, engine.clock())  # type: ignore[arg-type]
                if not engine.settings.quiet:
                    log.warning("%s: node %s failed: connect timeout", engine.kind,
                                node.name)  # type: ignore[union-attr]
                self._to_general(conn)  # the next node, fallbacks, or 502/504 there
            elif conn.hard <= now:
                self.engine.log_failure(conn.peer, f"harakiri: request older than "
                                                   f"{self.harakiri:g}s cut")
                self._drop(conn)
            elif conn.pending:  # waiting for the client to take bytes, not for the node
                if _client_queue_moved(conn):
                    conn.deadline = now + self.settings.timeout  # slow, but still reading
                else:
                    self.engine.log_failure(conn.peer, f"client took no byte for "
                                                       f"{self.settings.timeout:g}s")
                    self._drop(conn)
            else:
                self._close_node(conn)
                self._error(conn, NodeTimeout(f"node silent for {self.settings.timeout:g}s"))


def _client_queue_moved(conn: LaneConn) -> bool:
    """Whether the client took bytes since the last look: its socket's send queue
    (SIOCOUTQ) changed. A slow reader drains a large send buffer without an EPOLLOUT
    edge for a long time; this tells it from a stalled one."""
    try:
        queued = _OUTQ.unpack(fcntl.ioctl(conn.fd, termios.TIOCOUTQ, _OUTQ_BUF))[0]
    except OSError:
        return False
    moved = queued != conn.outq
    conn.outq = queued
    return moved


class _Replay(Upstream):
    """An upstream whose answer starts with bytes the lane already read."""

    def __init__(self, engine: Any, node: Node, sock: Any, first: bytes) -> None:
        super().__init__(engine, node, sock)
        self.first = first

    async def receive_answer(self, max_bytes: int = 65536) -> bytes:
        first, self.first = self.first, b""
        if first:
            await trio.lowlevel.checkpoint()
            return first
        return await super().receive_answer(max_bytes)


def _strerror(err: int) -> str:
    try:
        return os.strerror(err)
    except ValueError:
        return str(err)
