"""``python -m brood.demo``: it comes up on a free port, both worker pools answer through
the router, SIGINT stops every process it started (so does the demo dying), and a taken
port is one line."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from _broodkit import pid_alive, read_stats, wait_until

READY = re.compile(r"brood demo ready: http://127\.0\.0\.1:(\d+)/")
STATS = re.compile(r"router .* stats (\S+)")


def descendants(root: int) -> set[int]:
    """Every live process below ``root``, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rpartition(")")[2].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    found: set[int] = set()
    todo = [root]
    while todo:
        for pid in children.get(todo.pop(), []):
            found.add(pid)
            todo.append(pid)
    return found


def wait_gone(pids: set[int], timeout: float = 10.0) -> list[int]:
    """The pids still alive after waiting up to ``timeout`` for all of them to end."""
    deadline = time.monotonic() + timeout
    while any(pid_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return [p for p in pids if pid_alive(p)]


def get(port: int, path: str, host: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path, headers={"Host": host})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


@dataclass
class Demo:
    proc: subprocess.Popen
    out: Path
    port: int = 0
    stats: str = ""
    tree: set[int] = field(default_factory=set)  # every process below the demo when ready

    def output(self) -> str:
        return self.out.read_text()


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[Demo]:
    """A demo started with ``--port 0`` and ready; always stopped, its tree killed."""
    out = tmp_path / "demo.out"
    with open(out, "wb") as sink:
        proc = subprocess.Popen([sys.executable, "-m", "brood.demo", "--port", "0"],
                                stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT,
                                start_new_session=True)
    d = Demo(proc, out)
    try:
        ready = wait_until(lambda: READY.search(d.output()) or proc.poll() is not None,
                           timeout=20, what="the demo's ready line")
        assert ready is not True, d.output()
        d.port = int(ready[1])
        d.stats = STATS.search(d.output())[1]
        d.tree = descendants(proc.pid)
        yield d
    finally:  # a failed test: let the demo stop its children, then kill whatever is left
        if proc.poll() is None:
            d.tree |= descendants(proc.pid)
            proc.send_signal(signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(15)
        for pid in [proc.pid, *d.tree]:
            if pid_alive(pid):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
        proc.wait()


@pytest.mark.timeout(30)
def test_demo_serves_from_every_pool_and_sigint_stops_all(demo: Demo) -> None:
    assert len(demo.tree) >= 8, demo.tree  # router master + 1, two pools of master + 2
    port = demo.port
    for _ in range(8):
        assert get(port, "/", f"127.0.0.1:{port}") == (200, b"Hello World")
    status, body = get(port, "/env", f"localhost:{port}")
    assert status == 200 and json.loads(body)["HTTP_HOST"] == f"localhost:{port}"

    doc = json.loads(read_stats(demo.stats))
    (slot,) = [s for s in doc["subscriptions"] if s["key"] == f"127.0.0.1:{port}"]
    served = {n["name"]: n["requests"] for n in slot["nodes"]}
    assert len(served) == 2 and all(served.values()), served

    demo.proc.send_signal(signal.SIGINT)
    assert demo.proc.wait(15) == 0, demo.output()
    assert "demo: stopped" in demo.output()
    assert not wait_gone(demo.tree), demo.output()


@pytest.mark.timeout(30)
def test_children_stop_when_the_demo_is_killed(demo: Demo) -> None:
    demo.proc.kill()
    demo.proc.wait()
    assert not wait_gone(demo.tree)


@pytest.mark.timeout(30)
def test_taken_port_is_one_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run([sys.executable, "-m", "brood.demo", "--port", str(port)],
                                capture_output=True, text=True, timeout=25)
    assert result.returncode == 1
    assert result.stderr == (f"demo: cannot listen on 127.0.0.1:{port}: Address already in "
                             "use; try --port N\n")
