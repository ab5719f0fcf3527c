"""``python -m brood.demo``: brood's main job on loopback, with the bundled app.

One brood HTTP router with a subscription server, and ``--nodes`` worker pools of
brood.demo.hello that announce themselves to it (``--subscribe-to``) under the keys
``127.0.0.1:PORT`` and ``localhost:PORT`` (the router's key is the Host header, port kept).
Each brood is a child process in its own session; its output is held until the demo is
ready, then shown with the child's name in front. Ctrl-C or SIGTERM sends SIGINT to every
brood master, waits, and kills whatever is left.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

HOST = "127.0.0.1"
START_TIMEOUT = 30.0  # seconds for every brood to bind, subscribe and answer
STOP_TIMEOUT = 10.0  # seconds the masters get to stop before SIGKILL
BOUND = re.compile(r"socket 0 bound to TCP address (\S+) fd")
SUBSCRIPTION_SERVER = re.compile(r"subscription server bound on (\S+) fd")
READY = re.compile(r"^(brood: ready) \(pid")
STOP = threading.Event()  # set by SIGINT/SIGTERM

# Each child runs this, then becomes ``python -m brood``: should the demo die without
# stopping it (SIGKILL, a crash), the kernel sends the brood master SIGINT (Linux
# PR_SET_PDEATHSIG, kept across exec), so no pool outlives the demo.
_ORPHAN_GUARD = """import ctypes, os, signal, sys
try:
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGINT)
except AttributeError:
    pass
if os.getppid() != int(sys.argv[1]):
    sys.exit("demo: parent gone before brood started")
os.execv(sys.executable, [sys.executable, "-m", "brood", *sys.argv[2:]])
"""


class DemoError(Exception):
    """A one-line reason the demo cannot run."""


class Child:
    """One ``python -m brood`` started by the demo; its output read by a thread."""

    def __init__(self, name: str, args: list[str]) -> None:
        self.name = name
        env = {k: v for k, v in os.environ.items() if k not in ("BROOD_FDS", "BROOD_RELOADS")}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _ORPHAN_GUARD, str(os.getpid()), *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )
        self.lines: collections.deque[str] = collections.deque(maxlen=1000)  # bounded
        self.echo = False
        self._changed = threading.Condition()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.decode(errors="replace").rstrip()
            with self._changed:
                self.lines.append(line)
                self._changed.notify_all()
            if self.echo:
                with contextlib.suppress(OSError):  # our stdout closed: keep draining
                    print(f"{self.name:>6} | {line}", flush=True)

    def wait_for(self, pattern: re.Pattern[str], deadline: float) -> str:
        """The first group of the first output line matching ``pattern``."""
        with self._changed:
            while True:
                for line in self.lines:
                    if found := pattern.search(line):
                        return found[1]
                if self.proc.poll() is not None:
                    raise DemoError(f"{self.name} exited: {self.last_error()}")
                if STOP.is_set():
                    raise DemoError("interrupted")
                if time.monotonic() > deadline:
                    raise DemoError(f"{self.name} did not start within {START_TIMEOUT:.0f}s")
                self._changed.wait(0.1)

    def last_error(self) -> str:
        """The child's last ``brood: ...`` line (its one-line error), else its last line."""
        with self._changed:  # the pump may still be appending
            errors = [line for line in self.lines if line.startswith("brood:")]
            return errors[-1] if errors else (self.lines[-1] if self.lines else "no output")

    def interrupt(self) -> None:
        """SIGINT to the master: uWSGI's and brood's "stop now"."""
        with contextlib.suppress(ProcessLookupError):
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGINT)

    def reap(self, deadline: float) -> None:
        """Wait for the master; then SIGKILL its whole session, leftovers included."""
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(max(deadline - time.monotonic(), 0.1))
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def read_stats(address: str) -> dict:
    host, _, port = address.rpartition(":")
    with socket.create_connection((host, int(port)), timeout=2) as sock:
        chunks = []
        while data := sock.recv(65536):
            chunks.append(data)
    return json.loads(b"".join(chunks))


def subscribed(stats: str, key: str) -> set[str]:
    """Node addresses the router's stats list under ``key`` (empty while not answering)."""
    try:
        doc = read_stats(stats)
    except (OSError, ValueError):
        return set()
    return {n["name"] for s in doc.get("subscriptions", []) if s["key"] == key
            for n in s["nodes"]}


def get_status(port: int, key: str) -> int:
    conn = http.client.HTTPConnection(HOST, port, timeout=2)
    try:
        conn.request("GET", "/", headers={"Host": key})
        return conn.getresponse().status
    except OSError:
        return 0
    finally:
        conn.close()


def wait_until(check, deadline: float, what: str, children: list[Child]) -> None:
    while not check():
        for child in children:
            if child.proc.poll() is not None:
                raise DemoError(f"{child.name} exited: {child.last_error()}")
        if STOP.is_set():
            raise DemoError("interrupted")
        if time.monotonic() > deadline:
            raise DemoError(f"timed out waiting for {what}")
        time.sleep(0.05)  # a poll interval, bounded by the deadline above


def start(port: int, nodes: int, children: list[Child]) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    stats = f"{HOST}:{free_port()}"
    router = Child("router", ["--master", "--http", f"{HOST}:{port}",
                              "--http-subscription-server", f"{HOST}:0", "--http-stats", stats])
    children.append(router)
    try:
        http_addr = router.wait_for(BOUND, deadline)
    except DemoError as exc:
        if "in use" in str(exc):
            reason = router.last_error().rpartition(": ")[2]
            raise DemoError(f"cannot listen on {HOST}:{port}: {reason}; try --port N") from None
        raise
    port = int(http_addr.rpartition(":")[2])
    server = router.wait_for(SUBSCRIPTION_SERVER, deadline)
    keys = [f"{HOST}:{port}", f"localhost:{port}"]
    for n in range(1, nodes + 1):
        subscribe = [arg for key in keys for arg in ("--subscribe-to", f"{server}:{key}")]
        children.append(Child(f"node{n}", ["--master", "--socket", f"{HOST}:0", "--module",
                                           "brood.demo.hello", "-p", "2", *subscribe]))
    addresses = {child.name: child.wait_for(BOUND, deadline) for child in children[1:]}
    for child in children:
        child.wait_for(READY, deadline)
    wait_until(lambda: subscribed(stats, keys[0]) >= set(addresses.values()), deadline,
               "every node to subscribe", children)
    wait_until(lambda: get_status(port, keys[0]) == 200, deadline,
               "the router to answer 200", children)

    url = f"http://{keys[0]}/"
    print(f"brood demo ready: {url}")
    print(f"  router  pid {router.proc.pid}: http {http_addr}, subscription server {server}, "
          f"stats {stats}")
    for child in children[1:]:
        print(f"  {child.name:<7} pid {child.proc.pid}: 2 workers of brood.demo.hello on uwsgi "
              f"{addresses[child.name]}, subscribed as {' and '.join(keys)}")
    print("try:")
    for path in ("", "env", "stream", "big"):
        print(f"  curl -i {url}{path}")
    print(f"  curl -s --http0.9 {stats}   # router stats: requests per node")
    print(f"  add a node: brood --socket {HOST}:0 --module brood.demo.hello "
          f"--subscribe-to {server}:{keys[1]}")
    print("Ctrl-C stops everything; request logs follow.", flush=True)
    for child in children:
        child.echo = True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m brood.demo",
        description="Run a brood HTTP router and worker pools of the demo app on 127.0.0.1.")
    parser.add_argument("--port", type=int, default=8080,
                        help="HTTP port of the router on 127.0.0.1 (0: any free port)")
    parser.add_argument("--nodes", type=int, default=2, help="number of worker pools")
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535 or args.nodes < 1:
        parser.error("--port must be 0..65535 and --nodes at least 1")

    def on_signal(signum: int, frame: object) -> None:
        STOP.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    children: list[Child] = []
    status = 0
    try:
        start(args.port, args.nodes, children)
        while not STOP.wait(0.5):
            dead = [c for c in children if c.proc.poll() is not None]
            if dead:
                raise DemoError(f"{dead[0].name} exited: {dead[0].last_error()}")
    except DemoError as exc:
        if not STOP.is_set():
            print(f"demo: {exc}", file=sys.stderr)
            status = 1
    finally:
        deadline = time.monotonic() + STOP_TIMEOUT
        for child in children:  # every master first, so they stop together
            child.interrupt()
        for child in children:
            child.reap(deadline)
        if children and not status:
            print("demo: stopped", flush=True)
    return status


if __name__ == "__main__":
    raise SystemExit(main())
