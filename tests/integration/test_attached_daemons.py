"""--attach-daemon and kin with a real brood: started after the sockets, started again
when they die, stopped with the master (and across a reload), no orphan left."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys

from _broodkit import pid_alive, wait_until


def _pids(path) -> list[int]:
    try:
        return [int(x) for x in path.read_text().split()]
    except FileNotFoundError:
        return []


def _recorder(path) -> str:
    """A daemon that says its pid, then stays in the foreground (exec: the same pid)."""
    return f"echo $$ >> {path}; exec sleep 1000"


def test_a_daemon_killed_starts_again_and_stops_with_brood(start_brood, hello_app,
                                                            tmp_path) -> None:
    pids = tmp_path / "pids"
    b = start_brood("--http-socket", "127.0.0.1:0", "--wsgi-file", hello_app,
                    "--attach-daemon", _recorder(pids))
    first = wait_until(lambda: _pids(pids), timeout=5, what="daemon started")[0]
    assert b.log().index("bound to TCP address") < b.log().index("[uwsgi-daemons] spawning")
    os.kill(first, signal.SIGKILL)
    second = wait_until(lambda: _pids(pids)[1:], timeout=5, what="daemon respawned")[0]
    assert '[uwsgi-daemons] throttling "echo' in b.log()
    assert '[uwsgi-daemons] respawning "echo' in b.log()
    b.send_signal(signal.SIGINT)
    assert b.wait_exit(timeout=10) == 0
    assert f"[uwsgi-daemons] stopping daemon (pid: {second})" in b.log()
    assert not pid_alive(first) and not pid_alive(second)


def test_a_control_daemon_ending_shuts_brood_down(start_brood, hello_app, tmp_path) -> None:
    flag = tmp_path / "flag"
    b = start_brood("--http-socket", "127.0.0.1:0", "--wsgi-file", hello_app,
                    "--attach-control-daemon",
                    f"while [ ! -e {flag} ]; do sleep 0.05; done")
    b.wait_for_log(r"spawning \"while", timeout=5)
    flag.touch()
    assert b.wait_exit(timeout=10) == 0
    assert "graceful shutdown triggered..." in b.log()


def test_reload_stops_and_restarts_dumb_daemons_and_keeps_smart_ones(
        start_brood, hello_app, tmp_path) -> None:
    pids, smart_pid = tmp_path / "pids", tmp_path / "smart.pid"
    b = start_brood("--http-socket", "127.0.0.1:0", "--wsgi-file", hello_app,
                    "--no-reload-app-check", "--attach-daemon", _recorder(pids),
                    "--smart-attach-daemon2", f"{smart_pid} exec sleep 1001")
    smart = 0
    try:
        first = wait_until(lambda: _pids(pids), timeout=5, what="daemon started")[0]
        smart = wait_until(lambda: _pids(smart_pid), timeout=5, what="pidfile")[0]
        b.send_signal(signal.SIGHUP)
        b.wait_ready(count=2, timeout=10)
        second = wait_until(lambda: _pids(pids)[1:], timeout=5, what="restarted")[0]
        assert not pid_alive(first) and pid_alive(second)
        assert len(_pids(pids)) == 2  # (once per incarnation: never doubled)
        b.wait_for_log(rf"found valid/active pidfile for \"exec sleep 1001\" "
                       rf"\(pid: {smart}\)", timeout=5)
        assert _pids(smart_pid) == [smart] and pid_alive(smart)
        b.send_signal(signal.SIGINT)
        assert b.wait_exit(timeout=10) == 0
        assert not pid_alive(second)
        assert pid_alive(smart)  # a smart daemon outlives the master, as in uWSGI
    finally:
        if smart:
            with contextlib.suppress(ProcessLookupError):
                os.kill(smart, signal.SIGKILL)


def test_a_bad_attach_daemon2_value_is_one_line() -> None:
    done = subprocess.run([sys.executable, "-m", "brood", "--http-socket", "127.0.0.1:0",
                           "--attach-daemon2", "freq=3"], capture_output=True, text=True,
                          timeout=30, stdin=subprocess.DEVNULL)
    assert done.returncode == 1
    assert "--attach-daemon2: you need to specify a 'command' key" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout


def test_a_daemon_deaf_to_its_stop_signal_is_killed_after_the_mercy(
        start_brood, hello_app, tmp_path) -> None:
    pids = tmp_path / "pids"
    b = start_brood("--http-socket", "127.0.0.1:0", "--wsgi-file", hello_app,
                    "--reload-mercy", "1", "--attach-daemon2",
                    f"cmd=trap '' TERM HUP; echo $$ >> {pids}; exec sleep 1000,stopsignal=1")
    pid = wait_until(lambda: _pids(pids), timeout=5, what="daemon started")[0]
    b.send_signal(signal.SIGINT)
    assert b.wait_exit(timeout=10) == 0
    assert f"[uwsgi-daemons] daemon did not die in time, killing (pid: {pid})" in b.log()
    assert not pid_alive(pid)
