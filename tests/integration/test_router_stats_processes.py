"""One stats address for a router with several processes: whichever process answers
``--X-stats``, the document holds the figures of all of them (brood.routers.stats_share),
in uWSGI's shape plus a ``processes`` list."""

from __future__ import annotations

import glob
import json
import os
import re
from concurrent.futures import ThreadPoolExecutor

from _broodkit import BroodProcess, http_get, read_stats, uwsgi_request, wait_until

from brood.config.model import Config
from brood.master_env import Binder
from brood.plan import build_plan
from brood.routers.stats_share import SnapshotDir

KEY = "localhost"  # the HTTP_HOST uwsgi_request sends: the fastrouter's key
BATCH = 8


def stats(router: BroodProcess, kind: str) -> dict:
    return json.loads(read_stats(router.address_of(f"{kind} stats server")))


def router_pids(router: BroodProcess, kind: str) -> set[int]:
    found = router.wait_for_log(rf"spawned uWSGI {kind} \d+ \(pid: (\d+)", count=2)
    return {int(m[1]) for m in found}


def send_until_both_served(router: BroodProcess, kind: str, request) -> int:
    """Requests on new connections, in concurrent batches, until the stats show that
    both router processes served some; the number sent."""
    sent = 0
    with ThreadPoolExecutor(4) as pool:
        def both_served() -> bool:
            nonlocal sent
            answers = list(pool.map(lambda _: request(), range(BATCH)))
            assert all(status == 200 for status, _ in answers), answers
            sent += BATCH
            procs = stats(router, kind)["processes"]
            return len(procs) == 2 and all(p["requests"] > 0 for p in procs)

        wait_until(both_served, timeout=30, interval=0.01, what="traffic on both processes")
    return sent


def check_every_answer(router: BroodProcess, kind: str, complete) -> None:
    """Once the figures are complete (``complete(doc)``: every request counted on the
    node, nothing in flight), every answer, from either process, has them all."""
    pids = router_pids(router, kind)

    def settled(doc: dict) -> bool:
        procs = doc["processes"]
        return (complete(doc) and doc["active_sessions"] == 0
                and [p["index"] for p in procs] == [1, 2]
                and {p["pid"] for p in procs} == pids and doc["pid"] in pids
                and all(p["active_sessions"] == 0 for p in procs)
                and 0 in {p["age_ms"] for p in procs}
                and all(p["age_ms"] <= 5000 for p in procs))

    wait_until(lambda: settled(stats(router, kind)), timeout=10,
               what="every request in the merged stats")
    answered: set[int] = set()

    def both_answered() -> bool:
        doc = stats(router, kind)
        assert settled(doc), doc
        answered.add(doc["pid"])
        return answered == pids

    wait_until(both_answered, timeout=20, interval=0.001, what="both processes answering")


def snapshot_dirs(router: BroodProcess) -> list[str]:
    pattern = f"brood-routerstats-{router.pid}-*"
    return glob.glob(os.path.join("/dev/shm", pattern)) + glob.glob(
        os.path.join(os.environ.get("TMPDIR", "/tmp"), pattern))


def test_http_router_stats_merge_both_processes(start_brood, hello_app) -> None:
    pool = start_brood("--master", "--socket", "127.0.0.1:0", "--processes", "2",
                       "--wsgi-file", hello_app, "--disable-logging")
    router = start_brood("--master", "--http", "127.0.0.1:0", "--http-processes", "2",
                         "--http-to", pool.address_of(), "--http-stats", "127.0.0.1:0")
    front = router.address_of("http socket 0")
    sent = send_until_both_served(router, "http", lambda: http_get(front, "/"))

    def complete(doc: dict) -> bool:
        (node,) = doc["static_nodes"]
        procs = doc["processes"]
        return (node == {"name": pool.address_of(), "hits": sent, "grace": 0}
                and sum(p["requests"] for p in procs) == sent
                and sum(p["sessions_total"] for p in procs) == sent)

    check_every_answer(router, "http", complete)
    doc = read_stats(router.address_of("http stats server"))
    assert re.search(rb'\t"cheap":0,\n\t"processes":\[\n\t\t\{\n\t\t\t"index":1,', doc)
    (snapdir,) = snapshot_dirs(router)
    assert sorted(os.listdir(snapdir)) == ["http.1.json", "http.2.json", "http.wanted"]
    router.stop()
    assert not os.path.exists(snapdir)  # the master removes it on the way out


def test_fastrouter_subscription_nodes_merge(start_brood, hello_app) -> None:
    router = start_brood("--master", "--fastrouter", "127.0.0.1:0",
                         "--fastrouter-processes", "2",
                         "--fastrouter-subscription-server", "127.0.0.1:0",
                         "--fastrouter-stats", "127.0.0.1:0")
    (m,) = router.wait_for_log(r"fastrouter subscription server bound on (\S+) fd")
    pool = start_brood("--master", "--socket", "127.0.0.1:0", "--processes", "2",
                       "--wsgi-file", hello_app, "--disable-logging",
                       "--subscribe-to", f"{m[1]}:{KEY}", "--subscribe-freq", "1")

    def nodes(doc: dict) -> list[dict]:
        return [n for s in doc["subscriptions"] if s["key"] == KEY for n in s["nodes"]]

    wait_until(lambda: [n["name"] for n in nodes(stats(router, "fastrouter"))]
               == [pool.address_of()], timeout=10, what="the pool subscribed")
    front = router.address_of("fastrouter socket 0")
    sent = send_until_both_served(router, "fastrouter", lambda: uwsgi_request(front, "/"))

    def complete(doc: dict) -> bool:
        (node,) = nodes(doc)
        (slot,) = [s for s in doc["subscriptions"] if s["key"] == KEY]
        procs = doc["processes"]
        return ((node["requests"], node["ref"], node["failcnt"], node["death_mark"])
                == (sent, 0, 0, 0) and slot["hits"] == sent
                and sum(p["requests"] for p in procs) == sent
                and node["tx"] == sum(p["tx"] for p in procs) > 0
                and node["rx"] == sum(p["rx"] for p in procs) > 0)

    check_every_answer(router, "fastrouter", complete)


def test_plan_binds_one_stats_socket_and_one_snapshot_dir() -> None:
    cfg = Config([("http", "127.0.0.1:0"), ("http-to", "127.0.0.1:1"),
                  ("http-processes", 2), ("http-stats", "127.0.0.1:0"),
                  ("rawrouter", "127.0.0.1:0"), ("rawrouter-to", "127.0.0.1:1"),
                  ("rawrouter-processes", 3), ("rawrouter-stats", "127.0.0.1:0"),
                  ("fastrouter", "127.0.0.1:0"), ("fastrouter-to", "127.0.0.1:1"),
                  ("fastrouter-stats", "127.0.0.1:0")])
    plan = build_plan(cfg, Binder())
    try:
        protos = [lst.proto for lst in plan.listeners]
        assert protos == ["http", "http-stats", "fastrouter", "fastrouter-stats",
                          "rawrouter", "rawrouter-stats"]
        dirs = [svc for svc in plan.services if isinstance(svc, SnapshotDir)]
        assert len(dirs) == 1  # shared by the kinds with several processes
        assert plan.prepare == [dirs[0].create]  # made after privileges are dropped
    finally:
        for lst in plan.listeners:
            lst.sock.close()
        for svc in plan.services:
            svc.on_shutdown()


def test_last_requests_counts_since_the_nodes_last_announce(start_brood, hello_app) -> None:
    """As uWSGI: ``last_requests`` counts a subscribed node's requests since its last
    announce, and starts again from 0 at each (it stayed 0)."""
    router = start_brood("--master", "--fastrouter", "127.0.0.1:0",
                         "--fastrouter-subscription-server", "127.0.0.1:0",
                         "--fastrouter-stats", "127.0.0.1:0")
    (m,) = router.wait_for_log(r"fastrouter subscription server bound on (\S+) fd")
    start_brood("--master", "--socket", "127.0.0.1:0", "--wsgi-file", hello_app,
                "--disable-logging", "--subscribe-to", f"{m[1]}:{KEY}",
                "--subscribe-freq", "3600")  # no announce between the requests below

    def node() -> dict | None:
        found = [n for s in stats(router, "fastrouter")["subscriptions"] if s["key"] == KEY
                 for n in s["nodes"]]
        return found[0] if found else None

    wait_until(lambda: node() is not None, timeout=10, what="the pool subscribed")
    front = router.address_of("fastrouter socket 0")
    for _ in range(5):
        assert uwsgi_request(front, "/") == (200, b"Hello World")
    figures = wait_until(lambda: (n := node()) and n["requests"] == 5 and n, what="counted")
    assert 0 < figures["last_requests"] <= 5  # (the announce right after start may reset it)


def test_stats_minified_puts_router_stats_on_one_line(start_brood) -> None:
    router = start_brood("--master", "--http", "127.0.0.1:0", "--http-to", "127.0.0.1:1",
                         "--http-stats", "127.0.0.1:0", "--stats-minified")
    raw = read_stats(router.address_of("http stats server"))
    assert b"\n" not in raw.rstrip(b"\n") and b"\t" not in raw
    assert json.loads(raw)["static_nodes"][0]["name"] == "127.0.0.1:1"
