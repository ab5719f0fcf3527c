"""The Resolver interface, the per-address Node cache of mappers, and a test fake."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Collection, Mapping, Sequence
from typing import Protocol

from brood.routers.node import Node

# Longest routing key any lookup accepts: uWSGI keeps keys in 255-byte buffers and
# ignores longer Host / SNI / UWSGI_FASTROUTER_KEY values (WIRE §7.1).
MAX_KEY = 255

# Nodes made on the fly by the pattern/base/code/cache mappers, kept per address so a
# node's counters, grace and in-flight count survive between requests. Past this many
# addresses, the least recently used idle ones are forgotten.
MAX_MAPPED_NODES = 4096


class Resolver(Protocol):
    """Maps a routing key to a node. Every router uses one (the engine calls it)."""

    def resolve(
        self, key: bytes, now: float, client: bytes = b"", exclude: Collection[Node] = ()
    ) -> Node | None:
        """A node for ``key``, never one in ``exclude``; None: no node for this key."""
        ...

    def on_connect_failed(self, node: Node, now: float) -> None:
        """``node`` (returned by ``resolve``) refused or timed out a connect."""
        ...


class NodePool:
    """One Node per address for mappers that compute addresses per request."""

    def __init__(self, limit: int = MAX_MAPPED_NODES) -> None:
        self.limit = limit
        self._nodes: OrderedDict[str, Node] = OrderedDict()

    def get(self, address: str, now: float, modifier1: int | None = None) -> Node:
        node = self._nodes.get(address)
        if node is None:
            node = Node(address, last_check=now)
            self._nodes[address] = node
            self._trim()
        else:
            self._nodes.move_to_end(address)
        if modifier1 is not None:
            node.modifier1 = modifier1
        return node

    def __contains__(self, node: object) -> bool:
        return isinstance(node, Node) and self._nodes.get(node.name) is node

    def __len__(self) -> int:
        return len(self._nodes)

    def nodes(self) -> list[Node]:
        return list(self._nodes.values())

    def _trim(self) -> None:
        if len(self._nodes) <= self.limit:
            return
        for address in list(self._nodes):
            if len(self._nodes) <= self.limit:
                break
            if self._nodes[address].ref == 0:
                del self._nodes[address]


def first_usable(nodes: Sequence[Node], now: float, exclude: Collection[Node]) -> Node | None:
    for node in nodes:
        if node not in exclude and node.usable(now):
            return node
    return None


class FakeResolver:
    """Test fake: a fixed key -> node names table, nodes made once, failures recorded.

    Returns the first listed node that is usable and not excluded.
    """

    def __init__(self, table: Mapping[bytes, Sequence[str]], gracetime: float = 0.0) -> None:
        self.gracetime = gracetime
        self.nodes: dict[str, Node] = {}
        self.routes: dict[bytes, list[Node]] = {}
        for key, names in table.items():
            self.routes[key] = [self.nodes.setdefault(n, Node(n)) for n in names]
        self.failed: list[str] = []
        self.lookups: list[bytes] = []

    def resolve(
        self, key: bytes, now: float, client: bytes = b"", exclude: Collection[Node] = ()
    ) -> Node | None:
        self.lookups.append(key)
        return first_usable(self.routes.get(key, ()), now, exclude)

    def on_connect_failed(self, node: Node, now: float) -> None:
        self.failed.append(node.name)
        node.mark_failed_connect(now, self.gracetime)
