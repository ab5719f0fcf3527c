"""The try-order of one request (brood.routers.health) and the connect shell driving it
(brood.routers.net.backend.connect_node), plus gracetime bookkeeping."""

from __future__ import annotations

import errno

import pytest
import trio

from brood.routers.errors import NodeFailed, NodeTimeout, NoNode, Overloaded
from brood.routers.health import RetryPolicy, grace_stat, in_grace, mark_failed
from brood.routers.net.backend import ConnectPlan, connect_node
from brood.routers.node import Node
from brood.routers.resolve import FakeResolver, StaticResolver

NOW = 100.0
FAILURES = {"refused": "Connection refused", "timeout": "connect timeout",
            "missing": "No such file or directory"}


def drive(state, outcomes: dict[str, str]) -> tuple[Node | None, list[str]]:
    """Run the shell loop: outcomes maps node name -> "ok" or a FAILURES key
    (default "refused")."""
    tried = []
    while (node := state.next_node(NOW)) is not None:
        tried.append(node.name)
        result = outcomes.get(node.name, "refused")
        if result == "ok":
            state.succeeded(node)
            return node, tried
        state.failed(node, NOW, FAILURES[result], timed_out=result == "timeout",
                     missing=result == "missing")
    return None, tried


def nodes(*names: str) -> list[Node]:
    return [Node(name) for name in names]


def test_first_node_answers() -> None:
    static = StaticResolver(["a:1", "b:1"])
    node, tried = drive(RetryPolicy(3).begin(static, b"k"), {"a:1": "ok"})
    assert node.name == "a:1" and tried == ["a:1"]


def test_retries_next_nodes_then_fallbacks_in_order() -> None:
    static = StaticResolver(["a:1", "b:1", "c:1"], gracetime=30)
    fallbacks = nodes("f1:1", "f2:1")
    state = RetryPolicy(4, gracetime=20, fallbacks=fallbacks).begin(static, b"k")
    node, tried = drive(state, {"f2:1": "ok"})
    assert tried == ["a:1", "b:1", "c:1", "f1:1", "f2:1"]  # the resolver's nodes, fallbacks
    assert node is fallbacks[1]
    assert [n.failcnt for n in static.nodes] == [1, 1, 1]
    assert static.nodes[0].grace_until == NOW + 30  # the resolver's own gracetime
    assert fallbacks[0].failcnt == 1 and fallbacks[0].grace_until == NOW + 20
    assert fallbacks[1].failcnt == 0
    assert [a.fallback for a in state.attempts] == [False, False, False, True]


def test_max_retries_bounds_fallbacks_too_and_leaves_them_the_last_try() -> None:
    """uWSGI's "retries/fallbacks": 1 + max_retries connects in all; with fallbacks the
    resolver's nodes take all but the last."""
    static = StaticResolver([f"d{i}:1" for i in range(5)])
    state = RetryPolicy(3, fallbacks=nodes("f0:1", "f1:1")).begin(static, b"k")
    assert drive(state, {}) == (None, ["d0:1", "d1:1", "d2:1", "f0:1"])
    state = RetryPolicy(3).begin(StaticResolver([f"d{i}:1" for i in range(5)]), b"k")
    assert drive(state, {})[1] == ["d0:1", "d1:1", "d2:1", "d3:1"]
    state = RetryPolicy(0, fallbacks=nodes("f0:1")).begin(StaticResolver(["d:1"]), b"k")
    assert drive(state, {}) == (None, ["d:1"])  # no retry: no fallback either (uWSGI)


def test_resolver_running_out_goes_to_fallback_early() -> None:
    table = FakeResolver({b"k": ["only:1"]})
    state = RetryPolicy(5, fallbacks=nodes("f:1")).begin(table, b"k")
    _, tried = drive(state, {"f:1": "ok"})
    assert tried == ["only:1", "f:1"] and table.lookups == [b"k", b"k"]
    assert table.failed == ["only:1"]  # the resolver is told of its own nodes only


def test_fallbacks_in_grace_are_skipped_and_each_tried_once() -> None:
    f1, f2, f3 = fallbacks = nodes("f1:1", "f2:1", "f3:1")
    mark_failed(f2, NOW - 1, 30)
    policy = RetryPolicy(3, gracetime=0, fallbacks=fallbacks)
    state = policy.begin(FakeResolver({}), b"k")
    assert drive(state, {}) == (None, ["f1:1", "f3:1"])  # gracetime 0: no grace, no repeat
    assert (f1.failcnt, f2.failcnt, f3.failcnt) == (1, 1, 1)
    _, tried = drive(policy.begin(FakeResolver({}), b"k"), {"f2:1": "ok"})
    assert tried == ["f1:1", "f3:1"]  # f2 still in grace on the next request


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
    assert isinstance(err, NodeFailed) and err.status == 502
    assert "a:1: connect timeout; b:1: Connection refused" in err.reason


@pytest.mark.parametrize("outcomes, error", [
    ({"/run/a.sock": "missing"}, NoNode),  # a pattern key with no app behind it
    ({"/run/a.sock": "missing", "f:1": "missing"}, NoNode),
    ({"/run/a.sock": "missing", "f:1": "refused"}, NodeFailed),
    ({"/run/a.sock": "missing", "f:1": "timeout"}, NodeTimeout),
    ({"/run/a.sock": "timeout", "f:1": "missing"}, NodeFailed),
])
def test_missing_unix_socket_is_no_node_only_when_every_attempt_was(outcomes, error) -> None:
    fallbacks = nodes("f:1") if "f:1" in outcomes else []
    state = RetryPolicy(1, fallbacks=fallbacks).begin(FakeResolver({b"a": ["/run/a.sock"]}), b"a")
    drive(state, outcomes)
    assert type(state.error()) is error


def test_no_key_skips_the_resolver_and_the_fallbacks() -> None:
    table = FakeResolver({b"k": ["a:1"]})
    policy = RetryPolicy(3, fallbacks=nodes("f:1"))
    state = policy.begin(table, None)
    assert drive(state, {"f:1": "ok"}) == (None, [])  # no key: not even the fallbacks
    assert state.error().reason == "no key in request"
    assert table.lookups == []


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

    fallback = Node("f:1")
    mark_failed(fallback, NOW - 40, 30)  # grace over: tried again, and healthy once it answers
    got, _ = drive(RetryPolicy(0, fallbacks=[fallback]).begin(FakeResolver({}), b"k"),
                   {"f:1": "ok"})
    assert got is fallback and fallback.grace_until == 0 and fallback.grace_marked_at == 0


def test_grace_stat_shows_mark_time_only_while_in_grace() -> None:
    node = Node("a:1")
    assert grace_stat(node, NOW) == 0
    mark_failed(node, NOW, 30)
    assert grace_stat(node, NOW + 29) == int(NOW)
    assert grace_stat(node, NOW + 30) == 0
    mark_failed(node, NOW, -5)  # negative gracetime: no grace, failure still counted
    assert node.failcnt == 2 and not in_grace(node, NOW)


# -- the async shell: connect outcomes as the policy sees them --------------------------

def fake_opener(outcomes: dict[str, BaseException | None], opened: list[str]):
    async def opener(node: Node, timeout: float) -> object:
        opened.append(node.name)
        await trio.lowlevel.checkpoint()
        exc = outcomes.get(node.name)
        if exc is not None:
            raise exc
        return f"sock:{node.name}"
    return opener


async def test_connect_node_maps_connect_errors() -> None:
    opened: list[str] = []
    outcomes = {"a:1": trio.TooSlowError(), "b:1": ConnectionRefusedError(errno.ECONNREFUSED,
                                                                          "Connection refused")}
    resolver = FakeResolver({b"k": ["a:1", "b:1", "c:1"]}, gracetime=5)
    plan = ConnectPlan(max_retries=2, connect_timeout=1.0)
    node, sock, failed = await connect_node(resolver, b"k", plan, clock=lambda: NOW,
                                            opener=fake_opener(outcomes, opened))
    assert (node.name, sock, opened) == ("c:1", "sock:c:1", ["a:1", "b:1", "c:1"])
    assert [(a.node, a.reason, a.timed_out) for a in failed] == [
        ("a:1", "connect timeout", True), ("b:1", "Connection refused", False)]
    assert resolver.failed == ["a:1", "b:1"]
    assert resolver.nodes["a:1"].grace_until == NOW + 5


@pytest.mark.parametrize("outcomes, error", [
    ({"a:1": trio.TooSlowError()}, NodeTimeout),
    ({"a:1": ConnectionResetError(errno.ECONNRESET, "reset")}, NodeFailed),
    ({"a:1": FileNotFoundError(errno.ENOENT, "No such file or directory")}, NoNode),
    ({"a:1": FileNotFoundError(errno.ENOENT, "gone"), "f:1": trio.TooSlowError()},
     NodeTimeout),
])
async def test_connect_node_error_statuses(outcomes, error) -> None:
    fallbacks = nodes("f:1") if "f:1" in outcomes else []
    plan = ConnectPlan(max_retries=1, gracetime=7, fallbacks=fallbacks)
    with pytest.raises(error):
        await connect_node(FakeResolver({b"k": ["a:1"]}), b"k", plan, clock=lambda: NOW,
                           opener=fake_opener(outcomes, []))
    for fallback in fallbacks:  # a failed fallback is put in grace by the policy
        assert fallback.failcnt == 1 and fallback.grace_until == NOW + 7


@pytest.mark.parametrize("first_fails", [True, False], ids=["first", "after-a-retry"])
async def test_out_of_fds_is_503_and_marks_no_node(first_fails) -> None:
    emfile = OSError(errno.EMFILE, "Too many open files")
    outcomes = {"a:1": emfile} if first_fails else {
        "a:1": ConnectionRefusedError(errno.ECONNREFUSED, "refused"), "b:1": emfile}
    opened: list[str] = []
    resolver = FakeResolver({b"k": ["a:1", "b:1", "c:1"]}, gracetime=5)
    with pytest.raises(Overloaded) as caught:
        await connect_node(resolver, b"k", ConnectPlan(max_retries=3), clock=lambda: NOW,
                           opener=fake_opener(outcomes, opened))
    failed_node = opened[-1]
    assert caught.value.status == 503
    assert caught.value.reason == f"no socket for node {failed_node}: Too many open files"
    assert resolver.failed == ([] if first_fails else ["a:1"])  # no mark for EMFILE
    assert opened == (["a:1"] if first_fails else ["a:1", "b:1"])  # no further tries


async def test_connect_node_without_key_tries_nothing() -> None:
    """Not even the fallbacks: uWSGI closes a request without a key, with
    --fastrouter-fallback-on-no-key too (fallback_on_no_node)."""
    opened: list[str] = []
    plan = ConnectPlan(fallbacks=nodes("f:1"))
    for fallback_on_no_node in (False, True):
        with pytest.raises(NoNode):
            await connect_node(FakeResolver({}), None, plan, clock=lambda: NOW,
                               fallback_on_no_node=fallback_on_no_node,
                               opener=fake_opener({}, opened))
    assert opened == []


async def test_a_key_nobody_serves_is_no_node_not_the_fallbacks() -> None:
    """uWSGI closes an unknown key even with --X-fallback: a fallback app would serve
    every virtual host nobody else does. --fastrouter-fallback-on-no-key asks for it."""
    plan = ConnectPlan(max_retries=3, fallbacks=nodes("f:1"))
    opened: list[str] = []
    with pytest.raises(NoNode):
        await connect_node(FakeResolver({b"k": ["a:1"]}), b"evil.example", plan,
                           clock=lambda: NOW, opener=fake_opener({}, opened))
    assert opened == []
    node, _, _ = await connect_node(FakeResolver({b"k": ["a:1"]}), b"evil.example", plan,
                                    clock=lambda: NOW, opener=fake_opener({}, opened),
                                    fallback_on_no_node=True)
    assert node.name == "f:1" and opened == ["f:1"]


async def test_static_nodes_all_in_grace_go_to_the_fallbacks() -> None:
    """They failed (earlier requests): that is what fallbacks are for."""
    static = StaticResolver(["a:1", "b:1"], gracetime=30)
    for node in static.nodes:
        mark_failed(node, NOW - 1, 30)
    plan = ConnectPlan(max_retries=3, fallbacks=nodes("f:1"))
    node, _, _ = await connect_node(static, b"k", plan, clock=lambda: NOW,
                                    opener=fake_opener({}, []))
    assert node.name == "f:1"
