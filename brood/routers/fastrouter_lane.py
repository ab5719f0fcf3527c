"""The fastrouter's fast lane: a uwsgi packet in, the same packet to a node, the answer
back raw, without a trio task (the lane itself is ``brood.routers.lane``).

Behind nginx every request is a new connection whose packet comes with the connect, so
the lane reads it as it takes the socket (``take``). It serves the request whole when:

* the header, the vars block (within ``--buffer-size``) and the body (CONTENT_LENGTH;
  no chunked body, no upgrade) came in that read: ``--fastrouter-post-buffering`` has
  nothing left to hold back then;
* there is a key (``--fastrouter-force-key``, UWSGI_FASTROUTER_KEY, HTTP_HOST,
  SERVER_NAME) and the resolver's first pick connects at once.

The packet goes out with the node's modifiers in bytes 0 and 3; the answer is relayed
unchanged until the node closes (one request per uwsgi connection; a long answer by
splice), then both sockets close. Anything else goes to the general path
(``FastRouter.resume``) from the packet's first byte: it waits for the rest of a packet
within ``--fastrouter-timeout``, spools bodies, retries, falls back, and answers every
error before a node. After the request went out, a node that fails or stays silent
before the first byte of its answer is answered 502 / 504, as HTTP (nginx shows it).
"""

from __future__ import annotations

import logging
import socket
from typing import TYPE_CHECKING, Any

import trio

from brood.protocol.errors import ProtocolError
from brood.protocol.uwsgi import decode_vars
from brood.protocol.vars import routing_key
from brood.routers.errors import RoutingError
from brood.routers.fastrouter import body_sent, error_response
from brood.routers.lane import BODY, Lane, LaneConn
from brood.routers.net.backend import FirstPick

if TYPE_CHECKING:
    from brood.routers.fastrouter import FastRouter

log = logging.getLogger("brood.routers")


class FastConn(LaneConn):
    """A lane connection and whether its request carries a body."""

    __slots__ = ("with_body",)

    def __init__(self, sock: socket.socket, peer: Any) -> None:
        super().__init__(sock, peer)
        self.with_body = False


class FastLane(Lane):
    """The fast lane of one ``FastRouter``."""

    conn_class = FastConn
    harakiri_of = "session"  # one request per connection: the engine's session

    def __init__(self, router: FastRouter, sessions: trio.Nursery) -> None:
        timeout = router.engine.settings.timeout
        super().__init__(router, sessions, timeout=timeout, first_timeout=timeout)
        self.force_key = router.force_key
        self.limit = router.limit

    def take(self, sock: socket.socket, peer: Any) -> None:
        """Adopt an accepted connection and serve the packet that came with it. It is
        a session from here on, as on the general path: a graceful stop waits for a
        client whose packet has not come yet."""
        conn = self.adopt(sock, peer)
        self.engine.session_opened()
        conn.held = True
        try:
            self._read_request(conn)
        except Exception:  # as in run(): this connection goes, the accept loop stays
            log.exception("fastrouter: fast lane failed on %s", peer)
            self._drop(conn)

    _accepted = take

    def _start(self, conn: LaneConn) -> None:
        buf = conn.buf
        if len(buf) < 4:
            self._to_general(conn)  # the rest of the header, within the timeout, there
            return
        size = buf[1] | buf[2] << 8
        end = 4 + size
        if size > self.limit or len(buf) < end:
            self._to_general(conn)  # 431, or the rest of the vars block
            return
        try:
            pairs = decode_vars(buf, 4, end)
        except ProtocolError:
            self._to_general(conn)  # it answers 400 and says why
            return
        key = self.force_key if self.force_key is not None else routing_key(pairs)
        if key is None or not body_sent(pairs, len(buf) - end):
            self._to_general(conn)  # no key (fallback or 400), or a body still coming
            return
        engine = self.engine
        node = engine.resolver.resolve(key, engine.clock(), conn.client_ip, ())
        if node is None:
            self._to_general(conn)  # fallbacks or 503 there
            return
        conn.key = key
        conn.with_body = len(buf) > end  # type: ignore[attr-defined]
        packet = bytes((node.modifier1,)) + buf[1:3] + bytes((node.modifier2,)) + buf[4:]
        self._open_node(conn, node, packet, len(buf))

    def _to_general(self, conn: LaneConn, first_pick: FirstPick | None = None) -> None:
        """``FastRouter.resume`` takes the held session over (it closes it once its
        own is open: the count never drops to zero in between)."""
        conn.held = False
        self._hand_over(conn, self.router.resume, conn.buf, first_pick, True)

    def _answer_head(self, conn: LaneConn, data: bytes) -> bytes:
        """Relayed as it comes, until the node closes."""
        conn.state = BODY
        conn.remaining = -1
        conn.node_keep = False
        return data

    def _finish(self, conn: LaneConn, complete: bool) -> None:
        self._close_node(conn, complete)  # complete: the node closed after its answer
        self._drop(conn)

    def _node_failed(self, conn: LaneConn, reason: str) -> None:
        """As ``Lane._node_failed``, but a node that answered (a 413, say) and closed
        without reading the whole body is no failure: the kernel turned its close into
        a reset, and the answer, all sent, is the end of the request (as on the
        general path)."""
        if conn.with_body and conn.sent and not conn.pending:  # type: ignore[attr-defined]
            log.debug("fastrouter: node %s answered %s with %d bytes and closed before the "
                      "whole body (%s)", conn.node.name, conn.peer, conn.sent, reason)  # type: ignore[union-attr]
            self._finish(conn, False)
            return
        Lane._node_failed(self, conn, reason)

    def _fail_over(self, conn: LaneConn, error: RoutingError) -> None:
        """Log, and answer with the short HTTP error at once: the socket's buffer is
        empty (no byte of the answer went), so a non-blocking send takes it whole."""
        self.engine.log_failure(conn.peer, error)
        try:
            conn.sock.send(error_response(error.status))
        except OSError:
            pass  # the client is gone
        self._drop(conn)

    def _idle_expired(self, conn: LaneConn) -> None:
        self.engine.log_failure(conn.peer, f"no complete uwsgi packet within "
                                           f"{self.timeout:g}s")
        self._drop(conn)
