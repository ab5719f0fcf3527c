"""Start-up glue's pure parts: waits (time passed in), pidfiles written atomically,
--umask values, a failing phase command."""

from __future__ import annotations

import os
import socket

import pytest

from brood.config.option import OptionError
from brood.master_hooks import (
    HookFailed,
    fs_ready,
    parse_umask,
    run_commands,
    socket_ready,
    wait_for,
    write_pid,
)


def test_a_wait_past_its_timeout_stops_with_uwsgis_line() -> None:
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    with pytest.raises(HookFailed, match=r"^/x unavailable after 3 seconds$"):
        wait_for("/x", lambda: False, 3, clock=lambda: now[0], sleep=sleep)


def test_a_wait_ends_when_ready() -> None:
    looks = iter([False, False, True])
    wait_for("/x", lambda: next(looks), 3, clock=lambda: 0.0, sleep=lambda s: None)


def test_file_and_dir_take_anything_that_exists_as_uwsgi_2_0_21(tmp_path) -> None:
    assert fs_ready(str(tmp_path), "file") and fs_ready(str(tmp_path), "dir")
    assert not fs_ready(str(tmp_path / "nope"), "fs")
    assert fs_ready("/", "mountpoint") and not fs_ready(str(tmp_path), "mountpoint")


def test_socket_ready_tcp_and_unix(tmp_path) -> None:
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        assert socket_ready(f"127.0.0.1:{srv.getsockname()[1]}")
    path = str(tmp_path / "s.sock")
    assert not socket_ready(path)
    with socket.socket(socket.AF_UNIX) as srv:
        srv.bind(path)
        srv.listen()
        assert socket_ready(path)


def test_safe_pidfile_is_replaced_whole(tmp_path) -> None:
    path = tmp_path / "x.pid"
    path.write_text("999999\n")
    write_pid(str(path), "safe-pidfile", safe=True)
    assert path.read_text() == f"{os.getpid()}\n"
    assert os.listdir(tmp_path) == ["x.pid"]  # no temporary file left


def test_an_unwritable_pidfile_names_its_option(tmp_path) -> None:
    with pytest.raises(OptionError, match="--pidfile2 .*cannot write"):
        write_pid(str(tmp_path / "no" / "x.pid"), "pidfile2", safe=False)


def test_umask_is_octal() -> None:
    assert parse_umask("027") == 0o27
    with pytest.raises(OptionError, match="--umask 99z"):
        parse_umask("99z")


def test_a_failing_command_stops_the_start_unless_at_exit() -> None:
    with pytest.raises(HookFailed, match='^command "exit 3" exited with non-zero code: 3$'):
        run_commands(["exit 3"], "(as root)...")
    run_commands(["exit 3"], "(as uid: 0 gid: 0) ...", fatal=False)
