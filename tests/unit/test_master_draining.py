"""The master's bookkeeping of router processes handed over across a reload
(brood.master_children: adopt_draining, ChildTable's draining) and die_with_master."""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import time

import pytest

from brood.master_children import ChildTable, adopt_draining, die_with_master
from brood.master_env import DRAINING_ENV, export_draining, take_draining
from brood.plan import ChildSpec

PR_GET_PDEATHSIG = 2


def _sleeper() -> int:
    """A child of this process that waits until killed."""
    pid = os.fork()
    if pid == 0:
        try:
            time.sleep(60)
        finally:
            os._exit(0)
    return pid


def _reap_all(table: ChildTable, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while table.draining and time.monotonic() < deadline:
        table.reap(time.time())
        time.sleep(0.01)


def test_only_unreaped_children_are_adopted() -> None:
    done = os.fork()
    if done == 0:
        os._exit(3)
    os.waitid(os.P_PID, done, os.WEXITED | os.WNOWAIT)  # a zombie, for adopt_draining
    live = _sleeper()
    try:
        draining = adopt_draining([(done, "http 1", 0.0), (live, "http 2", 1e12),
                                   (1, "not ours", 0.0)])
        assert list(draining) == [live]
        assert not os.path.exists(f"/proc/{done}")  # reaped there, not left a zombie
    finally:
        os.kill(live, signal.SIGKILL)
        os.waitpid(live, 0)


def test_draining_children_are_reaped_without_respawn_and_killed_at_their_deadline() -> None:
    late, fine = _sleeper(), _sleeper()
    now = time.time()
    table = ChildTable([], lambda spec, index: None,
                       adopt_draining([(late, "http 1", now - 1), (fine, "http 2", now + 60)]))
    assert table.waiting_for(hand_off=False) and not table.waiting_for(hand_off=True)
    assert table.next_drain_deadline() == now - 1
    table.check_draining(now)
    deadline = time.monotonic() + 10
    while late in table.draining and time.monotonic() < deadline:
        table.reap(time.time())
    assert late not in table.draining and fine in table.draining
    table.signal_all(signal.SIGKILL)  # a brutal stop reaches them too
    _reap_all(table)
    assert table.draining == {}
    assert all(c.pid == 0 for c in table.children)


def test_hand_off_passes_the_live_children_to_the_next_incarnation(monkeypatch) -> None:
    spec = ChildSpec("http", 1, lambda index: int(time.sleep(60) or 0))
    worker = ChildSpec("worker", 1, lambda index: 0, handoff=False)
    assert spec.handoff is True and worker.handoff is False
    table = ChildTable([spec], lambda spec, index: None)
    table.spawn_all(time.time())
    pid = table.children[0].pid
    try:
        handed = table.hand_off(kill_at=123.5)
        assert table.alive() == [] and list(handed) == [pid]
        monkeypatch.setenv(DRAINING_ENV, export_draining(handed))
        assert take_draining() == [(pid, "http 1", 123.5)]
        assert DRAINING_ENV not in os.environ
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


def test_a_child_whose_master_is_gone_exits() -> None:
    pid = os.fork()
    if pid == 0:
        die_with_master(os.getppid() + 1_000_000)  # not its parent: as if it died
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 1


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl is Linux's")
def test_a_child_of_a_live_master_asks_for_sigkill_at_its_death() -> None:
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        die_with_master(os.getppid())
        got = ctypes.c_int(0)
        ctypes.CDLL(None).prctl(PR_GET_PDEATHSIG, ctypes.byref(got), 0, 0, 0)
        os.write(write_end, b"%d" % got.value)
        os._exit(0)
    os.close(write_end)
    try:
        reported = os.read(read_end, 16)
    finally:
        os.close(read_end)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert int(reported) == signal.SIGKILL
