"""Reloads: SIGHUP under load loses nothing, SIGTERM re-execs, touch-reload, die-on-term."""

from __future__ import annotations

import os
import re
import signal
import socket
import threading

import pytest
from _broodkit import http_get, pid_alive, uwsgi_request, wait_until, worker_pids
from test_master_respawn import _load


def test_sighup_under_load_loses_no_request(start_brood, hello_app) -> None:
    b = start_brood("--http-socket", "127.0.0.1:0", "--wsgi-file", hello_app,
                    "--processes", "2", "--master", "--stats", "127.0.0.1:0")
    addr = b.address_of("uwsgi socket 0")
    before = set(worker_pids(b.stats()))
    result: dict[str, object] = {}
    loader = threading.Thread(target=lambda: result.update(r=_load(addr, 2.5, threads=6)))
    loader.start()
    wait_until(lambda: sum(w["requests"] for w in b.stats()["workers"]) >= 10, what="load")
    b.send_signal(signal.SIGHUP)
    b.wait_ready(count=2, timeout=30)
    loader.join(90)
    ok, failures = result["r"]  # type: ignore[misc]
    assert failures == []
    assert ok > 10
    assert b.address_of("uwsgi socket 0") == addr
    assert "uwsgi socket 0 inherited TCP address" in b.log()
    after = set(worker_pids(b.stats()))
    assert after.isdisjoint(before) and 0 not in after
    assert b.stats()["pid"] == b.pid  # same master pid: re-exec, not a new process
    assert http_get(addr) == (200, b"Hello World")


def test_graceful_reload_finishes_in_flight_request(start_brood, hello_app) -> None:
    b = start_brood("--socket", "127.0.0.1:0", "--wsgi-file", hello_app,
                    "--stats", "127.0.0.1:0")
    addr = b.address_of("uwsgi socket 0")
    got: dict[str, object] = {}
    slow = threading.Thread(target=lambda: got.update(r=uwsgi_request(addr, "/sleep?s=1.5")))
    slow.start()
    wait_until(lambda: b.stats()["workers"][0]["status"] == "busy", what="request in flight")
    b.send_signal(signal.SIGHUP)
    slow.join(30)
    assert got["r"] == (200, b"slept\n")
    b.wait_ready(count=2)


def test_sigterm_is_a_brutal_reload(start_brood, hello_app) -> None:
    b = start_brood("--http-socket", "127.0.0.1:0", "--wsgi-file", hello_app)
    addr = b.address_of("uwsgi socket 0")
    b.send_signal(signal.SIGTERM)
    b.wait_ready(count=2)
    assert b.proc.poll() is None
    assert http_get(addr) == (200, b"Hello World")


def test_die_on_term_shuts_down(start_brood, hello_app) -> None:
    b = start_brood("--http-socket", "127.0.0.1:0", "--wsgi-file", hello_app, "--die-on-term")
    b.send_signal(signal.SIGTERM)
    assert b.wait_exit() == 0
    assert "goodbye to uWSGI." in b.log()


def test_touch_reload(start_brood, hello_app, tmp_path) -> None:
    trigger = tmp_path / "reload.trigger"
    trigger.write_text("1")
    b = start_brood("--http-socket", "127.0.0.1:0", "--wsgi-file", hello_app,
                    "--touch-reload", str(trigger), "--stats", "127.0.0.1:0")
    first = worker_pids(b.stats())
    st = trigger.stat()
    os.utime(trigger, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    b.wait_for_log(r"has been touched\.\.\. grace them all")
    b.wait_ready(count=2)
    assert worker_pids(b.stats()) != first
    assert http_get(b.address_of("uwsgi socket 0")) == (200, b"Hello World")


def test_a_reload_whose_config_no_longer_loads_is_refused(start_brood, hello_app,
                                                          tmp_path) -> None:
    """An ini file edited with a mistake, then SIGHUP: the master says why and serves
    on with what it runs (the next incarnation would have stopped at once, taking the
    service down)."""
    ini = tmp_path / "app.ini"
    ini.write_text(f"[uwsgi]\nhttp-socket = 127.0.0.1:0\nwsgi-file = {hello_app}\n")
    b = start_brood("--ini", str(ini))
    addr = b.address_of("uwsgi socket 0")
    ini.write_text(ini.read_text() + "processes = lots\n")
    b.send_signal(signal.SIGHUP)
    b.wait_for_log(r"reload refused, the config no longer loads: .*app\.ini:4: "
                   r"--processes: expected a whole number, got 'lots'")
    assert b.proc.poll() is None
    assert http_get(addr) == (200, b"Hello World")
    assert "binary reloading" not in b.log()


def test_a_reload_with_the_chdir_directory_deleted_still_happens(start_brood, hello_app,
                                                                 tmp_path) -> None:
    """A deploy pointed --chdir's link at a new release and removed the old one, the
    master's working directory: the reload's config check went through os.getcwd()
    and the master died of a traceback. A --chdir that is gone is refused."""
    (tmp_path / "release1").mkdir()
    (tmp_path / "release2").mkdir()
    current = tmp_path / "current"
    current.symlink_to("release1")
    b = start_brood("--http-socket", "127.0.0.1:0", "--wsgi-file", hello_app,
                    "--chdir", str(current))
    addr = b.address_of("uwsgi socket 0")
    current.unlink()
    current.symlink_to("release2")
    (tmp_path / "release1").rmdir()
    b.send_signal(signal.SIGHUP)
    b.wait_ready(count=2)
    assert b.proc.poll() is None and "Traceback" not in b.log()
    assert http_get(addr) == (200, b"Hello World")
    current.unlink()  # now --chdir itself is gone: refused, the master serves on
    b.send_signal(signal.SIGHUP)
    b.wait_for_log(r"reload refused, the config no longer loads: --chdir .*: no such "
                   r"directory")
    assert b.proc.poll() is None
    assert http_get(addr) == (200, b"Hello World")


APP_V1 = '''
def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"v1"]
'''


def test_a_reload_whose_app_no_longer_imports_is_refused(start_brood, tmp_path) -> None:
    """A deploy with a syntax error, then SIGHUP: the new code is imported by a check
    first; it fails, the reload is refused with the app's own traceback, and the old
    code serves on. Once fixed, the next SIGHUP reloads."""
    app = tmp_path / "app.py"
    app.write_text(APP_V1)
    b = start_brood("--http-socket", "127.0.0.1:0", "--wsgi-file", str(app), "-p", "2")
    addr = b.address_of("uwsgi socket 0")
    app.write_text(APP_V1 + "def broken(:\n")
    b.send_signal(signal.SIGHUP)
    b.wait_for_log(r"reload refused, the app no longer loads: wsgi-file .*app\.py failed: "
                   r"SyntaxError")
    log = b.log()
    assert f'app check:   File "{app}", line 5' in log
    assert "loader.py" not in log  # brood's own frames are left out
    assert b.proc.poll() is None and "binary reloading" not in log
    assert http_get(addr) == (200, b"v1")
    app.write_text(APP_V1.replace("v1", "v2"))
    b.send_signal(signal.SIGHUP)
    b.wait_ready(count=2)
    assert http_get(addr) == (200, b"v2")


def test_a_shutdown_during_the_app_check_stops_it(start_brood, tmp_path) -> None:
    """SIGINT while the check imports a slow app: the master exits at once and the
    check is killed, not left importing."""
    marker = tmp_path / "slow"
    app = tmp_path / "app.py"
    app.write_text(f"import os, time\nif os.path.exists({str(marker)!r}):\n"
                   f"    time.sleep(60)\n{APP_V1}")
    b = start_brood("--http-socket", "127.0.0.1:0", "--wsgi-file", str(app))
    marker.write_text("")
    b.send_signal(signal.SIGHUP)
    match = b.wait_for_log(r"checking that the app still loads \(pid: (\d+)\)")[0]
    check = int(match.group(1))
    b.send_signal(signal.SIGINT)
    assert b.wait_exit(timeout=10) == 0
    wait_until(lambda: not pid_alive(check), timeout=5, what="the check gone")
    assert "binary reloading" not in b.log()


def _gated_app(tmp_path) -> tuple:
    """An app whose import, once ``slow`` exists, says so in ``slow`` and waits for
    ``gate``: a check held open, known to have read the file."""
    slow, gate, app = tmp_path / "slow", tmp_path / "gate", tmp_path / "app.py"
    app.write_text(f"import os, time\nif os.path.exists({str(slow)!r}):\n"
                   f"    open({str(slow)!r}, 'w').write('importing')\n"
                   f"    for _ in range(3000):\n"
                   f"        if os.path.exists({str(gate)!r}):\n            break\n"
                   f"        time.sleep(0.01)\n{APP_V1}")
    return app, slow, gate


def test_a_reload_asked_during_the_check_checks_the_newer_code(start_brood,
                                                               tmp_path) -> None:
    """SIGHUP starts a check of good code; a broken deploy lands and SIGHUP comes again
    while it runs: the first check passing must not re-exec into the broken code."""
    app, slow, gate = _gated_app(tmp_path)
    b = start_brood("--http-socket", "127.0.0.1:0", "--wsgi-file", str(app))
    slow.write_text("")
    b.send_signal(signal.SIGHUP)
    b.wait_for_log(r"checking that the app still loads")
    wait_until(lambda: slow.read_text() == "importing", timeout=10, what="check importing")
    app.write_text("raise RuntimeError('broken deploy')\n")
    b.send_signal(signal.SIGHUP)
    b.wait_for_log(r"reload asked again while the app check runs")
    gate.write_text("")
    b.wait_for_log(r"reload refused, the app no longer loads: .*broken deploy")
    assert "the app check passed: checking again" in b.log()
    assert "binary reloading" not in b.log() and b.proc.poll() is None
    assert http_get(b.address_of("uwsgi socket 0")) == (200, b"v1")


def test_sigterm_during_the_check_makes_the_reload_brutal(start_brood, tmp_path) -> None:
    app, slow, gate = _gated_app(tmp_path)
    b = start_brood("--http-socket", "127.0.0.1:0", "--wsgi-file", str(app))
    slow.write_text("")
    b.send_signal(signal.SIGHUP)
    b.wait_for_log(r"checking that the app still loads")
    b.send_signal(signal.SIGTERM)
    b.wait_for_log(r"reload asked again while the app check runs")
    gate.write_text("")
    b.wait_ready(count=2)
    assert "brutally killing workers" in b.log()
    assert "gracefully killing workers" not in b.log()


def test_an_app_binding_a_port_at_import_still_reloads(start_brood, tmp_path) -> None:
    """A metrics endpoint bound at import: the running app holds the port, so the check's
    import cannot bind it. That says nothing of the new code: the reload goes ahead."""
    spare = socket.socket()
    spare.bind(("127.0.0.1", 0))
    port = spare.getsockname()[1]
    spare.close()
    app = tmp_path / "app.py"
    app.write_text(f"import socket\nmetrics = socket.socket()\n"
                   f"metrics.bind(('127.0.0.1', {port}))\n{APP_V1}")
    b = start_brood("--http-socket", "127.0.0.1:0", "--wsgi-file", str(app))
    b.send_signal(signal.SIGHUP)
    b.wait_ready(count=2)
    assert "the app check cannot tell: the app binds an address" in b.log()
    assert "reload refused" not in b.log()


def test_no_reload_app_check_reloads_without_it(start_brood, tmp_path) -> None:
    app = tmp_path / "app.py"
    app.write_text(APP_V1)
    b = start_brood("--http-socket", "127.0.0.1:0", "--wsgi-file", str(app),
                    "--no-reload-app-check")
    app.write_text(APP_V1.replace("v1", "v2"))
    b.send_signal(signal.SIGHUP)
    b.wait_ready(count=2)
    assert "checking that the app still loads" not in b.log()
    assert http_get(b.address_of("uwsgi socket 0")) == (200, b"v2")


@pytest.mark.parametrize("line, said", [
    ("static-map = /static", "--static-map /static: "),
    ("mount = /app", "--mount"),
    ("need-plugin = php", "--need-plugin php: "),
])
def test_a_reload_into_what_the_start_refuses_is_refused(start_brood, hello_app, tmp_path,
                                                         line, said) -> None:
    """The reload's config check refuses what the re-executed master would (it went
    ahead, and the new master stopped at its start: nothing served)."""
    ini = tmp_path / "app.ini"
    ini.write_text(f"[uwsgi]\nhttp-socket = 127.0.0.1:0\nwsgi-file = {hello_app}\n")
    b = start_brood("--ini", str(ini))
    ini.write_text(ini.read_text() + line + "\n")
    b.send_signal(signal.SIGHUP)
    b.wait_for_log("reload refused, the config no longer loads: " + re.escape(said))
    assert b.proc.poll() is None
    assert http_get(b.address_of("uwsgi socket 0")) == (200, b"Hello World")


def test_a_reload_into_a_bad_log_format_is_refused(start_brood, hello_app, tmp_path) -> None:
    ini = tmp_path / "app.ini"
    ini.write_text(f"[uwsgi]\nhttp-socket = 127.0.0.1:0\nwsgi-file = {hello_app}\n")
    b = start_brood("--ini", str(ini))
    ini.write_text(ini.read_text() + "log-format = %(uri) %(status\n")
    b.send_signal(signal.SIGHUP)
    b.wait_for_log(r"reload refused, the config no longer loads: --log-format: unclosed %\(")
    assert b.proc.poll() is None
    assert http_get(b.address_of("uwsgi socket 0")) == (200, b"Hello World")

