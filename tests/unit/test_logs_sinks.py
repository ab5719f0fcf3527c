"""The log master's sinks on real files and local datagram sockets (brood.logs.sinks)."""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path

import pytest

from brood.logs.sinks import (
    FdSink,
    FileSink,
    RsyslogSink,
    SocketSink,
    SyslogSink,
    backup_name,
)

NOW = 1795572956.0


def test_backup_names_as_uwsgi_gives_them() -> None:
    assert backup_name("/var/log/app.log", None, NOW) == "/var/log/app.log.1795572956"
    assert backup_name("/var/log/app.log", "/var/log/app.old", NOW) == "/var/log/app.old"


def test_rotation_by_size_renames_with_the_notice_and_starts_empty(tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    sink = FileSink(str(path), maxsize=100)
    sink.write(b"x" * 60 + b"\n", NOW)
    assert not list(tmp_path.glob("app.log.*"))
    sink.write(b"y" * 60 + b"\n", NOW)
    rotated = tmp_path / "app.log.1795572956"
    lines = rotated.read_bytes().splitlines()
    assert lines[:2] == [b"x" * 60, b"y" * 60]
    assert re.fullmatch(rb"\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4} - logsize: 122, "
                        rb"triggering rotation to .*app\.log\.1795572956\.\.\.", lines[2])
    assert path.read_bytes() == b""
    sink.write(b"after\n", NOW + 1)
    assert path.read_bytes() == b"after\n"


def test_an_epoch_name_taken_is_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    sink = FileSink(str(path), maxsize=10)
    sink.write(b"first batch\n", NOW)
    sink.write(b"second batch\n", NOW + 0.5)  # same second: waits
    assert sink.due()
    assert b"first batch" in (tmp_path / "app.log.1795572956").read_bytes()
    assert path.read_bytes() == b"second batch\n"
    assert sink.rotate(NOW + 1)  # next second: done
    assert b"second batch" in (tmp_path / "app.log.1795572957").read_bytes()
    assert not sink.due()


def test_backupname_is_reused_each_rotation(tmp_path: Path) -> None:
    path, old = tmp_path / "app.log", tmp_path / "app.old"
    sink = FileSink(str(path), backupname=str(old))
    sink.write(b"one\n", NOW)
    assert sink.rotate(NOW)
    sink.write(b"two\n", NOW)
    assert sink.rotate(NOW)
    assert old.read_bytes().startswith(b"two\n") and path.read_bytes() == b""


def test_reopen_follows_a_moved_file(tmp_path: Path) -> None:
    path, moved = tmp_path / "app.log", tmp_path / "moved.log"
    sink = FileSink(str(path), mode=0o600)
    sink.write(b"before\n", NOW)
    path.rename(moved)
    sink.write(b"still the old one\n", NOW)
    sink.reopen(NOW)
    sink.write(b"after\n", NOW)
    assert moved.read_bytes() == (b"before\nstill the old one\n"
                                  b"[1795572956] logsize: 25, triggering log-reopen...\n")
    assert path.read_bytes() == f"[1795572956] {path} reopened.\nafter\n".encode()
    assert path.stat().st_mode & 0o777 == 0o600


def test_a_terminal_or_pipe_is_never_rotated(tmp_path: Path) -> None:
    r, w = os.pipe()
    try:
        sink = FileSink(str(tmp_path / "not-used"), fd=w, maxsize=1)
        sink.write(b"line\n", NOW)
        assert sink.rotate(NOW) and os.read(r, 100) == b"line\n"
    finally:
        os.close(r)
        os.close(w)


def test_write_errors_are_counted_not_raised() -> None:
    sink = FdSink(9999, "fd:9999")
    sink.write(b"a\nb\n", NOW)
    assert sink.dropped == 2 and sink.reason


@pytest.fixture
def udp() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(5)
    yield sock
    sock.close()


def test_socket_logger_one_datagram_per_line_after_the_prefix(udp: socket.socket) -> None:
    sink = SocketSink(udp.getsockname(), "app|", "socket")
    sink.write(b"one\ntwo\n", NOW)
    assert [udp.recv(100), udp.recv(100)] == [b"app|one\n", b"app|two\n"]
    sink.close()


def test_rsyslog_frames_as_uwsgi(udp: socket.socket) -> None:
    sink = RsyslogSink(udp.getsockname(), "host uwsgi", "rsyslog")
    sink.write(b"hello\n", NOW)
    packet = udp.recv(200)
    assert re.fullmatch(rb"<29>\w{3} [ \d]\d \d\d:\d\d:\d\d host uwsgi: hello", packet), packet
    sink.close()


def test_syslog_frames_as_glibc_and_counts_lines_nobody_reads(tmp_path: Path) -> None:
    path = str(tmp_path / "log.sock")
    sink = SyslogSink("myapp", 19, "syslog", path=path)
    sink.write(b"lost\n", NOW)  # no syslog daemon there yet
    assert sink.dropped == 1
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(path)
    server.settimeout(5)
    try:
        sink.write(b"later\n", NOW + 2)
        packet = server.recv(200)
        assert re.fullmatch(rb"<158>\w{3} [ \d]\d \d\d:\d\d:\d\d myapp: later\n", packet)
    finally:
        server.close()
        sink.close()


def test_follow_reopens_silently_only_when_the_path_names_another_file(tmp_path: Path) -> None:
    path = tmp_path / "app.log"
    sink = FileSink(str(path))
    fd = sink.fd
    sink.follow()
    assert sink.fd == fd  # same file: left alone
    path.rename(tmp_path / "moved.log")
    sink.follow()
    sink.write(b"new\n", NOW)
    assert path.read_bytes() == b"new\n" and (tmp_path / "moved.log").read_bytes() == b""
    sink.close()
