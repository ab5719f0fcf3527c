"""Hash-based choices: ``iphash`` (modulo) and ``chash`` (consistent hash ring).

Both map the client address (or, when there is none, as for unix-socket clients, the
request key) to a node, so a client keeps hitting the same node while the pool is
stable. Hashes are computed with fixed functions (crc32, blake2b), never Python's
salted ``hash()``, so every router process and every restart agrees.

``iphash`` takes ``hash % len(pool)`` over the whole pool and, when that node cannot
take traffic, probes forward to the next live one: a node going into grace moves only
its own clients. Adding or removing a node reshuffles most clients.

``chash`` places ``VNODES_PER_WEIGHT * weight`` points per node on a 64-bit ring and
walks clockwise from the request's point to the first point owned by a live node.
A node joining or leaving moves only about 1/N of the keys. The ring is rebuilt only
when the pool (names or weights) changes.
"""

from __future__ import annotations

import bisect
import hashlib
import zlib
from collections.abc import Collection, Sequence

from brood.routers.balance.base import live_tier, probe
from brood.routers.node import Node

# Points per unit of weight on the ring. 160 (ketama's value) keeps the load of each
# node within a few percent of its share for pools of a few dozen nodes.
VNODES_PER_WEIGHT = 160


def _point(data: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


def hash_subject(client: bytes, key: bytes) -> bytes:
    """What a hashing balancer hashes: the client address, else the routing key."""
    return client if client else key


class IpHash:
    """``iphash``: client address hash modulo the pool, probing past unusable nodes."""

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
        index = probe(nodes, tier, zlib.crc32(hash_subject(client, key)))
        return None if index is None else nodes[index]  # None: unreachable


class ConsistentHash:
    """``chash``: a consistent hash ring with weighted virtual nodes."""

    def __init__(self, vnodes_per_weight: int = VNODES_PER_WEIGHT) -> None:
        self.vnodes_per_weight = vnodes_per_weight
        self._signature: tuple[tuple[str, int], ...] | None = None
        self._points: list[int] = []
        self._owners: list[str] = []

    def _ring(self, nodes: Sequence[Node]) -> None:
        signature = tuple((n.name, max(1, n.weight)) for n in nodes)
        if signature == self._signature:
            return
        ring: list[tuple[int, str]] = []
        for name, weight in sorted(set(signature)):
            raw = name.encode("utf-8", "surrogateescape")
            for i in range(self.vnodes_per_weight * weight):
                ring.append((_point(raw + b"#" + str(i).encode()), name))
        ring.sort()
        self._points = [p for p, _ in ring]
        self._owners = [name for _, name in ring]
        self._signature = signature

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
        self._ring(nodes)
        by_name = {n.name: n for n in reversed(tier)}  # first node wins a duplicate name
        start = bisect.bisect(self._points, _point(hash_subject(client, key)))
        size = len(self._points)
        for step in range(size):
            owner = self._owners[(start + step) % size]
            if owner in by_name:
                return by_name[owner]
        return tier[0]  # unreachable: every tier node owns points on the ring
