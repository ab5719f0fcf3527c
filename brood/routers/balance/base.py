"""The Balancer interface and the filter every algorithm applies first.

Kept apart from the algorithms so each algorithm module depends only on this one.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Protocol

from brood.routers.node import Node


class Balancer(Protocol):
    """Chooses one node among the nodes of one key (one backend pool).

    ``nodes`` is the whole pool in its stable order (subscription order, ``--X-to``
    order); ``exclude`` holds nodes already tried for this request. ``client`` is the
    client address (hashing algorithms), ``key`` the request's routing key. None means
    no node may take the request now.
    """

    def pick(
        self,
        nodes: Sequence[Node],
        now: float,
        client: bytes = b"",
        exclude: Collection[Node] = (),
        key: bytes = b"",
    ) -> Node | None: ...


def live_tier(nodes: Sequence[Node], now: float, exclude: Collection[Node] = ()) -> list[Node]:
    """The usable nodes of the lowest backup level that has any, in pool order.

    A node is skipped when it is dead, in its gracetime, or in ``exclude``. Backup
    level 1 only gets traffic when no level-0 node is left, level 2 when no level-1
    node is left, and so on. Empty when nothing is usable: brood then answers 503
    rather than trying a node in grace (uWSGI's static mapper does the same: a pool
    whose nodes are all in grace yields no node).
    """
    best: int | None = None
    tier: list[Node] = []
    for node in nodes:
        if node in exclude or not node.usable(now):
            continue
        if best is None or node.backup < best:
            best = node.backup
            tier = [node]
        elif node.backup == best:
            tier.append(node)
    return tier


def probe(nodes: Sequence[Node], tier: Collection[Node], start: int) -> int | None:
    """The index of the first node of ``tier`` in ``nodes`` at or after ``start``,
    wrapping around (None only if no tier node is in the pool).

    For the algorithms that choose a position in the whole pool (a rotation cursor, a
    hash): stepping forward past unusable nodes moves only their share of the traffic.
    """
    allowed = {id(n) for n in tier}
    size = len(nodes)
    for step in range(size):
        index = (start + step) % size
        if id(nodes[index]) in allowed:
            return index
    return None


def load_ratio(node: Node) -> float:
    """In-flight requests per unit of weight (weight is never below 1)."""
    return node.ref / max(1, node.weight)


class ScriptedBalancer:
    """Test fake: returns the first live-tier node whose name comes first in
    ``order``; the others in pool order. Records every pick."""

    def __init__(self, order: Sequence[str] = ()) -> None:
        self.order = list(order)
        self.picks: list[str | None] = []

    def pick(
        self,
        nodes: Sequence[Node],
        now: float,
        client: bytes = b"",
        exclude: Collection[Node] = (),
        key: bytes = b"",
    ) -> Node | None:
        tier = live_tier(nodes, now, exclude)
        rank = {name: i for i, name in enumerate(self.order)}
        tier.sort(key=lambda n: rank.get(n.name, len(rank)))
        chosen = tier[0] if tier else None
        self.picks.append(chosen.name if chosen else None)
        return chosen
