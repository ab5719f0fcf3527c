"""A real brood with 2 fastrouter processes: an announce reaches both replicas within
100 ms, and a respawned router process starts from a snapshot, not empty."""

from __future__ import annotations

import glob
import json
import os
import re
import signal
import socket
import tempfile
import time
from pathlib import Path

from _broodkit import read_stats, wait_until

FIX = Path("/work/shared/fixtures/subscription")
PLAIN = (FIX / "sub_plain.bin").read_bytes() if FIX.is_dir() else b""


def free_address() -> str:
    """A loopback port for the per-process stats servers (each binds it with
    SO_REUSEPORT, so ``:0`` would give every process a different port)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


def start(start_brood, stats: str):
    proc = start_brood("--master", "--fastrouter", "127.0.0.1:0", "--fastrouter-processes", "2",
                       "--fastrouter-subscription-server", "127.0.0.1:0",
                       "--fastrouter-stats", stats)
    (m,) = proc.wait_for_log(r"subscription server bound on (\S+):(\d+) fd")
    return proc, (m[1], int(m[2]))


def poll(stats: str) -> tuple[int, list[str]]:
    """(pid, node names) of whichever router process answered."""
    try:
        doc = json.loads(read_stats(stats))
    except OSError:  # a process not listening yet (start-up, respawn)
        return 0, []
    return doc["pid"], [n["name"] for s in doc["subscriptions"] for n in s["nodes"]]


def router_pids(stats: str, count: int = 2) -> set[int]:
    """The router processes' pids, from the merged stats' ``processes`` list."""
    def listed() -> set[int] | None:
        try:
            doc = json.loads(read_stats(stats))
        except OSError:
            return None
        pids = {p["pid"] for p in doc.get("processes", [])}
        return pids if len(pids) >= count else None

    return wait_until(listed, timeout=20, interval=0.01, what="both router processes listed")


def snapshot_nodes(master_pid: int, pid: int) -> list[str] | None:
    """Node names in the published stats snapshot of router process ``pid`` (each
    process writes its own once a second: brood.routers.stats_share), None if absent."""
    for base in ("/dev/shm", tempfile.gettempdir()):
        for path in glob.glob(f"{base}/brood-routerstats-{master_pid}-*/fastrouter.*.json"):
            try:
                snap = json.loads(Path(path).read_text())
            except (OSError, ValueError):
                continue
            if snap.get("pid") == pid:
                return [n["name"] for s in snap.get("subscriptions") or [] for n in s["nodes"]]
    return None


def test_update_reaches_every_router_process_within_100ms(start_brood) -> None:
    stats = free_address()
    proc, server = start(start_brood, stats)
    pids = router_pids(stats)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as node:
        node.sendto(PLAIN, server)
        sent = time.monotonic()
        seen: dict[int, float] = {}
        deadline = sent + 5
        while len(seen) < len(pids) and time.monotonic() < deadline:
            pid, names = poll(stats)
            if "127.0.0.1:27091" in names:
                seen.setdefault(pid, time.monotonic() - sent)
    assert set(seen) == pids, f"seen in {seen}, processes {pids}"
    assert max(seen.values()) < 0.1, seen
    assert "example.com => new node: 127.0.0.1:27091" in proc.log()


def test_respawned_router_process_gets_a_snapshot(start_brood) -> None:
    stats = free_address()
    proc, server = start(start_brood, stats)
    old = router_pids(stats)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as node:
        node.sendto(PLAIN, server)
    victim = min(old)
    os.kill(victim, signal.SIGKILL)
    (m,) = proc.wait_for_log(r"spawned uWSGI fastrouter \d+ \(pid: (?!" + str(victim) + r")"
                             r"(?!" + "|".join(map(str, old)) + r")(\d+)")
    new_pid = int(m[1])

    def new_has_node() -> bool:
        return "127.0.0.1:27091" in (snapshot_nodes(proc.pid, new_pid) or [])

    wait_until(new_has_node, timeout=20, interval=0.05, what="the respawned process's table")
    assert re.search(r"spawned uWSGI fastrouter", proc.log())
