"""The router engine: the per-request flow every front (http, fastrouter, rawrouter,
sslrouter) shares, written once.

A front parses its own protocol and finds a key; everything after that is here::

    async with engine.session(peer):               # active_sessions, session max age
        upstream = await engine.connect(key, client=ip)   # resolve, connect, retry,
        async with upstream:                               # gracetime, fallbacks
            await upstream.send(first_bytes)
            await upstream.relay(client_sock)              # counts tx/rx on the node

``connect`` raises a ``RoutingError`` (503/502/504) the front turns into its own kind of
error (an HTTP answer, a close). While an ``Upstream`` is open its node's ``ref``
(in-flight) counter is raised; ``requests`` counts successful connects ("hits").
Cheap mode: with ``--X-cheap`` and no node, the accept loops wait in ``wait_serving``.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import trio

from brood.config.model import Config
from brood.config.option import lookup
from brood.routers.errors import RoutingError
from brood.routers.net import sockio
from brood.routers.net.backend import ConnectPlan, FirstPick, connect_node, open_node
from brood.routers.net.relay import Endpoint, RelayResult, relay, relay_answer
from brood.routers.net.spread import Spread
from brood.routers.node import Node
from brood.routers.resolve import Resolver

log = logging.getLogger("brood.routers")

# A graceful stop keeps idle kept-alive connections this long for a request their
# clients may have sent just as it began (then each goes with its answer, or is closed).
DRAIN_IDLE_GRACE = 1.0


def option(cfg: Config, name: str, default: Any) -> Any:
    """``cfg[name]``, or ``default`` when the option is unset or not declared in this
    build (so one engine serves every prefix, whatever each declares)."""
    if lookup(name) is None or not cfg.is_set(name):
        return default
    value = cfg[name]
    return default if value is None else value


@dataclass
class RouterSettings:
    """The engine's knobs for one router kind, read once from ``--<kind>-*`` options."""

    kind: str
    timeout: float = 60.0  # --X-timeout: idle timeout of a session (and connect timeout)
    gracetime: float = 30.0  # --X-gracetime: a refusing node is skipped this long
    max_retries: int = 3  # --X-max-retries: next nodes tried after a failed connect
    max_age: float = 0.0  # --X-session-max-age: a session older than this is cut (0: never)
    loop_harakiri: float = 0.0  # --X-harakiri: a process stuck this long is killed (0: never)
    buffer_size: int = 4096  # --X-buffer-size, else --buffer-size: request head limit
    cheap: bool = False  # --X-cheap: accept nothing while there is no node
    quiet: bool = False  # --X-quiet: do not log failed requests
    fallbacks: Sequence[str] = field(default_factory=tuple)  # --X-fallback
    connect_timeout: float | None = None  # --X-connect-timeout (None: --X-timeout)

    @classmethod
    def from_config(cls, cfg: Config, kind: str) -> RouterSettings:
        buffer_size = option(cfg, f"{kind}-buffer-size", 0) or option(cfg, "buffer-size", 4096)
        return cls(
            kind=kind,
            # 0 is uWSGI's "not set" for these too: the default.
            timeout=float(option(cfg, f"{kind}-timeout", 60)) or 60.0,
            gracetime=float(option(cfg, f"{kind}-gracetime", 30)) or 30.0,
            # 0 is uWSGI's "not set": the default (real uWSGI 2.0 tries 4 nodes with it).
            max_retries=int(option(cfg, f"{kind}-max-retries", 3)) or 3,
            max_age=float(option(cfg, f"{kind}-session-max-age", 0)),
            loop_harakiri=float(option(cfg, f"{kind}-harakiri", 0)),
            buffer_size=int(buffer_size),
            cheap=bool(option(cfg, f"{kind}-cheap", False)),
            quiet=bool(option(cfg, f"{kind}-quiet", False)),
            fallbacks=tuple(option(cfg, f"{kind}-fallback", [])),
            connect_timeout=_seconds(option(cfg, f"{kind}-connect-timeout", None)),
        )


def _seconds(value: Any) -> float | None:
    """A timeout option's seconds; None when not set (0 included, as uWSGI reads it)."""
    return float(value) if value else None


class Upstream:
    """A connected node for one request. Use as ``async with``: closing it closes the
    socket and drops the node's in-flight count. Close it only once no task of the
    session reads or writes it any more (``sockio.close``): every front closes it after
    its exchange or relay ended."""

    def __init__(self, engine: Engine, node: Node, sock: Any) -> None:
        self.engine = engine
        self.node = node
        self.sock = sock  # raw trio socket
        self.closed = False
        self.over = False  # the node gave its whole answer: the close is a reset

    async def send(self, data: bytes | bytearray | memoryview) -> None:
        """Write bytes to the node (a request head already read from the client); a
        checkpoint only when the socket buffer is full (``sockio``)."""
        await sockio.send_all(self.sock, data)
        self.node.rx += len(data)

    async def receive_some(self, max_bytes: int = 65536) -> bytes:
        """Up to ``max_bytes`` of the answer; a checkpoint only when it has to wait."""
        data = await sockio.recv(self.sock, max_bytes)
        self.node.tx += len(data)
        return data

    async def receive_answer(self, max_bytes: int = 65536) -> bytes:
        """The first bytes of the answer, asked for right after the request went out.
        Waits for readability first: the answer is practically never there yet, so this
        saves a recv that would fail, and it makes every request through a node one
        checkpoint even when all the other socket calls complete at once."""
        await trio.lowlevel.wait_readable(self.sock)
        return await self.receive_some(max_bytes)

    async def relay(self, client: Endpoint, *, end_when_node_done: bool = True,
                    splice: bool | None = None, client_left_if_first: bool = False,
                    peek_node: int = 0,
                    owed: Callable[[Callable[[], None]], Awaitable[int]] | None = None,
                    ) -> RelayResult:
        """Pipe client <-> node until done (the node closing its answer ends a uwsgi
        session; a raw TCP session waits for both sides), with the idle timeout.
        ``client_left_if_first``: the client's end of stream before the node's first
        byte ends it (``a_left``); ``peek_node``: ``relay``'s ``peek_b``; ``owed``:
        ``relay``'s ``a_owed`` (what the node gets before the client's next bytes)."""
        result = RelayResult()
        try:
            await relay(client, self.sock, idle_timeout=self.engine.settings.timeout,
                        end_when_b_done=end_when_node_done, splice=splice, result=result,
                        a_left_if_first=client_left_if_first, peek_b=peek_node,
                        a_owed=owed)
        finally:
            self.node.rx += result.a_to_b
            self.node.tx += result.b_to_a
        return result

    async def relay_answer(self, client: Endpoint, *, splice: bool | None = None,
                           watch_client: bool = False) -> RelayResult:
        """Node -> client until the node closes, with the idle timeout, when the client
        has nothing left to send (``relay.relay_answer``: cheaper than ``relay``);
        ``watch_client``: a client gone before the answer ends it (``a_left``)."""
        result = RelayResult()
        try:
            await relay_answer(client, self.sock, idle_timeout=self.engine.settings.timeout,
                               splice=splice, result=result, watch_a=watch_client)
        finally:
            self.node.rx += result.a_to_b
            self.node.tx += result.b_to_a
        return result

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.node.ref -= 1
            if self.over:
                sockio.reset_on_close(self.sock)
            sockio.close(self.sock)

    async def __aenter__(self) -> Upstream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


class Engine:
    """Shared routing state of one router process: resolver, fallbacks, counters."""

    def __init__(self, settings: RouterSettings, resolver: Resolver, *,
                 clock: Callable[[], float] = time.time, has_nodes: bool = True) -> None:
        self.settings = settings
        self.kind = settings.kind
        self.resolver = resolver
        self.clock = clock
        self.fallback_nodes = [Node(name) for name in settings.fallbacks]
        self.plan = ConnectPlan(
            connect_timeout=(settings.timeout if settings.connect_timeout is None
                             else settings.connect_timeout),
            max_retries=settings.max_retries,
            gracetime=settings.gracetime,
            fallbacks=self.fallback_nodes,
        )
        self.active_sessions = 0
        self.sessions_total = 0
        # A graceful stop under way: answers end their connections (no keep-alive into
        # a process about to exit). ``drain_hooks``: each front's "serve what clients
        # already sent on kept-alive connections, close the idle ones; True while such
        # work is left" (``work_left``).
        self.draining = False
        self.drain_started = 0.0  # time.monotonic() when it began
        self.drain_hooks: list[Callable[[], bool]] = []
        # Connections a fast lane handed to a task not started yet: in no table and no
        # session count meanwhile, yet work for a drain (``Lane._hand_over``).
        self.handing_over = 0
        # This process's share of the kind's client connections (``serve_router`` gives
        # it the table of its siblings: ``brood.routers.net.spread``).
        self.spread = Spread()
        self._has_nodes = has_nodes
        self._idle: trio.Event | None = None
        self._serving = trio.Event()
        if not self.cheap:
            self._serving.set()
        self._gone_cheap = trio.Event()

    # -- cheap mode ---------------------------------------------------------------------
    @property
    def cheap(self) -> bool:
        return self.settings.cheap and not self._has_nodes

    def nodes_changed(self, has_nodes: bool) -> None:
        """The subscription table (or any dynamic source) says whether nodes exist."""
        was_cheap = self.cheap
        self._has_nodes = has_nodes
        if was_cheap and not self.cheap:
            log.warning("leaving cheap mode... (%s)", self.kind)
            self.spread.beat()
            self._serving.set()
        elif not was_cheap and self.cheap:
            log.warning("no more nodes available. Going cheap... (%s)", self.kind)
            self.spread.beat(accepting=False)  # the siblings stop leaving connections to it
            self._serving = trio.Event()
            self._gone_cheap.set()
            self._gone_cheap = trio.Event()

    async def wait_serving(self) -> None:
        """Return at once unless in cheap mode; then wait until a node exists."""
        while self.cheap:
            await self._serving.wait()
        await trio.lowlevel.checkpoint()

    async def wait_cheap(self) -> None:
        """Return when the router goes cheap (its last node gone under --X-cheap):
        accepting stops until ``wait_serving`` returns. Never without --X-cheap."""
        while not self.cheap:
            await self._gone_cheap.wait()

    # -- sessions -----------------------------------------------------------------------
    def session(self, peer: Any = None) -> _Session:
        """``async with engine.session(peer) as scope:`` counts the session as active;
        ``--X-session-max-age`` bounds its lifetime (``scope`` is that cancel scope,
        None without it: no scope is entered then)."""
        return _Session(self, peer)

    def session_opened(self) -> None:
        """Count a session by hand (a front that applies the max age itself through a
        cancel scope it already has: ``session`` costs a scope and a generator per
        request, which the HTTP keep-alive loop cannot afford). Pair with
        ``session_closed`` in a ``finally``."""
        self.active_sessions += 1
        self.sessions_total += 1

    def session_closed(self) -> None:
        self.active_sessions -= 1
        if not self.active_sessions and self._idle is not None:
            self._idle.set()

    def session_handed_over(self) -> None:
        """A connection counted twice while it changed hands (a fast lane's session,
        then the general path's): the older count goes, and it was one session."""
        self.active_sessions -= 1
        self.sessions_total -= 1

    def idle_kept(self, idle_since: float = 0.0) -> bool:
        """During a drain: an idle kept-alive connection (idle since ``idle_since``,
        monotonic) still waits, ``DRAIN_IDLE_GRACE`` from the drain's start or from its
        last answer (told keep-alive before the drain, it ended after it), for a request
        its client may have sent meanwhile."""
        return time.monotonic() - max(self.drain_started, idle_since) < DRAIN_IDLE_GRACE

    def work_left(self) -> bool:
        """Run every drain hook (all of them: each closes its idle connections)."""
        return any([hook() for hook in self.drain_hooks]) or self.handing_over > 0

    async def wait_idle(self) -> None:
        """Return once no session is active (graceful stop waits here)."""
        while self.active_sessions:
            self._idle = trio.Event()
            await self._idle.wait()
        await trio.lowlevel.checkpoint()

    async def connect(self, key: bytes | None, *, client: bytes = b"",
                      fallback_on_no_node: bool = False,
                      before_wait: Callable[[], None] | None = None,
                      first_pick: FirstPick | None = None) -> Upstream:
        """Resolve ``key`` and connect (retries, gracetime, fallbacks); RoutingError else.

        ``before_wait`` is called before any connect attempt waits (a handshake not done
        at once, a name to resolve, a unix socket): a front whose cancel scope bounds
        other phases moves its deadline out of the way there, and only there.
        ``first_pick``: a fast lane's pick for this request (``connect_node``)."""
        opener = _open_node if before_wait is None else functools.partial(
            _open_node, before_wait=before_wait)
        node, sock, failed = await connect_node(
            self.resolver, key, self.plan, client=client, clock=self.clock,
            fallback_on_no_node=fallback_on_no_node,
            opener=opener, first_pick=first_pick,
        )
        if failed and not self.settings.quiet:
            for attempt in failed:
                log.warning("%s: node %s failed: %s", self.kind, attempt.node, attempt.reason)
        node.requests += 1
        node.last_requests += 1  # since its last announce (reset there)
        node.ref += 1
        return Upstream(self, node, sock)

    def log_failure(self, peer: Any, reason: str | RoutingError) -> None:
        if self.settings.quiet:
            return
        if isinstance(reason, RoutingError):
            reason = f"{reason.status} {reason.reason}"
        log.warning("%s: request from %s: %s", self.kind, _peer_text(peer), reason)

    # -- stats --------------------------------------------------------------------------
    def static_nodes(self) -> list[Node]:
        """The ``--X-to`` nodes, for the stats JSON (uWSGI lists no fallbacks there)."""
        return list(getattr(self.resolver, "static_nodes", ()) or ())

    def subscriptions(self) -> Any:
        return getattr(self.resolver, "subscriptions", None)

    def stats(self, socket_names: Sequence[str]) -> bytes:
        """The router stats JSON document (WIRE §3.2) of this process."""
        from brood.routers.stats import router_stats

        return router_stats(
            self.kind,
            pid=os.getpid(),
            uid=os.getuid(),
            gid=os.getgid(),
            cwd=os.getcwd(),
            active_sessions=self.active_sessions,
            socket_names=list(socket_names),
            static_nodes=self.static_nodes(),
            subscriptions=self.subscriptions(),
            cheap=self.cheap,
            now=self.clock(),
        )


async def _open_node(node: Node, connect_timeout: float,
                     before_wait: Callable[[], None] | None = None) -> Any:
    """Numeric TCP nodes through ``sockio.open_tcp`` (no event-loop trip when the
    handshake completes at once, as on loopback); anything else through ``open_node``."""
    return await sockio.open_tcp(node, connect_timeout, open_node, before_wait)


class _Session:
    """``Engine.session``: a plain async context manager (a generator-based one costs
    about as much as the rest of a short session's bookkeeping)."""

    __slots__ = ("engine", "peer", "scope")

    def __init__(self, engine: Engine, peer: Any) -> None:
        self.engine = engine
        self.peer = peer
        self.scope: trio.CancelScope | None = None

    async def __aenter__(self) -> trio.CancelScope | None:
        engine = self.engine
        max_age = engine.settings.max_age
        if max_age > 0:
            self.scope = trio.CancelScope(deadline=trio.current_time() + max_age)
            self.scope.__enter__()
        engine.session_opened()
        return self.scope

    async def __aexit__(self, *exc: Any) -> bool:
        engine = self.engine
        try:
            scope = self.scope
            if scope is None:
                return False
            handled = scope.__exit__(*exc)
            if scope.cancelled_caught:
                engine.log_failure(self.peer, f"session older than {engine.settings.max_age:g}s "
                                              f"cut (--{engine.kind}-session-max-age)")
            return handled
        finally:
            engine.session_closed()


def _peer_text(peer: Any) -> str:
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return str(peer) if peer else "unix socket"


def client_ip(peer: Any) -> bytes:
    """The client's address as the resolver's ``client`` argument (iphash) wants it."""
    if isinstance(peer, tuple) and peer:
        return str(peer[0]).encode()
    return b""
