"""Least-loaded choices: ``lrc``, ``wlrc`` (uWSGI's names) and ``p2c``.

The load of a node is ``Node.ref``, its requests in flight, which the engine raises on
connect and lowers when the request ends. Ties go to the node earlier in the pool, so
an idle pool fills in order, as uWSGI's ``lrc`` does.

``p2c`` (power of two choices) samples two distinct live nodes and keeps the one with
the lower ``ref/weight``: nearly the balance of full least-load, without a herd
rushing to the single least-loaded node when several routers share a pool. The random
source is injected so tests are deterministic.
"""

from __future__ import annotations

import random
from collections.abc import Collection, Sequence

from brood.routers.balance.base import live_tier, load_ratio
from brood.routers.node import Node


class LeastRef:
    """``lrc``: fewest requests in flight."""

    def pick(
        self,
        nodes: Sequence[Node],
        now: float,
        client: bytes = b"",
        exclude: Collection[Node] = (),
        key: bytes = b"",
    ) -> Node | None:
        tier = live_tier(nodes, now, exclude)
        return min(tier, key=lambda n: n.ref) if tier else None


class WeightedLeastRef:
    """``wlrc``: fewest requests in flight per unit of weight."""

    def pick(
        self,
        nodes: Sequence[Node],
        now: float,
        client: bytes = b"",
        exclude: Collection[Node] = (),
        key: bytes = b"",
    ) -> Node | None:
        tier = live_tier(nodes, now, exclude)
        return min(tier, key=load_ratio) if tier else None


class PowerOfTwo:
    """``p2c``: the less loaded (``ref/weight``) of two random live nodes."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self.rng = rng if rng is not None else random.Random()

    def pick(
        self,
        nodes: Sequence[Node],
        now: float,
        client: bytes = b"",
        exclude: Collection[Node] = (),
        key: bytes = b"",
    ) -> Node | None:
        tier = live_tier(nodes, now, exclude)
        if len(tier) < 2:
            return tier[0] if tier else None
        i, j = self.rng.sample(range(len(tier)), 2)
        a, b = tier[min(i, j)], tier[max(i, j)]
        return b if load_ratio(b) < load_ratio(a) else a
