"""The rawrouter's fast lane: TCP connections relayed both ways without a trio task (the
lane itself is ``brood.routers.lane``).

On the general path a relayed connection costs a task per direction, a nursery and a
cancel scope, and a trip through trio's scheduler for each wait: about 200 µs of Python
per short connection (bench/rawrouter.py). Here a connection is a few table entries in
the lane's epoll set, and about 35 µs.

Per connection, as on the general path: the node is connected as the client is taken,
before anything is read from the client (the node may speak first); then bytes go both
ways as they come, each direction half-closed (``shutdown(SHUT_WR)``) when its source
reaches EOF, and both sockets close once both directions ended. A reset or a broken pipe
on either side ends both. A direction whose reads fill the buffer is a bulk stream: from
then on it moves by splice(2) through a pooled pipe, so its bytes never enter Python.
A direction moves at most ``TURN`` bytes at a time before the lane serves its other
sockets (``Lane.later``).

``--rawrouter-timeout``: no byte moved either way for that long closes both sides (a
client slowly draining a full buffer is still moving). ``--rawrouter-session-max-age``
bounds a connection's life. ``--rawrouter-xclient`` connections stay on the general path.

A node the lane cannot connect at once goes to the general path (``RawRouter.resume``)
before a byte was read from the client: a host name, a refused connect or one that
times out (``--rawrouter-connect-timeout``) are taken there as its own first attempt, with
retries, gracetime and fallbacks.
"""

from __future__ import annotations

import errno
import logging
import select
import socket
import time
from typing import TYPE_CHECKING, Any

import trio

from brood.routers.errors import RoutingError
from brood.routers.lane import (
    _IN_OUT,
    BODY,
    CONNECTING,
    TURN,
    Lane,
    LaneConn,
    note_send_queue,
)
from brood.routers.net import sockio
from brood.routers.net.backend import FirstPick
from brood.routers.net.relay import (
    PIPE_SIZE,
    EndFailed,
    at_urgent_mark,
    client_room,
    splice_pipeful,
)

if TYPE_CHECKING:
    from brood.routers.rawrouter import RawRouter

log = logging.getLogger("brood.routers")

# Bytes per copying read; a read that fills it makes its direction a bulk stream.
RECV = 65536
RELAYING = BODY + 1  # a lane state: connected, bytes going both ways
_HUP = select.EPOLLRDHUP | select.EPOLLHUP | select.EPOLLERR
# Urgent data (MSG_OOB: telnet's interrupt, FTP's ABOR) in a source: reads stop short at
# its mark with more queued behind it, and splice never crosses the mark.
_URGENT = select.EPOLLPRI
# A short read no longer says the source is drained: no further edge comes.
_DRAIN_EVENTS = _HUP | _URGENT
_READ_EVENTS = select.EPOLLIN | _DRAIN_EVENTS
_EVENTS = _IN_OUT | _URGENT
# A full socket that took bytes, or one that failed (its next send says how).
_WRITE_EVENTS = select.EPOLLOUT | select.EPOLLERR | select.EPOLLHUP


class Way:
    """One direction of a relayed connection: ``src`` -> ``dst``."""

    __slots__ = ("src", "dst", "src_fd", "dst_fd", "pending", "readable", "drain", "eof",
                 "done", "bulk", "inline", "outq")

    def __init__(self, src: Any, dst: Any) -> None:
        self.src, self.dst = src, dst
        self.src_fd, self.dst_fd = src.fileno(), dst.fileno()
        self.pending = b""  # read from src, not taken by dst yet
        self.readable = False  # src may hold bytes (an edge came, or a read filled RECV)
        self.drain = False  # read until EAGAIN or EOF (a hang-up, urgent data)
        self.eof = False  # src's EOF read
        self.done = False  # src's EOF passed on to dst
        self.bulk = False  # moved by splice from now on
        self.inline = False  # urgent data stays in the stream (SO_OOBINLINE on src)
        self.outq = -1  # dst's send queue when a send to it last fell short


class RawConn(LaneConn):
    """A lane connection with its two directions (set once the node is connected)."""

    __slots__ = ("up_way", "down_way", "urgent")

    def __init__(self, sock: Any, peer: Any) -> None:
        super().__init__(sock, peer)
        self.up_way: Way | None = None  # client -> node
        self.down_way: Way | None = None  # node -> client
        self.urgent = False  # the client sent urgent data while the node was connecting


class RawLane(Lane):
    """The fast lane of one ``RawRouter``."""

    conn_class = RawConn
    client_events = _EVENTS  # EPOLLOUT edges come only after a full send buffer
    connect_events = _EVENTS
    harakiri_of = "session"
    ends_on_client_eof = False  # a half-close goes on to the node (events of its own)

    def __init__(self, router: RawRouter, sessions: trio.Nursery) -> None:
        timeout = router.engine.settings.timeout
        super().__init__(router, sessions, timeout=timeout, first_timeout=timeout)
        self.key = router.key

    def take(self, sock: socket.socket, peer: Any) -> None:
        """Adopt an accepted connection and connect its node. It is a session from here
        on, as on the general path."""
        conn: RawConn = self.adopt(sock, peer)  # type: ignore[assignment]
        self.engine.session_opened()
        conn.held = True
        conn.started = time.monotonic()
        if self.harakiri:
            conn.hard = conn.started + self.harakiri
        engine = self.engine
        node = engine.resolver.resolve(self.key, engine.clock(), conn.client_ip, ())
        if node is None:
            self._to_general(conn)  # fallbacks, or the logged close, there
            return
        err = self._dial(conn, node)
        if err is None:
            return  # handed over
        if conn.up.family != socket.AF_UNIX:  # type: ignore[union-attr]
            # Interactive protocols write small pieces: none waits for an ACK.
            conn.up.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # type: ignore[union-attr]
        if err:
            self._await_connect(conn, conn.started)  # EPOLLOUT (or EPOLLERR) says how
        else:
            self.ep.register(conn.up_fd, _EVENTS)  # its first edge comes at once
            self._connected(conn, 0)

    _accepted = take

    def _connected(self, conn: RawConn, events: int) -> None:
        """The node took the connection (``events``: its first epoll events): the relay
        starts."""
        node, up = conn.node, conn.up
        node.requests += 1  # type: ignore[union-attr]
        node.last_requests += 1  # type: ignore[union-attr]
        node.ref += 1  # type: ignore[union-attr]
        if node.grace_until:  # type: ignore[union-attr]
            node.clear_grace()  # type: ignore[union-attr]
        conn.held = False  # the session is the relay's from here on (_close_node ends it)
        conn.counted = True
        conn.state = RELAYING
        conn.deadline = time.monotonic() + self.timeout
        conn.up_way = up_way = Way(conn.sock, up)
        conn.down_way = down_way = Way(up, conn.sock)
        up_way.drain = conn.hup  # what the client did while the node was connecting
        up_way.readable = conn.readable or conn.hup
        if conn.urgent:
            self._urgent(up_way)
        if events & _URGENT:
            self._urgent(down_way)
        down_way.drain = bool(events & _DRAIN_EVENTS)  # a node that speaks first, or closes
        down_way.readable = bool(events & _READ_EVENTS)
        self._resume(conn)

    def _fail_over(self, conn: LaneConn, error: RoutingError) -> None:
        """Nothing to answer on a raw connection: the line says why it closed."""
        self.engine.log_failure(conn.peer, error)
        self._drop(conn)

    def _to_general(self, conn: LaneConn, first_pick: FirstPick | None = None) -> None:
        """``RawRouter.resume`` takes the held session over; nothing was read yet."""
        conn.held = False
        self._hand_over(conn, self.router.resume, first_pick, True)

    # -- events -----------------------------------------------------------------------------
    def _client_event(self, conn: RawConn, events: int) -> None:  # type: ignore[override]
        way = conn.up_way
        if way is None:  # still connecting: nothing is read before the node is there
            if events & _DRAIN_EVENTS:
                if events & _URGENT:
                    conn.urgent = True
                conn.hup = True
            if events & _READ_EVENTS:
                conn.readable = True
            return
        self._event(conn, way, conn.down_way, events)  # type: ignore[arg-type]

    def _node_event(self, conn: RawConn, events: int) -> None:  # type: ignore[override]
        if conn.state == CONNECTING:
            up = conn.up
            err = 0
            try:
                up.getpeername()  # type: ignore[union-attr]
            except OSError:  # refused, reset, or not done (an event for an earlier socket)
                err = up.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)  # type: ignore[union-attr]
                if not err:
                    return  # still in progress: its own edge comes
                if err not in sockio.RESET_AFTER_ACCEPT:
                    node = conn.node
                    self._close_node(conn)
                    self._connect_failed(conn, node, err)  # type: ignore[arg-type]
                    return
                # The node took the connection and reset it at once: served and ended,
                # as on the general path, not a failed connect.
            self._connected(conn, events)
            if err and self.conns.get(conn.fd) is conn:  # (SO_ERROR said it, recv won't)
                self._broken(conn, ConnectionResetError(err, "reset by the node"))
            return
        self._event(conn, conn.down_way, conn.up_way, events)  # type: ignore[arg-type]

    def _event(self, conn: RawConn, way: Way, back: Way, events: int) -> None:
        """Events of a socket that is ``way``'s source and ``back``'s destination."""
        if events & _DRAIN_EVENTS:
            if events & _URGENT:
                self._urgent(way)
            way.drain = True
        if events & _READ_EVENTS:
            way.readable = True
            if not self._pump(conn, way):
                return
        if events & _WRITE_EVENTS and back.pending:
            self._pump(conn, back)

    def _urgent(self, way: Way) -> None:
        """Urgent data in ``way``'s source: it is relayed as a plain byte (the general
        path's copy does the same), by copy while it lasts (splice stops at its mark)."""
        if not way.inline:
            way.inline = True
            way.src.setsockopt(socket.SOL_SOCKET, socket.SO_OOBINLINE, 1)
        way.bulk = False

    def _resume(self, conn: RawConn) -> None:  # type: ignore[override]
        if self._pump(conn, conn.up_way):  # type: ignore[arg-type]
            self._pump(conn, conn.down_way)  # type: ignore[arg-type]

    # -- moving bytes -----------------------------------------------------------------------
    def _pump(self, conn: RawConn, way: Way) -> bool:
        """Move ``way``'s bytes as far as both sockets allow, up to ``TURN``; pass its EOF
        on. False when the connection ended."""
        if way.pending:  # what dst could not take before
            done = self._send(conn, way, way.pending)
            if done <= 0:
                return not done
            conn.deadline = time.monotonic() + self.timeout  # dst took the rest
        turn = TURN
        while True:
            if way.eof:
                return self._way_done(conn, way)
            if not way.readable:
                return True
            if turn <= 0:
                self.later[conn.fd] = conn
                return True
            if way.bulk and self.splice:
                moved = self._splice(conn, way)
                if moved < 0:
                    return False
                if way.pending:
                    return True  # dst is full: its EPOLLOUT edge resumes this way
                turn -= moved
                continue
            try:
                data = way.src.recv(RECV)
            except BlockingIOError:
                way.readable = False
                return True
            except OSError as exc:
                return self._broken(conn, exc)
            if not data:
                way.eof = True
                continue
            size = len(data)
            if size == RECV:
                way.bulk = True
            elif not way.drain:
                way.readable = False  # drained: the next edge says when there is more
            turn -= size
            conn.deadline = time.monotonic() + self.timeout
            done = self._send(conn, way, data)
            if done <= 0:
                return not done

    def _send(self, conn: RawConn, way: Way, data: bytes) -> int:
        """``data`` to ``way.dst``: 1 when all of it went, 0 when the rest waits in
        ``pending`` (dst is full), -1 when the connection ended."""
        try:
            sent = way.dst.send(data)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            self._broken(conn, exc)
            return -1
        if sent:
            self._count(conn, way, sent)
        if sent < len(data):
            way.pending = data[sent:]
            note_send_queue(way, way.dst_fd)  # a slow reader is told from a stalled one by it
            return 0
        way.pending = b""
        return 1

    def _splice(self, conn: RawConn, way: Way) -> int:
        """One pipeful src -> dst by splice(2); the bytes moved, -1 when the connection
        ended. What dst could not take waits in ``pending``."""
        try:
            want = client_room(way.dst, PIPE_SIZE)  # what dst cannot take waits in Python
            moved, out, rest = splice_pipeful(way.src_fd, way.dst_fd, want)
        except BlockingIOError:
            # Splice stops at an urgent mark (EAGAIN with bytes queued behind it); only
            # a source that sent urgent data before is asked (a bulk read may have
            # turned splicing back on since).
            if way.inline and at_urgent_mark(way.src_fd):
                self._urgent(way)
                return 0
            way.readable = False
            return 0
        except EndFailed as failed:
            exc = failed.error
            if failed.end == way.src_fd and getattr(exc, "errno", None) == errno.EINVAL:
                self.splice = False  # this kernel cannot splice these: copy instead
                return 0
            self._broken(conn, exc)  # type: ignore[arg-type]
            return -1
        if not moved:
            if at_urgent_mark(way.src_fd):  # 0 at a mark with the EOF queued behind it
                self._urgent(way)
                return 0
            way.eof = True
            return 0
        if out:
            self._count(conn, way, out)
        if rest:
            way.pending = rest  # counted as it goes out
            note_send_queue(way, way.dst_fd)
        conn.deadline = time.monotonic() + self.timeout
        return moved

    def _count(self, conn: RawConn, way: Way, size: int) -> None:
        """Bytes delivered one way, in the node's counters (as the general path counts)."""
        if way is conn.up_way:
            conn.node.rx += size  # type: ignore[union-attr]
        else:
            conn.node.tx += size  # type: ignore[union-attr]

    def _way_done(self, conn: RawConn, way: Way) -> bool:
        """``way``'s source ended and all its bytes went: half-close its destination, or
        close both sides when the other way ended too. False when the connection ended."""
        if way.done:
            return True
        way.done = True
        other = conn.down_way if way is conn.up_way else conn.up_way
        if other.done:  # type: ignore[union-attr]
            self._close_node(conn)
            self._drop(conn)
            return False
        try:
            way.dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # reset already: the other way's next call says so
        return True

    def _broken(self, conn: RawConn, exc: OSError) -> bool:
        """A reset or a broken pipe on either side ends both."""
        log.debug("rawrouter: connection from %s ended: %s", conn.peer, exc)
        self._drop(conn)
        return False

    # -- timeouts ---------------------------------------------------------------------------
    def _expire(self, conn: LaneConn, now: float) -> None:
        if conn.hard <= now or conn.state == CONNECTING:
            super()._expire(conn, now)
        elif _still_reading(conn.down_way) | _still_reading(conn.up_way):  # type: ignore[attr-defined]
            # (both looked at: each notes its queue) a slow reader, client or node, still reads
            conn.deadline = now + self.timeout
        else:
            self.engine.log_failure(conn.peer, f"idle for {self.timeout:g}s, closed")
            self._drop(conn)


def _still_reading(way: Way) -> bool:
    """Whether ``way``'s destination took bytes since the last look: its send queue moved
    (bytes waiting in ``pending`` or not, a slow reader may be draining what the kernel
    holds for it). At the first look, a queue not empty yet is given one more timeout."""
    queued = sockio.send_queue(way.dst_fd)
    moved = queued > 0 if way.outq < 0 else queued != way.outq
    way.outq = queued
    return moved and queued >= 0
