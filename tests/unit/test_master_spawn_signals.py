"""The master forks its children in rounds a signal can cut short
(brood.master_children.ChildTable.respawn_due): a SIGINT while thousands of router
processes start is answered at once, not after the last fork."""

from __future__ import annotations

import signal

from brood.master_children import ChildTable
from brood.plan import ChildSpec


def test_a_signal_stops_the_round_and_the_rest_stay_due(monkeypatch) -> None:
    spec = ChildSpec("http", 50, lambda index: 0, signal.SIGHUP, None, "uWSGI http")
    table = ChildTable([spec], lambda spec, index: None)
    forked: list[int] = []

    def fake_spawn(child, now: float) -> None:
        forked.append(child.index)
        child.pid, child.respawn_at = 10_000 + child.index, None

    monkeypatch.setattr(table, "spawn", fake_spawn)
    table.signalled = lambda: len(forked) >= 3  # the signal comes after the third fork
    table.spawn_all(100.0)
    assert forked == [1, 2, 3]
    due = [c.index for c in table.children if c.pid == 0 and c.respawn_at == 100.0]
    assert due == list(range(4, 51))  # for the next round, if the signal is no stop
    table.signalled = lambda: False
    table.respawn_due(100.0)
    assert forked == list(range(1, 51))
