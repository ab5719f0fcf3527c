"""The master FIFO service on real FIFOs in a tmp dir, with a fake master behind it."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from brood.config.model import Config
from brood.config.option import OptionError
from brood.master_fifo import (
    COMMANDS,
    FIFO_ENV,
    UNSUPPORTED,
    MasterFifo,
    contribute_master_fifo,
    decode,
)
from brood.plan import Plan, PlanBuilder


class FakeControl:
    """The MasterControl seen by the FIFO: records what was asked."""

    def __init__(self, services: list | None = None) -> None:
        self.calls: list[tuple] = []
        self.plan = Plan(Config(), services=list(services or []))
        self.stopping = False

    def reload(self, graceful: bool) -> None:
        self.calls.append(("reload", graceful))

    def shutdown(self, graceful: bool) -> None:
        self.calls.append(("shutdown", graceful))

    def reload_workers(self, graceful: bool) -> None:
        self.calls.append(("reload_workers", graceful))

    def chain_reload(self) -> None:
        self.calls.append(("chain_reload",))

    def reopen_log(self) -> None:
        self.calls.append(("reopen_log",))

    def rotate_log(self) -> None:
        self.calls.append(("rotate_log",))

    def update_pidfile(self) -> None:
        self.calls.append(("update_pidfile",))

    def log_stats(self) -> None:
        self.calls.append(("log_stats",))


class FakeAnnouncer:
    def __init__(self, blocked: bool = False) -> None:
        self.blocked = blocked

    def set_blocked(self, blocked: bool) -> None:
        self.blocked = blocked


@pytest.fixture(autouse=True)
def _no_handover(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(FIFO_ENV, raising=False)


def _write(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def _is_fifo(path: Path) -> bool:
    return path.exists() and stat.S_ISFIFO(path.stat().st_mode)


def _attached(*paths: Path, previous=None) -> tuple[MasterFifo, FakeControl]:
    fifo = MasterFifo([str(p) for p in paths], previous)
    control = FakeControl()
    fifo.attach(control)
    return fifo, control


def test_decode_skips_blanks_and_keeps_order() -> None:
    assert decode(b"r\n") == ["r"]
    assert decode(b" 2p\r\n") == ["2", "p"]
    assert decode(b"") == []


@pytest.mark.parametrize(("letter", "call"), [
    ("r", ("reload", True)), ("R", ("reload", False)),
    ("q", ("shutdown", True)), ("Q", ("shutdown", False)),
    ("w", ("reload_workers", True)), ("W", ("reload_workers", False)),
    ("c", ("chain_reload",)), ("l", ("reopen_log",)), ("L", ("rotate_log",)),
    ("P", ("update_pidfile",)), ("s", ("log_stats",)),
])
def test_each_letter_reaches_the_master(letter: str, call: tuple) -> None:
    control = FakeControl()
    COMMANDS[letter][1](control)
    assert control.calls == [call]


def test_unsupported_and_unknown_letters_are_logged_and_ignored(
        tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    fifo, control = _attached(tmp_path / "f0")
    fifo.run(["p", "z", "\xff", "+"])
    assert control.calls == []
    err = capfd.readouterr().err
    assert "'p' (pausing the instance) is not supported" in err
    assert "'+' (cheaper mode) is not supported" in err
    assert "unknown command 'z', ignored" in err and "unknown command 'ÿ'" in err
    assert not set(UNSUPPORTED) & set(COMMANDS)
    fifo.on_shutdown()


def test_attach_creates_a_private_fifo_and_reads_commands(tmp_path: Path) -> None:
    path = tmp_path / "f0"
    path.write_text("a stale regular file, replaced as uWSGI does")
    fifo, control = _attached(path)
    assert _is_fifo(path) and stat.S_IMODE(path.stat().st_mode) & 0o077 == 0
    _write(path, b"s\n")
    fifo.on_readable(0.0)
    _write(path, b"w")  # a second writer: still the same FIFO, no re-creation needed
    _write(path, b"Q")
    fifo.on_readable(0.0)
    assert control.calls == [("log_stats",), ("reload_workers", True), ("shutdown", False)]
    fifo.on_readable(0.0)  # nothing pending: returns at once
    assert len(control.calls) == 3
    fifo.on_shutdown()
    assert not path.exists() and fifo.fileno() is None


def test_slot_switch_moves_to_the_new_fifo_and_removes_the_old(tmp_path: Path) -> None:
    f0, f1 = tmp_path / "f0", tmp_path / "f1"
    fifo, control = _attached(f0, f1)
    assert not f1.exists()
    before = fifo.fileno()
    _write(f0, b"1s")  # the switch, then a command run right away
    fifo.on_readable(0.0)
    assert fifo.slot == 1 and _is_fifo(f1) and not f0.exists()
    assert fifo.fileno() != before  # the master re-watches the new fd
    _write(f1, b"q")
    fifo.on_readable(0.0)
    assert control.calls == [("log_stats",), ("shutdown", True)]
    fifo.run(["7"])  # no slot 7: ignored
    assert fifo.slot == 1
    fifo.on_shutdown()
    assert not f1.exists()


def test_a_stopping_master_switches_to_no_new_fifo(tmp_path: Path) -> None:
    f0, f1 = tmp_path / "f0", tmp_path / "f1"
    fifo, control = _attached(f0, f1)
    control.stopping = True
    fifo.run(["1", "Q"])
    assert fifo.slot == 0 and not f1.exists() and _is_fifo(f0)
    assert control.calls == [("shutdown", False)]
    fifo.on_shutdown()


def test_shutdown_leaves_a_fifo_that_is_not_ours(tmp_path: Path) -> None:
    path = tmp_path / "f0"
    fifo, _ = _attached(path)
    os.unlink(path)
    os.mkfifo(path)  # someone else's now (another instance took the path)
    fifo.on_shutdown()
    assert _is_fifo(path)


def test_reload_hands_the_same_fifo_to_the_next_incarnation(tmp_path: Path) -> None:
    path = tmp_path / "f0"
    fifo, _ = _attached(path)
    inode = path.stat().st_ino
    fifo.on_reload(graceful=True)
    handed = json.loads(os.environ[FIFO_ENV])
    assert handed["path"] == str(path) and handed["ino"] == inode
    fifo.close_in_child()  # what exec does to the old fds
    b = PlanBuilder(Config.from_dict({"master-fifo": [str(path)]}), binder=None)
    contribute_master_fifo(b.cfg, b)
    assert FIFO_ENV not in os.environ  # read once, never inherited by children
    (nxt,) = b.plan.services
    control = FakeControl()
    nxt.attach(control)
    assert path.stat().st_ino == inode  # kept, not re-created
    _write(path, b"r")
    nxt.on_readable(0.0)
    assert control.calls == [("reload", True)]
    nxt.on_shutdown()


def test_next_incarnation_drops_a_fifo_left_on_another_slot(tmp_path: Path) -> None:
    f0, f1 = tmp_path / "f0", tmp_path / "f1"
    fifo, _ = _attached(f0, f1)
    fifo.switch(1)
    fifo.on_reload(graceful=False)
    fifo.close_in_child()
    b = PlanBuilder(Config.from_dict({"master-fifo": [str(f0), str(f1)]}), binder=None)
    contribute_master_fifo(b.cfg, b)
    (nxt,) = b.plan.services
    nxt.attach(FakeControl())
    assert nxt.slot == 0 and _is_fifo(f0) and not f1.exists()
    nxt.on_shutdown()


def test_option_removed_before_a_reload_removes_the_fifo(tmp_path: Path) -> None:
    path = tmp_path / "f0"
    fifo, _ = _attached(path)
    fifo.on_reload()
    fifo.close_in_child()
    b = PlanBuilder(Config(), binder=None)
    contribute_master_fifo(b.cfg, b)
    assert b.plan.services == [] and not path.exists()


def test_uncreatable_fifo_is_a_one_line_option_error(tmp_path: Path) -> None:
    fifo = MasterFifo([str(tmp_path / "missing-dir" / "f0")])
    with pytest.raises(OptionError, match=r"--master-fifo .*f0: cannot create the FIFO"):
        fifo.attach(FakeControl())


def test_at_most_ten_slots() -> None:
    cfg = Config.from_dict({"master-fifo": [f"/tmp/f{i}" for i in range(11)]})
    with pytest.raises(OptionError, match="at most 10"):
        contribute_master_fifo(cfg, PlanBuilder(cfg, binder=None))


def test_S_toggles_every_announcer(capfd: pytest.CaptureFixture[str]) -> None:
    one, two = FakeAnnouncer(), FakeAnnouncer(blocked=True)
    control = FakeControl([object(), one, two])
    COMMANDS["S"][1](control)
    assert one.blocked and two.blocked
    COMMANDS["S"][1](control)
    assert not one.blocked and not two.blocked
    err = capfd.readouterr().err
    assert "subscriptions blocked" in err and "subscriptions re-enabled" in err
    COMMANDS["S"][1](FakeControl())
    assert "no --subscribe-to" in capfd.readouterr().err
