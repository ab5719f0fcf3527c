"""One cache and a set of named caches, pure (time is passed in or read per lookup).

Why a class of its own: the master's authoritative copy and every router replica keep
the same limits and expiry, so they agree on what a key holds. Expiry is an absolute
unix time (0: never), the form uWSGI's sync packets carry; an item whose time has
come is gone for ``get`` at once (lazy) and removed by ``expire`` (the master's tick).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence

from brood.cache.spec import CacheSpec


class Cache:
    """key -> (value, expires) within a ``CacheSpec``'s limits; insertion order is the
    order items were last set (what ``purge_lru`` drops first)."""

    def __init__(self, spec: CacheSpec, clock: Callable[[], float] = time.time) -> None:
        self.spec = spec
        self.name = spec.name
        self.clock = clock
        self._items: dict[bytes, tuple[bytes, int]] = {}
        self.full = 0  # sets refused (or LRU purges) because the cache was full

    def __len__(self) -> int:
        return len(self._items)

    def refusal(self, key: bytes, value: bytes) -> str | None:
        """Why ``key``/``value`` cannot be stored here (None: it can)."""
        if not key:
            return "empty key"
        if not value:
            return "empty value"
        if len(key) > self.spec.keysize:
            return f"key of {len(key)} bytes over keysize {self.spec.keysize}"
        if len(value) > self.spec.max_value:
            return f"value of {len(value)} bytes over the item size {self.spec.max_value}"
        return None

    def put(self, key: bytes, value: bytes, expires: int = 0) -> tuple[str | None, bytes | None]:
        """Set or update ``key`` (uWSGI's cache_update). (refusal reason or None, the key
        purged to make room or None)."""
        reason = self.refusal(key, value)
        if reason is not None:
            return reason, None
        purged = None
        if key in self._items:
            del self._items[key]  # to the end: the most recently set
        elif len(self._items) >= self.spec.capacity:
            self.full += 1
            if not self.spec.purge_lru or not self._items:
                return "cache is full", None
            purged = next(iter(self._items))
            del self._items[purged]
        self._items[key] = (value, max(0, int(expires)))
        return None, purged

    def delete(self, key: bytes) -> bool:
        return self._items.pop(key, None) is not None

    def get(self, key: bytes, now: float | None = None) -> bytes | None:
        """The value of ``key``, None when missing or expired (the ``CacheStore``
        interface of ``brood.routers.resolve``)."""
        item = self._items.get(key)
        if item is None:
            return None
        if item[1] and item[1] <= (self.clock() if now is None else now):
            return None
        return item[0]

    def expire(self, now: float) -> list[bytes]:
        """Remove the items whose time has come; their keys."""
        gone = [k for k, (_, exp) in self._items.items() if exp and exp <= now]
        for key in gone:
            del self._items[key]
        return gone

    def items(self) -> Iterator[tuple[bytes, bytes, int]]:
        for key, (value, expires) in list(self._items.items()):
            yield key, value, expires

    def all_keys(self) -> list[bytes]:
        return list(self._items)


class CacheSet:
    """The declared caches by name; the first is the default one."""

    def __init__(self, specs: Sequence[CacheSpec],
                 clock: Callable[[], float] = time.time) -> None:
        self.caches: dict[str, Cache] = {}
        for spec in specs:
            if spec.name in self.caches:
                raise ValueError(f"cache {spec.name!r} is declared twice")
            self.caches[spec.name] = Cache(spec, clock)

    @property
    def names(self) -> list[str]:
        return list(self.caches)

    def store(self, name: str | None) -> Cache | None:
        """The cache ``--X-use-cache NAME`` means: the default one for no name."""
        if not name:
            return next(iter(self.caches.values()), None)
        return self.caches.get(name)

    def __iter__(self) -> Iterator[Cache]:
        return iter(self.caches.values())
