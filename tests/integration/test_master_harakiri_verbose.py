"""--harakiri-verbose: the master logs what the worker it kills was serving (each core's
request, published by the worker in the scoreboard), as uWSGI's worker status dump."""

from __future__ import annotations

import re
import threading
import time

from _broodkit import http_get, worker_pids

CORE_LINE = re.compile(r"HARAKIRI \[core (\d+)\] 127\.0\.0\.1 - GET (\S+) since (\d+)")


def _stuck(address: str, paths: list[str]) -> list[threading.Thread]:
    """One thread per path, each waiting on a request harakiri is to cut."""
    def get(path: str) -> None:
        try:
            http_get(address, path, timeout=30)
        except OSError:
            pass  # the worker died mid-request: no answer

    threads = [threading.Thread(target=get, args=(p,), daemon=True) for p in paths]
    for t in threads:
        t.start()
    return threads


def test_verbose_harakiri_logs_each_cores_request(start_brood, hello_app) -> None:
    b = start_brood("--http-socket", "127.0.0.1:0", "--wsgi-file", hello_app,
                    "--threads", "2", "--harakiri", "2", "--harakiri-verbose",
                    "--stats", "127.0.0.1:0")
    pid = worker_pids(b.stats())[0]
    started = time.time()
    threads = _stuck(b.address_of("uwsgi socket 0"), ["/sleep?s=20", "/sleep?s=21"])
    b.wait_for_log(r"HARAKIRI !!! end of worker 1 status !!!")
    b.wait_for_log(rf"worker 1 \(pid: {pid}\) died \(killed by signal 9\), respawning")
    for t in threads:
        t.join(30)
    log = b.log()
    head = log.index(f"*** HARAKIRI ON WORKER 1 (pid: {pid}, try: 1) ***")
    dump = log[log.index("HARAKIRI !!! worker 1 status !!!", head):]
    found = sorted((path, core) for core, path, _ in CORE_LINE.findall(dump))
    assert [path for path, _ in found] == ["/sleep?s=20", "/sleep?s=21"], log
    assert sorted(core for _, core in found) == ["0", "1"]
    since = [int(s) for _, _, s in CORE_LINE.findall(dump)]
    assert all(int(started) - 1 <= s <= time.time() for s in since)
    b.wait_ready()
    assert http_get(b.address_of("uwsgi socket 0")) == (200, b"Hello World")


def test_plain_harakiri_logs_no_request_details(start_brood, hello_app) -> None:
    b = start_brood("--http-socket", "127.0.0.1:0", "--wsgi-file", hello_app,
                    "--harakiri", "1", "--stats", "127.0.0.1:0")
    pid = worker_pids(b.stats())[0]
    threads = _stuck(b.address_of("uwsgi socket 0"), ["/sleep?s=20"])
    b.wait_for_log(rf"worker 1 \(pid: {pid}\) died \(killed by signal 9\), respawning")
    for t in threads:
        t.join(30)
    assert "HARAKIRI ON WORKER 1" in b.log()
    assert "HARAKIRI [core" not in b.log() and "worker 1 status" not in b.log()
