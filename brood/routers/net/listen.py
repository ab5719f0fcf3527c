"""The accept loop of a router process on a listening socket the master bound.

Several router processes accept on the same inherited socket; the kernel hands each
connection to one of them. Accepted sockets stay raw ``trio.socket`` sockets (the fronts
wrap them only when they must, e.g. TLS) and get TCP_NODELAY at once. accept(2) is called
on the kernel socket directly and retried at once while it succeeds (up to
``ACCEPT_BATCH``): only an empty backlog waits in the event loop. A process leaves a
connection to a sibling that holds clearly fewer, for a moment (``brood.routers.net.spread``).

The loop runs until its cancel scope is cancelled (graceful stop: no more accepts), while
the connections it started live in a separate ``sessions`` nursery owned by the caller,
so they can finish after accepting stopped.
"""

from __future__ import annotations

import errno
import logging
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from brood.routers.net import sockio
from brood.routers.net.relay import listener_nodelay, set_nodelay
from brood.routers.net.spread import DEFER, Spread

log = logging.getLogger("brood.routers")

ConnectionHandler = Callable[[trio.socket.SocketType, Any], Awaitable[None]]

# Out of file descriptors or memory: accepting again at once would spin; trio's own
# serve_listeners waits 100 ms too.
_RESOURCE_ERRORS = {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}
# accept(2) errors that only say the client left before it was taken.
CLIENT_LEFT = {errno.ECONNABORTED, errno.EPROTO, errno.EPERM}
_RESOURCE_PAUSE = 0.1
# Connections taken per wake-up before the loop yields: accept(2) is tried again at once
# (no trip through the event loop while the backlog holds more), but a flood of
# connects must not keep the sessions already accepted from running.
ACCEPT_BATCH = 16


def adopt(sock: socket.socket) -> trio.socket.SocketType:
    """A trio socket over a duplicate of ``sock``'s fd (the Listener keeps its own)."""
    return trio.socket.from_stdlib_socket(sock.dup())


async def accept_loop(
    listen_sock: trio.socket.SocketType,
    handler: ConnectionHandler,
    sessions: trio.Nursery,
    *,
    may_accept: Callable[[], Awaitable[None]] | None = None,
    must_pause: Callable[[], Awaitable[None]] | None = None,
    spread: Spread | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Accept forever, running ``handler(sock, peer)`` for each connection in ``sessions``.

    ``may_accept`` is awaited before each accept (cheap mode waits there for nodes).
    ``spread``: this process's share of the connections (``brood.routers.net.spread``);
    a connection a sibling should take is left to it first (two ``DEFER`` at most).
    The handler owns nothing: the accepted socket is closed here when it returns.
    A handler with a fast lane (``lane_for(sessions)``) has the lane accept instead
    (``Lane.listening``): this task then holds the socket there, and takes it out when
    ``must_pause`` returns (cheap mode again) until ``may_accept`` says go on.
    """
    task_status.started()
    spread = spread or Spread()
    raw = sockio.raw(listen_sock)
    inherits_nodelay = listener_nodelay(raw)
    lane_of = getattr(handler, "lane_for", None)
    lane = lane_of(sessions) if lane_of is not None else None
    if lane is not None:
        while True:
            if may_accept is not None:
                await may_accept()
            with lane.listening(raw, inherits_nodelay):
                await (must_pause() if must_pause is not None else trio.sleep_forever())
    batch = 0
    forced = False
    seen: tuple[int, bool] | None = None  # Spread.wait_again's note while one waits
    paused = False  # out of fds or memory: accepts are being retried
    while True:
        if may_accept is not None:
            await may_accept()
        if batch >= ACCEPT_BATCH:
            batch = 0
            forced = False
            await trio.lowlevel.checkpoint()  # a flood of connects must not starve sessions
        if spread.shared and not forced and not spread.my_turn():
            seen = spread.wait_again(seen)
            if seen is not None:  # a sibling holds fewer: its turn first
                await trio.sleep(DEFER)
                continue
            forced = True  # they accepted none over two DEFERs: they are not taking them
        seen = None
        try:
            sock, peer = raw.accept()
        except BlockingIOError:
            batch = 0
            forced = False
            await trio.lowlevel.wait_readable(raw)
            continue
        except OSError as exc:
            if exc.errno in _RESOURCE_ERRORS:
                if not paused:  # one line while it lasts, not one per pause
                    log.error("accept on %s: %s, pausing until it passes",
                              _address(raw), exc.strerror)
                    paused = True
                await trio.sleep(_RESOURCE_PAUSE)
                continue
            if exc.errno in CLIENT_LEFT:
                continue  # the client left before we took it
            raise
        paused = False
        batch += 1
        if spread.shared:
            spread.took()
        spread.opened()  # counted at once: the next my_turn() in this batch sees it
        conn = trio.socket.from_stdlib_socket(sock)
        if not inherits_nodelay:
            set_nodelay(conn)
        sessions.start_soon(run_connection, spread, handler, conn, peer)


def _address(raw: socket.socket) -> str:
    try:
        name = raw.getsockname()
    except OSError:
        return f"fd {raw.fileno()}"
    return f"{name[0]}:{name[1]}" if isinstance(name, tuple) else str(name)


async def run_connection(spread: Spread, handler: Callable[..., Awaitable[None]],
                         conn: trio.socket.SocketType, peer: Any, *args: Any) -> None:
    """``handler(conn, peer, *args)``; a peer that resets is routine, anything else is
    logged with its traceback (as the fast lane does), and ``conn`` is closed once the
    handler is done. ``spread`` counted it when it was accepted (here,
    or by a fast lane that hands it over); it is counted out as it closes."""
    try:
        await handler(conn, peer, *args)
    except (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
        # A peer that resets mid-request is routine for a router, not a crash.
        log.debug("connection from %s ended: %s", peer, exc)
    except Exception:  # a bug: this connection goes, the process and its others stay
        log.exception("connection from %s failed", peer)
    finally:
        spread.closed()
        sockio.close(conn)  # the handler and every task it started are done with it
