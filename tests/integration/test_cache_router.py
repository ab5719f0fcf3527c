"""A real brood master with 2 fastrouter processes routing by a cache: --cache2 and
--add-cache-item set the map at start, cache sync packets on --cache-udp-server change
it at run time (set, then delete -> 503), and both router processes follow, a respawned
one too."""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from _broodkit import BroodProcess, read_stats, uwsgi_request, wait_until

from brood.cache.sync import SyncCommand, encode_sync

KEY = b"localhost"  # the HTTP_HOST uwsgi_request sends: the fastrouter's key
BATCH = 8


class NamedNode:
    """A uwsgi node on loopback that answers every request with its name."""

    def __init__(self, name: str) -> None:
        self.name = name.encode()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                try:
                    head = conn.recv(4)
                    size = int.from_bytes(head[1:3], "little")
                    got = len(head) - 4
                    while got < size:
                        chunk = conn.recv(65536)
                        if not chunk:
                            break
                        got += len(chunk)
                    conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n" + self.name)
                except OSError:
                    continue

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def nodes() -> Iterator[tuple[NamedNode, NamedNode]]:
    a, b = NamedNode("A"), NamedNode("B")
    yield a, b
    a.close()
    b.close()


def sessions(router: BroodProcess) -> dict[int, int]:
    """pid -> sessions so far, per router process (the merged stats' list)."""
    try:
        doc = json.loads(read_stats(router.address_of("fastrouter stats server")))
    except OSError:
        return {}
    return {p["pid"]: p["sessions_total"] for p in doc.get("processes", [])}


def both_answer(router: BroodProcess, front: str, expected: tuple[int, bytes]) -> None:
    """Concurrent batches of requests until, over a run of batches where every answer
    was ``expected``, both router processes served some (a stale answer starts the run
    again: the change may reach one process a moment before the other)."""
    run_start: dict[int, int] = {}
    seen: list = []
    with ThreadPoolExecutor(4) as pool:
        def done() -> bool:
            nonlocal run_start
            before = sessions(router)
            answers = list(pool.map(lambda _: uwsgi_request(front, "/"), range(BATCH)))
            seen[:] = answers
            if any(answer != expected for answer in answers) or len(before) != 2:
                run_start = {}
                return False
            run_start = run_start or before
            after = sessions(router)
            return len(after) == 2 and all(after[pid] > run_start.get(pid, after[pid])
                                           for pid in after)

        try:
            wait_until(done, timeout=30, interval=0.01, what=f"both processes answering "
                       f"{expected}")
        except AssertionError:
            raise AssertionError(f"last answers {seen}:\n{router.log()}") from None


def test_cache_routes_and_udp_changes_it_in_both_processes(start_brood, nodes) -> None:
    a, b = nodes
    router = start_brood("--master", "--fastrouter", "127.0.0.1:0",
                         "--fastrouter-processes", "2", "--fastrouter-stats", "127.0.0.1:0",
                         "--cache2", "name=routes,items=10", "--cache2", "name=spare,items=5",
                         "--add-cache-item", f"routes {KEY.decode()}={a.address}",
                         "--fastrouter-use-cache=routes",
                         "--cache-udp-server", "127.0.0.1:0")
    (m,) = router.wait_for_log(r'udp server for cache "routes" running on (\S+):(\d+) fd')
    udp_server = (m[1], int(m[2]))
    front = router.address_of("fastrouter socket 0")
    wait_until(lambda: len(sessions(router)) == 2, timeout=30, what="both processes")
    both_answer(router, front, (200, b"A"))

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        sender.sendto(encode_sync(SyncCommand(KEY, b.address.encode())), udp_server)
        both_answer(router, front, (200, b"B"))
        # a respawned router process starts from the master's snapshot, not empty
        victim = min(sessions(router))
        os.kill(victim, signal.SIGKILL)
        router.wait_for_log(r"spawned uWSGI fastrouter \d+ \(pid: \d+", count=3)
        wait_until(lambda: len(sessions(router)) == 2 and victim not in sessions(router),
                   timeout=30, what="the respawned process in the stats")
        both_answer(router, front, (200, b"B"))
        sender.sendto(b"not a cache packet", udp_server)
        sender.sendto(encode_sync(SyncCommand(KEY)), udp_server)
        both_answer(router, front, (503, b"503 Service Unavailable\n"))
        # several nodes under one key (uWSGI's "|"): both are used
        value = f"{a.address}|{b.address}".encode()
        sender.sendto(encode_sync(SyncCommand(KEY, value)), udp_server)
        bodies = wait_until(lambda: {uwsgi_request(front, "/")[1] for _ in range(BATCH)}
                            == {b"A", b"B"}, timeout=20, what="both nodes of the key")
        assert bodies
    log = router.log()
    assert "invalid packet from 127.0.0.1:" in log and "(modifier1 110, not 111)" in log
    assert "Traceback" not in log and "master service error" not in log
