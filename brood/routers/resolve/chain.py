"""Combining mappers in uWSGI's precedence, and building a router's resolver from options.

uWSGI picks exactly one mapper per router (corerouter.c), first configured wins:

    use-cache > use-pattern > subscription server > use-base > use-code-string
    > use-socket > to (static nodes)

``build_resolver`` does the same by default. ``chain_all=True`` (a brood addition) keeps
every configured mapper in that order and asks the next one when a mapper has no node.
``--X-fallback`` nodes are not a chain stage: they come after a failed connect, driven
by the retry policy (brood.routers.health).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Collection, Sequence
from typing import Any, Protocol

from brood.config.model import Config
from brood.config.option import lookup
from brood.routers.balance import make_balancer
from brood.routers.node import Node
from brood.routers.resolve.base import MAX_KEY, MAX_MAPPED_NODES, NodePool, Resolver
from brood.routers.resolve.mappers import (
    BaseResolver,
    CacheResolver,
    CacheStore,
    CodeResolver,
    PatternResolver,
    SocketResolver,
    StaticResolver,
)


class CacheLookup(Protocol):
    """The named caches of a router process (``brood.cache.replica.CacheReplica``)."""

    def store(self, name: str | None) -> CacheStore | None: ...


class FallbackKeyResolver:
    """``--X-subscription-fallback-key K``: a key without nodes borrows K's nodes."""

    def __init__(self, inner: Resolver, fallback_key: bytes) -> None:
        self.inner = inner
        self.fallback_key = fallback_key

    def resolve(
        self, key: bytes, now: float, client: bytes = b"", exclude: Collection[Node] = ()
    ) -> Node | None:
        node = self.inner.resolve(key, now, client, exclude)
        if node is None and key != self.fallback_key:
            node = self.inner.resolve(self.fallback_key, now, client, exclude)
        return node

    def on_connect_failed(self, node: Node, now: float) -> None:
        self.inner.on_connect_failed(node, now)

    def __getattr__(self, name: str) -> Any:  # stats/cheap hooks of the table
        return getattr(self.inner, name)


class ChainResolver:
    """The resolver of one router: its stages in precedence order, first answer wins.

    Also what the engine reads for stats: ``static_nodes`` (the ``--X-to`` nodes, listed
    by uWSGI even when another mapper is in charge) and ``subscriptions`` (whatever the
    subscription table exposes under that name).
    """

    def __init__(
        self,
        stages: Sequence[Resolver],
        *,
        static: StaticResolver | None = None,
        subscription: Resolver | None = None,
    ) -> None:
        self.stages = list(stages)
        self.static = static
        self.subscription = subscription
        self._owner: OrderedDict[int, tuple[Node, Resolver]] = OrderedDict()
        only = getattr(self.stages[0], "only_node", None) if len(self.stages) == 1 else None
        node = only() if only is not None else None
        if node is not None:  # one node for every key: one call per request, not four
            self.resolve = _only(node)  # type: ignore[method-assign]

    @property
    def static_nodes(self) -> list[Node]:
        return self.static.static_nodes if self.static is not None else []

    @property
    def subscriptions(self) -> Any:
        if self.subscription is None:
            return None
        return getattr(self.subscription, "subscriptions", None)

    def resolve(
        self, key: bytes, now: float, client: bytes = b"", exclude: Collection[Node] = ()
    ) -> Node | None:
        if len(key) > MAX_KEY:
            return None
        if len(self.stages) == 1:  # one mapper owns every node: nothing to remember
            return self.stages[0].resolve(key, now, client, exclude)
        for stage in self.stages:
            node = stage.resolve(key, now, client, exclude)
            if node is not None:
                self._owner[id(node)] = (node, stage)
                self._owner.move_to_end(id(node))
                if len(self._owner) > MAX_MAPPED_NODES:
                    self._owner.popitem(last=False)
                return node
        return None

    def on_connect_failed(self, node: Node, now: float) -> None:
        if len(self.stages) == 1:
            self.stages[0].on_connect_failed(node, now)
            return
        entry = self._owner.get(id(node))
        if entry is not None and entry[0] is node:
            entry[1].on_connect_failed(node, now)


def _only(node: Node) -> Callable[..., Node | None]:
    """``ChainResolver.resolve`` when one node takes every request: what the mapper and
    its balancer would answer (the node, unless excluded, dead or in grace), inline."""
    def resolve(key: bytes, now: float, client: bytes = b"",
                exclude: Collection[Node] = ()) -> Node | None:
        if len(key) > MAX_KEY or node.death_mark or now < node.grace_until or node in exclude:
            return None
        return node
    return resolve


def _get(cfg: Config, name: str, default: Any = None) -> Any:
    """``cfg[name]`` when declared and set, else ``default``."""
    if lookup(name) is None or not cfg.is_set(name):
        return default
    value = cfg[name]
    return default if value is None else value


def use_socket_address(value: str, sockets: Sequence[str]) -> str:
    """The address ``--X-use-socket VALUE`` means: the Nth of this instance's uwsgi
    sockets, or (brood) an address given directly."""
    text = (value or "0").strip()
    if text.isdigit():
        index = int(text)
        if index >= len(sockets):
            raise ValueError(f"use-socket {index}: this instance has {len(sockets)} socket(s)")
        return sockets[index]
    return text


def build_resolver(
    cfg: Config,
    prefix: str,
    subscription: Resolver | None = None,
    *,
    sockets: Sequence[str] | None = None,
    cache_store: CacheStore | None = None,
    caches: CacheLookup | None = None,
    report: Callable[[str], None] | None = None,
    chain_all: bool = False,
) -> ChainResolver:
    """The resolver of router ``prefix`` ("http", "fastrouter", "rawrouter", "sslrouter").

    ``subscription`` is the subscription table's resolver when the router runs a
    subscription server; ``--X-subscription-fallback-key`` wraps it in a
    ``FallbackKeyResolver``. ``sockets`` are this instance's uwsgi sockets for
    ``--X-use-socket`` (default: ``--socket`` values). ``caches`` are the router
    process's cache replicas (``brood.cache.replica``): ``--X-use-cache [NAME]`` reads
    the one it names, the first for no name; ``cache_store`` gives the store directly
    (without either, a private empty one: the master's start-up check). ``report``
    receives the errors of a code-string mapper. ValueError for a bad configuration
    (code-string file, socket number, algorithm, a cache name ``caches`` lacks).
    """
    gracetime = float(_get(cfg, f"{prefix}-gracetime", 30)) or 30.0  # 0: uWSGI's "not set"
    algo = _get(cfg, f"{prefix}-algo")
    default_algo = _get(cfg, "subscription-algo", "wrr")
    pool = NodePool()

    static = None
    if _get(cfg, f"{prefix}-to", []):
        static = StaticResolver(
            _get(cfg, f"{prefix}-to"), balancer=make_balancer(algo or "rr"), gracetime=gracetime
        )
    candidates: list[Resolver | None] = []
    if cfg.is_set(f"{prefix}-use-cache"):
        store = cache_store
        if caches is not None:
            name = _get(cfg, f"{prefix}-use-cache", "")
            store = caches.store(name)
            if store is None:
                raise ValueError(f"--{prefix}-use-cache: unable to find cache {name!r}")
        candidates.append(CacheResolver(store, balancer=make_balancer(algo or default_algo),
                                        gracetime=gracetime, pool=pool))
    if _get(cfg, f"{prefix}-use-pattern"):
        candidates.append(PatternResolver(_get(cfg, f"{prefix}-use-pattern"), pool))
    if subscription is not None:
        fallback_key = _get(cfg, f"{prefix}-subscription-fallback-key")
        sub: Resolver = subscription
        if fallback_key:
            sub = FallbackKeyResolver(subscription, fallback_key.encode("utf-8", "surrogateescape"))
        candidates.append(sub)
    if _get(cfg, f"{prefix}-use-base"):
        candidates.append(BaseResolver(_get(cfg, f"{prefix}-use-base"), pool))
    if _get(cfg, f"{prefix}-use-code-string"):
        try:
            candidates.append(CodeResolver.from_spec(_get(cfg, f"{prefix}-use-code-string"),
                                                     pool, report))
        except ValueError as exc:
            raise ValueError(f"--{prefix}-use-code-string: {exc}") from exc
    if cfg.is_set(f"{prefix}-use-socket"):
        own = list(sockets) if sockets is not None else list(_get(cfg, "socket", []))
        try:
            address = use_socket_address(_get(cfg, f"{prefix}-use-socket", "0"), own)
        except ValueError as exc:
            raise ValueError(f"--{prefix}-use-socket: {exc}") from exc
        candidates.append(SocketResolver(address, pool))
    candidates.append(static)

    stages = [c for c in candidates if c is not None]
    if not chain_all:
        stages = stages[:1]
    return ChainResolver(stages, static=static, subscription=subscription)
