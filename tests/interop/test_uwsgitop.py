"""The real uwsgitop (curses) reads brood's stats server and lists its workers.

uwsgitop has no batch mode: it runs on a pseudo-terminal (TERM=xterm, 200x50) and the
test reads the screen bytes until both worker pids appear, then quits it with ``q``.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import select
import shutil
import signal
import struct
import subprocess
import sys
import termios
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "integration"))

from _broodkit import BroodProcess, http_get, worker_pids  # noqa: E402

import brood.demo.hello  # noqa: E402

pytestmark = pytest.mark.interop

UWSGITOP = shutil.which("uwsgitop")


def _screen_until(fd: int, needles: list[bytes], timeout: float) -> bytes:
    seen = b""
    deadline = time.monotonic() + timeout
    while not all(n in seen for n in needles):
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"uwsgitop never showed {needles}: {seen[-2000:]!r}")
        ready, _, _ = select.select([fd], [], [], min(left, 0.5))
        if ready:
            try:
                seen += os.read(fd, 65536)
            except OSError:  # EIO: the program exited
                raise AssertionError(f"uwsgitop exited early: {seen[-2000:]!r}")
    return seen


@pytest.mark.skipif(UWSGITOP is None, reason="uwsgitop not installed")
@pytest.mark.parametrize("where", ["tcp", "unix"])
def test_uwsgitop_shows_brood_workers(tmp_path, where) -> None:
    stats = "127.0.0.1:0" if where == "tcp" else str(tmp_path / "stats.sock")
    b = BroodProcess(["--http-socket", "127.0.0.1:0", "--wsgi-file", brood.demo.hello.__file__,
                      "--processes", "2", "--master", "--stats", stats],
                     tmp_path / "brood.log")
    top = None
    master_fd = -1
    try:
        b.wait_ready()
        assert http_get(b.address_of("uwsgi socket 0")) == (200, b"Hello World")
        pids = worker_pids(b.stats())
        master_fd, slave_fd = pty.openpty()
        fcntl.ioctl(slave_fd, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 200, 0, 0))
        env = dict(os.environ, TERM="xterm", LINES="50", COLUMNS="200")
        top = subprocess.Popen([UWSGITOP, b.address_of("stats server")], stdin=slave_fd,
                               stdout=slave_fd, stderr=slave_fd, env=env,
                               start_new_session=True)
        os.close(slave_fd)
        screen = _screen_until(master_fd, [str(p).encode() for p in pids] + [b"WID"], 20)
        assert b"masterpid: " + str(b.pid).encode() in screen
        os.write(master_fd, b"q")
        top.wait(10)
    finally:
        if top is not None and top.poll() is None:
            top.send_signal(signal.SIGINT)
            try:
                top.wait(5)
            except subprocess.TimeoutExpired:
                top.kill()
                top.wait(5)
        if master_fd >= 0:
            with contextlib.suppress(OSError):
                os.close(master_fd)
        b.stop()
