"""The fastrouter front: uwsgi packets in, the same packets out to a node chosen by key.

Per connection: read the header and the whole vars block (bounded by the buffer size),
take the key (``UWSGI_FASTROUTER_KEY``, else the last ``HTTP_HOST``, else ``SERVER_NAME``,
as ``routing_key`` reads them; or ``--fastrouter-force-key`` for every request), pick its
node and then, with ``--fastrouter-post-buffering``, spool the body, connect through the
engine, send the packet with header bytes 0 and 3 replaced by the node's
modifier1/modifier2, then relay body and answer.

Where uWSGI closes silently (no key, unknown key, bad packet, dead nodes), brood answers a
short HTTP error (400/502/503/504) and logs why: the fastrouter's client is usually nginx,
which would otherwise show its own 502 with no reason.
"""

from __future__ import annotations

import logging
import tempfile
from http import HTTPStatus
from typing import Any

import trio

from brood.config.model import Config
from brood.listener import Listener
from brood.protocol.errors import BadRequest, ProtocolError
from brood.protocol.uwsgi import MAX_VARS_SIZE, Packet, PacketReader, header_with_modifiers
from brood.protocol.vars import routing_key
from brood.routers.engine import Engine, Upstream, client_ip, option
from brood.routers.errors import (
    ClientError,
    NodeFailed,
    NodeTimeout,
    NoNode,
    RoutingError,
    error_body,
)
from brood.routers.net import sockio
from brood.routers.net.backend import FirstPick
from brood.routers.net.listen import ConnectionHandler
from brood.routers.net.relay import DROP_MAX, linger, receive_some, send_all
from brood.routers.net.spool import Spool

log = logging.getLogger("brood.routers")

RECV_CHUNK = 65536
# Vars of a request whose client may keep sending after its packet.
_STREAMING = frozenset((b"HTTP_TRANSFER_ENCODING", b"HTTP_UPGRADE"))


def error_response(status: int) -> bytes:
    """A complete HTTP/1.0 error answer; uwsgi clients (nginx) parse it like a node's."""
    body = error_body(status)
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    head = (f"HTTP/1.0 {status} {phrase}\r\nContent-Type: text/plain\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n")
    return head.encode("latin-1") + body


def content_length(pairs: list[tuple[bytes, bytes]]) -> int:
    """CONTENT_LENGTH of the request (the last one given), 0 when absent or not a number."""
    value = b""
    for key, val in pairs:
        if key == b"CONTENT_LENGTH":
            value = val
    return int(value) if value.strip().isdigit() else 0


def body_sent(pairs: list[tuple[bytes, bytes]], sent: int) -> bool:
    """Whether the request is complete with ``sent`` body bytes: CONTENT_LENGTH reached,
    no chunked body and no upgrade (which would keep the client talking). Then only the
    answer remains to relay (``Upstream.relay_answer``), the common case behind nginx."""
    length = b""
    for key, value in pairs:
        if key == b"CONTENT_LENGTH":
            length = value
        elif key in _STREAMING:
            return False
    if not length.strip():
        return True
    return length.strip().isdigit() and int(length) <= sent


class FastRouter:
    """Connection handler of one fastrouter socket."""

    def __init__(self, engine: Engine, cfg: Config) -> None:
        self.engine = engine
        force = option(cfg, "fastrouter-force-key", None)
        self.force_key: bytes | None = force.encode() if isinstance(force, str) else force
        self.fallback_on_no_key = bool(option(cfg, "fastrouter-fallback-on-no-key", False))
        self.post_buffering = int(option(cfg, "fastrouter-post-buffering", 0))
        self.post_buffering_dir = option(cfg, "fastrouter-post-buffering-dir", None)
        # Any vars block a uwsgi header can announce (a 16-bit size), whatever the buffer
        # size: uWSGI's fastrouter forwards them all (big cookies behind nginx).
        self.limit = MAX_VARS_SIZE
        self.lane: Any = None

    # -- the fast lane --------------------------------------------------------------------
    def lane_for(self, sessions: trio.Nursery) -> Any:
        """The fast lane (``fastrouter_lane``), started at first use; it accepts and
        serves the usual request, the general path (``resume``) the rest."""
        lane = self.lane
        if lane is None:
            from brood.routers.fastrouter_lane import FastLane

            lane = self.lane = FastLane(self, sessions)
            sessions.start_soon(lane.run)
        return lane

    async def resume(self, conn: trio.socket.SocketType, peer: Any, buf: bytes,
                     first_pick: FirstPick | None = None, held: bool = False) -> None:
        """The general path for a connection the lane read ``buf`` from (``first_pick``:
        the lane's node for it and how its connect failed; ``held``: the lane's session
        for it, closed here once this one is open)."""
        await self(conn, peer, buf, first_pick, held)

    # -- the general path -------------------------------------------------------------------
    async def __call__(self, conn: trio.socket.SocketType, peer: Any, first: bytes = b"",
                       first_pick: FirstPick | None = None, held: bool = False) -> None:
        engine = self.engine
        async with engine.session(peer):
            if held:
                engine.session_handed_over()
            timeout = engine.settings.timeout
            try:
                packet, rest = await self.read_packet(conn, timeout, first)
            except ProtocolError as exc:
                engine.log_failure(peer, f"bad uwsgi packet: {exc.reason}")
                await self.answer(conn, exc.status)
                return
            except trio.TooSlowError:
                engine.log_failure(peer, f"client sent no byte of its uwsgi packet for {timeout:g}s")
                return
            if packet is None:
                return  # the client closed before sending a whole packet
            key = self.force_key if self.force_key is not None else routing_key(packet.vars)
            spool = None
            try:
                try:
                    if key is None:  # nothing to route by (uWSGI closes, the fallbacks too)
                        raise NoNode.for_key(key)
                    if self.post_buffering > 0:
                        if first_pick is None:  # a key nobody serves: answered, no body read
                            first_pick = self.pick(key, peer)
                        spool, rest = await self.buffer_body(conn, packet, rest, peer)
                        if spool is None:
                            return
                    upstream = await engine.connect(
                        key, client=client_ip(peer),
                        fallback_on_no_node=self.fallback_on_no_key, first_pick=first_pick)
                except RoutingError as exc:
                    engine.log_failure(peer, exc)
                    await self.answer(conn, exc.status)
                    if spool is None:  # the body unread: taken and dropped, so that the
                        await self.drop_body(conn, packet, rest)  # close resets nothing
                    return
                async with upstream:
                    await self.forward(conn, peer, upstream, packet, rest, spool)
            finally:
                if spool is not None:
                    spool.close()

    async def drop_body(self, conn: trio.socket.SocketType, packet: Packet,
                        rest: bytes) -> None:
        """Take and drop the body of a request answered before it was read (up to
        ``DROP_MAX``, each read within the timeout): closing on unread bytes is a reset,
        and nginx, still sending the body, turns the answer into its own 502. The
        answer is ended first (a half-close): the client need not send it all."""
        await linger(conn, min(content_length(packet.vars) - len(rest), DROP_MAX),
                     idle=self.engine.settings.timeout)

    def pick(self, key: bytes, peer: Any) -> FirstPick | None:
        """The node for ``key`` before a body is buffered, so that a key nobody serves is
        answered at once, not once the whole body is in (as uWSGI resolves first).
        None: the resolver has none, but the fallbacks may take it (``connect`` goes on
        from there); NoNode when nothing would."""
        engine = self.engine
        node = engine.resolver.resolve(key, engine.clock(), client_ip(peer), ())
        if node is not None:
            return node, None
        if self.fallback_on_no_key or engine.static_nodes():
            return None
        raise NoNode.for_key(key)

    async def read_packet(self, conn: trio.socket.SocketType, timeout: float,
                          first: bytes = b"") -> tuple[Packet | None, bytes]:
        """Header + complete vars block, and the body bytes that came with them
        (``first``: read already); trio.TooSlowError when the client sends nothing for
        ``timeout``. A client such as nginx sends the packet with its connect,
        so it has usually all arrived by the accept: then no cancel scope is needed."""
        reader = PacketReader(self.limit)
        if first:
            packet = reader.feed(first)
            if packet is not None:
                return packet, reader.rest
        data = sockio.try_recv(conn, RECV_CHUNK)
        if data is not None:
            if not data:
                return None, b""
            packet = reader.feed(data)
            if packet is not None:
                return packet, reader.rest
        while True:
            with trio.fail_after(timeout):  # per read, as uWSGI: a slow client still sends
                data = await receive_some(conn, RECV_CHUNK)
            if not data:
                return None, b""
            packet = reader.feed(data)
            if packet is not None:
                return packet, reader.rest

    async def buffer_body(self, conn: trio.socket.SocketType, packet: Packet,
                          rest: bytes, peer: Any = None) -> tuple[Spool | None, bytes]:
        """Read CONTENT_LENGTH body bytes into a Spool before any node is contacted.
        (None, b"") when the client went away or stalled past the timeout."""
        length = content_length(packet.vars)
        spool = Spool(self.post_buffering, self.post_buffering_dir)
        try:
            spool.write(rest[:length])
            rest = rest[length:]
            while spool.size < length:
                with trio.move_on_after(self.engine.settings.timeout):
                    try:
                        data = await receive_some(conn, min(RECV_CHUNK, length - spool.size))
                    except OSError:  # the client reset: the body ends here (said below)
                        break
                    if not data:
                        break
                    spool.write(data)
                    await trio.lowlevel.checkpoint()  # the recv yields only when it waits
                    continue
                break
        except OSError as exc:  # the temporary file: no directory, disk full, no fd left
            spool.close()
            where = self.post_buffering_dir or tempfile.gettempdir()
            self.engine.log_failure(peer, f"500: cannot buffer the body in {where}: "
                                          f"{exc.strerror or exc}")
            await self.answer(conn, 500)
            return None, b""
        if spool.size < length:
            spool.close()
            self.engine.log_failure(peer, f"request body ended at {spool.size} of {length} bytes")
            return None, b""
        return spool, rest

    async def forward(self, conn: trio.socket.SocketType, peer: Any, upstream: Upstream,
                      packet: Packet, rest: bytes, spool: Spool | None) -> None:
        node = upstream.node
        head = header_with_modifiers(packet.raw, node.modifier1, node.modifier2)
        await upstream.send(head + packet.raw[4:] + (b"" if spool else rest))
        if spool is not None:
            timeout = self.engine.settings.timeout
            try:
                await spool.send_to(upstream.sock, timeout)
            except (OSError, trio.TooSlowError) as exc:
                # An early answer (a 413, say) still goes to the client; else the node's
                # failure is said, and answered.
                result = await upstream.relay_answer(conn)
                if result.b_to_a == 0 and result.failed is not conn:
                    err: RoutingError = (
                        NodeTimeout(f"node {node.name} made no room for more of the body "
                                    f"for {timeout:g}s")
                        if isinstance(exc, trio.TooSlowError)
                        else NodeFailed(f"node {node.name}: {getattr(exc, 'strerror', None) or exc}"))
                    self.engine.log_failure(peer, err)
                    await self.answer(conn, err.status)
                return
            node.rx += spool.size
            if rest:
                await upstream.send(rest)
        sent = len(rest) if spool is None else spool.size
        if body_sent(packet.vars, sent):
            result = await upstream.relay_answer(conn, watch_client=True)
            # The node closed after its answer and had the whole request: nothing is
            # owed either way (Upstream.close resets it). A body still on its way when
            # the node closes keeps the clean close: its queued bytes are delivered.
            upstream.over = not result.timed_out and result.error is None and result.b_to_a > 0
        else:
            result = await upstream.relay(conn, end_when_node_done=True, client_left_if_first=True)
        body_left = max(0, content_length(packet.vars) - sent - result.a_to_b)
        if result.a_left:  # the client (nginx, its own client gone) closed: no one to answer
            log.debug("fastrouter: client %s gone before the answer of %s", peer, node.name)
        elif result.timed_out:
            await self.idle(conn, peer, upstream, result.b_to_a, body_left)
        elif result.failed is conn:  # the client went away: not the node's failure
            log.debug("fastrouter: client %s gone: %s", peer, result.error)
        elif result.b_to_a and (result.b_stopped_reading
                                or (body_left and result.error is not None)):
            # It answered (a 413, say) and closed without reading the whole body, which
            # the kernel turns into a reset: the answer went to the client; the rest of
            # the body is read and dropped so that the close does not reset it too.
            log.debug("fastrouter: node %s answered %s with %d bytes and closed before the "
                      "whole body", node.name, peer, result.b_to_a)
            await linger(conn)
        elif result.error is not None or result.b_to_a == 0:
            # No byte of an answer (nginx would say only "502"), or one cut by a reset.
            error = result.error
            reason = (f"{getattr(error, 'strerror', None) or error}" if error is not None
                      else "node closed without answering")
            err = NodeFailed(f"node {node.name}: {reason}")
            self.engine.log_failure(peer, err)
            if result.b_to_a == 0:
                await self.answer(conn, err.status)

    async def idle(self, conn: trio.socket.SocketType, peer: Any, upstream: Upstream,
                   answered: int, body_left: int) -> None:
        """The relay's idle timeout fired: say who stopped, from the send queues of both
        sockets (SIOCOUTQ: bytes the peer has not taken) and the body still owed, and
        answer when no byte of the node's answer went out yet (``answered``)."""
        timeout = self.engine.settings.timeout
        if sockio.send_queue(conn.fileno()) > 0:  # no answer can reach it
            self.engine.log_failure(peer, f"client took no byte for {timeout:g}s")
            return
        node = upstream.node.name
        error: RoutingError
        unread = sockio.send_queue(upstream.sock.fileno())
        if unread > 0:  # (it may have read some, slowly: the rest was queued long ago)
            error = NodeTimeout(f"node {node} left {unread} body bytes unread for "
                                f"{timeout:g}s")
        elif body_left:  # the node waits for a body the client stopped sending
            error = ClientError(BadRequest(f"client sent no body byte for {timeout:g}s "
                                           f"({body_left} bytes missing)", status=408))
        else:
            error = NodeTimeout(f"node {node} silent for {timeout:g}s")
        self.engine.log_failure(peer, error)
        if not answered:
            await self.answer(conn, error.status)

    async def answer(self, conn: trio.socket.SocketType, status: int) -> None:
        """Best effort: the client may already be gone."""
        try:
            with trio.move_on_after(self.engine.settings.timeout):
                await send_all(conn, error_response(status))
        except OSError:
            pass


def make_handler(engine: Engine, cfg: Config, listener: Listener) -> ConnectionHandler:
    """The front entry point used by ``brood.routers.process``."""
    return FastRouter(engine, cfg)
