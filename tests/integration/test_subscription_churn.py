"""Node churn under load (issue 4): a brood HTTP router with a subscription server, and
worker pools that come and go while clients keep requesting through it.

One scenario in phases, the load (``_loadkit``: keep-alive and new client connections)
running throughout:

1. four pools subscribe; each gets traffic;
2. graceful stop of one (``--die-on-term`` + SIGTERM, uWSGI's graceful shutdown): it
   unsubscribes before its workers stop, and no request fails;
3. immediate stop of another (SIGINT): it unsubscribes first too, but its workers stop
   at once, so only what they had in flight may fail;
4. a new pool subscribes and gets traffic;
5. SIGKILL of a whole pool: only requests in flight on it may fail; the first refused
   connect marks it dead in the router, and its subscription expires within one
   ``--subscription-tolerance`` (plus a master cycle);
6. graceful reload with ``--unsubscribe-on-graceful-reload``: traffic leaves the pool
   and comes back to its new workers; no request fails;

then every request is answered 200 by a live pool, and the router's stats list exactly
the live pools. The figures are printed (``pytest -s`` shows them).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import time
from pathlib import Path

import pytest
from _broodkit import read_stats, wait_until
from _loadkit import Load, Result

pytestmark = pytest.mark.slow

KEY = "example.test"
TOLERANCE = 3  # --subscription-tolerance, seconds
THREADS = 3
WHOAMI = str(Path(__file__).with_name("_whoami.py"))


def free_address() -> str:
    """A loopback port for ``--http-stats`` (each router process binds it itself with
    SO_REUSEPORT, so it cannot be ``:0``)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


def subscribed(stats: str) -> dict[str, dict]:
    """The router's nodes for KEY, by address, as its stats show them ({} when it does
    not answer)."""
    try:
        doc = json.loads(read_stats(stats))
    except (OSError, ValueError):
        return {}
    return {n["name"]: n for s in doc["subscriptions"] if s["key"] == KEY for n in s["nodes"]}


def routable(stats: str) -> set[str]:
    return {name for name, node in subscribed(stats).items() if not node["death_mark"]}


def refused(address: str) -> bool:
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=1).close()
    except ConnectionRefusedError:
        return True
    except OSError:
        return False
    return False


def failures(results: list[Result]) -> list[Result]:
    return [r for r in results if not r.ok]


def served_by(results: list[Result], node: str) -> list[Result]:
    return [r for r in results if r.ok and r.node == node]


def test_pools_join_leave_crash_and_reload_under_load(start_brood) -> None:
    stats = free_address()
    router = start_brood("--master", "--http", "127.0.0.1:0",
                         "--http-subscription-server", "127.0.0.1:0",
                         "--subscription-tolerance", str(TOLERANCE), "--http-stats", stats)
    (m,) = router.wait_for_log(r"http subscription server bound on (\S+) fd")
    server = m[1]
    front = router.address_of("http socket 0")

    def pool(name: str):
        return start_brood("--master", "--socket", "127.0.0.1:0", "--processes", "2",
                           "--wsgi-file", WHOAMI, "--disable-logging", "--die-on-term",
                           "--subscribe-to", f"{server}:{KEY}", "--subscribe-freq", "1",
                           "--unsubscribe-on-graceful-reload",
                           env={"BROOD_TEST_NODE": name})

    pools = {name: pool(name) for name in ("n1", "n2", "n3", "n4")}
    addr = {name: p.address_of() for name, p in pools.items()}
    wait_until(lambda: routable(stats) == set(addr.values()), timeout=10,
               what="four pools in the router's table")
    figures: dict[str, object] = {}
    load = Load(front, KEY, threads=THREADS).start()
    try:
        # 1. every pool gets traffic
        t_start = time.monotonic()
        wait_until(lambda: load.nodes_since(t_start) == set(pools), timeout=10,
                   what="traffic on every pool")

        # 2. graceful stop: unsubscribed before the workers stop, nothing lost
        t_stop = time.monotonic()
        pools["n1"].send_signal(signal.SIGTERM)
        wait_until(lambda: addr["n1"] not in routable(stats), timeout=5,
                   what="n1 unsubscribed")
        t_gone = time.monotonic()
        pools["n1"].wait_exit(15)
        t_exit = time.monotonic()
        log = pools["n1"].log()
        assert -1 < log.find("unsubscribing from") < log.find(") exited"), log
        assert failures(load.results) == [], "a graceful stop lost requests"
        assert served_by(load.since(t_gone), "n1") == [], "n1 got traffic after leaving"
        figures["graceful stop: unsubscribe applied after"] = f"{t_gone - t_stop:.3f} s"
        figures["graceful stop: pool exited after"] = f"{t_exit - t_stop:.3f} s"

        # 3. immediate stop (SIGINT): unsubscribed first too, but the workers stop at
        # once, so what they had in flight (or queued) may be lost
        t_int = time.monotonic()
        pools["n4"].send_signal(signal.SIGINT)
        pools["n4"].wait_exit(15)
        t_int_exit = time.monotonic()
        wait_until(lambda: addr["n4"] not in routable(stats), timeout=2,
                   what="n4 unsubscribed")
        log = pools["n4"].log()
        assert -1 < log.find("unsubscribing from") < log.find(") exited"), log
        lost_int = failures(load.results)
        assert all(t_int - 5 <= r.t0 <= t_int_exit for r in lost_int), lost_int
        assert len(lost_int) <= THREADS, lost_int
        assert served_by(load.since(t_int_exit), "n4") == []
        figures["immediate stop: requests lost"] = len(lost_int)

        # 4. a new pool joins and gets traffic
        t_join = time.monotonic()
        pools["n5"] = pool("n5")
        addr["n5"] = pools["n5"].address_of()
        wait_until(lambda: "n5" in load.nodes_since(t_join), timeout=10,
                   what="traffic on the new pool n5")
        figures["join: first answer from n5 after"] = f"{time.monotonic() - t_join:.3f} s"

        # 5. SIGKILL: only what was in flight on n2 may fail
        wait_until(lambda: "n2" in load.nodes_since(time.monotonic() - 0.5), timeout=5,
                   what="traffic on n2 before the kill")
        before_kill = len(load.results)
        t_kill = time.monotonic()
        os.killpg(pools["n2"].pid, signal.SIGKILL)
        pools["n2"].proc.wait(10)
        wait_until(lambda: refused(addr["n2"]), timeout=5, what="n2's socket closed")
        t_dead = time.monotonic()
        wait_until(lambda: addr["n2"] not in routable(stats), timeout=5,
                   what="n2 not routable")
        t_unroutable = time.monotonic()
        wait_until(lambda: addr["n2"] not in subscribed(stats), timeout=TOLERANCE + 5,
                   what="n2 expired from the router's table")
        t_removed = time.monotonic()
        lost = failures(load.results)[len(lost_int):]
        assert all(r.t0 <= t_dead and r.t1 >= t_kill for r in lost), lost
        assert len(lost) <= THREADS, lost
        assert served_by(load.since(t_dead), "n2") == []
        # expired one tolerance after its last announce (at most a cycle before the
        # kill), give or take a master cycle
        assert t_removed - t_kill <= TOLERANCE + 2, t_removed - t_kill
        router.wait_for_log(re.escape(f"marking {addr['n2']} as failed (no announce "
                                      f"received in {TOLERANCE} seconds)"), timeout=5)
        figures["kill: requests in flight lost"] = len(lost)
        figures["kill: not routable after"] = f"{t_unroutable - t_kill:.3f} s"
        figures["kill: removed from the table after"] = f"{t_removed - t_kill:.3f} s"
        figures["kill: requests since the kill"] = len(load.results) - before_kill

        # 6. graceful reload, unsubscribing: traffic leaves n3 and comes back
        old_pids = {r.pid for r in served_by(load.results, "n3")}
        failed_before = len(failures(load.results))
        t_hup = time.monotonic()
        pools["n3"].send_signal(signal.SIGHUP)
        router.wait_for_log(re.escape(f"marking {addr['n3']} as failed"), timeout=10)
        pools["n3"].wait_ready(count=2, timeout=20)
        router.wait_for_log(re.escape(f"{KEY} => new node: {addr['n3']}"), count=2, timeout=10)
        wait_until(lambda: {r.pid for r in served_by(load.since(t_hup), "n3")} - old_pids,
                   timeout=10, what="n3's new workers serving")
        assert len(failures(load.results)) == failed_before, "the reload lost requests"
        assert not {r.pid for r in served_by(load.since(time.monotonic()), "n3")} & old_pids
        figures["reload: back in traffic after"] = f"{time.monotonic() - t_hup:.3f} s"

        # the dust settles: 200s from live pools only, the table says the same
        t_settled = time.monotonic()
        wait_until(lambda: len(load.since(t_settled)) >= 200, timeout=20,
                   what="200 requests after the churn")
    finally:
        load.stop()
    settled = load.since(t_settled)
    assert failures(settled) == []
    assert {r.node for r in settled} == {"n3", "n5"}
    assert subscribed(stats).keys() == {addr["n3"], addr["n5"]}
    assert routable(stats) == {addr["n3"], addr["n5"]}
    figures["requests"] = len(load.results)
    figures["failed"] = len(failures(load.results))
    figures["after the churn"] = f"{len(settled)} requests, all 200"
    print("\nchurn figures:", json.dumps(figures, indent=1))
