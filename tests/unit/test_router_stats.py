"""Router stats JSON: byte-for-byte uWSGI's shape (WIRE §3.2, fixtures/stats/*router*)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from brood.routers.node import Node
from brood.routers.stats import NODE_FIELDS, router_stats
from brood.subscription.packet import Subscription
from brood.subscription.table import SubscriptionTable

FIXTURES = Path("/work/shared/fixtures/stats")
ROUTER_FIXTURES = sorted(
    p.name for p in FIXTURES.glob("*router_stats_*.json")
) if FIXTURES.exists() else []

NOW = 1795437100.0


def _render_like(doc: dict, **overrides) -> bytes:
    """Feed a captured uWSGI document's facts back in (nodes as Node objects)."""
    kind = next(k for k in ("http", "fastrouter", "rawrouter", "sslrouter") if k in doc)
    static = None
    if "static_nodes" in doc:
        static = []
        for item in doc["static_nodes"]:
            node = Node(item["name"], requests=item["hits"])
            if item["grace"]:
                node.mark_failed_connect(item["grace"], 30)
            static.append(node)
    subs = None
    if "subscriptions" in doc:
        subs = []
        for slot in doc["subscriptions"]:
            nodes = []
            for n in slot["nodes"]:
                fields = {k: v for k, v in n.items() if k != "death_mark"}
                nodes.append(Node(**fields, death_mark=bool(n["death_mark"])))
            subs.append({**slot, "nodes": nodes})
    args = dict(
        pid=doc["pid"], uid=doc["uid"], gid=doc["gid"], cwd=doc["cwd"],
        active_sessions=doc["active_sessions"], socket_names=doc[kind],
        static_nodes=static, subscriptions=subs, cheap=bool(doc["cheap"]),
        now=NOW, version=doc["version"],
    )
    args.update(overrides)
    return router_stats(kind, **args)


@pytest.mark.skipif(not ROUTER_FIXTURES, reason="fixtures not available")
@pytest.mark.parametrize("name", ROUTER_FIXTURES)
def test_reproduces_uwsgi_bytes(name: str) -> None:
    raw = (FIXTURES / name).read_bytes()
    assert _render_like(json.loads(raw)) == raw


def test_fixture_set_covers_every_shape() -> None:
    if not ROUTER_FIXTURES:
        pytest.skip("fixtures not available")
    assert {"fastrouter_stats_static_nodes.json", "fastrouter_stats_cheap.json",
            "httprouter_stats_one_node.json"} <= set(ROUTER_FIXTURES)


def _doc(**kw) -> bytes:
    args = dict(pid=1, uid=2, gid=3, cwd="/srv", active_sessions=4,
                socket_names=["127.0.0.1:8000", "/tmp/sub.sock"], static_nodes=None,
                subscriptions=None, cheap=False, now=NOW, version="v")
    args.update(kw)
    return router_stats(args.pop("kind", "rawrouter"), **args)


def test_key_order_and_socket_quirk() -> None:
    out = _doc()
    assert out.startswith(b'{\n\t"version":"v",\n\t"pid":1,\n\t"uid":2,\n\t"gid":3,\n')
    assert b'"rawrouter":[\n"127.0.0.1:8000",\n"/tmp/sub.sock"\n\t],\n\t"cheap":0\n}' in out
    assert not out.endswith(b"\n")
    assert list(json.loads(out)) == ["version", "pid", "uid", "gid", "cwd",
                                     "active_sessions", "rawrouter", "cheap"]


def test_optional_sections_only_when_configured() -> None:
    assert b"static_nodes" not in _doc(static_nodes=[])
    assert b"subscriptions" not in _doc()
    empty = _doc(subscriptions=[])
    assert b'"subscriptions":[\n\n\t],' in empty


def test_static_nodes_before_subscriptions_and_grace_expires() -> None:
    node = Node("127.0.0.1:1", requests=2)
    node.mark_failed_connect(NOW - 10, 30)
    doc = json.loads(_doc(static_nodes=[node], subscriptions=[]))
    assert list(doc)[-3:] == ["static_nodes", "subscriptions", "cheap"]
    assert doc["static_nodes"] == [{"name": "127.0.0.1:1", "hits": 2, "grace": int(NOW - 10)}]
    later = json.loads(_doc(static_nodes=[node], now=NOW + 60))
    assert later["static_nodes"][0]["grace"] == 0


def test_subscription_nodes_from_mappings_and_objects() -> None:
    node = Node("a:1", weight=3, ref=2, death_mark=True)
    mapping = {"name": "b:2", "reference": 5, "weight": 1}
    slot = {"key": b"py.example", "hash": 1, "hits": 9, "sni_enabled": 0,
            "nodes": [node, mapping]}
    doc = json.loads(_doc(subscriptions=[slot]))
    first, second = doc["subscriptions"][0]["nodes"]
    assert list(first) == list(NODE_FIELDS)
    assert (first["weight"], first["ref"], first["death_mark"]) == (3, 2, 1)
    assert (second["name"], second["ref"]) == ("b:2", 5)
    assert doc["subscriptions"][0]["key"] == "py.example"


def test_extra_keys_are_appended_after_cheap() -> None:
    doc = json.loads(_doc(cheap=True, extra={"sessions_total": 7, "brood": "0.1"}))
    assert list(doc)[-3:] == ["cheap", "sessions_total", "brood"]
    assert doc["cheap"] == 1


def test_minified_has_no_whitespace_and_same_data() -> None:
    node = Node("127.0.0.1:1")
    pretty = _doc(static_nodes=[node], subscriptions=[{"key": "k", "nodes": [node]}])
    small = _doc(static_nodes=[node], subscriptions=[{"key": "k", "nodes": [node]}],
                 minified=True)
    assert b"\n" not in small and b"\t" not in small
    assert json.loads(small) == json.loads(pretty)


def test_strange_names_stay_valid_json() -> None:
    doc = json.loads(_doc(socket_names=['we"ird\\name'], cwd="/tmp/\u00e9"))
    assert doc["rawrouter"] == ['we"ird\\name']
    assert doc["cwd"] == "/tmp/\u00e9"


def test_a_node_address_that_is_not_utf8_stays_valid_json() -> None:
    """One unchecked packet with a non-UTF-8 address must not break the document: the
    node's name is written with U+FFFD, as its key is, in both layouts."""
    table = SubscriptionTable()
    table.apply(Subscription(b"k\x87ey", b"127.0.0.1:1\x87"), NOW)
    table.apply(Subscription(b"ok", "127.0.0.1:2/\u00e9".encode()), NOW)
    for minified in (False, True):
        out = _doc(subscriptions=table, minified=minified)
        doc = json.loads(out.decode("utf-8"))  # strict: raw bytes would fail here
        names = {s["key"]: s["nodes"][0]["name"] for s in doc["subscriptions"]}
        assert names == {"k\ufffdey": "127.0.0.1:1\ufffd", "ok": "127.0.0.1:2/\u00e9"}
    static = Node("127.0.0.1:3\udc87")  # e.g. an argv that is not UTF-8
    doc = json.loads(_doc(static_nodes=[static]).decode("utf-8"))
    assert doc["static_nodes"][0]["name"] == "127.0.0.1:3\ufffd"


def test_asks_a_table_for_its_stats_slots() -> None:
    class Table:
        def stats_slots(self, now: float) -> list[dict]:
            assert now == NOW
            return [{"key": "k", "hash": 1, "hits": 2, "sni_enabled": 0, "nodes": []}]

    doc = json.loads(_doc(subscriptions=Table()))
    assert doc["subscriptions"][0]["key"] == "k"
