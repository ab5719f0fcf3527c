"""Process titles (--procname-prefix, --auto-procname...) as ps and /proc show them."""

from __future__ import annotations

import re
import signal
from pathlib import Path

from _broodkit import worker_pids


def title(pid: int) -> str:
    """What ps shows: the argument area up to its first NUL."""
    return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0", 1)[0].decode()


def _router_pids(log: str, kind: str) -> list[int]:
    return [int(m) for m in re.findall(rf"spawned uWSGI {kind} \d+ \(pid: (\d+)", log)]


def test_prefix_titles_master_workers_and_router(start_brood, hello_app) -> None:
    b = start_brood("--http", "127.0.0.1:0", "--wsgi-file", hello_app, "--processes", "2",
                    "--stats", "127.0.0.1:0", "--procname-prefix", "shop:")
    assert title(b.pid) == "shop:uWSGI master"
    assert Path(f"/proc/{b.pid}/comm").read_text().strip() == "shop:uWSGI mast"  # 15 bytes
    w1, w2 = worker_pids(b.stats())
    assert (title(w1), title(w2)) == ("shop:uWSGI worker 1", "shop:uWSGI worker 2")
    (router,) = _router_pids(b.log(), "http")
    assert title(router) == "shop:uWSGI http 1"

    b.send_signal(signal.SIGHUP)  # the re-executed master and its new children too
    b.wait_ready(count=2)
    assert title(b.pid) == "shop:uWSGI master"
    assert sorted(title(p) for p in worker_pids(b.stats())) == [
        "shop:uWSGI worker 1", "shop:uWSGI worker 2"]


def test_procname_and_procname_master(start_brood, hello_app) -> None:
    b = start_brood("--http-socket", "127.0.0.1:0", "--wsgi-file", hello_app,
                    "--stats", "127.0.0.1:0", "--procname", "app", "--procname-master",
                    "app (master)", "--procname-append", " [v2]")
    assert title(b.pid) == "app (master) [v2]"
    assert [title(p) for p in worker_pids(b.stats())] == ["app [v2]"]


def test_titles_are_left_alone_without_options(start_brood, hello_app) -> None:
    b = start_brood("--http-socket", "127.0.0.1:0", "--wsgi-file", hello_app,
                    "--stats", "127.0.0.1:0")
    cmdline = Path(f"/proc/{b.pid}/cmdline").read_bytes().split(b"\0")
    assert b"-m" in cmdline and b"brood" in cmdline
