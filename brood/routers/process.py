"""A router process: the target the master forks for ``--X-processes`` (one per core).

``run_router`` is what a router ``ChildSpec`` calls in the forked child: it starts
``trio.run`` with the front's accept loops on the inherited listening sockets, the
``--X-stats`` server in the same loop, and the signal handling:

* SIGHUP / SIGTERM: graceful. Stop accepting at once (another process or the next
  generation takes new connections), let open sessions finish within the mercy
  (``--reload-mercy``, 60 s), then exit 0.
* SIGINT / SIGQUIT: immediate (also during a graceful stop). Cancel everything, exit 0.

On a graceful reload the master does not wait for this drain: it re-executes, and its
next incarnation forks new router processes on the same listening sockets while this
one finishes its sessions (``brood.master_children``, hand-off). What ties a process
to its master incarnation runs in the accept nursery and so stops with accepting: the
subscription feed (its replica stays as it was for the sessions still open), the stats
publishing (its snapshot file is withdrawn), the stats accept loop and the spread
heartbeat (it leaves the table). The next incarnation makes fresh ones of each, so a
draining process and its successors never share them.

``serve_router`` is the same minus signals, for embedding and in-process tests::

    server = await nursery.start(serve_router, "fastrouter", cfg, listeners)
    server.stop_accepting(); await server.drain(5)   # or server.stop()

A front is a module with ``make_handler(engine, cfg, listener) -> ConnectionHandler``
(an ``async (sock, peer)`` callable that serves one accepted raw socket).
"""

from __future__ import annotations

import functools
import importlib
import logging
import signal
import socket
import time
from collections.abc import Sequence
from typing import Any

import trio

from brood import fdlimit
from brood.config.model import Config
from brood.listener import Listener
from brood.routers.engine import Engine, RouterSettings, option
from brood.routers.net.listen import accept_loop, adopt
from brood.routers.net.relay import receive_some, send_all
from brood.routers.net.spread import Spread, SpreadTable
from brood.routers.stats_share import StatsShare
from brood.routers.watchdog import Watchdog
from brood.signals import STOPS, release_stops

log = logging.getLogger("brood.routers")

# Router kind -> the module serving it. "https" sockets belong to the HTTP router.
FRONTS = {
    "fastrouter": "brood.routers.fastrouter",
    "rawrouter": "brood.routers.rawrouter",
    "http": "brood.routers.http.router",
    "sslrouter": "brood.routers.sslrouter",
}
# Option prefix (--X-to, --X-timeout...) of each listener proto.
PREFIX = {"https": "http", "http-to-https": "http"}

IMMEDIATE = (signal.SIGINT, signal.SIGQUIT)
# While a drain waits on requests clients sent on kept-alive connections: how often it
# looks again whether they went out (they become sessions once they do).
DRAIN_POLL = 0.01
# --stats-http: how long to wait for the request bytes before answering anyway.
STATS_HTTP_WAIT = 5.0


def build_engine(kind: str, cfg: Config, subscription: Any = None, caches: Any = None) -> Engine:
    """The engine for ``kind`` from the config: settings plus the resolver chain
    (``subscription``: the table replica's resolver, when the router has a feed;
    ``caches``: the feed's cache replica, for ``--X-use-cache``)."""
    from brood.routers.resolve import build_resolver

    resolver = build_resolver(cfg, kind, subscription, caches=caches, report=functools.partial(
        _code_string_failed, kind))
    settings = RouterSettings.from_config(cfg, kind)
    return Engine(settings, resolver, has_nodes=_has_static_mapping(cfg, kind))


def engine_for(kind: str, cfg: Config, feed: Any = None) -> Engine:
    """``build_engine`` for a router process of ``kind`` with its ``feed``."""
    return build_engine(PREFIX.get(kind, kind), cfg,
                        feed.resolver if feed is not None else None, getattr(feed, "caches", None))


def _code_string_failed(kind: str, message: str) -> None:
    """``--X-use-code-string``'s function raised or returned no address: said (uWSGI
    prints the traceback), the request then gets "no node"."""
    log.warning("%s: --%s-use-code-string: %s", kind, kind, message)


def _has_static_mapping(cfg: Config, kind: str) -> bool:
    mappers = ("to", "use-pattern", "use-base", "use-cache", "use-code-string", "use-socket",
               "fallback")
    return any(option(cfg, f"{kind}-{m}", None) for m in mappers)


class RouterServer:
    """Handle on a running router: its engine and how to stop it."""

    def __init__(self, engine: Engine, names: list[str]) -> None:
        self.engine = engine
        self.socket_names = names
        self.accept_scope = trio.CancelScope()
        self.session_scope = trio.CancelScope()

    def stop_accepting(self) -> None:
        self.accept_scope.cancel()
        self.engine.draining = True
        self.engine.drain_started = time.monotonic()

    async def drain(self, mercy: float) -> bool:
        """After ``stop_accepting``: wait for sessions to end, at most ``mercy`` seconds;
        then cut the rest. True when every session ended by itself. A request a client
        sent on a kept-alive connection before its answer said "close" is served too
        (the fronts' drain hooks), not dropped with the connection."""
        with trio.move_on_after(mercy):
            while True:
                await self.engine.wait_idle()
                if not self.engine.work_left():
                    return True
                await trio.sleep(DRAIN_POLL)
        log.warning("%s: reload mercy (%gs) is over: %d sessions cut", self.engine.kind,
                    mercy, self.engine.active_sessions)
        self.session_scope.cancel()
        return False

    def stop(self) -> None:
        """Immediate: no more accepts, every session cut."""
        self.accept_scope.cancel()
        self.session_scope.cancel()


async def serve_router(
    kind: str,
    cfg: Config,
    listeners: Sequence[Listener],
    *,
    engine: Engine | None = None,
    feed: Any = None,
    stats_share: StatsShare | None = None,
    spread: Spread | None = None,
    task_status: trio.TaskStatus[RouterServer] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve every listener of ``kind`` (and its stats sockets) until stopped.

    ``feed`` (a ``brood.subscription.feed.RouterFeed``) keeps this process's
    subscription table replica up to date; its task stops with the accept loops.
    ``stats_share`` (``brood.routers.stats_share``): how the stats answer merges the
    figures of the kind's other processes; alone when not given. ``spread``
    (``brood.routers.net.spread``): this process's entry in the kind's table of
    connections, which keeps their numbers even; alone when not given."""
    prefix = PREFIX.get(kind, kind)
    engine = engine or engine_for(kind, cfg, feed)
    if spread is not None:
        engine.spread = spread
    front = importlib.import_module(FRONTS[prefix])
    mine = [lst for lst in listeners if PREFIX.get(lst.proto, lst.proto) == prefix]
    stats = _stats_listeners(prefix, cfg, listeners)
    # The stats list every socket of the router, its subscription servers too (uWSGI).
    servers = (getattr(feed, "server_names", None)  # as bound: ":0" resolved
               or list(option(cfg, f"{prefix}-subscription-server", None) or []))
    names = [lst.name for lst in mine] + servers
    server = RouterServer(engine, names)
    stats_http = bool(option(cfg, "stats-http", False))
    share = stats_share or StatsShare(prefix)
    share.minified = bool(option(cfg, "stats-minified", False))

    async def stats_handler(conn: trio.socket.SocketType, peer: Any) -> None:
        document = await share.document_off_loop(engine, server.socket_names)
        await serve_stats(conn, document, http=stats_http)

    with server.session_scope:
        async with trio.open_nursery() as sessions:
            with server.accept_scope:
                async with trio.open_nursery() as accepts:
                    if feed is not None:
                        await accepts.start(feed.run, engine, _has_static_mapping(cfg, prefix))
                    for lst in mine:
                        handler = front.make_handler(engine, cfg, lst)
                        await accepts.start(_accept_on, lst.sock, handler, sessions,
                                            engine.wait_serving, engine.wait_cheap,
                                            engine.spread)
                    if engine.spread.shared:  # accepting from here: the siblings may count on it
                        accepts.start_soon(engine.spread.beat_forever, lambda: not engine.cheap)
                    for sock in stats:
                        await accepts.start(_accept_on, sock, stats_handler, sessions, None)
                    if stats:
                        accepts.start_soon(share.publish_periodically, engine)
                    task_status.started(server)


async def _accept_on(sock: socket.socket, handler: Any, sessions: trio.Nursery, may_accept: Any,
                     must_pause: Any = None, spread: Spread | None = None, *,
                     task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    with adopt(sock) as tsock:
        await accept_loop(tsock, handler, sessions, may_accept=may_accept,
                          must_pause=must_pause, spread=spread, task_status=task_status)


def _stats_listeners(prefix: str, cfg: Config, listeners: Sequence[Listener]) -> list[socket.socket]:
    """The stats sockets: handed over by the master (proto "<kind>-stats", or "stats" with
    the configured name), else bound here with SO_REUSEPORT so every process answers."""
    address = option(cfg, f"{prefix}-stats", None)
    given = [lst.sock for lst in listeners
             if lst.proto == f"{prefix}-stats" or (lst.proto == "stats" and lst.name == address)]
    if given or not address:
        return given
    return [bind_stats(address)]


def bind_stats(address: str) -> socket.socket:
    from brood.routers.resolve import parse_node_address

    family, sockaddr = parse_node_address(address)
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        if family != socket.AF_UNIX:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(sockaddr)
        sock.listen(128)
    except BaseException:
        sock.close()
        raise
    return sock


async def serve_stats(conn: trio.socket.SocketType, document: bytes, *, http: bool) -> None:
    """One stats answer: the JSON on accept, or (``--stats-http``) an HTTP response once
    the client's request bytes arrived, as uWSGI does."""
    if http:
        with trio.move_on_after(STATS_HTTP_WAIT):
            await receive_some(conn, 4096)
        head = (b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n"
                b"Access-Control-Allow-Origin: *\r\nContent-Length: "
                + str(len(document)).encode() + b"\r\n\r\n")
        document = head + document
    with trio.move_on_after(STATS_HTTP_WAIT):
        await send_all(conn, document)


async def router_main(kind: str, cfg: Config, listeners: Sequence[Listener],
                      feed: Any = None, stats_share: StatsShare | None = None,
                      spread: Spread | None = None, index: int = 1) -> int:
    """``serve_router`` plus the signal handling of a router process.

    SIGINT or SIGQUIT during a graceful drain cuts it short. Once the process is on its
    way out, further stop signals are dropped: a service manager that signals the whole
    process group (systemd's default) reaches the router and, through the master,
    reaches it again; the second must not kill it halfway through its exit."""
    mercy = float(option(cfg, "reload-mercy", 60))
    try:
        engine = engine_for(kind, cfg, feed)
    except ValueError as exc:  # a code-string file that fails as it runs: said, once
        log.error("%s %d: %s", kind, index, exc)
        return 1
    for signum in STOPS:  # what the receiver puts back when it closes (not SIG_IGN,
        signal.signal(signum, _dropped)  # which would discard those held since the fork)
    with trio.open_signal_receiver(*STOPS) as signals:
        release_stops()
        async with trio.open_nursery() as nursery:
            stuck_limit = engine.settings.loop_harakiri
            if stuck_limit > 0:  # --X-harakiri, uWSGI's gateway harakiri: watching from
                # before the first accept (a stuck first request is stuck all the same)
                await nursery.start(Watchdog(f"{kind} {index}", stuck_limit).run)
            server: RouterServer = await nursery.start(
                functools.partial(serve_router, kind, cfg, listeners, engine=engine,
                                  feed=feed, stats_share=stats_share, spread=spread))
            draining = False
            async for signum in signals:
                if signum in IMMEDIATE:
                    server.stop()
                    break
                if not draining:
                    draining = True
                    log.warning("%s %s: graceful stop, %d sessions to finish", kind,
                                signal.Signals(signum).name, server.engine.active_sessions)
                    server.stop_accepting()
                    nursery.start_soon(_drain_then_end, server, mercy, nursery.cancel_scope)
            nursery.cancel_scope.cancel()
    return 0


def _dropped(signum: int, frame: Any) -> None:
    """A stop signal once the router is on its way out (whichever thread took it)."""


async def _drain_then_end(server: RouterServer, mercy: float, scope: trio.CancelScope) -> None:
    await server.drain(mercy)
    scope.cancel()


def run_router(kind: str, index: int, cfg: Config, listeners: list[Listener],
               feed: Any = None, stats_share: StatsShare | None = None,
               spread: SpreadTable | None = None) -> int:
    """Body of router process ``index`` (1-based); returns the exit status. ``feed``:
    its subscription channel (``brood.subscription.plan`` passes it); ``stats_share``:
    its end of the stats snapshots (``brood.routers.stats_share``); ``spread``: the
    kind's table of connections per process (``brood.routers.net.spread``)."""
    member = spread.member(index) if spread is not None else None
    raised = fdlimit.raise_to_hard()
    if raised:
        log.warning("%s %d: open file limit raised from %d to %d (the hard limit)", kind,
                    index, *raised)
    try:
        return trio.run(router_main, kind, cfg, listeners, feed, stats_share, member, index)
    except KeyboardInterrupt:
        return 0
