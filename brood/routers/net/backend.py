"""Connecting to nodes: one fresh raw socket per request, retries over the next nodes.

The uwsgi protocol closes the node connection after each answer, so a router connects
once per request; that cost decides a Python router's speed (PERF.md), hence raw
``trio.socket`` sockets and no stream wrappers on this path. TCP_NODELAY is set on every
TCP node socket.

Failure handling, in order: the resolver picks a node; a refused or timed-out connect
tells the resolver (``on_connect_failed`` puts the node in its gracetime) and the next
node is asked for with the failed ones excluded, up to ``max_retries`` more times; then
the fallback nodes are tried in order. The error raised says what the client should see:
``NoNode`` (503) when nothing could even be tried, or when every node tried was a unix
socket file that does not exist (a ``--X-use-pattern``/``--X-use-base`` key with no app
behind it), ``NodeTimeout`` (504) when the last attempt timed out, ``NodeFailed`` (502)
otherwise.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import trio

from brood.routers.errors import NodeFailed, NodeTimeout, NoNode
from brood.routers.net.relay import set_nodelay
from brood.routers.node import Node
from brood.routers.resolve import Resolver, parse_node_address


@dataclass
class Attempt:
    """One connect tried, for the log line of a failed request."""

    node: str
    error: str


@dataclass
class ConnectPlan:
    """How hard to try: the knobs of one router (``--X-max-retries`` etc.)."""

    connect_timeout: float = 60.0
    max_retries: int = 3
    gracetime: float = 30.0
    fallbacks: Sequence[Node] = field(default_factory=tuple)


async def open_node(node: Node, connect_timeout: float) -> trio.socket.SocketType:
    """A connected raw socket to ``node``; OSError or trio.TooSlowError when it fails."""
    family, sockaddr = parse_node_address(node.name)
    sock = trio.socket.socket(family, socket.SOCK_STREAM)
    try:
        set_nodelay(sock)
        with trio.fail_after(connect_timeout):
            await sock.connect(sockaddr)
    except BaseException:
        sock.close()
        raise
    return sock


async def connect_node(
    resolver: Resolver,
    key: bytes | None,
    plan: ConnectPlan,
    *,
    client: bytes = b"",
    clock: Callable[[], float],
    use_fallbacks_only: bool = False,
    opener: Callable[[Node, float], object] = open_node,
) -> tuple[Node, trio.socket.SocketType, list[Attempt]]:
    """Resolve ``key`` and connect, retrying and falling back as the module says.

    Returns the node, its connected socket and the failed attempts before it.
    ``key`` None (no routing key in the request) is NoNode, unless
    ``use_fallbacks_only`` (``--fastrouter-fallback-on-no-key``) sends it to the fallbacks.
    """
    if key is None and not use_fallbacks_only:
        raise NoNode("no key in request")
    attempts: list[Attempt] = []
    tried: list[Node] = []
    timed_out = False
    missing = 0  # attempts that found no unix socket file at all
    if key is not None and not use_fallbacks_only:
        for _ in range(1 + max(0, plan.max_retries)):
            node = resolver.resolve(key, clock(), client, exclude=tuple(tried))
            if node is None:
                break
            try:
                sock = await opener(node, plan.connect_timeout)  # type: ignore[misc]
            except trio.TooSlowError:
                timed_out = True
                attempts.append(Attempt(node.name, "connect timeout"))
            except OSError as exc:
                timed_out = False
                missing += isinstance(exc, FileNotFoundError)
                attempts.append(Attempt(node.name, exc.strerror or str(exc)))
            else:
                return node, sock, attempts
            tried.append(node)
            resolver.on_connect_failed(node, clock())
    now = clock()
    for node in plan.fallbacks:
        if not node.usable(now):
            continue
        try:
            sock = await opener(node, plan.connect_timeout)  # type: ignore[misc]
        except trio.TooSlowError:
            timed_out = True
            attempts.append(Attempt(node.name, "connect timeout"))
        except OSError as exc:
            timed_out = False
            missing += isinstance(exc, FileNotFoundError)
            attempts.append(Attempt(node.name, exc.strerror or str(exc)))
        else:
            node.clear_grace()
            return node, sock, attempts
        now = clock()
        node.mark_failed_connect(now, plan.gracetime)
    detail = "; ".join(f"{a.node}: {a.error}" for a in attempts)
    if not attempts:
        raise NoNode("no node for key" if key is not None else "no key, no fallback")
    if missing == len(attempts):
        raise NoNode(f"no node for key ({detail})")
    if timed_out:
        raise NodeTimeout(f"connect timed out ({detail})")
    raise NodeFailed(f"connect failed ({detail})")
