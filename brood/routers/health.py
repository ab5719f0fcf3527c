"""Node health for the routing path: gracetime marks, and the order in which one
request tries nodes.

A node that refuses or times out a connect is put in grace for ``--X-gracetime``
seconds (uWSGI: "retry connections to dead static nodes after the specified amount of
seconds"); the balancers skip it until then. Subscription nodes are marked dead by
their table instead, which is the table's business.

How it works
------------
:class:`RetryState` is the try-order of one request as a pure state machine; the
connecting shell (brood.routers.net.backend) drives it and does the connects::

    state = policy.begin(resolver, key, client=ip)
    while (node := state.next_node(clock())) is not None:
        try: sock = await connect(node)
        except OSError as exc: state.failed(node, clock(), exc.strerror)
        else: state.succeeded(node); break
    else:
        raise state.error()

Order: the resolver is asked again with the failed nodes excluded (fewer times when it
runs out of nodes); a failure goes to ``resolver.on_connect_failed``. Then the
``--X-fallback`` nodes, in order, each once, skipping those in grace; a failing fallback
is put in grace itself. ``1 + max_retries`` connects in all, fallbacks included, as
uWSGI counts them ("retries/fallbacks"); with fallbacks, the resolver leaves the last
one to them. A request without a key tries nothing, not even the fallbacks (uWSGI
closes it, whatever ``--fastrouter-fallback-on-no-key`` says: that one is for a key
with no node). A node that connects leaves its grace.

The error says what the client should see: NoNode (503) when nothing could be tried,
or when every attempt found no unix socket file (a ``--X-use-pattern``/``--X-use-base``
key with no app behind it); NodeTimeout (504) when the last attempt timed out;
NodeFailed (502) otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
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


@dataclass(slots=True)
class Attempt:
    """One failed connect of a request, for the shell's log line and the error."""

    node: str
    reason: str
    timed_out: bool = False
    missing: bool = False  # a unix socket file that does not exist
    fallback: bool = False


class RetryState:
    """The attempts of one request; see the module docstring for the loop.

    A plain slotted class: one is made per request, on the router's hot path."""

    __slots__ = ("resolver", "key", "client", "tries_left", "budget", "fallbacks",
                 "gracetime", "next_fallback", "tried", "attempts", "done")

    def __init__(self, resolver: Resolver, key: bytes | None, client: bytes, tries: int,
                 fallbacks: Sequence[Node], gracetime: float, budget: int = 1 << 30) -> None:
        self.resolver = resolver
        self.key = key
        self.client = client
        self.tries_left = tries  # resolver lookups still allowed
        self.budget = budget  # connects still allowed, fallbacks included
        self.fallbacks = fallbacks
        self.gracetime = gracetime
        self.next_fallback = 0  # index of the next fallback to consider
        self.tried: list[Node] = []  # resolver nodes that failed (excluded from now on)
        self.attempts: list[Attempt] = []
        self.done = False

    def next_node(self, now: float) -> Node | None:
        """The next node to connect to, or None when the request has run out."""
        if self.done or self.budget <= 0:
            self.done = True
            return None
        if self.tries_left > 0 and (self.budget > 1 or not self.fallbacks or not self.attempts):
            self.tries_left -= 1
            node = self.resolver.resolve(self.key,  # type: ignore[arg-type]  # not None here
                                         now, self.client, tuple(self.tried))
            if node is not None:
                return node
            self.tries_left = 0
        while self.next_fallback < len(self.fallbacks):
            node = self.fallbacks[self.next_fallback]
            self.next_fallback += 1
            if node.usable(now):
                return node
        self.done = True
        return None

    def failed(self, node: Node, now: float, reason: str, *,
               timed_out: bool = False, missing: bool = False) -> None:
        """The connect to ``node`` (the last ``next_node``) failed."""
        self.budget -= 1
        fallback = self.next_fallback > 0  # the resolver phase is over once one was taken
        if fallback:
            mark_failed(node, now, self.gracetime)
        else:
            self.tried.append(node)
            self.resolver.on_connect_failed(node, now)
        self.attempts.append(Attempt(node.name, reason, timed_out, missing, fallback))

    def succeeded(self, node: Node) -> None:
        """Connected: the request is done, and a node that was in grace is healthy."""
        if node.grace_until:
            node.clear_grace()
        self.done = True

    def error(self) -> RoutingError:
        """What to raise when ``next_node`` returned None without a success."""
        attempts = self.attempts
        if not attempts:
            return NoNode.for_key(self.key)
        detail = "; ".join(f"{a.node}: {a.reason}" for a in attempts)
        if all(a.missing for a in attempts):
            return NoNode(f"no node for key ({detail})")
        if attempts[-1].timed_out:
            return NodeTimeout(f"connect timed out ({detail})")
        return NodeFailed(f"connect failed ({detail})")


@dataclass
class RetryPolicy:
    """How many nodes a request may try: ``--X-max-retries`` more resolver nodes after
    the first, then the ``--X-fallback`` nodes (put in grace ``--X-gracetime`` seconds
    when they fail)."""

    max_retries: int = 3
    gracetime: float = 30.0
    fallbacks: Sequence[Node] = field(default_factory=tuple)

    def begin(self, resolver: Resolver, key: bytes | None, *, client: bytes = b"") -> RetryState:
        """The attempt state of one request (``key`` None: no routing key)."""
        budget = 1 + max(0, self.max_retries)
        tries = budget if key is not None else 0
        fallbacks = self.fallbacks if key is not None else ()
        return RetryState(resolver, key, client, tries, fallbacks, self.gracetime, budget)


__all__ = ["Attempt", "RetryPolicy", "RetryState", "grace_stat", "in_grace", "mark_failed"]
