"""Node health for the routing path: gracetime marks, and the retry policy of a request.

A node that refuses or times out a connect is put in grace for ``--X-gracetime``
seconds (uWSGI: "retry connections to dead static nodes after the specified amount of
seconds"); the balancers skip it until then. Subscription nodes are marked dead by
their table instead, which is the table's business.

:class:`RetryPolicy` is the order in which one request tries nodes, as a pure state
machine the connecting shell drives::

    attempt = policy.begin(resolver, key, client=ip, fallback=fallbacks)
    while (node := attempt.next_node(clock())) is not None:
        try: sock = await connect(node)
        except OSError as exc: attempt.failed(node, clock(), exc.strerror)
        else: attempt.succeeded(node); break
    else:
        raise attempt.error()

Order: the resolver is asked again with the failed nodes excluded, at most
``1 + max_retries`` times in all (fewer when it runs out of nodes); then the
``--X-fallback`` nodes, in order, each once. The error says what the client should see:
NoNode (503) when nothing could be tried, NodeTimeout (504) when the last attempt timed
out, NodeFailed (502) otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from brood.routers.errors import NodeFailed, NodeTimeout, NoNode, RoutingError
from brood.routers.node import Node

if TYPE_CHECKING:
    from brood.routers.resolve import Resolver


def mark_failed(node: Node, now: float, gracetime: float) -> None:
    """A connect to ``node`` failed: count it, and skip the node for ``gracetime``."""
    node.mark_failed_connect(now, max(0.0, gracetime))


def in_grace(node: Node, now: float) -> bool:
    return now < node.grace_until


def grace_stat(node: Node, now: float) -> int:
    """The ``grace`` field of the router stats: the Unix time the node was marked
    failed while it is still in grace, else 0 (WIRE §3.2)."""
    return int(node.grace_marked_at) if in_grace(node, now) else 0


@dataclass
class Attempt:
    """One node tried for a request, for the shell's log line."""

    node: str
    reason: str
    timed_out: bool = False
    fallback: bool = False


@dataclass
class RetryState:
    """The attempts of one request; see the module docstring for the loop."""

    resolver: Resolver | None
    key: bytes | None
    client: bytes
    max_tries: int
    fallback: Resolver | None
    tried: list[Node] = field(default_factory=list)
    attempts: list[Attempt] = field(default_factory=list)
    resolver_tries: int = 0
    in_fallback: bool = False
    resolver_done: bool = False
    done: bool = False

    def next_node(self, now: float) -> Node | None:
        """The next node to connect to, or None when the request has run out."""
        if self.done:
            return None
        if not self.resolver_done:
            if self.resolver is None or self.key is None or self.resolver_tries >= self.max_tries:
                self.resolver_done = True
            else:
                self.resolver_tries += 1
                node = self.resolver.resolve(self.key, now, self.client, exclude=tuple(self.tried))
                if node is not None and node not in self.tried:
                    return node
                self.resolver_done = True
        if self.fallback is None:
            self.done = True
            return None
        self.in_fallback = True
        node = self.fallback.resolve(self.key or b"", now, self.client, exclude=tuple(self.tried))
        if node is None or node in self.tried:
            self.done = True
            return None
        return node

    def failed(self, node: Node, now: float, reason: str, *, timed_out: bool = False) -> None:
        """The connect to ``node`` failed: tell its owner (grace), remember it."""
        owner = self.fallback if self.in_fallback else self.resolver
        if owner is not None:
            owner.on_connect_failed(node, now)
        self.tried.append(node)
        self.attempts.append(Attempt(node.name, reason, timed_out, self.in_fallback))

    def succeeded(self, node: Node) -> None:
        """Connected: a node that was in grace is healthy again."""
        if node.grace_until:
            node.clear_grace()
        self.done = True

    def error(self) -> RoutingError:
        """What to raise when ``next_node`` returned None without a success."""
        if not self.attempts:
            return NoNode.for_key(self.key)
        detail = "; ".join(f"{a.node}: {a.reason}" for a in self.attempts)
        if self.attempts[-1].timed_out:
            return NodeTimeout(f"connect timed out ({detail})")
        return NodeFailed(f"connect failed ({detail})")


@dataclass(frozen=True)
class RetryPolicy:
    """``--X-max-retries``: how many more nodes a request may try after the first."""

    max_retries: int = 3

    def begin(
        self,
        resolver: Resolver | None,
        key: bytes | None,
        *,
        client: bytes = b"",
        fallback: Resolver | None = None,
        fallback_only: bool = False,
    ) -> RetryState:
        """The attempt state of one request. ``key`` None (no routing key) or
        ``fallback_only`` (``--fastrouter-fallback-on-no-key``) goes straight to the
        fallbacks."""
        return RetryState(
            resolver=None if fallback_only else resolver,
            key=key,
            client=client,
            max_tries=1 + max(0, self.max_retries),
            fallback=fallback,
        )


__all__ = ["Attempt", "RetryPolicy", "RetryState", "grace_stat", "in_grace", "mark_failed"]
