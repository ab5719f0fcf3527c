"""Retry policy and gracetime bookkeeping (brood.routers.health)."""

from __future__ import annotations

from brood.routers.errors import NodeFailed, NodeTimeout, NoNode
from brood.routers.health import RetryPolicy, grace_stat, in_grace, mark_failed
from brood.routers.node import Node
from brood.routers.resolve import FakeResolver, FallbackResolver, StaticResolver

NOW = 100.0


def drive(state, outcomes: dict[str, str]) -> tuple[Node | None, list[str]]:
    """Run the shell loop: outcomes maps node name -> "ok" | "refused" | "timeout"."""
    tried = []
    while (node := state.next_node(NOW)) is not None:
        tried.append(node.name)
        result = outcomes.get(node.name, "refused")
        if result == "ok":
            state.succeeded(node)
            return node, tried
        state.failed(node, NOW, result, timed_out=result == "timeout")
    return None, tried


def test_first_node_answers() -> None:
    static = StaticResolver(["a:1", "b:1"])
    node, tried = drive(RetryPolicy(3).begin(static, b"k"), {"a:1": "ok"})
    assert node.name == "a:1" and tried == ["a:1"]


def test_retries_next_nodes_then_fallbacks_in_order() -> None:
    static = StaticResolver(["a:1", "b:1", "c:1"], gracetime=30)
    fallback = FallbackResolver(["f1:1", "f2:1"])
    state = RetryPolicy(1).begin(static, b"k", fallback=fallback)
    node, tried = drive(state, {"f2:1": "ok"})
    assert tried == ["a:1", "b:1", "f1:1", "f2:1"]  # 1 + max_retries, then fallbacks
    assert node.name == "f2:1"
    assert [n.failcnt for n in static.nodes] == [1, 1, 0]
    assert static.nodes[0].grace_until == NOW + 30
    assert fallback.nodes[0].failcnt == 1 and fallback.nodes[1].failcnt == 0
    assert [a.fallback for a in state.attempts] == [False, False, True]


def test_resolver_running_out_goes_to_fallback_early() -> None:
    table = FakeResolver({b"k": ["only:1"]})
    state = RetryPolicy(5).begin(table, b"k", fallback=FallbackResolver(["f:1"]))
    node, tried = drive(state, {"f:1": "ok"})
    assert tried == ["only:1", "f:1"] and table.lookups == [b"k", b"k"]


def test_error_kinds() -> None:
    state = RetryPolicy(3).begin(FakeResolver({}), b"nope")
    assert drive(state, {}) == (None, [])
    err = state.error()
    assert isinstance(err, NoNode) and err.status == 503 and "nope" in err.reason

    state = RetryPolicy(0).begin(FakeResolver({b"k": ["a:1"]}), b"k")
    drive(state, {"a:1": "timeout"})
    assert isinstance(state.error(), NodeTimeout) and state.error().status == 504

    state = RetryPolicy(3).begin(FakeResolver({b"k": ["a:1", "b:1"]}), b"k")
    drive(state, {"a:1": "timeout", "b:1": "refused"})
    err = state.error()
    assert isinstance(err, NodeFailed) and "a:1: timeout; b:1: refused" in err.reason


def test_no_key_or_fallback_only_skips_the_resolver() -> None:
    table = FakeResolver({b"k": ["a:1"]})
    state = RetryPolicy(3).begin(table, None, fallback=FallbackResolver(["f:1"]))
    assert drive(state, {"f:1": "ok"})[1] == ["f:1"]
    state = RetryPolicy(3).begin(table, b"k", fallback_only=True)
    assert drive(state, {}) == (None, [])
    assert table.lookups == [] and state.error().reason == "no node for key 'k'"
    assert RetryPolicy().begin(table, None).error().reason == "no key in request"


def test_success_clears_grace_and_stops() -> None:
    node = Node("a:1")
    mark_failed(node, NOW - 40, 30)
    assert not in_grace(node, NOW) and node.grace_marked_at == NOW - 40
    table = FakeResolver({b"k": ["a:1"]})
    table.nodes["a:1"].grace_until, table.nodes["a:1"].grace_marked_at = 1.0, 1.0
    state = RetryPolicy().begin(table, b"k")
    got, _ = drive(state, {"a:1": "ok"})
    assert got.grace_until == 0 and got.grace_marked_at == 0
    assert state.next_node(NOW) is None


def test_grace_stat_shows_mark_time_only_while_in_grace() -> None:
    node = Node("a:1")
    assert grace_stat(node, NOW) == 0
    mark_failed(node, NOW, 30)
    assert grace_stat(node, NOW + 29) == int(NOW)
    assert grace_stat(node, NOW + 30) == 0
    mark_failed(node, NOW, -5)  # negative gracetime: no grace, failure still counted
    assert node.failcnt == 2 and not in_grace(node, NOW)
