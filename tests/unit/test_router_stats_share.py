"""The snapshot files behind merged router stats (brood.routers.stats_share), on tmp_path."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import trio
import trio.testing

from brood.routers import stats_share
from brood.routers.net.spread import Spread
from brood.routers.node import Node
from brood.routers.stats_merge import dumps, loads, snapshot
from brood.routers.stats_share import STALE_AFTER, SnapshotDir, StatsShare

NOW = 1795437100.0
DEAD_PID = int(Path("/proc/sys/kernel/pid_max").read_text()) + 1  # no process has it


class FakeEngine:
    """What StatsShare reads of an Engine."""

    def __init__(self, *nodes: Node, active: int = 0, total: int = 0, now: float = NOW,
                 slots=None) -> None:
        self.kind = "http"
        self.nodes = list(nodes)
        self.active_sessions = active
        self.sessions_total = total
        self.spread = Spread()
        self.cheap = False
        self.slots = slots
        self.now = now

    def clock(self) -> float:
        return self.now

    def static_nodes(self) -> list[Node]:
        return self.nodes

    def subscriptions(self):
        return self.slots


def write(directory: Path, name: str, snap: dict) -> None:
    (directory / name).write_bytes(dumps(snap))


def sibling(index: int, *, pid: int | None = None, at: float = NOW, requests: int = 0) -> dict:
    return snapshot(index=index, pid=os.getppid() if pid is None else pid, now=at,
                    active_sessions=1, sessions_total=requests,
                    static_nodes=[Node("n:1", requests=requests)], subscriptions=None)


def test_publish_replaces_the_file_whole(tmp_path: Path) -> None:
    share = StatsShare("http", 2, str(tmp_path))
    share.publish(share.snapshot(FakeEngine(Node("n:1", requests=3)), NOW))
    share.publish(share.snapshot(FakeEngine(Node("n:1", requests=4)), NOW + 1))
    assert os.listdir(tmp_path) == ["http.2.json"]  # no temp file left behind
    snap = loads((tmp_path / "http.2.json").read_bytes())
    assert (snap["index"], snap["pid"], snap["time"]) == (2, os.getpid(), NOW + 1)
    assert snap["static_nodes"][0]["requests"] == 4
    share.withdraw()
    assert os.listdir(tmp_path) == []


def test_publish_failure_is_not_fatal(tmp_path: Path) -> None:
    share = StatsShare("http", 1, str(tmp_path / "gone"))
    share.publish(share.snapshot(FakeEngine(), NOW))  # logs once, raises nothing
    share.withdraw()
    assert share.collect(NOW) == []


def test_collect_keeps_live_fresh_siblings_of_its_kind(tmp_path: Path) -> None:
    write(tmp_path, "http.1.json", sibling(1))  # its own index: never read
    write(tmp_path, "http.2.json", sibling(2, requests=5))
    write(tmp_path, "http.3.json", sibling(3, pid=DEAD_PID))  # process gone
    write(tmp_path, "http.4.json", sibling(4, at=NOW - STALE_AFTER - 1))  # stopped publishing
    write(tmp_path, "fastrouter.2.json", sibling(2))  # another kind
    write(tmp_path, ".http.5.json.123.tmp", sibling(5))  # half-written
    (tmp_path / "http.6.json").write_bytes(b'{"v": 1, "index"')  # not a snapshot
    found = StatsShare("http", 1, str(tmp_path)).collect(NOW)
    assert [s["index"] for s in found] == [2]
    assert found[0]["sessions_total"] == 5


def test_document_merges_the_siblings(tmp_path: Path) -> None:
    write(tmp_path, "http.2.json", sibling(2, at=NOW - 0.25, requests=4))
    share = StatsShare("http", 1, str(tmp_path))
    engine = FakeEngine(Node("n:1", requests=3), active=2, total=3)
    doc = json.loads(share.document(engine, ["127.0.0.1:8080"]))
    assert doc["pid"] == os.getpid() and doc["http"] == ["127.0.0.1:8080"]
    assert doc["static_nodes"] == [{"name": "n:1", "hits": 7, "grace": 0}]
    assert doc["active_sessions"] == 3
    assert [(p["index"], p["requests"], p["age_ms"]) for p in doc["processes"]] == [
        (1, 3, 0), (2, 4, 250)]
    # it published its own figures first, for the sibling that answers next
    assert loads((tmp_path / "http.1.json").read_bytes())["requests"] == 3


def test_alone_without_a_directory(tmp_path: Path) -> None:
    share = StatsShare("http")
    doc = json.loads(share.document(FakeEngine(Node("n:1", requests=1)), []))
    assert [p["index"] for p in doc["processes"]] == [1]
    assert not share.shared and share.collect(NOW) == []


@pytest.mark.parametrize("wanted", [True, False])
def test_publishes_periodically_and_withdraws_when_cancelled(tmp_path: Path, monkeypatch,
                                                             wanted) -> None:
    """Every period while a stats client asked lately (any process of the kind marks
    it), else once at start only: a big table is not written out for nobody."""
    async def on_loop(fn, *args):  # a worker thread's real time and a mock clock don't mix
        return fn(*args)

    monkeypatch.setattr(stats_share, "_off_loop", on_loop)
    share = StatsShare("http", 3, str(tmp_path))
    if wanted:
        StatsShare("http", 1, str(tmp_path)).mark_wanted()  # a sibling was asked
    engine = FakeEngine(Node("n:1"))
    seen: list[int] = []

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(share.publish_periodically, engine)
            await trio.sleep(0.5)  # read half-way between two publications (t = 0, 1, 2)
            for requests in (1, 2, 3):
                seen.append(loads((tmp_path / "http.3.json").read_bytes())["requests"])
                engine.nodes[0].requests = requests
                await trio.sleep(1.0)
            nursery.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert seen == ([0, 1, 2] if wanted else [0, 0, 0])
    assert os.listdir(tmp_path) == (["http.wanted"] if wanted else [])


def test_snapshot_dir_lifecycle(tmp_path: Path) -> None:
    snapdir = SnapshotDir(str(tmp_path))
    snapdir.create()
    assert snapdir.path is not None and Path(snapdir.path).parent == tmp_path
    assert os.stat(snapdir.path).st_mode & 0o777 == 0o700
    Path(snapdir.path, "http.1.json").write_bytes(b"{}")
    snapdir.on_reload(graceful=True)
    assert snapdir.path is None and os.listdir(tmp_path) == []
    snapdir.create()
    snapdir.close_in_child()  # a child keeps it
    assert os.path.isdir(snapdir.path)
    snapdir.on_shutdown()
    assert os.listdir(tmp_path) == []


def test_snapshot_dir_that_cannot_be_made(tmp_path: Path) -> None:
    snapdir = SnapshotDir(str(tmp_path / "missing"))
    snapdir.create()  # logged; the routers then answer alone
    assert snapdir.path is None
    snapdir.on_shutdown()


def test_create_sweeps_what_a_killed_master_left(tmp_path: Path) -> None:
    dead = tmp_path / f"brood-routerstats-{DEAD_PID}-abc_1"
    live = tmp_path / f"brood-routerstats-{os.getppid()}-xyz"
    other = tmp_path / f"brood-routerstats-{DEAD_PID}"  # not a name of ours
    for path in (dead, live, other):
        path.mkdir()
    (dead / "http.1.json").write_bytes(b"{}")
    snapdir = SnapshotDir(str(tmp_path))
    snapdir.create()
    assert sorted(os.listdir(tmp_path)) == sorted(
        [live.name, other.name, os.path.basename(snapdir.path)])
    snapdir.on_shutdown()


async def test_a_large_stats_document_leaves_the_loop_free(tmp_path):
    """30k subscribed nodes: the document takes a second or so to build; the event loop
    (routing) goes on meanwhile, in short steps, not one long stall."""
    import time

    from brood.subscription.packet import Subscription
    from brood.subscription.table import SubscriptionTable

    table = SubscriptionTable()
    for i in range(30000):
        table.apply(Subscription(b"k%d.example" % i, b"127.0.0.1:%d" % (1 + i % 60000)), NOW)
    share = StatsShare("http", 1, str(tmp_path))
    gaps: list[float] = []

    async def ticker(task_status=trio.TASK_STATUS_IGNORED):
        task_status.started()
        last = time.monotonic()
        while True:
            await trio.sleep(0.001)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    async with trio.open_nursery() as nursery:
        await nursery.start(ticker)
        started = time.monotonic()
        document = await share.document_off_loop(FakeEngine(slots=table), ["a"])
        took = time.monotonic() - started
        nursery.cancel_scope.cancel()
    assert b'"k29999.example"' in document
    # (a C call such as the snapshot's json.dumps holds the GIL a while: not one stall)
    assert max(gaps) < took / 3, (max(gaps), took)


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_root_sweeps_the_directories_it_gave_to_router_users(tmp_path) -> None:
    """With --X-uid the directory is the router user's: a master killed with SIGKILL
    left it for good (the sweep took only root's own)."""
    dead = tmp_path / "brood-routerstats-999999999-abc123"
    dead.mkdir()
    os.chown(dead, 65534, 65534)
    stats_share._sweep(str(tmp_path))
    assert not dead.exists()


async def test_clients_asking_during_a_build_share_it() -> None:
    """Forty stats clients at once made forty builds (threads holding the GIL against
    the loop); those that come while one is built get that one."""
    share = StatsShare("http")
    started, release = trio.Event(), trio.Event()
    calls = []
    real = share.document

    def slow_document(engine, names):
        calls.append(1)
        trio.from_thread.run_sync(started.set)
        trio.from_thread.run(release.wait)
        return real(engine, names)

    share.document = slow_document  # type: ignore[method-assign]
    got = []
    engine = FakeEngine(Node("n:1", requests=3))

    async def ask() -> None:
        got.append(await share.document_off_loop(engine, []))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ask)
        await started.wait()
        for _ in range(9):
            nursery.start_soon(ask)
        await trio.testing.wait_all_tasks_blocked()
        release.set()
    assert len(calls) == 1 and len(got) == 10 and len(set(got)) == 1
    assert json.loads(got[0])["static_nodes"][0]["hits"] == 3
    await share.document_off_loop(engine, [])  # the next one is built anew
    assert len(calls) == 2
