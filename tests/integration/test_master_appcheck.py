"""The reload's app check on its own: a real interpreter importing a real app file."""

from __future__ import annotations

import os
import select
import socket
import time

from brood.master_appcheck import INCONCLUSIVE, TAIL_BYTES, AppCheck
from brood.master_children import ChildTable


def _run(check: AppCheck, timeout: float = 30.0) -> None:
    """Serve the check as the master does until it has exited and been reaped."""
    deadline = time.monotonic() + timeout
    while not check.done:
        assert time.monotonic() < deadline, "the check did not end"
        fd = check.fileno()
        if fd is not None:
            select.select([fd], [], [], 0.05)
            check.on_readable(time.monotonic())
        pid, status = os.waitpid(check.pid, os.WNOHANG)
        if pid:
            check.exited(status)


def test_an_app_that_loads_passes_even_when_it_prints_a_lot(tmp_path) -> None:
    app = tmp_path / "app.py"
    app.write_text("print('x' * 200_000)\n"  # more than a pipe holds: read, not blocked
                   "def application(environ, start_response):\n    return []\n")
    check = AppCheck(["--wsgi-file", str(app)], str(tmp_path))
    _run(check)
    assert check.failure() is None
    assert len(check.tail) <= TAIL_BYTES


def test_a_failure_gives_the_reason_and_the_apps_lines(tmp_path) -> None:
    app = tmp_path / "app.py"
    app.write_text("import no_such_module_here\n")
    check = AppCheck(["--wsgi-file", "app.py"], str(tmp_path))  # relative: from cwd
    _run(check)
    reason, lines = check.failure()
    assert reason == ("wsgi-file app.py failed: ModuleNotFoundError: "
                      "No module named 'no_such_module_here'")
    assert lines[-2:] == ["    import no_such_module_here",
                          "ModuleNotFoundError: No module named 'no_such_module_here'"]


def test_a_config_error_is_a_failure(tmp_path) -> None:
    check = AppCheck(["--wsgi-file", "app.py", "--no-such-option"], str(tmp_path))
    _run(check)
    assert check.failure() == ("unknown option --no-such-option", [])


def test_a_check_past_its_deadline_times_out_and_is_killed(tmp_path) -> None:
    app = tmp_path / "app.py"
    app.write_text("import time\ntime.sleep(60)\n")
    check = AppCheck(["--wsgi-file", str(app)], str(tmp_path), timeout=0.3)
    started = time.monotonic()
    assert not check.timed_out(started)
    while not check.timed_out(time.monotonic()):
        assert time.monotonic() < started + 10
        time.sleep(0.02)
    assert time.monotonic() >= started + 0.3 and not check.done
    check.kill()
    _, status = os.waitpid(check.pid, 0)
    check.exited(status)
    assert check.failure() == ("the check was killed by signal 9", [])


def test_the_masters_reap_hands_the_status_to_the_check(tmp_path) -> None:
    app = tmp_path / "app.py"
    app.write_text("raise SystemExit(3)\n")
    check = AppCheck(["--wsgi-file", str(app)], str(tmp_path))
    table = ChildTable([], lambda spec, index: None)
    table.others[check.pid] = check.exited
    deadline = time.monotonic() + 30
    while not check.done:
        assert time.monotonic() < deadline
        check.on_readable(time.monotonic())
        table.reap(time.monotonic())
        time.sleep(0.02)
    assert check.pid not in table.others
    assert check.failure()[0] == f"wsgi-file {app} failed: SystemExit: 3"


def test_an_app_binding_an_address_the_running_app_holds_is_inconclusive(tmp_path) -> None:
    """The running app holds the port its import binds: the check cannot tell, and a
    reload must not be refused for it forever."""
    held = socket.socket()
    held.bind(("127.0.0.1", 0))
    held.listen()
    port = held.getsockname()[1]
    app = tmp_path / "app.py"
    app.write_text(f"import socket\nsocket.socket().bind(('127.0.0.1', {port}))\n")
    try:
        check = AppCheck(["--wsgi-file", str(app)], str(tmp_path))
        _run(check)
    finally:
        held.close()
    assert check.status == INCONCLUSIVE
    assert "binds an address" in check.inconclusive()


def test_a_crash_at_import_is_a_failure_and_a_kill_from_outside_is_not(tmp_path) -> None:
    app = tmp_path / "app.py"
    app.write_text("import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)\n")
    check = AppCheck(["--wsgi-file", str(app)], str(tmp_path))
    _run(check)
    assert check.inconclusive() is None
    assert check.failure() == ("the check was killed by signal 11", [])
    app.write_text("import os, signal\nos.kill(os.getpid(), signal.SIGTERM)\n")
    check = AppCheck(["--wsgi-file", str(app)], str(tmp_path))
    _run(check)
    assert check.inconclusive() == "the check was killed by signal 15"


def test_the_check_runs_in_its_own_session(tmp_path) -> None:
    """A hangup sent to the master's session (its terminal closing, ``kill -HUP -PGID``
    as a reload) must not kill the check and turn the reload into a refusal."""
    app = tmp_path / "app.py"
    app.write_text("import time\ntime.sleep(60)\n")
    check = AppCheck(["--wsgi-file", str(app)], str(tmp_path))
    try:
        assert os.getsid(check.pid) == check.pid != os.getsid(0)
    finally:
        check.kill()
        _, status = os.waitpid(check.pid, 0)
        check.exited(status)


def test_the_app_chosen_under_if_reload_is_the_one_checked(tmp_path) -> None:
    """The check reads the config as the re-executed master will: if-reload is true."""
    (tmp_path / "first.py").write_text("def application(environ, start_response):\n"
                                       "    return []\n")
    (tmp_path / "later.py").write_text("import no_such_module_on_reload\n")
    (tmp_path / "app.ini").write_text("[uwsgi]\nif-reload =\nwsgi-file = later.py\nendif =\n"
                                      "if-not-reload =\nwsgi-file = first.py\nendif =\n")
    check = AppCheck(["app.ini"], str(tmp_path))
    _run(check)
    assert check.failure()[0].startswith("wsgi-file later.py failed: ModuleNotFoundError")
