"""The HTTP router front (``--http ADDR``): HTTP/1.x clients in, uwsgi packets to nodes.

Per connection: an optional stud prefix (``--http-stud-prefix``, see ``parse_stud``) and
PROXY v1/v2 header (``--http-enable-proxy-protocol``), then requests one after another
(keep-alive). Per request:

1. read the whole head, bounded by the head limit and ``--http-headers-timeout``, before
   any node is chosen: a slow client never holds a node;
2. plan the body (a chunked one may be de-chunked here, see ``body``);
3. build the vars (WIRE §1.6) and take the key: the Host header as sent, port kept, or
   the machine's hostname without one (WIRE §7.2);
4. connect through the engine, send head + vars + early body in one send, relay the
   answer (``h1.exchange``), write its request line (``accesslog``; error answers and
   redirects get one too), and loop while keep-alive allows.
   A SOURCE request with ``--http-manage-source`` is relayed as ``--http-raw-body``
   relays every request: the head, then a raw pipe both ways.

Where uWSGI closes silently (bad request, unknown host, dead node, WIRE §7.2), brood
answers: 400/431/501/505 for the request, 413 for ``--http-manage-expect``, 503 no node,
502 node refused or answered garbage, 504 node silent, 408 head not complete in time.
Each with a short text body and ``Connection: close``, and a log line with the reason.

A ``--http-to-https ADDR[,PORT]`` socket answers every request with a 301 to
``https://`` + Host (its port replaced by PORT, or dropped) + the request target, and
never contacts a node.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
import socket
import time
from typing import Any

import trio

from brood.config.model import Config
from brood.listener import Listener
from brood.protocol.errors import BadRequest, BadResponse, ProtocolError
from brood.protocol.http1 import RequestHead, parse_request_head, simple_response
from brood.protocol.proxy import parse_proxy
from brood.protocol.uwsgi import MAX_VARS_SIZE
from brood.routers.engine import Engine, client_ip
from brood.routers.errors import ClientError, NodeFailed, NodeTimeout, RoutingError
from brood.routers.http.accesslog import UNPARSED, AccessLog
from brood.routers.http.body import BodyPlan, Client, ClientGone, peer_address, plan_body
from brood.routers.http.h1 import (
    Request,
    answer,
    build_vars_block,
    exchange,
    has_forwarded_for,
)
from brood.routers.http.response import Outcome
from brood.routers.http.settings import HttpSettings
from brood.routers.net import sockio
from brood.routers.net.backend import FirstPick
from brood.routers.net.listen import ConnectionHandler
from brood.routers.net.relay import (
    DROP_MAX,
    LINGER_BYTES,
    Endpoint,
    deadline_slack,
    linger,
    push_deadline,
    send_all,
)

log = logging.getLogger("brood.routers")

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
# Error answers are small; a client that does not take one in this time is gone.
ERROR_SEND_TIMEOUT = 5.0


def _server_port(listener: Listener | None) -> bytes:
    """SERVER_PORT: the port part of the router's bound address (empty for unix)."""
    if listener is None:
        return b""
    name = listener.name
    if ":" in name and not name.startswith(("/", "@")):
        return name.rsplit(":", 1)[1].encode()
    try:
        addr = listener.sock.getsockname()
    except OSError:
        return b""
    return str(addr[1]).encode() if isinstance(addr, tuple) else b""


# A Host a redirect can name: a reg-name or IPv4 (RFC 3986 unreserved, sub-delims and
# %-escapes) or a bracketed IPv6 literal, then an optional port.
_REDIRECTABLE_HOST = re.compile(
    rb"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~!$&'()*+,;=%]+)(?::[0-9]*)?")


def _without_port(host: bytes) -> bytes:
    """``example.com:8080`` -> ``example.com``; ``[::1]:8080`` -> ``[::1]``."""
    if host.startswith(b"["):
        end = host.find(b"]")
        return host[:end + 1] if end > 0 else host
    return host.partition(b":")[0]


_IDLE, _HEAD, _BODY, _NODE = range(4)


class _Conn:
    """One connection's cancel scope and where it was when the scope fired.

    One scope per connection, its deadline moved per phase (idle between requests, the
    rest of a head, the node's answer): cheaper than a scope per read, and the cause of
    a timeout is still known, so the right answer (none, 408, 504) can follow."""

    __slots__ = ("scope", "phase", "head", "key", "out", "node_name", "hard_deadline",
                 "first_pick", "head_waited", "started", "idle_since")

    def __init__(self) -> None:
        self.scope = trio.CancelScope()
        self.phase = _IDLE
        self.head: RequestHead | None = None
        self.key: bytes | None = None
        self.out: Outcome | None = None
        self.node_name = ""  # the node of the request in flight
        self.hard_deadline = math.inf
        self.first_pick: FirstPick | None = None  # resume's
        self.head_waited = 0.0  # resume's: the time its head has waited in the fast lane
        self.started: float | None = None  # the request in flight's start (monotonic)
        self.idle_since = 0.0  # its last answer's end (monotonic), for a drain

    def lift_deadline(self) -> None:
        """Only harakiri bounds this phase (a connect that has to wait)."""
        self.scope.deadline = self.hard_deadline


def parse_stud(buf: bytes) -> tuple[str, int] | None:
    """(client address, bytes used) from a stud ``--write-ip`` prefix at the start of
    ``buf``: 1 byte of family (this platform's AF_INET or AF_INET6), then 4 or 16
    address bytes. None while incomplete; ValueError for an unknown family."""
    if not buf:
        return None
    family = buf[0]
    if family == socket.AF_INET:
        size = 4
    elif family == socket.AF_INET6:
        size = 16
    else:
        raise ValueError(f"unknown address family {family}")
    if len(buf) < 1 + size:
        return None
    return socket.inet_ntop(family, bytes(buf[1:1 + size])), 1 + size


class HttpRouter:
    """Connection handler of one ``--http`` (or ``--https``, ``--http-to-https``) socket."""

    def __init__(self, engine: Engine, settings: HttpSettings,
                 listener: Listener | None = None, access: AccessLog | None = None) -> None:
        self.engine = engine
        self.settings = settings
        # The request lines (every request's, in settings.log_format, unless given).
        self.access = access if access is not None else AccessLog(settings.log_format)
        self.server_port = _server_port(listener)
        proto = listener.proto if listener is not None else "http"
        self.https = proto == "https"
        self.to_https = proto == "http-to-https" or (
            listener is not None and listener.name in settings.to_https)
        self.https_port = listener.https_port if listener is not None else None
        self.headers_slack = deadline_slack(settings.headers_timeout)
        self.idle_slack = deadline_slack(settings.keepalive_idle)
        # The settings a SOURCE request is exchanged with (--http-manage-source).
        self.source_settings = (dataclasses.replace(settings, raw_body=True)
                                if settings.manage_source else None)
        # Plain sockets whose connections start with a request go through the fast lane
        # (TLS, PROXY and stud prefixes, redirects and raw bodies take the general path).
        self.lane_ok = not (self.https or self.to_https or settings.proxy_protocol
                            or settings.stud_prefix or settings.raw_body)
        self.lane: Any = None
        # The general path's connections, for a graceful stop (``_drain_work``).
        self.conns: set[_Conn] = set()
        engine.drain_hooks.append(self._drain_work)

    async def __call__(self, sock: Endpoint, peer: Any) -> None:
        await self._serve_connection(Client(sock, *peer_address(peer)), peer, first=True)

    # -- the fast lane --------------------------------------------------------------------
    def lane_for(self, sessions: trio.Nursery) -> Any:
        """The fast lane (``HttpLane``), started at first use, which accepts and serves
        plain connections; None when this socket's settings need the general path
        throughout."""
        if not self.lane_ok:
            return None
        lane = self.lane
        if lane is None:
            from brood.routers.http.lane import HttpLane

            lane = self.lane = HttpLane(self, sessions)
            sessions.start_soon(lane.run)
        return lane

    async def resume(self, sock: Endpoint, peer: Any, buf: bytes,
                     first_pick: FirstPick | None = None, head_waited: float = 0.0) -> None:
        """Go on with a connection the fast lane hands over between requests: ``buf``
        holds what it read and did not serve (the start of the next request);
        ``first_pick``: the lane's node for that request and how its connect failed;
        ``head_waited``: how long the lane waited for the rest of that head (counted
        in --http-headers-timeout)."""
        client = Client(sock, *peer_address(peer))
        client.buf = buf
        await self._serve_connection(client, peer, first=False, first_pick=first_pick,
                                     head_waited=head_waited)

    async def resume_answer(self, sock: Endpoint, peer: Any, buf: bytes, head: RequestHead,
                            key: bytes, upstream: Any, started: float) -> None:
        """Go on with a request the fast lane sent to a node whose answer it does not
        relay itself (chunked, interim, upgrade, re-framed): ``upstream`` replays the
        answer's first bytes. The lane counted the session; it is closed here."""
        client = Client(sock, *peer_address(peer))
        client.buf = buf
        conn = _Conn()
        conn.head, conn.key, conn.phase = head, key, _NODE
        conn.started = started
        out = conn.out = Outcome()
        harakiri = self.engine.settings.max_age
        conn.hard_deadline = trio.current_time() + harakiri if harakiri > 0 else math.inf
        try:
            with conn.scope:
                try:
                    async with upstream:
                        conn.node_name = upstream.node.name
                        error = await self._answer(upstream, client, head, out, conn)
                finally:
                    self.engine.session_closed()
                if error is not None:
                    await self._failed(client, peer, out, error, head, key,
                                       upstream.node.name, started)
                    return
                self._log_access(client, head, out, key, upstream.node.name, started)
                self._note_cut(peer, out, upstream.node.name)
                if not (self.settings.keepalive and head.keep_alive and out.keep_alive
                        and out.complete):
                    return
        except ClientGone as exc:
            log.debug("http: client %s gone: %s", peer, exc)
            return
        if conn.scope.cancelled_caught:
            await self.timed_out(client, peer, conn)
            return
        if self.lane is not None:
            self._back_to_lane(client, peer)
            return
        await self._serve_connection(client, peer, first=False)

    def _back_to_lane(self, client: Client, peer: Any) -> None:
        """A request the lane handed over is done and the connection goes on: its next
        requests are the lane's again (one POST does not keep a connection off it)."""
        tsock = client.sock
        family, kind, proto = tsock.family, tsock.type, tsock.proto
        trio.lowlevel.notify_closing(tsock)  # trio forgets the fd; it stays open
        # SOCK_NONBLOCK in the type: Python takes the fd as non-blocking (it is) unasked
        sock = socket.socket(family, kind | socket.SOCK_NONBLOCK, proto, fileno=tsock.detach())
        self.lane.readopt(sock, peer, client.buf)

    async def _answer(self, upstream: Any, client: Client, head: RequestHead, out: Outcome,
                      conn: _Conn) -> RoutingError | None:
        """``h1.answer``, its failures turned into routing errors (None: success)."""
        try:
            await answer(upstream, client, head, self.settings, out, conn.scope,
                         conn.hard_deadline)
        except BadResponse as exc:
            return NodeFailed(f"node {upstream.node.name}: {exc.reason}")
        except OSError as exc:
            return NodeFailed(f"node {upstream.node.name}: {exc.strerror or exc}")
        return None

    async def _failed(self, client: Client, peer: Any, out: Outcome, error: RoutingError,
                      head: RequestHead, key: bytes, node: str, started: float) -> None:
        """A node failed mid-request: an error answer while the client has no byte of
        the node's answer yet, else only the log lines (the caller closes)."""
        if out.answered:
            self._log_access(client, head, out, key, node, started)
            self.engine.log_failure(peer, error)
        else:
            await self.fail(client, peer, error.status, error, head, key, node=node,
                            started=started)

    def _log_access(self, client: Client, head: RequestHead, out: Outcome, key: bytes,
                    node_name: str, started: float) -> None:
        access = self.access
        if access.on:
            access.write(client.remote_addr, client.remote_port, head, out.status,
                         out.sent, key, node_name, time.monotonic() - started)

    # -- the general path -------------------------------------------------------------------
    async def _serve_connection(self, client: Client, peer: Any, *, first: bool,
                                first_pick: FirstPick | None = None,
                                head_waited: float = 0.0) -> None:
        """Requests one after another on ``client`` until it closes or may not go on;
        ``first``: a new connection (its prefixes are read first, its first head may
        take --http-headers-timeout); ``first_pick``, ``head_waited``: see ``resume``."""
        conn = _Conn()
        conn.first_pick = first_pick
        conn.head_waited = head_waited
        settings = self.settings
        self.conns.add(conn)
        try:
            with conn.scope:
                if (first and settings.stud_prefix
                        and client.remote_addr in settings.stud_prefix
                        and not await self.read_stud(client, peer, conn)):
                    return
                if (first and settings.proxy_protocol
                        and not await self.read_proxy(client, peer, conn)):
                    return
                wait, slack = ((settings.headers_timeout, self.headers_slack) if first
                               else (settings.keepalive_idle, self.idle_slack))
                while True:
                    conn.phase = _IDLE
                    conn.idle_since = time.monotonic()
                    push_deadline(conn.scope, trio.current_time() + wait, slack)
                    head = await self.read_head(client, conn, first)
                    if head is None:
                        return
                    wait, slack = settings.keepalive_idle, self.idle_slack
                    first = False
                    if not await self.serve(client, head, peer, conn):
                        return
                    if self.lane is not None:  # the connection came from the lane
                        self._back_to_lane(client, peer)
                        return
        except ProtocolError as exc:
            await self.fail(client, peer, exc.status, f"bad request: {exc.reason}", None)
            return
        except ClientGone as exc:
            log.debug("http: client %s gone: %s", peer, exc)
            return
        finally:
            self.conns.discard(conn)
        if conn.scope.cancelled_caught:
            await self.timed_out(client, peer, conn)

    def _drain_work(self) -> bool:
        """The engine's drain hook for the general path (a graceful stop): a connection
        inside a request (its head begun, a body, a node's answer) has work left, as an
        idle one does for ``DRAIN_IDLE_GRACE`` (its client may have sent its next
        request as the drain began: served, its answer saying close); then idle ones
        are closed, quietly. True while any has work left."""
        left = False
        idle_kept = self.engine.idle_kept
        for conn in self.conns:
            if conn.phase != _IDLE or idle_kept(conn.idle_since):
                left = True
            else:
                conn.scope.cancel()  # (an idle scope that fires is a quiet close)
        return left

    # -- reading --------------------------------------------------------------------------
    async def read_proxy(self, client: Client, peer: Any, conn: _Conn) -> bool:
        """Consume the PROXY header; the client address then comes from it."""
        conn.phase = _HEAD
        conn.scope.deadline = trio.current_time() + self.settings.headers_timeout
        while True:
            try:
                parsed = parse_proxy(client.buf)
            except ProtocolError as exc:
                await self.fail(client, peer, 400, f"bad PROXY header: {exc.reason}", None)
                return False
            if parsed is not None:
                break
            if not await client.read_more():
                return False
        info, used = parsed
        client.buf = client.buf[used:]
        if info is not None:
            client.remote_addr, client.remote_port = info.src_addr, info.src_port
        return True

    async def read_stud(self, client: Client, peer: Any, conn: _Conn) -> bool:
        """Consume a stud prefix; the client address then comes from it. A bad one
        closes the connection, as uWSGI does (the peer is stud, not a browser)."""
        conn.phase = _HEAD
        conn.scope.deadline = trio.current_time() + self.settings.headers_timeout
        while True:
            try:
                parsed = parse_stud(client.buf)
            except ValueError as exc:
                self.engine.log_failure(peer, f"bad stud prefix: {exc}")
                return False
            if parsed is not None:
                break
            if not await client.read_more():
                return False
        client.remote_addr, used = parsed
        client.buf = client.buf[used:]
        return True

    async def read_head(self, client: Client, conn: _Conn, first: bool = True
                        ) -> RequestHead | None:
        """The next request head, None when the client closed between requests (the
        connection scope's deadline bounds the wait). ProtocolError for a bad head.
        After the ``first`` request the client has only just got our answer: its next
        request cannot be there yet, so the read waits first (``Client.read_next``)."""
        limit = self.settings.head_limit
        if not client.buf and not await (client.read_more() if first else client.read_next()):
            return None
        head = parse_request_head(client.buf, limit)
        if head is not None:
            return head
        conn.phase = _HEAD
        conn.scope.deadline = (trio.current_time() + self.settings.headers_timeout
                               - conn.head_waited)
        conn.head_waited = 0.0  # (the next head starts afresh)
        while head is None:
            if not await client.read_more():
                raise ClientGone("client closed inside a request head")
            head = parse_request_head(client.buf, limit)
        return head

    # -- one request ----------------------------------------------------------------------
    async def serve(self, client: Client, head: RequestHead, peer: Any, conn: _Conn) -> bool:
        """Route one request; True when the connection may carry another."""
        settings = self.settings
        started = time.monotonic()
        buf = client.buf
        forwarded_for = has_forwarded_for(buf, head.size)
        client.buf = buf[head.size:]
        key = head.host if head.host is not None else settings.server_name
        conn.head, conn.key, conn.started = head, key, started
        if self.to_https:
            return await self.redirect(client, peer, head, key, started)
        has_body = head.chunked or bool(head.content_length)
        if has_body:
            if head.expect_continue:
                limit = settings.manage_expect
                if limit and (head.content_length or 0) > limit:  # (body bytes sent or not)
                    await self.fail(client, peer, 413, f"Content-Length {head.content_length}"
                                    f" over --http-manage-expect {limit}", head, key,
                                    started=started)
                    return False
                if not client.buf:  # the client waits for it before its body
                    await send_all(client.sock, CONTINUE)
            if head.chunked:
                conn.phase = _BODY
                conn.scope.deadline = math.inf  # plan_body times each read itself
        xsettings = settings
        if self.source_settings is not None and head.method == b"SOURCE":
            xsettings = self.source_settings
        try:
            if xsettings.raw_body:
                body, client.buf = BodyPlan(prefix=client.buf), b""
            else:
                # A body held before a node is asked is a session: a graceful stop (a
                # reload) waits for it as for one on its way to a node.
                self.engine.session_opened()
                try:
                    body = await plan_body(client, head, chunked_input=settings.chunked_input,
                                           chunked_buffer=settings.chunked_buffer,
                                           timeout=settings.timeout,
                                           body_limit=settings.body_limit)
                finally:
                    self.engine.session_closed()  # (_send opens its own, with no wait between)
        except ProtocolError as exc:
            what = "bad request: " if exc.status < 500 else ""
            await self.fail(client, peer, exc.status, f"{what}{exc.reason}", head, key,
                            started=started)
            return False
        try:
            return await self._send(client, peer, conn, head, key, body, forwarded_for,
                                    xsettings, started)
        finally:
            body.close()  # (its temporary file, if any)

    async def _send(self, client: Client, peer: Any, conn: _Conn, head: RequestHead,
                    key: bytes, body: BodyPlan, forwarded_for: bool,
                    xsettings: HttpSettings, started: float) -> bool:
        """The request, its body planned, to a node, and the answer back."""
        settings = self.settings
        engine = self.engine
        try:
            block = build_vars_block(head, client, settings, server_port=self.server_port,
                                     https=self.https, content_length=body.content_length,
                                     forwarded_for=forwarded_for)
        except ProtocolError as exc:
            await self.fail(client, peer, exc.status, f"bad request: {exc.reason}", head, key,
                            started=started)
            return False
        if len(block) > MAX_VARS_SIZE:
            await self.fail(client, peer, 431, f"vars block of {len(block)} bytes", head, key,
                            started=started)
            return False
        out = conn.out = Outcome()
        conn.phase = _NODE
        harakiri = engine.settings.max_age
        conn.hard_deadline = trio.current_time() + harakiri if harakiri > 0 else math.inf
        node_name = ""
        engine.session_opened()
        try:
            try:
                # The idle deadline stays while the connect completes at once (loopback):
                # a connect that waits has its own timeout and runs under harakiri only.
                first_pick, conn.first_pick = conn.first_pick, None
                upstream = await engine.connect(key, client=client_ip(peer),
                                                before_wait=conn.lift_deadline, first_pick=first_pick)
            except RoutingError as exc:
                await self.fail(client, peer, exc.status, exc, head, key, started=started)
                return False
            async with upstream:
                node_name = conn.node_name = upstream.node.name
                try:
                    error = await self._exchange(upstream, client, Request(head, block, body),
                                                 out, conn, xsettings)
                except ClientGone:
                    if not out.answered and self.access.on:  # gone before the answer: 499,
                        self.access.write(client.remote_addr, client.remote_port, head,  # as
                                          499, out.sent, key, node_name,  # nginx
                                          time.monotonic() - started)
                    raise
            if error is not None:
                await self._failed(client, peer, out, error, head, key, node_name, started)
                return False
        finally:
            engine.session_closed()
        self._log_access(client, head, out, key, node_name, started)
        self._note_cut(peer, out, node_name)
        # (an answer told keep-alive goes on, even once a drain has begun: the client
        # may send its next request at once; the drain hook serves or closes it)
        if settings.keepalive and head.keep_alive and out.keep_alive and out.complete:
            return True
        if out.complete and not out.upgraded:
            await self._linger_answered(client, body)
        return False

    async def _linger_answered(self, client: Client, body: BodyPlan) -> None:
        """The connection ends after a whole answer: with request bytes left unread (a
        body the node did not wait for, pipelined requests), the close would be a reset
        that throws away the tail of the answer still on its way. Half-close and drop
        what comes first (nginx's lingering close): a body being sent as long as it
        comes, up to ``DROP_MAX`` (and what a client sends past it: ``LINGER_BYTES``);
        anything else for a moment."""
        if body.remaining or body.decoder is not None:
            left = body.remaining if body.remaining else DROP_MAX
            await linger(client.sock, min(left, DROP_MAX) + LINGER_BYTES,
                         idle=self.settings.timeout)
        elif client.buf or sockio.unread(client.sock.fileno()):
            await linger(client.sock)

    def _note_cut(self, peer: Any, out: Outcome, node_name: str) -> None:
        """A node that closed inside a framed answer: said (the client sees a close)."""
        if out.status and not out.complete and not out.upgraded:  # (no status: a raw body)
            self.engine.log_failure(peer, f"node {node_name}: answer cut short")

    async def _exchange(self, upstream: Any, client: Client, request: Request,
                        out: Outcome, conn: _Conn, settings: HttpSettings
                        ) -> RoutingError | None:
        """``h1.exchange``, its failures turned into routing errors (None: success)."""
        node = upstream.node.name
        try:
            await exchange(upstream, client, request, settings, out, conn.scope,
                           conn.hard_deadline)
        except BadResponse as exc:
            return NodeFailed(f"node {node}: {exc.reason}")
        except ProtocolError as exc:  # the client's body broke its framing on the way
            return ClientError(exc)
        except OSError as exc:
            return NodeFailed(f"node {node}: {exc.strerror or exc}")
        return None

    async def timed_out(self, client: Client, peer: Any, conn: _Conn) -> None:
        """The connection scope fired: say why, answer when the client can still use it."""
        phase = conn.phase
        if phase == _IDLE:
            return  # idle between requests: a quiet close, as every HTTP server does
        if phase == _HEAD:
            await self.fail(client, peer, 408, f"request head not complete within "
                            f"{self.settings.headers_timeout:g}s", None)
            return
        if trio.current_time() >= conn.hard_deadline:
            self.engine.log_failure(peer, f"request older than "
                                          f"{self.engine.settings.max_age:g}s cut "
                                          "(--http-session-max-age)")
            return
        waiting = conn.out.waiting if conn.out is not None else ""
        timeout = self.settings.timeout
        if waiting == "write":  # the client stopped reading: no answer can reach it
            self.engine.log_failure(peer, f"client took no byte for {timeout:g}s")
            return
        if waiting == "read":  # the node waits for a body the client stopped sending
            error: RoutingError = ClientError(BadRequest(
                f"client sent no body byte for {timeout:g}s", status=408))
        else:
            error = NodeTimeout(f"node {conn.node_name} silent for {timeout:g}s")
        if conn.out is not None and conn.out.answered:
            self.engine.log_failure(peer, error)
        else:
            await self.fail(client, peer, error.status, error, conn.head, conn.key,
                            node=conn.node_name, started=conn.started)

    async def redirect(self, client: Client, peer: Any, head: RequestHead, host: bytes,
                       started: float) -> bool:
        """``--http-to-https``: 301 to the same host and target over https; as uWSGI,
        the host's port is dropped and the socket's ``,PORT`` (if any) named instead."""
        if not _REDIRECTABLE_HOST.fullmatch(host):  # (a Location it would break)
            await self.fail(client, peer, 400, "no host to redirect to", head, host,
                            started=started)
            return False
        target = head.target if head.target.startswith(b"/") else (
            head.path + (b"?" + head.query if head.query else b""))
        host = _without_port(host)
        if self.https_port is not None:
            host += b":%d" % self.https_port
        keep = self.settings.keepalive and head.keep_alive and not (
            head.chunked or head.content_length)
        answer = simple_response(301, b"", [(b"Location", b"https://" + host + target)],
                                 keep_alive=keep)
        await send_all(client.sock, answer)
        if self.access.own:
            self.access.write(client.remote_addr, client.remote_port, head, 301, len(answer),
                              host, "", time.monotonic() - started)
        return keep

    # -- errors -----------------------------------------------------------------------------
    async def fail(self, client: Client, peer: Any, status: int, reason: str | RoutingError,
                   head: RequestHead | None, key: bytes | None = None, *, node: str = "",
                   started: float | None = None) -> None:
        """Log why, answer ``status`` with Connection: close, linger, and let the caller
        close. Best effort: the client may already be gone. The request gets its request
        line, ``-`` for what was not read (``node``: the one that failed, if any; ``started``:
        when the request began, monotonic; now if not given)."""
        text = f"{reason.status} {reason.reason}" if isinstance(reason, RoutingError) else reason
        if head is not None:
            text = (f"{head.method.decode('latin-1')} {head.target[:200].decode('latin-1')}"
                    f"{' host=' + key.decode('latin-1') if key is not None else ''}: {text}")
        self.engine.log_failure(peer, f"{status}: {text}")
        answer = simple_response(status)
        if head is not None and head.method == b"HEAD":
            answer = answer[:answer.index(b"\r\n\r\n") + 4]
        sent = 0
        deadline = trio.current_time() + ERROR_SEND_TIMEOUT
        with trio.move_on_at(deadline):
            try:
                await send_all(client.sock, answer)
                sent = len(answer)
            except (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
                pass
        if self.access.own:  # a request refused before its head was read gets one too
            elapsed = time.monotonic() - started if started is not None else 0.0
            self.access.write(client.remote_addr, client.remote_port,
                              head if head is not None else UNPARSED, status, sent,
                              key if key is not None else b"", node, elapsed)
        if sent:
            with trio.move_on_at(deadline):
                await linger(client.sock)  # the unread rest of the request


def make_handler(engine: Engine, cfg: Config, listener: Listener) -> ConnectionHandler:
    """The front entry point used by ``brood.routers.process``."""
    settings = HttpSettings.from_config(cfg)
    return HttpRouter(engine, settings, listener,
                      AccessLog.from_config(cfg, settings.log_format))
