"""The HTTP router's fast lane: the usual HTTP/1 request served without a trio task.

The lane itself (epoll set, node side, relay, timeouts) is ``brood.routers.lane``; this
module says what an HTTP request is there. It serves a request whole when it is the
usual one:

* the complete head arrived, in one read or within ``REST_WAIT`` of its first part,
  parsed by ``parse_request_head``; no body, or a Content-Length body that came with it
  or comes within ``REST_WAIT`` (head and body within one read's size; they go out
  together, in one send); no chunked body, no upgrade, no ``Expect``, not a
  ``--http-manage-source`` SOURCE;
* the node (first pick of the resolver) has a numeric TCP or a unix address and the
  connect completes at once or within ``--http-connect-timeout``;
* the answer is framed by Content-Length, has no body, or ends with the close (when
  neither ``--http-auto-chunked`` nor ``--http-auto-gzip`` would re-frame it).

Anything else is handed to the general path (``HttpRouter``) at a clean point: before
the request went out (``HttpRouter.resume`` serves it from its first byte: a head or a
body still coming after ``REST_WAIT``, a bad head, a node that refuses, no node), or once
the answer's first bytes are in (``HttpRouter.resume_answer`` relays the rest: chunked,
1xx, 101, a head longer than one read). When that request is done and the connection
goes on, it comes back to the lane (``readopt``). Errors after the request went out:
502 / 504 answered through ``HttpRouter.fail`` when no byte reached the client, else a
logged close.

The most common exchange takes the shortest way (per-request Python decides a Python
router's speed): a head most clients send (X-Forwarded-For included) is read line by
line, a line seen before costing one lookup (a whole head seen before, one lookup for
all of it), straight into uwsgi vars (``usual_request``; any other head is parsed in
full, ``_start_other``), and an answer that arrives whole in its first read, framed by
one Content-Length, is checked the same way (``usual_answer``) and sent in one call,
then the node connection is reset (``_node_event``); a longer one so framed goes out
the same way, its first read at once and the rest through the relay. Everything else about the answer
goes through the lane's relay (``Lane._pump``).

Keep-alive: a connection idle between requests is dropped after the keep-alive idle
time (``--http-headers-timeout`` for its first request). Counters as on the general
path, and the request line (``accesslog``): queued as each request ends, written when
4 KiB are queued, at each sweep (once a second) and as the lane ends.
"""

from __future__ import annotations

import logging
import math
import re
import socket
import time
from typing import TYPE_CHECKING, Any

import trio

from brood.protocol.errors import BadResponse, ProtocolError
from brood.protocol.http1 import (
    RequestHead,
    parse_request_head,
    parse_response_framing,
)
from brood.protocol.usual import usual_answer, usual_request
from brood.protocol.uwsgi import MAX_VARS_SIZE, encode_vars, pack_header
from brood.protocol.vars import encode_connection_vars, encode_head_vars
from brood.routers.engine import Upstream
from brood.routers.errors import RoutingError
from brood.routers.http.body import Client, peer_address
from brood.routers.http.h1 import build_vars_block, has_forwarded_for
from brood.routers.http.response import RESPONSE_HEAD_LIMIT, with_close
from brood.routers.lane import (
    _HUP,
    _READ_EVENTS,
    BODY,
    HEAD_RECV,
    IDLE,
    RECV,
    WAITING,
    Lane,
    LaneConn,
    _read,
    _write,
)
from brood.routers.net import sockio
from brood.routers.net.backend import FirstPick
from brood.routers.node import Node

if TYPE_CHECKING:
    from brood.routers.http.router import HttpRouter

log = logging.getLogger("brood.routers")
# How long the lane waits for the rest of a body that did not come with its head, from
# its first part, before the general path takes the request over.
REST_WAIT = 1.0
# An answer head carrying the router's --http-auto-gzip instruction: the general path
# takes such an answer (the header never reaches the client).
_GZIP_OPT_IN_RE = re.compile(rb"\nuwsgi-encoding[ \t]*:", re.IGNORECASE)


class HttpConn(LaneConn):
    """A lane connection with what HTTP needs: the head in flight and the client's
    constant vars."""

    __slots__ = ("remote_addr", "remote_port", "head", "status", "vars_mid", "addr_bytes",
                 "head_since", "idle_since")

    def __init__(self, sock: socket.socket, peer: Any) -> None:
        super().__init__(sock, peer)
        self.remote_addr, self.remote_port = peer_address(peer)
        self.addr_bytes = self.remote_addr.encode("ascii")  # appended to X-Forwarded-For
        self.head: RequestHead | None = None
        self.status = 0
        self.vars_mid = b""  # the encoded vars of this connection (encode_connection_vars)
        self.head_since = 0.0  # when the first part of a head still incomplete came
        self.idle_since = 0.0  # when its last answer ended (monotonic), for a drain


class HttpLane(Lane):
    """The fast lane of one ``HttpRouter``."""

    conn_class = HttpConn
    ends_on_client_eof = False  # a half-closed client still gets its answer

    def __init__(self, router: HttpRouter, sessions: trio.Nursery) -> None:
        settings = router.settings
        super().__init__(router, sessions, timeout=settings.timeout,
                         first_timeout=settings.headers_timeout)
        self.settings = settings
        self.engine.drain_hooks.append(self._drain_work)
        extra = settings.extra_vars
        self.extra_block = encode_vars(extra) if extra else b""
        self.head_limit = settings.head_limit
        self.resolve, self.clock = self.engine.resolver.resolve, self.engine.clock
        self.server_name = settings.server_name
        self.modifier1, self.modifier2 = settings.modifier1, settings.modifier2
        # What the general path serves whatever the head: --http-manage-source's SOURCE.
        self.source_method = b"SOURCE" if settings.manage_source else None
        # --http-server-name-as-http-host changes the vars: usual_request does not.
        self.usual_heads = not settings.server_name_as_http_host
        self.keepalive, self.keepalive_idle = settings.keepalive, settings.keepalive_idle
        self.access = router.access  # its request lines (``accesslog.AccessLog``)

    def _take(self, sock: socket.socket, peer: Any, wait: float) -> HttpConn:
        conn: HttpConn = super()._take(sock, peer, wait)  # type: ignore[assignment]
        settings = self.settings
        conn.vars_mid = encode_connection_vars(
            remote_addr=conn.remote_addr, remote_port=conn.remote_port,
            server_name=None if settings.server_name_as_http_host else settings.server_name,
            server_port=self.router.server_port)
        return conn

    def readopt(self, sock: socket.socket, peer: Any, buf: bytes) -> None:
        """Take back a connection the general path served a request of; ``buf``: what
        it read past that request (the start of the next one, served at once). The
        socket is non-blocking with TCP_NODELAY already (``adopt`` made it so)."""
        conn = self._take(sock, peer, self.settings.keepalive_idle)
        conn.idle_since = time.monotonic()
        if buf:
            conn.buf = bytes(buf)
            try:
                self._start(conn)
            except Exception:  # as in run(): this connection goes, the lane stays
                log.exception("http: fast lane failed on %s", conn.peer)
                self._drop(conn)

    # -- the request ----------------------------------------------------------------------
    def _start(self, conn: HttpConn) -> None:  # type: ignore[override]
        usual = usual_request(conn.buf, self.head_limit, conn.vars_mid, self.extra_block,
                              conn.addr_bytes) if self.usual_heads else None
        if usual is None:
            self._start_other(conn)
            return
        head, block = usual
        if len(block) > MAX_VARS_SIZE or head.method == self.source_method:
            self._to_general(conn)
            return
        self._route(conn, head, block)

    def _start_other(self, conn: HttpConn) -> None:
        """A head ``usual_request`` left alone: parsed in full, and served here when it
        is still one the lane serves."""
        settings = self.settings
        buf = conn.buf
        try:
            head = parse_request_head(buf, self.head_limit)
        except ProtocolError:
            self._to_general(conn)  # it answers 400/431/505 and says why
            return
        if head is None:  # the start of a head (anything else is refused at once, above)
            if not conn.readable:
                if not conn.head_since:
                    conn.head_since = time.monotonic()
                self._wait_for_rest(conn)  # the next read has the rest, most likely
            else:
                self._to_general(conn)
            return
        if (head.chunked or head.upgrade is not None
                or head.expect_continue or head.method == self.source_method):
            self._to_general(conn)
            return
        try:
            xff = has_forwarded_for(buf, head.size)
            block = None
            if not xff and (head.host is not None or not settings.server_name_as_http_host):
                block = encode_head_vars(head, conn.vars_mid,
                                         name_from_host=settings.server_name_as_http_host,
                                         extra_block=self.extra_block)
            if block is None:  # X-Forwarded-For to extend, a repeated name, no Host to name
                block = build_vars_block(head, conn, settings,  # type: ignore[arg-type]
                                         server_port=self.router.server_port, https=False,
                                         content_length=None, forwarded_for=xff)
        except ProtocolError:
            self._to_general(conn)
            return
        if len(block) > MAX_VARS_SIZE:
            self._to_general(conn)
            return
        self._route(conn, head, block)

    def _route(self, conn: HttpConn, head: RequestHead, block: bytes) -> None:
        """The request (``block``: its vars, then the body when it came whole with the
        head) to the resolver's first pick, or to the general path when there is none
        or the body is still coming (it streams it)."""
        conn.head_since = 0.0  # the head is whole
        end = head.size
        if head.content_length:
            end += head.content_length
            if len(conn.buf) < end:
                if end <= RECV and not conn.readable:
                    self._wait_for_rest(conn)  # the next read has it, most likely
                else:
                    self._to_general(conn)
                return
        key = head.host
        if key is None:
            key = self.server_name
        node = self.resolve(key, self.clock(), conn.client_ip, ())
        if node is None:
            self._to_general(conn)  # no node: fallbacks or 503 there
            return
        m1 = self.modifier1
        m2 = self.modifier2
        conn.head, conn.key, conn.status = head, key, 0
        # The block's size is in range: the callers checked it against MAX_VARS_SIZE.
        packet = pack_header(node.modifier1 if m1 is None else m1, len(block),
                             node.modifier2 if m2 is None else m2) + block
        if end > head.size:
            packet += conn.buf[head.size:end]
        self._open_node(conn, node, packet, end)

    def _wait_for_rest(self, conn: HttpConn) -> None:
        """The head, or the body, did not all come in one read (a head longer than a
        segment, clients that write head and body apart): the next read serves the
        request, unless ``REST_WAIT`` passes first from the first part; then the
        general path takes it over (``_idle_expired``) and waits with its own
        timeouts (``--http-headers-timeout`` counts from a head's first part, the time
        in the lane included)."""
        conn.deadline = min(conn.deadline, time.monotonic() + REST_WAIT)
        self._sweep_within(REST_WAIT)

    def _to_general(self, conn: HttpConn,  # type: ignore[override]
                    first_pick: FirstPick | None = None) -> None:
        """As ``Lane._to_general``; a head still incomplete goes with the time it has
        waited in the lane, which ``--http-headers-timeout`` counts too."""
        waited = time.monotonic() - conn.head_since if conn.head_since else 0.0
        self._hand_over(conn, self.router.resume, conn.buf, first_pick, waited)

    def _idle_expired(self, conn: HttpConn) -> None:  # type: ignore[override]
        if conn.buf:
            self._to_general(conn)  # a request begun, its body slow to come
        else:
            self._drop(conn)

    # -- the answer -----------------------------------------------------------------------
    def _node_event(self, conn: HttpConn, events: int) -> None:  # type: ignore[override]
        """The usual answer in one go: read whole, sent whole, the node reset; a longer
        one: its first read sent, the rest relayed. Anything else (a connect or a send
        in progress, an answer framed otherwise or in parts) goes as the lane's relay
        takes it (``_answer_read``)."""
        if conn.state != WAITING or conn.packet or conn.answer_head or not events & _READ_EVENTS:
            Lane._node_event(self, conn, events)
            return
        if events & _HUP:
            conn.node_hup = True
        try:
            data = _read(conn.up_fd, HEAD_RECV)
        except BlockingIOError:
            return  # an edge left from a socket that had this fd number before
        except OSError as exc:
            self._node_failed(conn, f"{exc.strerror or exc}")
            return
        size = len(data)
        conn.node.tx += size  # type: ignore[union-attr]
        answer = usual_answer(data, conn.head.method, RESPONSE_HEAD_LIMIT)  # type: ignore[union-attr]
        if answer is None or not self.keepalive or self.engine.draining or (
                self.settings.auto_gzip and _GZIP_OPT_IN_RE.search(data, 0, answer[4])):
            # framed otherwise, its head not all here, or for the general path: relayed
            self._answer_read(conn, data)
            return
        rest = answer[4] + answer[2] - size  # body bytes still to come
        if rest < 0 or (rest and size < HEAD_RECV):
            self._answer_read(conn, data)  # bytes past it, or its next part to wait for
            return
        try:
            sent = _write(conn.fd, data)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            log.debug("http: client %s gone: %s", conn.peer, exc)
            self._drop(conn)
            return
        conn.status, conn.node_keep = answer[0], answer[3]
        conn.sent = sent
        if sent == size and not rest:
            self._finish(conn, True)
            return
        conn.state = BODY
        conn.remaining = rest
        conn.deadline = time.monotonic() + self.timeout
        # A long answer: the read filled HEAD_RECV and the relay (by splice) reads on
        # at once, without waiting for another edge (this one is spent).
        conn.node_readable = rest > 0
        if sent < size:
            conn.pending = data[sent:]
            self._wait_writable(conn)
            return
        self._pump(conn)

    def _answer_head(self, conn: HttpConn, data: bytes) -> bytes | None:  # type: ignore[override]
        method = conn.head.method  # type: ignore[union-attr]
        answer = usual_answer(data, method, RESPONSE_HEAD_LIMIT)
        if answer is None:
            try:
                answer = parse_response_framing(data, RESPONSE_HEAD_LIMIT, method)
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
                kind == "close" and (settings.auto_chunked or settings.auto_gzip
                                     or method == b"CONNECT")) or (  # (a tunnel)
                settings.auto_gzip and _GZIP_OPT_IN_RE.search(data, 0, size)):
            self._answer_to_general(conn, data)
            return None
        conn.answer_head = b""
        conn.status = status
        conn.node_keep = keep_alive
        conn.state = BODY
        # Keep-alive off (--http-keepalive=0): a client that expects to go on is told
        # the connection ends (RFC 9112 §9.6), not left to find it closed.
        closing = (keep_alive and (not self.keepalive or self.engine.draining)
                   and conn.head.keep_alive)  # type: ignore[union-attr]
        if closing:
            conn.node_keep = False  # (told: the connection ends after this answer)
        if kind == "length":
            total = size + length  # type: ignore[operator]
            if len(data) >= total:
                conn.remaining = 0
                data = data if len(data) == total else data[:total]
            else:
                conn.remaining = total - len(data)
            return with_close(data, size) if closing else data
        if kind == "none":
            conn.remaining = 0
            return with_close(data[:size], size) if closing else data[:size]
        conn.remaining = -1
        conn.node_keep = False
        return data

    def _finish(self, conn: HttpConn, complete: bool) -> None:  # type: ignore[override]
        """Close the node, log, then the next request or the close."""
        head, node = conn.head, conn.node
        self._close_node(conn, complete)
        access = self.access
        if access.on:
            access.request(conn.remote_addr, conn.remote_port, head, conn.status,  # type: ignore[arg-type]
                           conn.sent, conn.key, node.name,  # type: ignore[arg-type, union-attr]
                           time.monotonic() - conn.started)
        # (an answer told keep-alive goes on, even once a drain has begun: the client
        # may send its next request at once; ``_drain_work`` serves or closes it)
        if not (complete and conn.node_keep and head.keep_alive and self.keepalive):  # type: ignore[union-attr]
            if complete:
                self._close_answered(conn)
            else:
                self._drop(conn)
            return
        conn.state = IDLE
        conn.head = None  # an idle connection holds no head
        if self.harakiri:
            conn.hard = math.inf
        conn.idle_since = now = time.monotonic()
        conn.deadline = now + self.keepalive_idle
        if conn.buf:
            self._start(conn)  # pipelined
        elif conn.readable:
            self._read_request(conn)

    def _drain_work(self) -> bool:
        """The engine's drain hook (a graceful stop): a kept-alive connection whose
        client already sent its next request is served (its answer ends it); one with
        nothing is closed, once ``DRAIN_IDLE_GRACE`` has passed (its client may have sent
        the next request just as the drain began: it is served with a close, not lost on
        a connection closed under it). True while any connection has work left."""
        left = False
        idle_kept = self.engine.idle_kept
        for conn in list(self.conns.values()):
            if conn.state != IDLE or conn.buf:
                left = True
            elif conn.readable or sockio.unread(conn.fd):
                left = True
                self._read_request(conn)
            elif idle_kept(conn.idle_since):
                left = True
            else:
                self._drop(conn)
        return left

    def _client_left(self, conn: HttpConn) -> None:  # type: ignore[override]
        """As ``Lane._client_left``; its request line says 499, as nginx's does for a
        client that closed before the answer."""
        access = self.access
        if access.on and conn.head is not None:
            access.request(conn.remote_addr, conn.remote_port, conn.head, 499, 0, conn.key,
                           conn.node.name if conn.node else "",  # type: ignore[arg-type]
                           time.monotonic() - conn.started)
        Lane._client_left(self, conn)

    def _error(self, conn: HttpConn, error: RoutingError) -> None:  # type: ignore[override]
        """As ``Lane._error``; a request cut after part of its answer went out still
        gets its request line (the status the client got, the bytes it got)."""
        access = self.access
        if access.on and (conn.sent or conn.pending) and conn.head is not None:
            access.request(conn.remote_addr, conn.remote_port, conn.head, conn.status,
                           conn.sent, conn.key, conn.node.name,  # type: ignore[arg-type, union-attr]
                           time.monotonic() - conn.started)
        Lane._error(self, conn, error)

    async def run(self) -> None:
        """As ``Lane.run``; the request lines still queued go out as it ends."""
        try:
            await Lane.run(self)
        finally:
            self.access.flush()

    def sweep(self, now: float) -> float:
        """As ``Lane.sweep`` (once a second at least), and the request lines queued
        since the last one go out: a line waits a second at most."""
        soonest = Lane.sweep(self, now)
        self.access.flush()
        return soonest

    # -- hand-overs -----------------------------------------------------------------------
    def _fail_over(self, conn: HttpConn, error: RoutingError) -> None:  # type: ignore[override]
        """The general path's error answer (``HttpRouter.fail``), in a task of its own."""
        if conn.state == IDLE or conn.node is None:  # no node was asked (no socket for one)
            node, started = "", time.monotonic()
        else:
            node, started = conn.node.name, conn.started
        self._hand_over(conn, self._fail, error, conn.head, conn.key, node, started)

    async def _fail(self, tsock: Any, peer: Any, error: RoutingError, head: RequestHead,
                    key: bytes, node: str, started: float) -> None:
        client = Client(tsock, *peer_address(peer))
        self.engine.session_opened()  # (a drain waits for the answer to go out)
        try:
            await self.router.fail(client, peer, error.status, error, head, key, node=node,
                                   started=started)
        finally:
            self.engine.session_closed()

    def _answer_to_general(self, conn: HttpConn, data: bytes) -> None:
        """Mid-answer: the general path relays the rest (``HttpRouter.resume_answer``)."""
        up = conn.up
        self.ep.unregister(conn.up_fd)
        del self.nodes[conn.up_fd]
        conn.up, conn.up_fd = None, -1
        conn.counted = False  # the session and the node's ref go with it
        up = socket.socket(up.family, up.type, up.proto, up.detach())  # type: ignore[union-attr]
        upstream = _Replay(self.engine, conn.node, trio.socket.from_stdlib_socket(up), data)  # type: ignore[arg-type]
        self._hand_over(conn, self.router.resume_answer, conn.buf, conn.head, conn.key,
                        upstream, conn.started)


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
