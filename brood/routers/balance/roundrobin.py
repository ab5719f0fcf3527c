"""Round robin: plain (uWSGI's static ``--X-to`` list) and weighted (uWSGI's ``wrr``).

Plain round robin keeps a cursor per pool and walks the nodes in order, skipping the
ones that cannot take traffic, exactly as uWSGI's static-node mapper: A, B, A, B.

Weighted round robin keeps its credit on ``Node.wrr`` (so stats show it) and follows
uWSGI's subscription algorithm step for step (WIRE §2.8):

1. walk the live nodes in pool order; the first with ``wrr > 0`` is taken and its
   credit decremented;
2. when nobody has credit, every live node gets ``wrr = weight // min_weight`` (the
   minimum over live nodes), and the LAST live node is taken (and decremented).

Weights A=3, B=1 therefore give B A A A B A A A; equal weights alternate, last first.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Collection, Sequence

from brood.routers.balance.base import live_tier, probe
from brood.routers.node import Node

# Cursors kept by RoundRobin: one per distinct pool. A resolver with many keys (the
# cache mapper) has one pool per key; beyond this many the least recently used cursor
# is dropped, which only restarts that pool's rotation.
MAX_CURSORS = 4096


class RoundRobin:
    """Plain rotation over the pool; nodes out of the live tier are stepped over."""

    def __init__(self) -> None:
        self._cursors: OrderedDict[tuple[int, ...], int] = OrderedDict()

    def pick(
        self,
        nodes: Sequence[Node],
        now: float,
        client: bytes = b"",
        exclude: Collection[Node] = (),
        key: bytes = b"",
    ) -> Node | None:
        if not nodes:
            return None
        if len(nodes) == 1:  # one node (a single --X-to): no rotation to keep
            node = nodes[0]
            return node if node not in exclude and node.usable(now) else None
        pool = tuple(map(id, nodes))
        if not exclude:
            # Fast path: every node usable at backup level 0, so the tier is the pool.
            for node in nodes:
                if node.backup or node.death_mark or now < node.grace_until:
                    break
            else:
                index = self._cursors.pop(pool, 0) % len(nodes)
                self._remember(pool, index + 1)
                return nodes[index]
        tier = live_tier(nodes, now, exclude)
        if not tier:
            return None
        index = probe(nodes, tier, self._cursors.pop(pool, 0))
        if index is None:  # unreachable: tier nodes are pool nodes
            return None
        self._remember(pool, index + 1)
        return nodes[index]

    def _remember(self, pool: tuple[int, ...], cursor: int) -> None:
        self._cursors[pool] = cursor
        while len(self._cursors) > MAX_CURSORS:
            self._cursors.popitem(last=False)


class WeightedRoundRobin:
    """uWSGI's ``wrr``; all state lives on the nodes."""

    def pick(
        self,
        nodes: Sequence[Node],
        now: float,
        client: bytes = b"",
        exclude: Collection[Node] = (),
        key: bytes = b"",
    ) -> Node | None:
        tier = live_tier(nodes, now, exclude)
        if not tier:
            return None
        for node in tier:
            if node.wrr > 0:
                node.wrr -= 1
                return node
        min_weight = min(max(1, n.weight) for n in tier)
        for node in tier:
            node.wrr = max(1, node.weight) // min_weight
        chosen = tier[-1]
        chosen.wrr -= 1
        return chosen
