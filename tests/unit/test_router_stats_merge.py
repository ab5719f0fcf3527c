"""Merging the stats of several router processes (brood.routers.stats_merge)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from brood.routers.node import Node
from brood.routers.stats import NODE_FIELDS, router_stats
from brood.routers.stats_merge import (
    PROCESS_FIELDS,
    BadSnapshot,
    dumps,
    loads,
    merge,
    render,
    snapshot,
)
from brood.subscription.packet import Subscription
from brood.subscription.table import SubscriptionTable

FIXTURES = Path("/work/shared/fixtures/stats")
ROUTER_FIXTURES = sorted(
    p.name for p in FIXTURES.glob("*router_stats_*.json")
) if FIXTURES.exists() else []
NOW = 1795437100.0
KEY = "py.example"


def snap(index: int = 1, *, pid: int | None = None, at: float = NOW, active: int = 0,
         total: int = 0, static=(), slots=None, connections: int = 0) -> dict:
    return snapshot(index=index, pid=1000 + index if pid is None else pid, now=at,
                    active_sessions=active, sessions_total=total, static_nodes=list(static),
                    subscriptions=slots, connections=connections)


def slot(*nodes: Node, key: str = KEY, hits: int = 0, hash_: int = 7) -> dict:
    return {"key": key, "hash": hash_, "hits": hits, "sni_enabled": 0, "nodes": list(nodes)}


def doc(merged, **kw) -> dict:
    args = dict(pid=1, uid=2, gid=3, cwd="/srv", socket_names=["127.0.0.1:8000"],
                cheap=False, now=NOW, version="v")
    args.update(kw)
    return json.loads(render("http", merged, **args))


# -- one process: today's document plus the processes list -------------------------------

def _fixture_inputs(raw: bytes) -> tuple[str, dict, dict]:
    """A captured uWSGI document's facts as live objects (as test_router_stats does)."""
    data = json.loads(raw)
    kind = next(k for k in ("http", "fastrouter", "rawrouter", "sslrouter") if k in data)
    static = []
    for item in data.get("static_nodes", ()):
        node = Node(item["name"], requests=item["hits"])
        if item["grace"]:
            node.mark_failed_connect(item["grace"], 30)
        static.append(node)
    subs = None
    if "subscriptions" in data:
        subs = [{**s, "nodes": [Node(**{k: v for k, v in n.items() if k != "death_mark"},
                                     death_mark=bool(n["death_mark"])) for n in s["nodes"]]}
                for s in data["subscriptions"]]
    ident = dict(pid=data["pid"], uid=data["uid"], gid=data["gid"], cwd=data["cwd"],
                 socket_names=data[kind], cheap=bool(data["cheap"]), now=NOW,
                 version=data["version"])
    live = dict(static=static, slots=subs, active=data["active_sessions"])
    return kind, ident, live


@pytest.mark.skipif(not ROUTER_FIXTURES, reason="fixtures not available")
@pytest.mark.parametrize("name", ROUTER_FIXTURES)
def test_single_process_is_uwsgis_document_plus_processes(name: str) -> None:
    raw = (FIXTURES / name).read_bytes()
    kind, ident, live = _fixture_inputs(raw)
    own = snap(1, pid=ident["pid"], active=live["active"], total=5, static=live["static"],
               slots=live["slots"])
    out = render(kind, merge(own, [], NOW), **ident)
    assert raw.endswith(b"\n}")
    assert out.startswith(raw[:-2] + b',\n\t"processes":[\n\t\t{\n\t\t\t"index":1,')
    data = json.loads(out)
    assert list(data)[-1] == "processes"
    assert {k: v for k, v in data.items() if k != "processes"} == json.loads(raw)
    (proc,) = data["processes"]
    assert list(proc) == list(PROCESS_FIELDS)
    assert (proc["pid"], proc["sessions_total"], proc["age_ms"]) == (ident["pid"], 5, 0)


def test_single_process_matches_router_stats_with_live_nodes() -> None:
    a = Node("127.0.0.1:1", requests=3)
    a.mark_failed_connect(NOW - 5, 30)
    b = Node("127.0.0.1:2", requests=1)
    sub = Node("127.0.0.1:9", requests=4, tx=10, rx=20, ref=1, weight=3, last_check=NOW - 0.5)
    today = router_stats("http", pid=1, uid=2, gid=3, cwd="/srv", active_sessions=2,
                         socket_names=["127.0.0.1:8000"], static_nodes=[a, b],
                         subscriptions=[slot(sub, hits=4)], cheap=False, now=NOW,
                         version="v")
    merged = merge(snap(active=2, static=[a, b], slots=[slot(sub, hits=4)]), [], NOW)
    out = render("http", merged, pid=1, uid=2, gid=3, cwd="/srv",
                 socket_names=["127.0.0.1:8000"], cheap=False, now=NOW, version="v")
    assert out.startswith(today[:-2] + b',\n\t"processes":[')
    assert json.loads(out)["processes"] == [
        {"index": 1, "pid": 1001, "connections": 0, "active_sessions": 2,
         "sessions_total": 0, "requests": 8, "tx": 10, "rx": 20, "age_ms": 0}]


def test_minified_stays_minified() -> None:
    merged = merge(snap(static=[Node("a:1")]), [], NOW)
    out = render("http", merged, pid=1, uid=2, gid=3, cwd="/", socket_names=["s"],
                 cheap=False, now=NOW, minified=True)
    assert b"\n" not in out and b"\t" not in out
    assert json.loads(out)["processes"][0]["index"] == 1


# -- several processes ------------------------------------------------------------------

def test_static_node_hits_and_sessions_are_summed() -> None:
    own = snap(1, active=2, total=10, static=[Node("n:1", requests=3, tx=30, rx=300)],
               connections=31)
    other = snap(2, at=NOW - 0.4, active=1, total=7,
                 static=[Node("n:1", requests=4, tx=40, rx=400)], connections=33)
    data = doc(merge(own, [other], NOW))
    assert data["active_sessions"] == 3
    assert data["static_nodes"] == [{"name": "n:1", "hits": 7, "grace": 0}]
    assert data["processes"] == [
        {"index": 1, "pid": 1001, "connections": 31, "active_sessions": 2,
         "sessions_total": 10, "requests": 3, "tx": 30, "rx": 300, "age_ms": 0},
        {"index": 2, "pid": 1002, "connections": 33, "active_sessions": 1,
         "sessions_total": 7, "requests": 4, "tx": 40, "rx": 400, "age_ms": 400},
    ]


def test_processes_are_listed_by_index_whoever_answers() -> None:
    third = snap(3, at=NOW - 1)
    first = snap(1, at=NOW - 0.2)
    data = doc(merge(snap(2), [third, first], NOW))
    assert [p["index"] for p in data["processes"]] == [1, 2, 3]
    assert data["pid"] == 1  # the identity fields are the answering process's


def test_grace_is_the_latest_mark_still_in_grace() -> None:
    old, new, expired = Node("n:1"), Node("n:1"), Node("n:1")
    old.mark_failed_connect(NOW - 20, 30)  # in grace until NOW + 10
    new.mark_failed_connect(NOW - 2, 30)  # in grace until NOW + 28
    expired.mark_failed_connect(NOW - 100, 30)  # in grace until NOW - 70: over
    data = doc(merge(snap(1, static=[old]), [snap(2, static=[new]), snap(3, static=[expired])],
                     NOW))
    assert data["static_nodes"][0]["grace"] == int(NOW - 2)
    healthy = doc(merge(snap(1, static=[Node("n:1")]), [snap(2, static=[expired])], NOW))
    assert healthy["static_nodes"][0]["grace"] == 0


def test_subscription_node_counters() -> None:
    mine = Node("10.0.0.1:3031", requests=5, last_requests=1, tx=50, rx=500, ref=1,
                failcnt=0, weight=4, wrr=2, load=3, last_check=NOW - 3)
    theirs = Node("10.0.0.1:3031", requests=7, last_requests=2, tx=70, rx=700, ref=2,
                  failcnt=1, weight=9, wrr=5, load=8, last_check=NOW - 1, death_mark=True)
    own = snap(1, slots=[slot(mine, hits=5)])
    other = snap(2, at=NOW - 0.5, slots=[slot(theirs, hits=7)])
    data = doc(merge(own, [other], NOW))
    (s,) = data["subscriptions"]
    assert (s["key"], s["hash"], s["hits"]) == (KEY, 7, 12)
    (node,) = s["nodes"]
    assert list(node) == list(NODE_FIELDS)
    assert {f: node[f] for f in ("requests", "last_requests", "tx", "rx", "ref", "failcnt")} \
        == {"requests": 12, "last_requests": 3, "tx": 120, "rx": 1200, "ref": 3, "failcnt": 1}
    assert node["death_mark"] == 1  # any process
    assert node["last_check"] == int(NOW - 1)  # the latest
    assert (node["weight"], node["wrr"], node["load"]) == (4, 2, 3)  # freshest: own


def test_the_answerer_gives_the_shape() -> None:
    own = snap(1, slots=[slot(Node("a:1", requests=1), key="one")],
               static=[Node("n:1", requests=1)])
    other = snap(2, slots=[slot(Node("b:1", requests=2), key="two", hits=2),
                           slot(Node("c:1", requests=4), Node("a:1", requests=3), key="one",
                                hits=7)],
                 static=[Node("n:1", requests=2), Node("gone:1", requests=9)])
    data = doc(merge(own, [other], NOW))
    (one,) = data["subscriptions"]  # "two" only in the sibling's (older) table
    assert (one["key"], one["hits"]) == ("one", 7)
    assert [(n["name"], n["requests"]) for n in one["nodes"]] == [("a:1", 4)]
    assert data["static_nodes"] == [{"name": "n:1", "hits": 3, "grace": 0}]
    # what the sibling served on nodes the answerer lacks is in its own totals
    assert [p["requests"] for p in data["processes"]] == [2, 2 + 4 + 3 + 2 + 9]


def test_subscriptions_key_follows_the_answerer() -> None:
    assert "subscriptions" not in doc(merge(snap(1), [snap(2, slots=[])], NOW))
    data = doc(merge(snap(1, slots=[]), [snap(2)], NOW))
    assert data["subscriptions"] == []
    assert "static_nodes" not in data


def test_own_older_snapshot_is_not_counted_twice() -> None:
    own = snap(1, static=[Node("n:1", requests=5)])
    stale_self = snap(1, at=NOW - 1, static=[Node("n:1", requests=4)])
    same_pid = snap(4, pid=1001, at=NOW - 1, static=[Node("n:1", requests=4)])
    data = doc(merge(own, [stale_self, same_pid], NOW))
    assert data["static_nodes"][0]["hits"] == 5
    assert len(data["processes"]) == 1


def test_processes_key_is_last_after_brood_extras() -> None:
    out = router_stats("fastrouter", pid=1, uid=0, gid=0, cwd="/", active_sessions=0,
                       socket_names=[], static_nodes=None, subscriptions=None, cheap=True,
                       now=NOW, extra={"x": 1}, processes=[{"index": 1, "pid": 2}])
    assert list(json.loads(out))[-3:] == ["cheap", "x", "processes"]
    assert b'"processes":[\n\t\t{\n\t\t\t"index":1,\n\t\t\t"pid":2\n\t\t}\n\t]\n}' in out


# -- the published bytes ----------------------------------------------------------------

def test_snapshot_round_trip() -> None:
    node = Node("n:1", requests=2)
    node.mark_failed_connect(NOW - 1, 30)
    table_slot = {"key": b"k\xc3\xa9", "hash": 3, "hits": 1, "sni_enabled": 1,
                  "nodes": [Node("s:1", requests=1, death_mark=True),
                            {"name": "s:2", "reference": 4}]}
    original = snap(2, static=[node], slots=[table_slot])
    back = loads(dumps(original))
    assert back == original
    assert back["subscriptions"][0]["key"] == "k\u00e9"
    assert back["subscriptions"][0]["nodes"][1]["ref"] == 4


def test_a_node_address_that_is_not_utf8_survives_publishing() -> None:
    """A sibling's published bytes stay readable (loads would refuse them whole) and
    the merged document valid, with the name written as the key is."""
    table = SubscriptionTable()
    table.apply(Subscription(b"k\x87", b"127.0.0.1:1\x87"), NOW)
    node = table.slots()[0].nodes[0]
    node.requests = 3
    own, sibling = snap(1, slots=table), loads(dumps(snap(2, slots=table)))
    assert sibling["subscriptions"][0]["nodes"][0]["name"] == "127.0.0.1:1\ufffd"
    out = render("http", merge(own, [sibling], NOW), pid=1, uid=2, gid=3, cwd="/srv",
                 socket_names=["127.0.0.1:8000"], cheap=False, now=NOW, version="v")
    merged = json.loads(out.decode("utf-8"))["subscriptions"][0]
    assert (merged["key"], merged["nodes"][0]["name"]) == ("k\ufffd", "127.0.0.1:1\ufffd")
    assert merged["nodes"][0]["requests"] == 6


def test_snapshot_asks_a_table_for_its_slots() -> None:
    class Table:
        def stats_slots(self, now: float) -> list[dict]:
            assert now == NOW
            return [slot(Node("s:1", requests=2, tx=3, rx=4))]

    s = snap(slots=Table())
    assert (s["requests"], s["tx"], s["rx"]) == (2, 3, 4)
    assert s["subscriptions"][0]["nodes"][0]["name"] == "s:1"


@pytest.mark.parametrize("raw", [
    b"", b"garbage", b"[]", b"\xff\xfe", b'{"v": 2}', b'{"v": 1}',
    b'{"v": 1, "index": 1, "pid": 1, "time": 1, "active_sessions": 0}',
])
def test_bad_bytes_raise_bad_snapshot(raw: bytes) -> None:
    with pytest.raises(BadSnapshot):
        loads(raw)


@pytest.mark.parametrize("path, value", [
    (("pid",), "1"), (("pid",), True), (("time",), None), (("static_nodes",), {}),
    (("static_nodes", 0, "name"), 3), (("subscriptions",), "x"),
    (("subscriptions", 0, "nodes", 0, "requests"), 1.5),
    (("subscriptions", 0, "nodes", 0, "weight"), None),
])
def test_a_field_of_the_wrong_type_is_rejected(path: tuple, value) -> None:
    data = json.loads(dumps(snap(static=[Node("n:1")], slots=[slot(Node("s:1"))])))
    target = data
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    with pytest.raises(BadSnapshot):
        loads(json.dumps(data).encode())
