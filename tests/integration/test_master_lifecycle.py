"""Stopping, pidfiles, --reload/--stop actions, --vacuum, --daemonize and --logto."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time

import pytest
from _broodkit import http_get, pid_alive, wait_until, worker_pids


def _brood(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "brood", *args], capture_output=True,
                          text=True, timeout=30, stdin=subprocess.DEVNULL)


def test_sigint_stops_children_and_vacuums(start_brood, hello_app, tmp_path) -> None:
    sock, pidfile = tmp_path / "app.sock", tmp_path / "brood.pid"
    b = start_brood("--http-socket", str(sock), "--wsgi-file", hello_app, "--processes", "2",
                    "--pidfile", str(pidfile), "--vacuum", "--stats", "127.0.0.1:0")
    assert pidfile.read_text().strip() == str(b.pid)
    children = worker_pids(b.stats())
    b.send_signal(signal.SIGINT)
    assert b.wait_exit() == 0
    assert not sock.exists() and not pidfile.exists()
    assert "goodbye to uWSGI." in b.log()
    wait_until(lambda: not any(pid_alive(p) for p in children), timeout=5, what="children gone")


def test_a_thread_the_app_started_at_import_does_not_hold_the_exit(start_brood,
                                                                    tmp_path) -> None:
    """The master imports the app before it forks: a non-daemon thread started there
    must not keep the master alive after its goodbye."""
    app = tmp_path / "app.py"
    app.write_text("import threading, time\n"
                   "threading.Thread(target=time.sleep, args=(3600,)).start()\n"
                   "def application(environ, start_response):\n"
                   "    start_response('200 OK', [])\n    return [b'ok']\n")
    b = start_brood("--http-socket", "127.0.0.1:0", "--wsgi-file", str(app))
    b.send_signal(signal.SIGINT)
    assert b.wait_exit(timeout=10) == 0
    assert "goodbye to uWSGI." in b.log()


def test_without_vacuum_files_stay(start_brood, hello_app, tmp_path) -> None:
    sock, pidfile = tmp_path / "app.sock", tmp_path / "brood.pid"
    b = start_brood("--http-socket", str(sock), "--wsgi-file", hello_app,
                    "--pidfile", str(pidfile))
    b.send_signal(signal.SIGQUIT)
    assert b.wait_exit() == 0
    assert sock.exists() and pidfile.exists()


def test_reload_and_stop_actions_through_the_pidfile(start_brood, hello_app, tmp_path) -> None:
    pidfile = tmp_path / "brood.pid"
    b = start_brood("--http-socket", "127.0.0.1:0", "--wsgi-file", hello_app,
                    "--pidfile", str(pidfile), "--stats", "127.0.0.1:0")
    first = worker_pids(b.stats())
    done = _brood("--reload", str(pidfile))
    assert done.returncode == 0, done.stderr
    b.wait_ready(count=2)
    assert worker_pids(b.stats()) != first
    assert http_get(b.address_of("uwsgi socket 0")) == (200, b"Hello World")
    done = _brood("--stop", str(pidfile))
    assert done.returncode == 0, done.stderr
    assert b.wait_exit() == 0


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "pidfile not found"), ("garbage\n", "does not hold a pid"),
     ("", "does not hold a pid")],
)
def test_actions_with_a_bad_pidfile(tmp_path, content, message) -> None:
    pidfile = tmp_path / "brood.pid"
    if content is not None:
        pidfile.write_text(content)
    for action in ("--reload", "--stop"):
        done = _brood(action, str(pidfile))
        assert done.returncode == 1
        assert done.stderr.startswith(f"brood: {action} {pidfile}: ")
        assert message in done.stderr and "Traceback" not in done.stderr


def test_actions_with_a_dead_pid(tmp_path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    pidfile = tmp_path / "brood.pid"
    pidfile.write_text(f"{dead.pid}\n")
    done = _brood("--stop", str(pidfile))
    assert done.returncode == 1 and "no process with pid" in done.stderr


def test_logto_writes_the_log_file(start_brood, hello_app, tmp_path) -> None:
    logfile = tmp_path / "brood.log"
    b = start_brood("--http-socket", "127.0.0.1:0", "--wsgi-file", hello_app,
                    "--logto", str(logfile), wait=False)
    wait_until(lambda: logfile.exists() and "brood: ready" in logfile.read_text(),
               what="ready in --logto file")
    assert "brood: ready" not in b.log()
    assert b.proc.poll() is None


def test_daemonize_detaches(hello_app, tmp_path) -> None:
    logfile, pidfile = tmp_path / "daemon.log", tmp_path / "daemon.pid"
    done = _brood("--http-socket", "127.0.0.1:0", "--wsgi-file", hello_app,
                  "--daemonize", str(logfile), "--pidfile", str(pidfile), "--vacuum")
    assert done.returncode == 0
    pid = 0
    try:
        wait_until(lambda: logfile.exists() and "brood: ready" in logfile.read_text(),
                   what="daemon ready")
        pid = int(pidfile.read_text())
        assert os.getsid(pid) != os.getsid(0)  # detached into a session of its own
        port = [ln for ln in logfile.read_text().splitlines() if "uwsgi socket 0 bound" in ln]
        addr = port[0].split("address ")[1].split()[0]
        assert http_get(addr) == (200, b"Hello World")
        assert _brood("--stop", str(pidfile)).returncode == 0
        wait_until(lambda: not pid_alive(pid), what="daemon gone")
        assert not pidfile.exists()
    finally:
        if not pid and pidfile.exists():  # failed before reading it: still stop the daemon
            with contextlib.suppress(ValueError):
                pid = int(pidfile.read_text())
        if pid and pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 5
            while pid_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)


def test_chdir_and_env(start_brood, tmp_path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (work / "envapp.py").write_text(
        "import os\n"
        "def application(environ, start_response):\n"
        "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
        "    return [(os.getcwd() + ' ' + os.environ['BROOD_TEST_VAR']).encode()]\n"
    )
    b = start_brood("--http-socket", "app.sock", "--chdir", str(work), "--wsgi-file",
                    "envapp.py", "--env", "BROOD_TEST_VAR=42", "--stats", "127.0.0.1:0",
                    cwd=str(tmp_path))
    assert (work / "app.sock").exists()  # relative paths are taken after --chdir
    assert b.stats()["cwd"] == str(work)
    assert http_get(str(work / "app.sock")) == (200, f"{work} 42".encode())
