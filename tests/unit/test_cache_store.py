"""One cache's limits and expiry (brood.cache.store), and --X-use-cache reading it."""

from __future__ import annotations

import pytest

from brood.cache.spec import CacheSpec
from brood.cache.store import Cache, CacheSet
from brood.config.model import Config
from brood.routers.resolve import build_resolver


def test_items_limit_is_uwsgis_n_minus_one() -> None:
    cache = Cache(CacheSpec("c", 3))
    assert cache.put(b"a", b"1") == (None, None)
    assert cache.put(b"b", b"2") == (None, None)
    assert cache.put(b"c", b"3") == ("cache is full", None)
    assert cache.put(b"a", b"9") == (None, None)  # an update needs no room
    assert (cache.get(b"a"), cache.get(b"c"), cache.full) == (b"9", None, 1)


def test_purge_lru_drops_the_least_recently_set() -> None:
    cache = Cache(CacheSpec("c", 3, purge_lru=True))
    cache.put(b"a", b"1")
    cache.put(b"b", b"2")
    cache.put(b"a", b"1again")  # a is now the most recent
    assert cache.put(b"c", b"3") == (None, b"b")
    assert cache.all_keys() == [b"a", b"c"]


def test_key_and_value_sizes() -> None:
    cache = Cache(CacheSpec("c", 10, keysize=4, max_value=8))
    assert cache.put(b"12345", b"v")[0] == "key of 5 bytes over keysize 4"
    assert cache.put(b"k", b"123456789")[0] == "value of 9 bytes over the item size 8"
    assert cache.put(b"", b"v")[0] == "empty key"
    assert cache.put(b"k", b"")[0] == "empty value"
    assert len(cache) == 0


def test_expiry_is_absolute_and_lazy_then_swept() -> None:
    now = [1000.0]
    cache = Cache(CacheSpec("c", 10), clock=lambda: now[0])
    cache.put(b"soon", b"v", 1005)
    cache.put(b"never", b"v", 0)
    assert cache.get(b"soon") == b"v"
    now[0] = 1005
    assert cache.get(b"soon") is None and cache.get(b"never") == b"v"
    assert cache.expire(1005) == [b"soon"] and cache.all_keys() == [b"never"]


def test_cache_set_default_is_the_first() -> None:
    caches = CacheSet([CacheSpec("one", 5), CacheSpec("two", 5)])
    assert caches.store("") is caches.store(None) is caches.caches["one"]
    assert caches.store("two") is caches.caches["two"] and caches.store("x") is None


def test_use_cache_reads_the_named_replica_with_several_nodes() -> None:
    caches = CacheSet([CacheSpec("one", 5), CacheSpec("two", 5)])
    caches.caches["two"].put(b"k", b"127.0.0.1:1|127.0.0.1:2")  # uWSGI's separator
    caches.caches["one"].put(b"k", b"127.0.0.1:3 127.0.0.1:4,5")  # brood's, with modifier1
    named = build_resolver(Config([("fastrouter-use-cache", "two")]), "fastrouter",
                           caches=caches)
    picked = {named.resolve(b"k", 0.0).name for _ in range(4)}
    assert picked == {"127.0.0.1:1", "127.0.0.1:2"}
    default = build_resolver(Config([("http-use-cache", "")]), "http", caches=caches)
    nodes = {(n.name, n.modifier1) for n in (default.resolve(b"k", 0.0) for _ in range(4))}
    assert nodes == {("127.0.0.1:3", 0), ("127.0.0.1:4", 5)}
    assert default.resolve(b"other", 0.0) is None
    caches.caches["one"].delete(b"k")
    assert default.resolve(b"k", 0.0) is None


def test_use_cache_naming_a_missing_cache_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="unable to find cache 'nope'"):
        build_resolver(Config([("rawrouter-use-cache", "nope")]), "rawrouter",
                       caches=CacheSet([CacheSpec("c", 5)]))
