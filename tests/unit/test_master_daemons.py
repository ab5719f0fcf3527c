"""Attached daemons' pure parts: option values as uWSGI 2.0.21 reads them, its throttle."""

from __future__ import annotations

import os
import signal

import pytest

from brood.config.option import OptionError
from brood.master_daemons import (
    Daemons,
    DaemonSpec,
    parse_daemon,
    parse_daemon2,
    pidfile_pid,
    split_keyvals,
    throttle_seconds,
)


def test_attach_daemon_is_the_whole_command() -> None:
    assert parse_daemon("attach-daemon", "memcached -p 11211") == \
        DaemonSpec(command="memcached -p 11211")
    assert parse_daemon("attach-control-daemon", "sleep 1").control


def test_smart_attach_daemon_splits_pidfile_and_freq_at_the_first_space() -> None:
    spec = parse_daemon("smart-attach-daemon", "/run/x.pid,3 x --flag y")
    assert (spec.pidfile, spec.freq, spec.command, spec.daemonize) == \
        ("/run/x.pid", 3, "x --flag y", False)
    assert parse_daemon("smart-attach-daemon2", "/run/x.pid x").daemonize
    assert parse_daemon("smart-attach-daemon", "/run/x.pid x").freq == 10


def test_smart_attach_daemon_without_a_command_is_one_line() -> None:
    with pytest.raises(OptionError, match="--smart-attach-daemon nospace: expected"):
        parse_daemon("smart-attach-daemon", "nospace")


def test_keyvals_take_backslash_escapes() -> None:
    assert split_keyvals(r"cmd=echo a\,b,freq=3") == [("cmd", "echo a,b"), ("freq", "3")]
    with pytest.raises(ValueError):
        split_keyvals("cmd")


def test_attach_daemon2_keys_and_aliases() -> None:
    spec = parse_daemon2("exec=run it,pidfile=/p,daemon=1,control=1,freq=4,touch=/a;/b,"
                         "stop_signal=2,reloadsignal=1,stdin=1,uid=7,gid=8,chdir=/tmp,"
                         "max_throttle=5,notifypid=1")
    assert spec == DaemonSpec(command="run it", pidfile="/p", daemonize=True, control=True,
                              freq=4, touch=("/a", "/b"), stop_signal=2, reload_signal=1,
                              uid=7, gid=8, chdir="/tmp", max_throttle=5,
                              honour_stdin=True, notify_pid=True)
    assert parse_daemon2("cmd=x").stop_signal == signal.SIGTERM


def test_attach_daemon2_refusals_name_the_option() -> None:
    with pytest.raises(OptionError, match="you need to specify a 'command' key"):
        parse_daemon2("freq=3")
    with pytest.raises(OptionError, match="'ns_pid'.*brood does not have"):
        parse_daemon2("cmd=x,ns_pid=1")
    with pytest.raises(OptionError, match="uid=www-data"):
        parse_daemon2("cmd=x,uid=www-data")
    with pytest.raises(OptionError, match="stopsignal=999"):
        parse_daemon2("cmd=x,stopsignal=999")
    with pytest.raises(OptionError, match="invalid key=value"):
        parse_daemon2("cmd")


def test_unknown_keys_are_kept_to_be_said() -> None:
    assert parse_daemon2("cmd=x,foo=1").ignored == ("foo",)


@pytest.mark.parametrize(("now", "last", "respawns", "cap", "expected"), [
    (100, 0, 1, 0, 0),  # first start long after: none
    (100, 96, 5, 0, 0),  # more than 3 s since the last start
    (100, 100, 1, 0, 1),  # at once: respawns - 0, at least 1
    (100, 99, 4, 0, 3),
    (100, 100, 500, 0, 300),  # uWSGI's cap
    (100, 100, 500, 7, 7),  # max_throttle
    (100, 98, 1, 0, 1),  # never below 1 within the window
])
def test_throttle_is_uwsgis_rule(now, last, respawns, cap, expected) -> None:
    assert throttle_seconds(now, last, respawns, cap) == expected


def test_pidfile_pid_only_a_live_pid(tmp_path) -> None:
    path = tmp_path / "x.pid"
    assert pidfile_pid(str(path)) == -1
    path.write_text(f"{os.getpid()}\n")
    assert pidfile_pid(str(path)) == os.getpid()
    path.write_text("garbage")
    assert pidfile_pid(str(path)) == -1


def test_a_control_daemon_that_ends_asks_for_a_shutdown_not_a_respawn() -> None:
    others: dict = {}
    asked = []
    daemons = Daemons([DaemonSpec(command="x", control=True)], others,
                      lambda: asked.append(1))
    daemon = daemons.daemons[0]
    daemon.pid = 4242
    daemons._ended(daemon, 4242, 0)
    assert asked == [1] and daemon.pid == 0 and not others


def test_nothing_starts_again_once_stopping() -> None:
    others: dict = {}
    daemons = Daemons([DaemonSpec(command="x")], others, lambda: None)
    daemon = daemons.daemons[0]
    daemon.pid = 4242
    daemons.stopping = True
    daemons._ended(daemon, 4242, 0)
    assert daemon.pid == 0 and not others
