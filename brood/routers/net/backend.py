"""Connecting to nodes: one fresh raw socket per request, retries over the next nodes.

The uwsgi protocol closes the node connection after each answer, so a router connects
once per request; that cost decides a Python router's speed (PERF.md), hence raw
``trio.socket`` sockets and no stream wrappers on this path. TCP_NODELAY is set on every
TCP node socket.

Which node to try next, gracetime marks, fallbacks and the error a failed request
raises (503/502/504) are the pure retry policy of brood.routers.health; this shell
only connects and reports each outcome to it.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Callable
from dataclasses import dataclass

import trio

from brood.routers.errors import NoNode, Overloaded
from brood.routers.health import Attempt, RetryPolicy, RetryState
from brood.routers.net.relay import set_nodelay
from brood.routers.net.sockio import RESET_AFTER_ACCEPT, remember_resolved
from brood.routers.node import Node
from brood.routers.resolve import Resolver, parse_node_address

# Errors of this process's own limits (fds, kernel memory) when it makes a node's socket.
LOCAL_LIMITS = frozenset((errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM))


def overloaded(node: Node, exc: OSError) -> Overloaded:
    """The 503 for a node socket this process could not make (``LOCAL_LIMITS``)."""
    return Overloaded(f"no socket for node {node.name}: {exc.strerror or exc}")


@dataclass
class ConnectPlan(RetryPolicy):
    """How hard to try: the retry policy of one router plus its connect timeout."""

    connect_timeout: float = 60.0


async def open_node(node: Node, connect_timeout: float) -> trio.socket.SocketType:
    """A connected raw socket to ``node``; OSError or trio.TooSlowError when it fails
    (an address that does not parse, made from a client's key by a pattern, say, too)."""
    try:
        family, sockaddr = parse_node_address(node.name)
    except ValueError as exc:
        raise OSError(errno.EINVAL, f"bad node address {node.name[:100]!r}: {exc}") from exc
    sock = trio.socket.socket(family, socket.SOCK_STREAM)
    try:
        set_nodelay(sock)
        with trio.fail_after(connect_timeout):
            if family != socket.AF_UNIX and not _numeric(family, sockaddr[0]):
                sockaddr = await _resolve(node.name, family, sockaddr)
            try:
                await sock.connect(sockaddr)
            except OSError as exc:
                if exc.errno not in RESET_AFTER_ACCEPT:
                    raise  # (a node that accepted and reset at once was served)
    except BaseException:
        sock.close()
        raise
    return sock


def _numeric(family: int, host: str) -> bool:
    try:
        socket.inet_pton(family, host)
    except OSError:
        return False
    return True


async def _resolve(name: str, family: int, sockaddr: tuple) -> tuple:
    """The numeric address of host-name node ``name`` (its first for ``family``), kept
    for the next connects (``sockio.remember_resolved``)."""
    infos = await trio.socket.getaddrinfo(sockaddr[0], sockaddr[1], family, socket.SOCK_STREAM)
    if not infos:
        raise OSError(errno.EHOSTUNREACH, f"no address for {name[:100]!r}")
    resolved = infos[0][4]
    remember_resolved(name, (family, resolved))
    return resolved


# A fast lane's first pick for a request, and how its connect failed (None: not tried).
FirstPick = tuple[Node, trio.TooSlowError | OSError | None]


async def connect_node(
    resolver: Resolver,
    key: bytes | None,
    plan: ConnectPlan,
    *,
    client: bytes = b"",
    clock: Callable[[], float],
    fallback_on_no_node: bool = False,
    opener: Callable[[Node, float], object] = open_node,
    first_pick: FirstPick | None = None,
) -> tuple[Node, trio.socket.SocketType, list[Attempt]]:
    """Resolve ``key`` and connect, retrying and falling back as ``plan`` says.

    Returns the node, its connected socket and the failed attempts before it; raises
    the policy's RoutingError when no node could be reached. ``key`` None (no routing
    key in the request) is NoNode, fallbacks untried (as uWSGI); so is a key the
    resolver has no node for, unless ``fallback_on_no_node``
    (``--fastrouter-fallback-on-no-key``). ``first_pick``:
    the resolver was asked already (by a fast lane): its node, and how the lane's
    connect to it failed (None: the lane did not try it); this goes on from there, so
    the rotation and the retry count are as if it had asked itself.
    """
    first = None
    failure: trio.TooSlowError | OSError | None = None
    if first_pick is not None:
        first, failure = first_pick
    elif key is not None:
        first = resolver.resolve(key, clock(), client, ())
    if first is not None and failure is None:
        # The usual request: the first node connects, and no retry state is made.
        try:
            sock = await opener(first, plan.connect_timeout)  # type: ignore[misc]
        except (trio.TooSlowError, OSError) as exc:
            _check_local(first, exc)
            failure = exc
        else:
            if first.grace_until:
                first.clear_grace()
            return first, sock, []
    state = plan.begin(resolver, key, client=client)
    if first is not None:
        state.tries_left -= 1  # the first lookup was made above
        _report(state, first, failure, clock())
    elif key is not None:
        # The resolver had no node: a key nobody serves is no failure to fall back from
        # (uWSGI closes), unless --fastrouter-fallback-on-no-key says so; static nodes
        # all in grace are (they failed), and go to the fallbacks.
        if not (fallback_on_no_node or getattr(resolver, "static_nodes", None)):
            raise NoNode.for_key(key)
        state.tries_left = 0
    while (node := state.next_node(clock())) is not None:
        try:
            sock = await opener(node, plan.connect_timeout)  # type: ignore[misc]
        except (trio.TooSlowError, OSError) as exc:
            _check_local(node, exc)
            _report(state, node, exc, clock())
        else:
            state.succeeded(node)
            return node, sock, state.attempts
    raise state.error()


def _check_local(node: Node, exc: BaseException) -> None:
    """Out of fds or memory here: every node would fail alike, and none is to blame
    (marking them would keep them out for their gracetime after the spike)."""
    if isinstance(exc, OSError) and exc.errno in LOCAL_LIMITS:
        raise overloaded(node, exc) from exc


def _report(state: RetryState, node: Node, exc: trio.TooSlowError | OSError | None,
            now: float) -> None:
    """Tell the retry state how the connect to ``node`` failed."""
    if isinstance(exc, OSError):
        state.failed(node, now, exc.strerror or str(exc),
                     missing=isinstance(exc, FileNotFoundError))
    else:
        state.failed(node, now, "connect timeout", timed_out=True)
