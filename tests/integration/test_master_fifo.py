"""The master FIFO on a real brood worker pool: reloads, stops, worker reloads, slots."""

from __future__ import annotations

import stat
import threading
from pathlib import Path

from _broodkit import (
    BroodProcess,
    http_get,
    uwsgi_request,
    wait_until,
    worker_pids,
    write_fifo,
)


def _is_fifo(path: Path) -> bool:
    return path.exists() and stat.S_ISFIFO(path.stat().st_mode)


def _pool(start_brood, hello_app, *extra: str, processes: int = 2,
          wait: bool = True) -> BroodProcess:
    return start_brood("--http-socket", "127.0.0.1:0", "--wsgi-file", hello_app,
                       "--processes", str(processes), "--stats", "127.0.0.1:0", *extra,
                       wait=wait)


def test_r_reloads_the_workers_under_the_same_master_then_q_stops(
        start_brood, hello_app, tmp_path) -> None:
    fifo = tmp_path / "master.fifo"
    b = _pool(start_brood, hello_app, "--master-fifo", str(fifo))
    assert _is_fifo(fifo) and stat.S_IMODE(fifo.stat().st_mode) == 0o600
    inode = fifo.stat().st_ino
    before = set(worker_pids(b.stats()))
    write_fifo(fifo, b"r\n")
    b.wait_ready(count=2)
    after = set(worker_pids(b.stats()))
    assert after.isdisjoint(before) and 0 not in after
    assert b.stats()["pid"] == b.pid  # re-exec in place, not a new master
    assert f"master pid: {b.pid} (reloads: 1)" in b.log()
    assert fifo.stat().st_ino == inode  # the same FIFO, kept across the re-exec
    assert http_get(b.address_of("uwsgi socket 0")) == (200, b"Hello World")
    write_fifo(fifo, b"q")
    assert b.wait_exit() == 0
    assert "graceful shutdown triggered" in b.log() and "goodbye to uWSGI." in b.log()
    assert not fifo.exists()


def test_R_is_a_brutal_reload(start_brood, hello_app, tmp_path) -> None:
    fifo = tmp_path / "master.fifo"
    b = _pool(start_brood, hello_app, "--master-fifo", str(fifo))
    before = set(worker_pids(b.stats()))
    write_fifo(fifo, b"R")
    b.wait_ready(count=2)
    assert "...brutally killing workers..." in b.log()
    assert set(worker_pids(b.stats())).isdisjoint(before)
    assert b.stats()["pid"] == b.pid and _is_fifo(fifo)


def test_W_reloads_the_workers_brutally(start_brood, hello_app, tmp_path) -> None:
    fifo = tmp_path / "master.fifo"
    b = _pool(start_brood, hello_app, "--master-fifo", str(fifo))
    before = set(worker_pids(b.stats()))
    write_fifo(fifo, b"W")
    b.wait_for_log(r"brutally reloading 2 workers")
    wait_until(lambda: (pids := set(worker_pids(b.stats()))).isdisjoint(before)
               and 0 not in pids, what="both workers replaced")
    assert "reloads: 1" not in b.log()


def test_Q_is_an_immediate_shutdown(start_brood, hello_app, tmp_path) -> None:
    fifo = tmp_path / "master.fifo"
    b = _pool(start_brood, hello_app, "--master-fifo", str(fifo))
    children = worker_pids(b.stats())
    write_fifo(fifo, b"Q")
    assert b.wait_exit() == 0
    assert not fifo.exists()
    for pid in children:
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text()


def test_w_reloads_only_the_workers(start_brood, hello_app, tmp_path) -> None:
    fifo = tmp_path / "master.fifo"
    b = _pool(start_brood, hello_app, "--master-fifo", str(fifo))
    before = set(worker_pids(b.stats()))
    write_fifo(fifo, b"w")
    b.wait_for_log(r"gracefully reloading 2 workers")

    def replaced() -> bool:
        stats = b.stats()
        pids = set(worker_pids(stats))
        return (pids.isdisjoint(before) and 0 not in pids
                and all(w["accepting"] for w in stats["workers"]))

    wait_until(replaced, what="both workers replaced")
    assert "reloads: 1" not in b.log()  # the master did not re-exec
    assert all(w["respawn_count"] == 2 for w in b.stats()["workers"])
    assert http_get(b.address_of("uwsgi socket 0")) == (200, b"Hello World")


def test_w_lets_an_in_flight_request_finish(start_brood, hello_app, tmp_path) -> None:
    fifo = tmp_path / "master.fifo"
    b = start_brood("--socket", "127.0.0.1:0", "--wsgi-file", hello_app,
                    "--stats", "127.0.0.1:0", "--master-fifo", str(fifo))
    addr = b.address_of("uwsgi socket 0")
    got: dict[str, object] = {}
    slow = threading.Thread(target=lambda: got.update(r=uwsgi_request(addr, "/sleep?s=1")))
    slow.start()
    wait_until(lambda: b.stats()["workers"][0]["status"] == "busy", what="request in flight")
    write_fifo(fifo, b"w")
    slow.join(30)
    assert got["r"] == (200, b"slept\n")
    b.wait_for_log(r"worker 1 \(pid: \d+\) reloaded \(exit status 0\), respawning")


def test_c_reloads_the_workers_one_after_the_other(start_brood, hello_app, tmp_path) -> None:
    fifo = tmp_path / "master.fifo"
    b = _pool(start_brood, hello_app, "--master-fifo", str(fifo), processes=3)
    before = set(worker_pids(b.stats()))
    write_fifo(fifo, b"c")
    b.wait_for_log(r"chain reloading complete")
    log = b.log()
    steps = [log.index(f"chain next victim is worker {i}") for i in (1, 2, 3)]
    assert steps == sorted(steps)
    # worker 2 is only asked to go once worker 1's successor was spawned
    assert log.index("spawned uWSGI worker 1", steps[0]) < steps[1]
    after = set(worker_pids(b.stats()))
    assert after.isdisjoint(before) and 0 not in after
    assert "reloads: 1" not in log


def test_digit_switches_the_active_fifo(start_brood, hello_app, tmp_path) -> None:
    f0, f1 = tmp_path / "f0", tmp_path / "f1"
    b = _pool(start_brood, hello_app, "--master-fifo", str(f0), "--master-fifo", str(f1))
    assert _is_fifo(f0) and not f1.exists()
    write_fifo(f0, b"1")
    b.wait_for_log(r"active master fifo is now .*f1")
    assert _is_fifo(f1) and not f0.exists()
    write_fifo(f1, b"z9s")  # unknown letter, missing slot, then stats: all in one write
    b.wait_for_log(r"stats: worker 2 \(pid: \d+\) idle, requests \d+")
    assert "unknown command 'z', ignored" in b.log()
    assert "there is no slot 9" in b.log()
    write_fifo(f1, b"q")
    assert b.wait_exit() == 0
    assert not f0.exists() and not f1.exists()


def test_l_reopens_the_log_and_P_rewrites_the_pidfile(start_brood, hello_app, tmp_path) -> None:
    fifo, logfile = tmp_path / "master.fifo", tmp_path / "brood.log"
    pidfile = tmp_path / "brood.pid"
    b = _pool(start_brood, hello_app, "--master-fifo", str(fifo), "--logto", str(logfile),
              "--pidfile", str(pidfile), wait=False)
    wait_until(lambda: logfile.exists() and "brood: ready" in logfile.read_text(),
               what="ready in the --logto file")
    logfile.rename(tmp_path / "brood.log.1")  # what logrotate does
    pidfile.unlink()
    write_fifo(fifo, b"lP")
    wait_until(lambda: logfile.exists() and "updated" in logfile.read_text(),
               what="the reopened log file")
    assert "reopened by the master" in logfile.read_text()
    assert pidfile.read_text().strip() == str(b.pid)


def test_q_during_a_graceful_reload_ends_in_exit(start_brood, hello_app, tmp_path) -> None:
    fifo = tmp_path / "master.fifo"
    b = start_brood("--socket", "127.0.0.1:0", "--wsgi-file", hello_app,
                    "--stats", "127.0.0.1:0", "--master-fifo", str(fifo))
    addr = b.address_of("uwsgi socket 0")
    got: dict[str, object] = {}
    slow = threading.Thread(target=lambda: got.update(r=uwsgi_request(addr, "/sleep?s=1.5")))
    slow.start()
    wait_until(lambda: b.stats()["workers"][0]["status"] == "busy", what="request in flight")
    write_fifo(fifo, b"r")
    b.wait_for_log(r"gracefully killing workers")
    write_fifo(fifo, b"q")
    assert b.wait_exit() == 0
    slow.join(30)
    assert got["r"] == (200, b"slept\n")  # the graceful stop still let it finish
    assert "binary reloading" not in b.log()
    assert not fifo.exists()
