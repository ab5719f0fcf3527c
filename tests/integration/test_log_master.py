"""uWSGI's logging options on a real brood: loggers and the request logger, rotation and
reopening (by size, FIFO L/l, touch files), reloads, datagram loggers, the log master's
own failures, and what stays as cheap as before (no log master without an option)."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from _broodkit import BIND_LINE, http_get, wait_until, write_fifo

APP = '''
import os, sys

def application(environ, start_response):
    path = environ.get("PATH_INFO", "")
    if path.startswith("/big/"):
        sys.stderr.write("BIG %d " % os.getpid() + "x" * int(path[5:]) + " END\\n")
        sys.stderr.flush()
    elif path == "/split":
        sys.stdout.write("part1-")
        sys.stdout.flush()
        sys.stdout.write("part2\\n")
        sys.stdout.flush()
    else:
        print("APP " + path, flush=True)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]
'''
WORKER_LINE = re.compile(r"\[pid: \d+\|app: 0\|req: \d+/\d+\] 127\.0\.0\.1 \(\) \{\d+ vars in "
                         r"\d+ bytes\} \[[^]]+\] GET (/\S*) => generated \d+ bytes in \d+ "
                         r"msecs \(HTTP/1\.[01] 200\) \d+ headers in \d+ bytes \(1 switches "
                         r"on core 0\)")
ROUTER_LINE = re.compile(r"\[pid: \d+\|router: http\] 127\.0\.0\.1 \(\) \{node [^}]+\} "
                         r"\[[^]]+\] GET (/\S*) => generated \d+ bytes in \d+ msecs "
                         r"\(HTTP/1\.[01] 200\)")
NOTICE = re.compile(r"\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4} - logsize: \d+, triggering "
                    r"rotation to (\S+)\.\.\.")


@pytest.fixture
def app(tmp_path: Path) -> str:
    path = tmp_path / "printer.py"
    path.write_text(APP)
    return str(path)


def text(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def wait_file(path: Path, pattern: str, count: int = 1, timeout: float = 20.0) -> str:
    """The file's text once ``pattern`` is found ``count`` times in it."""
    regex = re.compile(pattern)
    return wait_until(lambda: (t := text(path)) and len(regex.findall(t)) >= count and t,
                      timeout=timeout, what=f"{pattern!r} x{count} in {path}")


def bound(log: str, label: str) -> str:
    return [m["addr"] for m in BIND_LINE.finditer(log) if m["label"].endswith(label)][-1]


def log_master_pid(log: str) -> int:
    return int(re.findall(r"log master started \(pid: (\d+)\)", log)[-1])


def children_of(pid: int) -> set[int]:
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.add(int(entry))
    return found


def get_all(address: str, paths: list[str]) -> None:
    for path in paths:
        assert http_get(address, path)[0] == 200


def _routed(tmp_path: Path) -> list[str]:
    """An HTTP router to this instance's workers, named (not embedded mode, where the
    router writes no line for the answers the workers write one for)."""
    node = str(tmp_path / "w.sock")
    return ["--http", "127.0.0.1:0", "--http-to", node, "--socket", node]


def test_loggers_and_the_request_logger_split_the_lines(start_brood, app, tmp_path) -> None:
    """App output and brood's lines to --logger (every unnamed one); request lines, the
    workers' and the HTTP router's, to --req-logger only; a line printed in two writes
    stays one line."""
    every, req = tmp_path / "all.log", tmp_path / "req.log"
    b = start_brood(*_routed(tmp_path), "--wsgi-file", app, "--processes", "2",
                    "--logger", f"file:{every}", "--logger", "stdio",
                    "--req-logger", f"file:{req}")
    front = b.address_of("http socket 0")
    get_all(front, [f"/r{i}" for i in range(5)] + ["/split"])
    lines = wait_file(req, r"\n", count=12).splitlines()
    assert sorted(m[1] for line in lines if (m := WORKER_LINE.fullmatch(line))) == \
        sorted(["/split"] + [f"/r{i}" for i in range(5)])
    assert sorted(m[1] for line in lines if (m := ROUTER_LINE.fullmatch(line))) == \
        sorted(["/split"] + [f"/r{i}" for i in range(5)])
    assert len(lines) == 12
    output = wait_file(every, r"part1-part2\n")
    assert all(f"APP /r{i}\n" in output for i in range(5))
    assert "spawned uWSGI worker 2" in output and "log master started" in output
    assert "generated" not in output and "generated" not in b.log()
    assert "APP /r4" in b.log()  # stdio: the plain log, here the test's


def _start_logto(start_brood, app, log: Path, *extra: str, processes: int = 2):
    b = start_brood("--http-socket", "127.0.0.1:0", "--wsgi-file", app, "--processes",
                    str(processes), "--logto", str(log), *extra, wait=False)
    wait_file(log, r"brood: ready")
    return b, bound(text(log), "uwsgi socket 0")


def test_rotation_by_size_loses_and_tears_no_line(start_brood, app, tmp_path) -> None:
    log = tmp_path / "main.log"
    b, address = _start_logto(start_brood, app, log, "--log-maxsize", "3000")
    paths = [f"/n{i}" for i in range(120)]
    threads = [threading.Thread(target=get_all, args=(address, paths[k::3])) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wait_until(lambda: list(tmp_path.glob("main.log.*")), what="a rotated file")
    b.send_signal(signal.SIGINT)
    assert b.wait_exit() == 0
    rotated = sorted(tmp_path.glob("main.log.*"))
    seen: list[str] = []
    for path in [*rotated, log]:
        for line in text(path).splitlines():
            if "GET" in line:
                m = WORKER_LINE.fullmatch(line)
                assert m, f"torn line in {path.name}: {line!r}"
                seen.append(m[1])
    assert sorted(seen) == sorted(paths)
    for path in rotated:
        assert re.fullmatch(r"main\.log\.\d{10}", path.name)
        last = text(path).splitlines()[-1]
        assert (m := NOTICE.fullmatch(last)) and m[1] == str(path), last
    assert "goodbye to uWSGI." in text(log)


def test_fifo_and_touch_files_rotate_and_reopen_every_process(start_brood, app,
                                                              tmp_path) -> None:
    log, fifo = tmp_path / "main.log", tmp_path / "master.fifo"
    rotate_touch, reopen_touch = tmp_path / "rotate.touch", tmp_path / "reopen.touch"
    b, address = _start_logto(start_brood, app, log, "--master-fifo", str(fifo),
                              "--touch-logrotate", str(rotate_touch),
                              "--touch-logreopen", str(reopen_touch), "--log-backupname",
                              str(tmp_path / "old.log"))
    get_all(address, ["/before-L"])
    wait_file(log, r"GET /before-L")
    write_fifo(fifo, b"L")
    old = tmp_path / "old.log"
    wait_file(old, r"triggering rotation to")
    get_all(address, ["/after-L"])
    assert WORKER_LINE.search(wait_file(log, r"GET /after-L"))  # a worker's, not the master's
    assert "/before-L" in text(old) and "/after-L" not in text(old)

    log.rename(tmp_path / "moved.log")
    write_fifo(fifo, b"l")
    wait_file(log, r"\[\d+\] \S*main\.log reopened\.")
    get_all(address, ["/after-l"])
    wait_file(log, r"GET /after-l")
    assert "/after-l" not in text(tmp_path / "moved.log")
    assert re.search(r"\[\d+\] logsize: \d+, triggering log-reopen\.\.\.",
                     text(tmp_path / "moved.log"))

    rotate_touch.touch()
    wait_until(lambda: "/after-l" in text(old), what="the touch-logrotate rotation")
    log.rename(tmp_path / "moved2.log")
    reopen_touch.touch()
    wait_file(log, r"reopened\.")
    get_all(address, ["/after-touch"])
    wait_file(log, r"GET /after-touch")


def test_reload_keeps_the_log_master_and_every_line(start_brood, app, tmp_path) -> None:
    """SIGHUP with routers draining: the same log master reads on, no request is missing
    from the request log, and it still takes commands (FIFO L) afterwards."""
    req, fifo = tmp_path / "req.log", tmp_path / "master.fifo"
    b = start_brood(*_routed(tmp_path), "--wsgi-file", app, "--processes", "2",
                    "--http-processes", "2", "--logger", "stdio",
                    "--req-logger", f"file:{req}", "--master-fifo", str(fifo))
    front = b.address_of("http socket 0")
    pid = log_master_pid(b.log())
    answered: list[str] = []
    stop = threading.Event()

    def client() -> None:
        i = 0
        while not stop.is_set():
            path = f"/c{i}"
            try:
                if http_get(front, path, timeout=5)[0] == 200:
                    answered.append(path)
            except OSError:
                pass
            i += 1

    thread = threading.Thread(target=client)
    thread.start()
    try:
        wait_until(lambda: len(answered) > 20, what="answers before the reload")
        b.send_signal(signal.SIGHUP)
        b.wait_ready(count=2)
        count = len(answered)
        wait_until(lambda: len(answered) > count + 20, what="answers after the reload")
    finally:
        stop.set()
        thread.join()
    assert f"log master (pid: {pid}) carries on" in b.log()
    assert pid in children_of(b.pid)
    write_fifo(fifo, b"L")
    wait_until(lambda: list(tmp_path.glob("req.log.*")), what="FIFO L after the reload")
    b.send_signal(signal.SIGINT)
    assert b.wait_exit() == 0
    lines = "".join(text(p) for p in [*tmp_path.glob("req.log.*"), req]).splitlines()
    workers = sorted(m[1] for line in lines if (m := WORKER_LINE.fullmatch(line)))
    routers = sorted(m[1] for line in lines if (m := ROUTER_LINE.fullmatch(line)))
    assert workers == routers == sorted(answered)


def test_changed_logging_options_retire_the_old_log_master(start_brood, app,
                                                           tmp_path) -> None:
    first, second = tmp_path / "first.log", tmp_path / "second.log"
    ini = tmp_path / "app.ini"
    body = (f"[uwsgi]\nhttp-socket = 127.0.0.1:0\nwsgi-file = {app}\nlogger = stdio\n"
            "logger = file:{}\n")
    ini.write_text(body.format(first))
    b = start_brood(str(ini))
    address = b.address_of("uwsgi socket 0")
    old = log_master_pid(b.log())
    get_all(address, ["/one"])
    wait_file(first, "APP /one")
    ini.write_text(body.format(second))
    b.send_signal(signal.SIGHUP)
    b.wait_ready(count=2)
    get_all(b.address_of("uwsgi socket 0"), ["/two"])
    wait_file(second, "APP /two")
    assert f"log master (pid: {old}) retires" in b.log()
    assert "APP /two" not in text(first)
    wait_until(lambda: old not in children_of(b.pid), what="the old log master's exit")


@pytest.fixture
def udp():
    socks = []

    def bind() -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(10)
        socks.append(sock)
        return sock

    yield bind
    for sock in socks:
        sock.close()


def datagrams_until(sock: socket.socket, marker: bytes) -> list[bytes]:
    got = []
    while not got or marker not in got[-1]:
        got.append(sock.recv(65536))
    return got


def test_syslog_and_socket_loggers_send_a_datagram_per_line(start_brood, app, udp) -> None:
    syslog, plain, requests = udp(), udp(), udp()
    b = start_brood("--http-socket", "127.0.0.1:0", "--wsgi-file", app,
                    "--logger", "stdio",
                    "--logger", f"rsyslog:127.0.0.1:{syslog.getsockname()[1]},myapp",
                    "--log-socket", f"127.0.0.1:{plain.getsockname()[1]},web|",
                    "--req-logger", f"socket:127.0.0.1:{requests.getsockname()[1]}")
    get_all(b.address_of("uwsgi socket 0"), ["/dgram"])
    got = datagrams_until(syslog, b"APP /dgram")
    assert all(re.fullmatch(rb"<29>\w{3} [ \d]\d \d\d:\d\d:\d\d myapp: [^\n]*", d) for d in got)
    assert any(b"spawned uWSGI worker 1" in d for d in got)
    got = datagrams_until(plain, b"APP /dgram")
    assert got[-1] == b"web|APP /dgram\n" and all(d.startswith(b"web|") for d in got)
    [line] = datagrams_until(requests, b"GET /dgram")
    assert WORKER_LINE.fullmatch(line.decode().rstrip("\n"))


@pytest.mark.parametrize(("args", "says"), [
    (["--logger", "zeromq:tcp://127.0.0.1:5555"], "--logger zeromq:tcp://127.0.0.1:5555: "
     "no logger 'zeromq' in brood"),
    (["--logger", "file:/nonexistent/dir/a.log"], "--logger file:/nonexistent/dir/a.log: "
     "cannot open /nonexistent/dir/a.log"),
    (["--log-route", "nobody ^x", "--logger", "file:/tmp/x"], "no --logger is named 'nobody'"),
    (["--req-logger", "syslog:app,nofacility"], "unknown syslog facility 'nofacility'"),
    (["--log-encoder", "base64 x"], "--log-encoder base64 x: no log encoder 'base64'"),
    (["--log-req-encoder", "msgpack"], "--log-req-encoder msgpack: the msgpack encoder "
     "comes with uWSGI's msgpack plugin, which brood does not have"),
])
def test_what_brood_cannot_log_to_stops_the_start(args, says, tmp_path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "brood", "--http-socket", "127.0.0.1:0", "--wsgi-file",
         "nothing.py", *args], capture_output=True, text=True, timeout=30, cwd=tmp_path)
    assert done.returncode != 0
    assert says in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_long_lines_of_concurrent_workers_arrive_whole(start_brood, app, tmp_path) -> None:
    """200 KB lines printed at once by 4 workers: never torn or mixed (a shared pipe
    keeps only writes up to 4096 bytes whole)."""
    every = tmp_path / "all.log"
    b = start_brood("--http-socket", "127.0.0.1:0", "--wsgi-file", app, "--processes", "4",
                    "--logger", "stdio", "--logger", f"file:{every}")
    address = b.address_of("uwsgi socket 0")
    size = 200_000
    threads = [threading.Thread(target=get_all, args=(address, [f"/big/{size}"] * 5))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    output = wait_file(every, r"BIG \d+ x+ END\n", count=20, timeout=30)
    big = [line for line in output.splitlines() if line.startswith("BIG")]
    assert len(big) == 20
    assert all(re.fullmatch(rf"BIG \d+ x{{{size}}} END", line) for line in big)


def test_a_log_master_that_dies_is_respawned_on_the_same_pipes(start_brood, app,
                                                               tmp_path) -> None:
    """... and its relative paths still name the same files after --chdir."""
    every = tmp_path / "all.log"
    (tmp_path / "elsewhere").mkdir()
    b = start_brood("--http-socket", "127.0.0.1:0", "--wsgi-file", app, "--logger", "stdio",
                    "--logger", "file:all.log", "--chdir", "elsewhere", cwd=str(tmp_path))
    pid = log_master_pid(b.log())
    os.kill(pid, signal.SIGKILL)
    b.wait_for_log(rf"log master \(pid: {pid}\) died \(killed by signal 9\), respawning")
    new = log_master_pid(wait_until(
        lambda: (t := b.log()) and log_master_pid(t) != pid and t, what="a new log master"))
    get_all(b.address_of("uwsgi socket 0"), ["/after-kill"])
    wait_file(every, "APP /after-kill")
    assert new in children_of(b.pid)
    assert not (tmp_path / "elsewhere" / "all.log").exists()


def test_plain_logto_runs_no_log_master(start_brood, app, tmp_path) -> None:
    """The default path stays as it was: workers write to the file themselves. With
    --log-truncate the file starts empty; --log-date formats brood's own lines only."""
    log = tmp_path / "main.log"
    log.write_text("left from before\n")
    b, address = _start_logto(start_brood, app, log, "--log-truncate",
                              "--log-date=[%Y-%m-%d %H:%M:%S]", processes=2)
    get_all(address, ["/plain"])
    output = wait_file(log, r"GET /plain")
    assert "left from before" not in output and "log master" not in output
    assert re.search(r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\] - spawned uWSGI worker 1 ",
                     output, re.M)
    assert any(WORKER_LINE.fullmatch(line) for line in output.splitlines())
    workers = {int(p) for p in re.findall(r"spawned uWSGI worker \d \(pid: (\d+)", output)}
    assert children_of(b.pid) == workers


def test_log_reopen_follows_a_moved_file_on_reload(start_brood, app, tmp_path) -> None:
    log, moved = tmp_path / "main.log", tmp_path / "moved.log"
    b, address = _start_logto(start_brood, app, log, "--log-reopen")
    log.rename(moved)
    b.send_signal(signal.SIGHUP)
    wait_file(log, r"brood: ready")
    get_all(bound(text(log), "uwsgi socket 0"), ["/after-reload"])
    wait_file(log, r"GET /after-reload")
    assert "binary reloading brood" in text(moved) and "/after-reload" not in text(moved)


def test_without_log_reopen_a_reload_keeps_the_moved_file(start_brood, app, tmp_path) -> None:
    log, moved = tmp_path / "main.log", tmp_path / "moved.log"
    b, address = _start_logto(start_brood, app, log)
    log.rename(moved)
    b.send_signal(signal.SIGHUP)
    wait_file(moved, r"brood: ready", count=2)
    assert not log.exists()


@pytest.mark.parametrize("log_master", [False, True])
def test_logto_host_port_logs_over_udp(start_brood, app, udp, tmp_path, log_master) -> None:
    """uWSGI's --logto HOST:PORT: the log goes there as datagrams (brood made a file of
    that name); through the log master one datagram per whole line."""
    sock = udp()
    start_brood("--http-socket", "127.0.0.1:0", "--wsgi-file", app,
                "--logto", f"127.0.0.1:{sock.getsockname()[1]}",
                *(["--log-master"] if log_master else []), wait=False, cwd=str(tmp_path))
    got = datagrams_until(sock, b"brood: ready")
    address = bound(b"".join(got).decode(), "uwsgi socket 0")
    get_all(address, ["/over-udp"])
    got = datagrams_until(sock, b"GET /over-udp")
    assert WORKER_LINE.fullmatch(got[-1].decode().rstrip("\n"))
    if log_master:
        assert b"APP /over-udp\n" in got
    assert not list(tmp_path.glob("127.0.0.1*"))


def test_a_stalled_log_master_makes_writers_wait_and_loses_nothing(start_brood, app,
                                                                   tmp_path) -> None:
    """Between a process and the log master nothing is dropped: with the log master
    stopped, a worker fills its pipe (1 MiB) and waits; once it reads again every line
    arrives."""
    every = tmp_path / "all.log"
    b = start_brood("--http-socket", "127.0.0.1:0", "--wsgi-file", app, "--logger", "stdio",
                    "--logger", f"file:{every}")
    address = b.address_of("uwsgi socket 0")
    pid = log_master_pid(b.log())
    os.kill(pid, signal.SIGSTOP)
    done = threading.Event()
    thread = threading.Thread(target=lambda: (get_all(address, ["/big/100000"] * 20),
                                              done.set()))
    try:
        thread.start()
        assert not done.wait(2.0)  # 2 MB of lines: the worker waits on its full pipe
    finally:
        os.kill(pid, signal.SIGCONT)
    thread.join(30)
    assert done.is_set()
    output = wait_file(every, r"BIG \d+ x+ END\n", count=20)
    assert len(re.findall(r"^BIG \d+ x{100000} END$", output, re.M)) == 20


def test_lines_a_datagram_logger_cannot_send_are_counted_and_said(start_brood, app,
                                                                   tmp_path) -> None:
    """A datagram logger never makes anyone wait: what it cannot send is counted and the
    plain log says so (every 10 s, and at the end)."""
    b = start_brood("--http-socket", "127.0.0.1:0", "--wsgi-file", app, "--logger", "stdio",
                    "--logger", f"socket:{tmp_path / 'nobody-reads.sock'}")
    get_all(b.address_of("uwsgi socket 0"), ["/x"] * 3)
    b.wait_for_log("APP /x", count=3)
    b.send_signal(signal.SIGINT)
    assert b.wait_exit() == 0
    log, report, _ = re.split(r"(.* - log master: \d+ line\(s\) lost on socket:\S+ "
                              r"\(No such file or directory\)\n)", b.log())
    # every line the plain log got (stdio), the socket logger lost, and said so
    assert re.search(rf"log master: {len(log.splitlines())} line", report), (report, log)


@pytest.mark.parametrize("log_reopen", [False, True])
def test_a_reload_opens_moved_logger_files_again_as_uwsgi(start_brood, app, tmp_path,
                                                          log_reopen) -> None:
    """uWSGI's new master opens its loggers afresh, and --logto's file only with
    --log-reopen: after logrotate's mv and a SIGHUP, new lines go to the new files."""
    log, every = tmp_path / "main.log", tmp_path / "all.log"
    b, _ = _start_logto(start_brood, app, log, "--logger", f"file:{every}", "--logger",
                        "stdio", *(["--log-reopen"] if log_reopen else []))
    wait_file(every, "brood: ready")
    every.rename(tmp_path / "all.moved")
    log.rename(tmp_path / "main.moved")
    b.send_signal(signal.SIGHUP)
    wait_file(every, "brood: ready")
    assert "binary reloading brood" in text(tmp_path / "all.moved")
    plain = log if log_reopen else tmp_path / "main.moved"
    assert wait_file(plain, "brood: ready", count=1 if log_reopen else 2)
    assert log.exists() == log_reopen
    assert "reopened" not in text(every) + text(plain)  # (silently, as a new process)


def test_a_reload_to_a_logger_that_cannot_open_is_refused(start_brood, app, tmp_path) -> None:
    ini = tmp_path / "app.ini"
    body = f"[uwsgi]\nhttp-socket = 127.0.0.1:0\nwsgi-file = {app}\nlogger = stdio\n"
    ini.write_text(body + f"logger = file:{tmp_path / 'a.log'}\n")
    b = start_brood(str(ini))
    ini.write_text(body + "logger = file:/nonexistent/dir/b.log\n")
    b.send_signal(signal.SIGHUP)
    b.wait_for_log(r"reload refused, the config no longer loads: --logger "
                   r"file:/nonexistent/dir/b.log: cannot open")
    get_all(b.address_of("uwsgi socket 0"), ["/still"])
    wait_file(tmp_path / "a.log", "APP /still")


def test_log_encoders_shape_each_loggers_lines(start_brood, app, tmp_path) -> None:
    """--log-encoder on every general line, in order, those bound to the routed logger
    ``js`` on its lines only (JSON, one record a line), --log-req-encoder on the request
    lines of the --req-logger; the log master starts for them."""
    js, req = tmp_path / "js.log", tmp_path / "req.log"
    b = start_brood("--http-socket", "127.0.0.1:0", "--wsgi-file", app, "--processes", "2",
                    "--logger", f"js file:{js}", "--log-route", "js ^APP",
                    "--log-encoder", "prefix [app] ",
                    "--log-encoder", 'json:js {"msg":"${msg}","t":${unix}}',
                    "--log-encoder", "nl:js",
                    "--req-logger", f"file:{req}",
                    "--log-req-encoder", "format ${unix} ${msg}", "--log-req-encoder", "nl")
    paths = ["/r0", '/q"x', "/tab%09x"]
    get_all(b.address_of("uwsgi socket 0"), [p.replace('"', "%22") for p in paths])
    records = [json.loads(line) for line in
               wait_file(js, r"\n", count=len(paths)).splitlines()]
    assert [r["msg"] for r in records] == ["[app] APP /r0", '[app] APP /q"x',
                                           "[app] APP /tab\tx"]
    assert all(abs(r["t"] - time.time()) < 60 for r in records)
    lines = wait_file(req, r"\n", count=len(paths)).splitlines()
    for line, path in zip(lines, paths, strict=True):
        epoch, _, rest = line.partition(" ")
        assert abs(int(epoch) - time.time()) < 60
        m = WORKER_LINE.fullmatch(rest)
        assert m and m[1] == path.replace('"', "%22").replace("\t", "%09"), line
    plain = b.log().splitlines()  # (the log master starts before the first line)
    assert all(line.startswith("[app] ") for line in plain), plain
    assert "[app] *** Starting brood" in plain[0] and "APP /" not in b.log()


def test_loggers_list_prints_brood_s_and_starts_as_uwsgi_does(start_brood, app) -> None:
    b = start_brood("--http-socket", "127.0.0.1:0", "--wsgi-file", app, "--loggers-list")
    assert "\n*** brood loggers ***\nfile\nfd\nstdio\nsyslog\nrsyslog\nsocket\n--- end " \
        "of loggers list ---\n" in b.log()
    assert http_get(b.address_of("uwsgi socket 0"), "/")[0] == 200
