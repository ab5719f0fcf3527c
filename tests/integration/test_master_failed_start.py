"""A start-up that fails part way leaves no files behind from what it had set up."""

from __future__ import annotations

import socket
import subprocess
import sys


def test_subscription_socket_file_removed_when_a_later_bind_fails(tmp_path) -> None:
    sub = tmp_path / "sub.sock"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "brood", "--http-subscription-server", str(sub),
             "--http", f"127.0.0.1:{port}"],
            capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert done.returncode == 1
    assert "subscription server bound on" in done.stderr  # it was bound, then the --http bind failed
    assert done.stderr.endswith(f"brood: --http 127.0.0.1:{port}: cannot bind: Address already in use\n")
    assert not sub.exists()


def test_subscription_socket_file_removed_when_start_fails_after_binding(tmp_path) -> None:
    sub = tmp_path / "sub.sock"
    pidfile = tmp_path / "no-such-dir" / "brood.pid"
    done = subprocess.run(
        [sys.executable, "-m", "brood", "--http-subscription-server", str(sub),
         "--http", "127.0.0.1:0", "--pidfile", str(pidfile)],
        capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert done.returncode == 1
    assert done.stderr.endswith(f"brood: --pidfile {pidfile}: cannot write: No such file or directory\n")
    assert not sub.exists()
