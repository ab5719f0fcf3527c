"""The subscription table: announces, expiry, lookups and stats (WIRE §2.6-§2.10, §2.12)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from brood.config.model import Config
from brood.routers.node import Node
from brood.routers.resolve import build_resolver
from brood.subscription.packet import Subscription, decode_subscription
from brood.subscription.table import (
    SubscriptionTable,
    TableResolver,
    ack_text,
    djb33x,
)

FIX = Path("/work/shared/fixtures")
T = 1_000_000.0


def sub(key: bytes = b"py.example.com", address: bytes = b"127.0.0.1:1", *,
        command: int = 0, **kw: object) -> Subscription:
    return Subscription(key, address, command=command, **kw)  # type: ignore[arg-type]


def names(nodes: list[Node]) -> list[str]:
    return [n.name for n in nodes]


# -- hash ------------------------------------------------------------------------------------

def test_djb33x_check_values() -> None:
    assert djb33x(b"py.example.com") == 48745
    assert djb33x(b"") == 5381
    assert djb33x(b"one.example") == 22097
    assert djb33x(b"real.example") == 54286


def test_djb33x_sign_extends_high_bytes() -> None:
    h = 5381
    h = ((h * 33) ^ 0xFFFFFFFF) & 0xFFFFFFFF  # byte 0xff as a C char is -1
    assert djb33x(b"\xff") == h % 65535


# -- subscribe / refresh ---------------------------------------------------------------------

def test_new_pool_and_node_events() -> None:
    table = SubscriptionTable()
    events = table.apply(sub(), T)
    assert events == [("new_pool", b"py.example.com", 48745),
                      ("new_node", b"py.example.com", b"127.0.0.1:1")]
    node = table.lookup(b"py.example.com", T)
    assert node is not None and node.weight == 1 and node.last_check == T  # 0 -> 1
    assert table.has_nodes()


def test_refresh_updates_counters_but_not_modifiers() -> None:
    table = SubscriptionTable()
    table.apply(sub(modifier1=0, cores=1, load=0, weight=3), T)
    node = table.slot(b"py.example.com").nodes[0]
    node.last_requests = 5
    node.death_mark = True
    events = table.apply(sub(modifier1=5, modifier2=3, cores=4, load=2, weight=0), T + 5)
    assert events == []  # refresh: no log line, no ack
    assert (node.modifier1, node.modifier2) == (0, 0)
    assert (node.cores, node.load, node.weight) == (4, 2, 1)
    assert node.last_check == T + 5 and not node.death_mark and node.last_requests == 0
    assert len(table.slot(b"py.example.com").nodes) == 1


def test_notify_ack_only_for_new_nodes() -> None:
    table = SubscriptionTable()
    s = sub(address=b"127.0.0.1:27101", notify=b"/tmp/n.sock")
    events = table.apply(s, T)
    text = b"[subscription ack] py.example.com => new node: 127.0.0.1:27101"
    assert ("notify", b"/tmp/n.sock", text) in events
    assert ack_text(b"py.example.com", b"127.0.0.1:27101") == text
    assert table.apply(s, T + 1) == []
    assert table.apply(sub(address=b"127.0.0.1:27101", notify=b"/tmp/n.sock", command=1),
                       T + 2)[0][0] == "marked_failed"


def test_captured_notify_packet() -> None:
    data = (FIX / "subscription" / "sub_notify_autoweight_m1override.bin").read_bytes()
    events = SubscriptionTable().apply(decode_subscription(data), T)
    assert events[-1] == ("notify", b"/tmp/uw/notify.sock",
                          b"[subscription ack] example.com => new node: 127.0.0.1:27091")


def test_rejects_bad_addresses_and_unroutable_keys() -> None:
    table = SubscriptionTable()
    assert table.apply(sub(address=b""), T)[0][0] == "rejected"
    assert table.apply(sub(address=b"a" * 256), T)[0][0] == "rejected"
    assert table.apply(sub(key=b"k" * 256), T)[0][0] == "rejected"
    assert table.apply(sub(key=b"k" * 255), T)[0][0] == "new_pool"
    assert table.lookup(b"k" * 255, T) is not None
    assert table.lookup(b"k" * 256, T) is None


def test_empty_key_accepted() -> None:
    table = SubscriptionTable()
    table.apply(sub(key=b""), T)
    assert table.stats_slots(T)[0]["hash"] == 5381


# -- unsubscribe -----------------------------------------------------------------------------

def test_unsubscribe_removes_node_and_slot() -> None:
    table = SubscriptionTable()
    table.apply(sub(), T)
    events = table.apply(sub(command=1), T + 1)
    assert events == [
        ("marked_failed", b"py.example.com", b"127.0.0.1:1", "unsubscribed"),
        ("removed_node", b"py.example.com", b"127.0.0.1:1"),
        ("removed_pool", b"py.example.com"),
    ]
    assert not table.has_nodes() and table.stats_slots(T) == []


def test_unsubscribe_waits_for_requests_in_flight() -> None:
    table = SubscriptionTable()
    table.apply(sub(), T)
    node = table.lookup(b"py.example.com", T)
    assert node is not None
    node.ref = 2
    events = table.apply(sub(command=1), T + 1)
    assert [e[0] for e in events] == ["marked_failed"]
    assert node.death_mark and table.lookup(b"py.example.com", T + 1) is None
    assert table.release(node, T + 2) == []
    assert table.release(node, T + 3) == [
        ("removed_node", b"py.example.com", b"127.0.0.1:1"),
        ("removed_pool", b"py.example.com"),
    ]


def test_unsubscribe_unknown_node_has_no_effect() -> None:
    table = SubscriptionTable()
    table.apply(sub(), T)
    assert table.apply(sub(address=b"other:1", command=7), T) == []
    assert table.apply(sub(key=b"nope", command=1), T) == []
    assert table.has_nodes()


def test_resubscribe_while_leaving_revives_the_node() -> None:
    table = SubscriptionTable()
    table.apply(sub(), T)
    node = table.slot(b"py.example.com").nodes[0]
    node.ref = 1
    table.apply(sub(command=1), T + 1)
    table.apply(sub(), T + 2)
    assert table.release(node, T + 3) == []
    assert table.lookup(b"py.example.com", T + 3) is node


# -- expiry ----------------------------------------------------------------------------------

def test_lazy_expiry_on_lookup() -> None:
    table = SubscriptionTable(tolerance=17)
    table.apply(sub(), T)
    assert table.lookup(b"py.example.com", T + 17) is not None
    assert table.take_events() == []
    node = table.slot(b"py.example.com").nodes[0]
    assert table.lookup(b"py.example.com", T + 18) is None
    assert node.failcnt == 1 and node.death_mark
    assert table.take_events() == [
        ("marked_failed", b"py.example.com", b"127.0.0.1:1",
         "no announce received in 17 seconds"),
        ("removed_node", b"py.example.com", b"127.0.0.1:1"),
        ("removed_pool", b"py.example.com"),
    ]
    assert table.take_events() == []


def test_stats_keep_silent_nodes_until_a_sweep() -> None:
    table = SubscriptionTable(tolerance=17)
    table.apply(sub(), T)
    table.apply(sub(address=b"127.0.0.1:2"), T + 15)
    assert len(table.stats_slots(T + 100)[0]["nodes"]) == 2  # uWSGI: lazy
    events = table.expire(T + 20)
    assert [e[0] for e in events] == ["marked_failed", "removed_node"]
    assert names(table.slot(b"py.example.com").nodes) == ["127.0.0.1:2"]
    assert [e[0] for e in table.expire(T + 40)] == ["marked_failed", "removed_node",
                                                    "removed_pool"]


def test_expired_node_in_use_stays_until_released() -> None:
    table = SubscriptionTable(tolerance=17)
    table.apply(sub(), T)
    node = table.slot(b"py.example.com").nodes[0]
    node.ref = 1
    assert [e[0] for e in table.expire(T + 30)] == ["marked_failed"]
    assert table.expire(T + 31) == []  # failcnt not raised twice
    assert node.failcnt == 1
    assert [e[0] for e in table.release(node, T + 32)] == ["removed_node", "removed_pool"]


def test_announcing_node_stays_routable() -> None:
    table = SubscriptionTable(tolerance=17)
    for t in range(0, 100, 5):
        table.apply(sub(), T + t)
        assert table.lookup(b"py.example.com", T + t + 4) is not None
        assert table.expire(T + t + 4) == []


# -- dead on refused connect -----------------------------------------------------------------

def test_mark_dead_until_next_announce() -> None:
    table = SubscriptionTable()
    table.apply(sub(address=b"a:1"), T)
    table.apply(sub(address=b"b:1"), T)
    resolver = TableResolver(table)
    a = table.slot(b"py.example.com").nodes[0]
    resolver.on_connect_failed(a, T + 1)
    assert table.take_events() == [("marked_failed", b"py.example.com", b"a:1",
                                    "connect refused")]
    assert a.death_mark and a.failcnt == 1
    for _ in range(4):
        assert resolver.resolve(b"py.example.com", T + 2).name == "b:1"
    assert names(table.slot(b"py.example.com").nodes) == ["a:1", "b:1"]  # still listed
    table.apply(sub(address=b"a:1"), T + 3)
    assert not a.death_mark
    assert {resolver.resolve(b"py.example.com", T + 4).name for _ in range(4)} == {"a:1", "b:1"}


def test_dead_node_that_stays_silent_expires() -> None:
    table = SubscriptionTable(tolerance=17)
    table.apply(sub(), T)
    node = table.slot(b"py.example.com").nodes[0]
    table.mark_dead(node, T + 1)
    assert table.expire(T + 10) == []
    events = table.expire(T + 18)
    assert [e[0] for e in events] == ["removed_node", "removed_pool"]
    assert node.failcnt == 1
    assert table.mark_dead(node, T + 19) == []  # no longer in the table


def test_exclude_is_passed_to_the_balancer() -> None:
    table = SubscriptionTable()
    table.apply(sub(address=b"a:1"), T)
    table.apply(sub(address=b"b:1"), T)
    a, b = table.slot(b"py.example.com").nodes
    assert table.lookup(b"py.example.com", T, exclude=(a,)) is b
    assert table.lookup(b"py.example.com", T, exclude=(a, b)) is None


# -- balancing -------------------------------------------------------------------------------

def test_wrr_sequence_through_the_table() -> None:
    table = SubscriptionTable()
    table.apply(sub(address=b"A", weight=3), T)
    table.apply(sub(address=b"B", weight=1), T)
    picks = [table.lookup(b"py.example.com", T).name for _ in range(8)]
    assert picks == list("BAAABAAA")


def test_equal_weights_alternate_last_first() -> None:
    table = SubscriptionTable()
    table.apply(sub(address=b"n1"), T)
    table.apply(sub(address=b"n2"), T)
    assert [table.lookup(b"py.example.com", T).name for _ in range(4)] == ["n2", "n1"] * 2


def test_backup_levels() -> None:
    table = SubscriptionTable()
    table.apply(sub(address=b"main"), T)
    table.apply(sub(address=b"spare", backup=1), T)
    assert {table.lookup(b"py.example.com", T).name for _ in range(4)} == {"main"}
    table.apply(sub(address=b"main", command=1), T)
    assert table.lookup(b"py.example.com", T).name == "spare"


def test_per_key_algo() -> None:
    table = SubscriptionTable(default_algo="wrr")
    table.apply(sub(key=b"a", address=b"x:1", algo="lrc"), T)
    table.apply(sub(key=b"b", address=b"x:1"), T)
    table.apply(sub(key=b"c", address=b"x:1", algo="bogus"), T)
    assert table.slot(b"a").algo == "lrc"
    assert table.slot(b"b").algo == "wrr"
    assert table.slot(b"c").algo == "wrr"
    table.apply(sub(key=b"b", address=b"x:1", algo="iphash"), T)
    assert table.slot(b"b").algo == "iphash"
    with pytest.raises(ValueError):
        SubscriptionTable(default_algo="nope")


def test_lrc_picks_fewest_in_flight() -> None:
    table = SubscriptionTable(default_algo="lrc")
    table.apply(sub(address=b"a:1"), T)
    table.apply(sub(address=b"b:1"), T)
    table.slot(b"py.example.com").nodes[0].ref = 3
    assert table.lookup(b"py.example.com", T).name == "b:1"


# -- key variants ----------------------------------------------------------------------------

def test_hits_count_lookups_of_the_slot() -> None:
    table = SubscriptionTable()
    table.apply(sub(), T)
    for _ in range(3):
        table.lookup(b"py.example.com", T)
    table.lookup(b"other", T)
    assert table.stats_slots(T)[0]["hits"] == 3


def test_dotsplit_keeps_the_leading_dot() -> None:
    table = SubscriptionTable(dotsplit=True)
    assert list(table.candidates(b"a.b.example.com")) == [
        b"a.b.example.com", b".b.example.com", b".example.com", b".com"]
    table.apply(sub(key=b".example.com", address=b"wild:1"), T)
    table.apply(sub(key=b"b.example.com", address=b"exact:1"), T)
    assert table.lookup(b"a.b.example.com", T).name == "wild:1"
    assert table.lookup(b"b.example.com", T).name == "exact:1"
    assert table.lookup(b"example.org", T) is None
    assert SubscriptionTable().lookup(b"a.example.com", T) is None


def test_dotsplit_gives_up_after_five_tries() -> None:
    table = SubscriptionTable(dotsplit=True)
    assert len(list(table.candidates(b"a.b.c.d.e.f.g"))) == 5


def test_mountpoints() -> None:
    table = SubscriptionTable(mountpoints=2)
    assert list(table.candidates(b"my.it/foo/bar/baz?x=1")) == [
        b"my.it/foo/bar", b"my.it/foo", b"my.it"]
    table.apply(sub(key=b"my.it/foo", address=b"foo:1"), T)
    table.apply(sub(key=b"my.it/bar", address=b"bar:1"), T)
    table.apply(sub(key=b"my.it", address=b"root:1"), T)
    assert table.lookup(b"my.it/foo/x", T).name == "foo:1"
    assert table.lookup(b"my.it/bar", T).name == "bar:1"
    assert table.lookup(b"my.it/other", T).name == "root:1"
    assert table.lookup(b"my.it", T).name == "root:1"


def test_fallback_key() -> None:
    # --X-subscription-fallback-key is applied by the router's resolver chain, around
    # the table's resolver, as build_engine wires it
    table = SubscriptionTable()
    cfg = Config.from_dict({"http-subscription-fallback-key": "default"})
    resolver = build_resolver(cfg, "http", TableResolver(table))
    table.apply(sub(key=b"default", address=b"fb:1"), T)
    table.apply(sub(key=b"known", address=b"k:1"), T)
    assert resolver.resolve(b"unknown", T).name == "fb:1"
    assert resolver.resolve(b"known", T).name == "k:1"
    # a key whose nodes are all dead falls back too
    table.mark_dead(table.slot(b"known").nodes[0], T)
    assert resolver.resolve(b"known", T).name == "fb:1"
    assert resolver.subscriptions is table  # stats still see the table


# -- SNI -------------------------------------------------------------------------------------

def test_sni_material_per_slot() -> None:
    table = SubscriptionTable()
    events = table.apply(sub(key=b"sni.example:443", sni_key=b"/k", sni_crt=b"/c"), T)
    assert ("sni_added", b"sni.example", b"/k", b"/c", None) in events
    assert table.stats_slots(T)[0]["sni_enabled"] == 1
    assert table.sni_entries() == [(b"sni.example", b"/k", b"/c", None)]
    assert table.apply(sub(key=b"sni.example:443", sni_key=b"/k", sni_crt=b"/c"), T) == []
    events = table.apply(sub(key=b"sni.example:443", command=1), T)
    assert events[-1] == ("sni_removed", b"sni.example")


def test_sni_needs_key_and_crt() -> None:
    table = SubscriptionTable()
    events = table.apply(sub(key=b"s", sni_key=b"/k", sni_ca=b"/ca"), T)
    assert not any(e[0] == "sni_added" for e in events)
    assert table.stats_slots(T)[0]["sni_enabled"] == 0
    # a later packet upgrades the slot
    events = table.apply(sub(key=b"s", sni_key=b"/k", sni_crt=b"/c", sni_ca=b"/ca"), T)
    assert events == [("sni_added", b"s", b"/k", b"/c", b"/ca")]


def test_captured_full_sni_packet() -> None:
    data = (FIX / "subscription" / "sub2_full_sni.bin").read_bytes()
    table = SubscriptionTable()
    events = table.apply(decode_subscription(data), T)
    assert ("sni_added", b"s2.example.com", b"/k.pem", b"/c.pem", b"/ca.pem") in events
    node = table.slot(b"s2.example.com").nodes[0]
    assert (node.modifier1, node.modifier2, node.weight) == (30, 4, 7)


# -- stats -----------------------------------------------------------------------------------

def _fixture_slots(name: str) -> list[dict]:
    return json.loads((FIX / "stats" / name).read_text())["subscriptions"]


def test_stats_shape_matches_uwsgi() -> None:
    expected = _fixture_slots("fastrouter_stats_two_nodes.json")
    table = SubscriptionTable()
    table.apply(sub(address=b"127.0.0.1:27101", cores=4, load=2, weight=3), 1795435441)
    table.apply(sub(address=b"127.0.0.1:27104", cores=1, weight=1), 1795435441)
    got = table.stats_slots(1795435441)
    assert [list(s) for s in got] == [list(s) for s in expected]
    assert [list(n) for n in got[0]["nodes"]] == [list(n) for n in expected[0]["nodes"]]
    for g, e in zip(got[0]["nodes"], expected[0]["nodes"], strict=True):
        for field in ("name", "modifier1", "modifier2", "last_check", "cores", "load",
                      "weight", "wrr", "ref", "failcnt", "death_mark", "pid"):
            assert g[field] == e[field], field
    assert (got[0]["key"], got[0]["hash"], got[0]["sni_enabled"]) == (
        "py.example.com", 48745, 0)


def test_stats_order_after_malformed_packets() -> None:
    """Slot order by bucket hash, as uWSGI lists them (the 256-byte key is refused)."""
    expected = [s for s in _fixture_slots("fastrouter_stats_after_malformed.json")
                if len(s["key"]) <= 255]
    table = SubscriptionTable()
    crafted = FIX / "subscription" / "crafted"
    for name in ("trunc_vars_last3.bin", "no_key.bin", "key_255.bin", "key_256.bin",
                 "header_modifier1_0.bin", "datasize_9999.bin", "modifier2_7.bin"):
        table.apply(decode_subscription((crafted / name).read_bytes()), T)
    table.apply(sub(address=b"127.0.0.1:27101", weight=3), T)
    table.apply(sub(address=b"127.0.0.1:27104", weight=1), T)
    got = table.stats_slots(T)
    assert [(s["key"], s["hash"]) for s in got] == [(s["key"], s["hash"]) for s in expected]
    assert [[(n["name"], n["weight"]) for n in s["nodes"]] for s in got] == [
        [(n["name"], n["weight"]) for n in s["nodes"]] for s in expected]


def test_stats_real_nodes_weight_zero_becomes_one() -> None:
    expected = _fixture_slots("httprouter_stats_real_nodes.json")[0]
    table = SubscriptionTable()
    table.apply(sub(key=b"real.example", address=b"127.0.0.1:27244", cores=1, weight=3), T)
    table.apply(sub(key=b"real.example", address=b"127.0.0.1:27243", cores=2, weight=0), T)
    got = table.stats_slots(T)[0]
    assert got["hash"] == expected["hash"]
    assert [(n["name"], n["cores"], n["weight"]) for n in got["nodes"]] == [
        (n["name"], n["cores"], n["weight"]) for n in expected["nodes"]]


def test_credentials_show_in_stats() -> None:
    table = SubscriptionTable()
    table.apply(sub(), T, creds=(42, 1000, 1001))
    node = table.stats_slots(T)[0]["nodes"][0]
    assert (node["pid"], node["uid"], node["gid"]) == (42, 1000, 1001)


def test_resolver_adapter() -> None:
    table = SubscriptionTable()
    resolver = TableResolver(table)
    assert resolver.subscriptions is table and resolver.static_nodes == ()
    assert resolver.resolve(b"py.example.com", T) is None
    table.apply(sub(), T)
    assert resolver.resolve(b"py.example.com", T, b"10.0.0.1").name == "127.0.0.1:1"


def test_key_limit_applies_per_candidate_with_mountpoints() -> None:
    table = SubscriptionTable(mountpoints=1)
    table.apply(sub(key=b"my.it/app", address=b"app:1"), T)
    assert table.lookup(b"my.it/app/" + b"x" * 300, T).name == "app:1"
    assert SubscriptionTable().lookup(b"k" * 256, T) is None
