"""Resolution: node addresses, uWSGI's mappers, their precedence, build_resolver."""

from __future__ import annotations

import inspect
import socket

import pytest

from brood.config.model import Config
from brood.routers.balance import WeightedRoundRobin
from brood.routers.engine import RouterSettings
from brood.routers.node import Node
from brood.routers.resolve import (
    BaseResolver,
    CacheResolver,
    ChainResolver,
    CodeResolver,
    FakeResolver,
    FallbackKeyResolver,
    NodePool,
    PatternResolver,
    SocketResolver,
    StaticResolver,
    build_resolver,
    parse_node_address,
    path_safe,
    split_modifier,
    use_socket_address,
)

NOW = 5000.0


# -- addresses --------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "expected"), [
    ("127.0.0.1:3031", (socket.AF_INET, ("127.0.0.1", 3031))),
    (":3031", (socket.AF_INET, ("127.0.0.1", 3031))),
    ("node.example:80", (socket.AF_INET, ("node.example", 80))),
    ("[::1]:3031", (socket.AF_INET6, ("::1", 3031, 0, 0))),
    ("/run/app.sock", (socket.AF_UNIX, "/run/app.sock")),
    ("app.sock", (socket.AF_UNIX, "app.sock")),
    ("./a:b.sock", (socket.AF_UNIX, "./a:b.sock")),
    ("@brood", (socket.AF_UNIX, "\x00brood")),
])
def test_parse_node_address(name, expected) -> None:
    assert parse_node_address(name) == expected


@pytest.mark.parametrize("name", ["", "@", "host:", "host:0", "host:70000", "host:http",
                                  "::1:3031", "[::1]3031", "[]:80", "a\x00b"])
def test_parse_node_address_rejects(name) -> None:
    with pytest.raises(ValueError):
        parse_node_address(name)


def test_split_modifier_and_path_safety() -> None:
    assert split_modifier("127.0.0.1:3031") == ("127.0.0.1:3031", None)
    assert split_modifier("/s.sock,5") == ("/s.sock", 5)
    with pytest.raises(ValueError):
        split_modifier("a:1,x")
    assert path_safe(b"py.example.com")
    for bad in (b"", b"../etc", b"a/b", b".", b"..", b"a\x00"):
        assert not path_safe(bad)


# -- mappers ----------------------------------------------------------------------------

def test_static_round_robin_ignores_key_and_graces_failures() -> None:
    static = StaticResolver(["A:1", "B:2"], gracetime=30)
    picks = [static.resolve(k, NOW).name for k in (b"x", b"y", b"x", b"z")]
    assert picks == ["A:1", "B:2", "A:1", "B:2"]
    a = static.nodes[0]
    static.on_connect_failed(a, NOW)
    assert (a.failcnt, a.grace_until) == (1, NOW + 30)
    assert [static.resolve(b"", NOW + 1).name for _ in range(3)] == ["B:2"] * 3
    assert static.resolve(b"", NOW + 1, exclude=[static.nodes[1]]) is None
    static.on_connect_failed(Node("A:1"), NOW)  # a stranger: ignored
    assert a.failcnt == 1
    assert static.static_nodes == static.nodes


def test_pattern_substitutes_key_and_reuses_nodes() -> None:
    mapper = PatternResolver("/tmp/uw/%s.sock")
    node = mapper.resolve(b"pat.example", NOW)
    assert node.name == "/tmp/uw/pat.example.sock"
    assert mapper.resolve(b"pat.example", NOW + 1) is node
    assert PatternResolver("/x/%%s-%s").resolve(b"k", NOW).name == "/x/%s-k"
    assert mapper.resolve(b"../../run/docker", NOW) is None


def test_address_mappers_skip_excluded_and_only_count_failures() -> None:
    mapper = BaseResolver("/tmp/uw/")
    node = mapper.resolve(b"pat.example.sock", NOW)
    assert node.name == "/tmp/uw/pat.example.sock"
    assert mapper.resolve(b"pat.example.sock", NOW, exclude=[node]) is None
    mapper.on_connect_failed(node, NOW)
    assert node.failcnt == 1 and node.usable(NOW)


def test_socket_mapper_and_use_socket_numbers() -> None:
    mapper = SocketResolver("127.0.0.1:3031")
    assert mapper.resolve(b"anything", NOW).name == "127.0.0.1:3031"
    assert use_socket_address("1", ["a:1", "b:2"]) == "b:2"
    assert use_socket_address("", ["a:1"]) == "a:1"
    assert use_socket_address("/run/x.sock", []) == "/run/x.sock"
    with pytest.raises(ValueError, match="has 1 socket"):
        use_socket_address("3", ["a:1"])


def _mapper_file(tmp_path, body: str) -> str:
    path = tmp_path / "mapper.py"
    path.write_text(body)
    return str(path)


def test_code_string_mapper_from_file(tmp_path) -> None:
    spec = "0:" + _mapper_file(tmp_path, (
        "def route(key):\n"
        "    assert isinstance(key, bytes)\n"
        "    if key == b'none':\n"
        "        return None\n"
        "    if key == b'boom':\n"
        "        raise RuntimeError('nope')\n"
        "    if key == b'mod':\n"
        "        return b'/run/mod.sock,5'\n"
        "    return '127.0.0.1:%d' % (3000 + len(key))\n"
    )) + ":route"
    reports: list[str] = []
    mapper = CodeResolver.from_spec(spec, report=reports.append)
    assert mapper.resolve(b"abc", NOW).name == "127.0.0.1:3003"
    assert mapper.resolve(b"none", NOW) is None
    assert mapper.resolve(b"mod", NOW).modifier1 == 5
    assert mapper.resolve(b"boom", NOW) is None
    assert mapper.errors == 1 and "nope" in mapper.last_error and reports == [mapper.last_error]


def test_code_string_bad_results_and_specs(tmp_path) -> None:
    mapper = CodeResolver(lambda key: 42)
    assert mapper.resolve(b"k", NOW) is None and "int" in mapper.last_error
    path = _mapper_file(tmp_path, "x = 1\n")
    for spec in ("route", "0:" + path, "x:" + path + ":f", "0:" + path + ":x",
                 "0:/nonexistent/m.py:f"):
        with pytest.raises(ValueError):
            CodeResolver.from_spec(spec)


def test_cache_mapper_set_delete_and_balance() -> None:
    cache = CacheResolver(balancer=WeightedRoundRobin(), gracetime=10)
    assert cache.resolve(b"app", NOW) is None
    cache.set(b"app", ["a:1", "b:2,7"])
    picks = [cache.resolve(b"app", NOW) for _ in range(4)]
    assert [n.name for n in picks] == ["b:2", "a:1", "b:2", "a:1"]
    assert picks[0].modifier1 == 7 and picks[0] is picks[2]
    cache.on_connect_failed(picks[0], NOW)
    assert [cache.resolve(b"app", NOW + 1).name for _ in range(2)] == ["a:1", "a:1"]
    cache.set(b"app", ["c:3"])
    assert cache.resolve(b"app", NOW).name == "c:3"
    cache.delete(b"app")
    assert cache.resolve(b"app", NOW) is None
    with pytest.raises(ValueError):
        cache.set(b"app", ["a:1,x"])


def test_cache_mapper_reads_uwsgi_values_from_any_store() -> None:
    class Store:
        def get(self, key: bytes) -> bytes | None:
            return {b"k": b"127.0.0.1:3031,0", b"bad": b"x:1,zz"}.get(key)

    cache = CacheResolver(Store())
    assert cache.resolve(b"k", NOW).name == "127.0.0.1:3031"
    assert cache.resolve(b"bad", NOW) is None


def test_fallback_key_borrows_nodes() -> None:
    table = FakeResolver({b"main": ["m:1"], b"other": ["o:1"]})
    resolver = FallbackKeyResolver(table, b"main")
    assert resolver.resolve(b"other", NOW).name == "o:1"
    assert resolver.resolve(b"unknown", NOW).name == "m:1"
    assert resolver.failed == []  # attributes of the table show through


def test_node_pool_bounded_keeps_busy_nodes() -> None:
    pool = NodePool(limit=2)
    busy = pool.get("a", NOW)
    busy.ref = 1
    pool.get("b", NOW)
    pool.get("c", NOW)
    assert busy in pool and len(pool) == 2
    assert pool.get("a", NOW) is busy


# -- precedence and build_resolver ------------------------------------------------------

def _cfg(**values) -> Config:
    return Config.from_dict({k.replace("_", "-"): v for k, v in values.items()})


def test_build_static_only() -> None:
    resolver = build_resolver(_cfg(fastrouter_to=["A:1", "B:2"], fastrouter_gracetime=5),
                              "fastrouter")
    assert [resolver.resolve(b"k", NOW).name for _ in range(3)] == ["A:1", "B:2", "A:1"]
    node = resolver.static_nodes[0]
    resolver.on_connect_failed(node, NOW)
    assert node.grace_until == NOW + 5
    assert resolver.subscriptions is None


def test_gracetime_0_is_uwsgis_default_30() -> None:
    """uWSGI's corerouter reads 0 as "not set": a refusing node is skipped for 30 s,
    not retried on every request."""
    resolver = build_resolver(_cfg(http_to=["A:1", "B:2"], http_gracetime=0), "http")
    node = resolver.static_nodes[0]
    resolver.on_connect_failed(node, NOW)
    assert node.grace_until == NOW + 30
    assert RouterSettings.from_config(_cfg(http_gracetime=0), "http").gracetime == 30.0


def test_uwsgi_precedence_one_mapper_wins() -> None:
    sub = FakeResolver({b"k": ["sub:1"]})
    full = dict(http_use_pattern="/p/%s.sock", http_use_base="/b/", http_to=["s:1"],
                http_use_socket="0")
    resolver = build_resolver(_cfg(**full), "http", sub, sockets=["own:1"])
    assert resolver.resolve(b"k", NOW).name == "/p/k.sock"
    del full["http_use_pattern"]
    resolver = build_resolver(_cfg(**full), "http", sub, sockets=["own:1"])
    assert resolver.resolve(b"k", NOW).name == "sub:1"
    assert resolver.resolve(b"zz", NOW) is None  # uWSGI: no fall-through
    resolver = build_resolver(_cfg(**full), "http", None, sockets=["own:1"])
    assert resolver.resolve(b"k", NOW).name == "/b/k"
    del full["http_use_base"]
    resolver = build_resolver(_cfg(**full), "http", sockets=["own:1"])
    assert resolver.resolve(b"k", NOW).name == "own:1"
    assert [n.name for n in resolver.static_nodes] == ["s:1"]  # listed for stats


def test_cache_comes_first() -> None:
    resolver = build_resolver(_cfg(rawrouter_use_cache="", rawrouter_use_pattern="/p/%s"),
                              "rawrouter")
    assert resolver.resolve(b"k", NOW) is None
    resolver.stages[0].set(b"k", ["c:1"])
    assert resolver.resolve(b"k", NOW).name == "c:1"


def test_chain_all_falls_through_and_routes_failures_to_owner() -> None:
    sub = FakeResolver({b"known": ["sub:1"]}, gracetime=3)
    resolver = build_resolver(
        _cfg(sslrouter_to=["s:1"], sslrouter_subscription_fallback_key="known",
             sslrouter_fallback=["f:1"]),
        "sslrouter", sub, chain_all=True)
    assert resolver.resolve(b"unknown", NOW).name == "sub:1"  # fallback key
    node = resolver.resolve(b"known", NOW)
    resolver.on_connect_failed(node, NOW)
    assert sub.failed == ["sub:1"]
    assert resolver.resolve(b"known", NOW, exclude=[node]).name == "s:1"
    assert resolver.subscriptions is None  # the fake exposes none


@pytest.mark.parametrize("algo", ["rr", "wrr"])
def test_one_static_node_answers_as_its_mapper_does(algo) -> None:
    """One ``--X-to`` under plain round robin is resolved in one call (the mapper and the
    balancer skipped); under any other balancer the mapper is asked. Either way the
    answers are the mapper's own, in every state of the node."""
    resolver = build_resolver(_cfg(http_to=["A:1"], http_gracetime=5, http_algo=algo),
                              "http")
    (stage,) = resolver.stages
    assert inspect.ismethod(resolver.resolve) == (algo != "rr")  # the shortcut, or not
    node = resolver.static_nodes[0]
    long_key = b"k" * 256

    def both(key=b"k", now=NOW, exclude=()):
        mapped = None if len(key) > 255 else stage.resolve(key, now, b"", exclude)
        return resolver.resolve(key, now, b"", exclude), mapped

    assert both() == (node, node)
    assert both(exclude=[node]) == (None, None)
    assert both(key=long_key)[0] is None
    resolver.on_connect_failed(node, NOW)
    assert both() == (None, None)  # in grace
    assert both(now=NOW + 5) == (node, node)  # grace over
    node.death_mark = True
    assert both(now=NOW + 5) == (None, None)


def test_keys_longer_than_255_never_resolve() -> None:
    resolver = ChainResolver([FakeResolver({b"k" * 256: ["a:1"], b"k" * 255: ["b:1"]})])
    assert resolver.resolve(b"k" * 256, NOW) is None
    assert resolver.resolve(b"k" * 255, NOW).name == "b:1"


def test_algo_option_picks_the_balancer() -> None:
    cfg = _cfg(http_to=["a:1", "b:1"], http_algo="lrc")
    resolver = build_resolver(cfg, "http")
    resolver.static_nodes[0].ref = 3
    assert {resolver.resolve(b"", NOW).name for _ in range(3)} == {"b:1"}


def test_build_rejects_bad_configuration(tmp_path) -> None:
    with pytest.raises(ValueError):
        build_resolver(_cfg(http_use_socket="2"), "http", sockets=["a:1"])
    with pytest.raises(ValueError):
        build_resolver(_cfg(http_use_code_string="0:/nonexistent.py:f"), "http")


def test_nothing_configured_resolves_nothing() -> None:
    resolver = build_resolver(_cfg(), "fastrouter")
    assert resolver.stages == [] and resolver.resolve(b"k", NOW) is None
    resolver.on_connect_failed(Node("x"), NOW)  # harmless


def test_fallback_key_wraps_the_subscription_resolver() -> None:
    plain = FakeResolver({b"main": ["m:1"]})
    resolver = build_resolver(_cfg(http_subscription_fallback_key="main"), "http", plain)
    assert isinstance(resolver.stages[0], FallbackKeyResolver)
    assert resolver.resolve(b"unknown", NOW).name == "m:1"
    resolver = build_resolver(_cfg(), "http", plain)
    assert resolver.stages == [plain]
