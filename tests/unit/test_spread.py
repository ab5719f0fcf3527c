"""The table that keeps client connections even over a router's processes
(brood.routers.net.spread): whose turn the next connection is."""

from __future__ import annotations

import multiprocessing
import os
import time

import pytest

from brood.routers.engine import Engine, RouterSettings
from brood.routers.net import spread as spread_module
from brood.routers.net.spread import SLACK, SLACK_SHARE, Spread, SpreadTable
from brood.routers.resolve.mappers import StaticResolver


def members(count: int) -> list[Spread]:
    """The entries of ``count`` processes that accept (they beat)."""
    table = SpreadTable(count)
    found = [table.member(i) for i in range(1, count + 1)]
    for member in found:
        member.beat()
    return found


def open_n(member: Spread, n: int) -> None:
    for _ in range(n):
        member.opened()


def test_a_process_alone_always_accepts():
    alone = Spread()
    assert not alone.shared
    open_n(alone, 1000)
    assert alone.my_turn()
    assert alone.open == 1000


def test_the_process_ahead_leaves_the_next_connection_to_the_one_behind():
    a, b = members(2)
    open_n(a, SLACK + 1)
    assert not a.my_turn() and b.my_turn()
    b.opened()
    assert a.my_turn()  # within the slack again


def test_a_few_connections_ahead_is_within_the_slack():
    a, b = members(2)
    open_n(a, SLACK)
    assert a.my_turn()  # SLACK ahead of a sibling with none
    open_n(b, 5)
    open_n(a, 5)
    assert a.my_turn()


def test_the_slack_grows_with_the_count():
    a, b = members(2)
    open_n(a, 160)
    open_n(b, 160 - SLACK - 160 // SLACK_SHARE)
    assert a.my_turn()
    b.closed()
    assert not a.my_turn()


def test_closed_connections_count_down():
    a, b = members(2)
    open_n(a, 10)
    assert not a.my_turn()
    for _ in range(8):
        a.closed()
    assert a.my_turn() and a.open == 2


def test_the_least_loaded_of_three_counts():
    a, b, c = members(3)
    open_n(a, 10)
    open_n(b, 10)
    open_n(c, 10 - SLACK - 1)
    assert not a.my_turn() and not b.my_turn() and c.my_turn()


def test_a_sibling_whose_heartbeat_stopped_is_left_out(monkeypatch):
    a, b = members(2)
    open_n(a, 10)
    assert not a.my_turn()
    later = time.monotonic() + spread_module.STALE_MS / 1000 + 1
    monkeypatch.setattr(spread_module.time, "monotonic", lambda: later)
    a.beat()
    assert a.my_turn()  # b has said nothing for longer than STALE_MS
    b.beat()
    assert not a.my_turn()


def test_a_sibling_that_does_not_accept_is_left_out():
    a, b = members(2)
    open_n(a, 10)
    b.beat(accepting=False)  # cheap mode: it takes no connection now
    assert a.my_turn()
    b.beat()
    assert not a.my_turn()


def test_a_process_that_leaves_is_left_out_and_counts_on_its_own():
    a, b = members(2)
    open_n(a, 10)
    b.leave()
    assert a.my_turn()
    assert not b.shared and b.my_turn()
    open_n(b, 3)
    b.closed()
    assert b.open == 2
    assert a.my_turn()  # what b counts after leaving is not in the table


def test_leaving_does_not_clear_the_entry_a_successor_claimed():
    table = SpreadTable(2)
    a, old = table.member(1), table.member(2)
    old.beat()
    open_n(a, 10)
    fields = memoryview(table.memory).cast("q")
    fields[spread_module._FIELDS + spread_module._PID] = os.getpid() + 1  # a successor's
    old.leave()
    assert not a.my_turn()  # the successor's entry still counts


def test_a_respawned_process_starts_from_nothing_and_counts_once_it_accepts():
    table = SpreadTable(2)
    a, b = table.member(1), table.member(2)
    b.beat()
    open_n(b, 10)
    open_n(a, 5)
    assert a.my_turn()
    again = table.member(2)  # process 2 again, after a respawn
    assert a.my_turn()  # not accepting yet: it is left out
    again.beat()  # listening now
    assert not a.my_turn()


def _child_opens(table: SpreadTable, n: int) -> None:
    member = table.member(2)
    member.beat()
    open_n(member, n)


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="no fork")
def test_the_table_is_shared_with_forked_processes():
    table = SpreadTable(2)
    a = table.member(1)
    open_n(a, 10)
    assert a.my_turn()  # process 2 has not said anything yet: its heartbeat is 0
    child = multiprocessing.get_context("fork").Process(target=_child_opens, args=(table, 3))
    child.start()
    child.join(10)
    assert child.exitcode == 0
    assert not a.my_turn()  # the child's count and heartbeat reached this process


def accept_n(member: Spread, n: int, keep: int) -> None:
    """``n`` connections accepted, ``keep`` of them still held."""
    for _ in range(n):
        member.took()
        member.opened()
    for _ in range(n - keep):
        member.closed()


def test_connections_that_come_and_go_fast_are_not_balanced():
    """Thousands of short connections a period (one per request from a server in
    front): the accept race spreads them; counts that change that fast are not used."""
    a, b = members(2)
    accept_n(a, 2000, keep=10)
    assert not a.my_turn()
    a.rebalance()
    assert a.my_turn()
    a.rebalance()  # a quiet period: the ten held live long
    assert not a.my_turn()


def test_a_pool_opened_at_once_is_balanced():
    a, b = members(2)
    accept_n(a, spread_module.BURST, keep=spread_module.BURST)
    a.rebalance()
    assert not a.my_turn()
    for _ in range(spread_module.BURST):  # closed and opened again at once
        a.closed()
    accept_n(a, spread_module.BURST, keep=spread_module.BURST)
    a.rebalance()
    assert not a.my_turn()


def test_a_process_going_cheap_says_so_at_once():
    """Cheap mode (no node: it accepts nothing) shows in the table when it starts, not
    at the next heartbeat, and leaving it shows as soon."""
    a, b = members(2)
    engine = Engine(RouterSettings("http", cheap=True), StaticResolver([]), has_nodes=True)
    engine.spread = b
    open_n(a, 10)
    assert not a.my_turn()
    engine.nodes_changed(False)  # cheap
    assert a.my_turn()
    engine.nodes_changed(True)
    assert not a.my_turn()
