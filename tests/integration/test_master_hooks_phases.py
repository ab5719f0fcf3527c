"""--exec-*, --wait-for-*, --pidfile2/--safe-pidfile with a real brood: each at its
phase, in uWSGI's order; a failure or a timeout stops the start with one line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

ROOT = os.geteuid() == 0


@pytest.mark.skipif(not ROOT, reason="exec-as-root, exec-as-user and wait-for-file run "
                    "only when started as root (as in uWSGI)")
def test_phases_in_order_and_a_file_waited_for(start_brood, hello_app, tmp_path) -> None:
    later, pid2, safe = tmp_path / "later", tmp_path / "p2.pid", tmp_path / "safe.pid"
    b = start_brood("--http-socket", "127.0.0.1:0", "--wsgi-file", hello_app,
                    "--wait-for-file", str(later), "--pidfile2", str(pid2),
                    "--safe-pidfile", str(safe),
                    *[arg for phase in ("asap", "as-root", "as-user", "pre-app", "post-app",
                                        "as-user-atexit")
                      for arg in (f"--exec-{phase}", f"echo HOOK-{phase}")],
                    wait=False)
    b.wait_for_log(r"waiting for .*later \(max 60 seconds\)", timeout=10)
    assert "bound to" not in b.log()  # (the sockets are bound after the wait)
    later.touch()
    b.wait_ready()
    assert pid2.read_text() == safe.read_text() == f"{b.pid}\n"
    b.send_signal(signal.SIGINT)
    assert b.wait_exit(timeout=10) == 0
    log = b.log()
    order = [log.index(f"HOOK-{p}\n") for p in ("asap", "as-root", "as-user", "pre-app",
                                                "post-app", "as-user-atexit")]
    assert order == sorted(order)
    assert log.index("later found") < log.index("HOOK-as-root\n") < log.index("bound to")
    assert log.index("goodbye to uWSGI.") < log.index("HOOK-as-user-atexit\n")


def _brood(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "brood", *args], capture_output=True,
                          text=True, timeout=30, stdin=subprocess.DEVNULL)


def test_a_failing_command_or_a_wait_timing_out_is_one_line(hello_app) -> None:
    done = _brood("--http-socket", "127.0.0.1:0", "--wsgi-file", hello_app,
                  "--exec-pre-app", "exit 3")
    assert done.returncode == 1
    assert 'command "exit 3" exited with non-zero code: 3' in done.stderr
    done = _brood("--http-socket", "127.0.0.1:0", "--wsgi-file", hello_app,
                  "--wait-for-socket", "127.0.0.1:1", "--wait-for-socket-timeout", "1")
    assert done.returncode == 1
    assert "waiting for 127.0.0.1:1 (max 1 seconds)" in done.stderr
    assert "brood: 127.0.0.1:1 unavailable after 1 seconds" in done.stderr
    assert "Traceback" not in done.stderr
