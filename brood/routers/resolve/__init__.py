"""Resolution: routing key -> node. One interface for every router (HTTP, fastrouter,
rawrouter, sslrouter), with uWSGI's mappers and their precedence.

* ``address``  parse_node_address and friends (shared with the connect code)
* ``base``     the Resolver protocol, the per-address Node cache, FakeResolver
* ``mappers``  static list, pattern, base, cache, code string, use-socket
* ``chain``    ChainResolver (precedence, stats hooks) and build_resolver(cfg, prefix)

A resolver returns None for "no node for this key"; it never raises for a lookup. The
engine calls ``on_connect_failed`` when a node refused, which puts pool nodes in
grace. Keys longer than 255 bytes never resolve (uWSGI ignores them too).
"""

from brood.routers.resolve.address import parse_node_address, path_safe, split_modifier
from brood.routers.resolve.base import MAX_KEY, FakeResolver, NodePool, Resolver
from brood.routers.resolve.chain import (
    ChainResolver,
    FallbackKeyResolver,
    build_resolver,
    use_socket_address,
)
from brood.routers.resolve.mappers import (
    BaseResolver,
    CacheResolver,
    CacheStore,
    CodeResolver,
    MemoryCache,
    PatternResolver,
    SocketResolver,
    StaticResolver,
)

__all__ = [
    "MAX_KEY",
    "BaseResolver",
    "CacheResolver",
    "CacheStore",
    "ChainResolver",
    "CodeResolver",
    "FakeResolver",
    "FallbackKeyResolver",
    "MemoryCache",
    "NodePool",
    "PatternResolver",
    "Resolver",
    "SocketResolver",
    "StaticResolver",
    "build_resolver",
    "parse_node_address",
    "path_safe",
    "split_modifier",
    "use_socket_address",
]
