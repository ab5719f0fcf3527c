"""A light HTTP load for churn tests: a few client threads requesting through a router,
every request recorded (start, end, status, who answered it), bounded in count and time.

In-process::

    load = Load("127.0.0.1:8080", "example.test")
    load.start(); ...; load.stop()
    load.results  # [Result(t0, t1, status, node, pid, error), ...]

As a script, for a client inside a network namespace::

    python _loadkit.py ADDRESS HOST [--seconds N] [--threads N] [--timeout S]

prints one JSON object per request as it ends (flushed), and stops at SIGTERM/SIGINT
or after N seconds. Times are ``time.monotonic()``: CLOCK_MONOTONIC is one clock for
every process of the machine (namespaces included), so a test compares them with its
own timestamps.

The answers are the ``_whoami`` app's ``NODE PID``. Thread ``i`` keeps a connection for
``KEEPALIVE[i]`` requests, so some requests open a new client connection and some reuse
one (the router connects to a node per request either way). A pause after each request
keeps the load light: a few hundred requests per second at most.
"""

from __future__ import annotations

import argparse
import http.client
import json
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

KEEPALIVE = (1, 4, 16, 2)  # requests per client connection, per thread
PAUSE = 0.01  # seconds between two requests of one thread
MAX_REQUESTS = 50_000  # a safety bound on one run


@dataclass(frozen=True)
class Result:
    t0: float
    t1: float
    status: int | None  # None: no HTTP answer (error says why)
    node: str = ""
    pid: int = 0
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status == 200


def split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


class Load:
    """Client threads requesting ``GET /`` with ``Host: host`` until ``stop()``."""

    def __init__(self, address: str, host: str, *, threads: int = 3, timeout: float = 5.0,
                 pause: float = PAUSE,
                 on_result: Callable[[Result], None] | None = None) -> None:
        self.address = split_address(address)
        self.host = host
        self.timeout = timeout
        self.pause = pause
        self.on_result = on_result
        self.results: list[Result] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(KEEPALIVE[i % len(KEEPALIVE)],),
                             daemon=True, name=f"load-{i}")
            for i in range(threads)
        ]

    def start(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> list[Result]:
        self._stop.set()
        for thread in self._threads:
            thread.join(self.timeout + 5)
        return self.results

    def since(self, t: float) -> list[Result]:
        """Results of the requests started at or after ``t``."""
        with self._lock:
            return [r for r in self.results if r.t0 >= t]

    def nodes_since(self, t: float) -> set[str]:
        return {r.node for r in self.since(t) if r.ok}

    def _record(self, result: Result) -> None:
        with self._lock:
            self.results.append(result)
        if self.on_result is not None:
            self.on_result(result)

    def _one(self, conn: http.client.HTTPConnection) -> tuple[Result, bool]:
        """One request; (result, whether the connection may be used again)."""
        t0 = time.monotonic()
        try:
            conn.request("GET", "/", headers={"Host": self.host})
            resp = conn.getresponse()
            body = resp.read().decode("utf-8", "replace")
        except (OSError, http.client.HTTPException) as exc:
            return Result(t0, time.monotonic(), None, error=f"{type(exc).__name__}: {exc}"), False
        t1 = time.monotonic()
        node, _, pid = body.partition(" ")
        if resp.status != 200:
            return Result(t0, t1, resp.status, error=body[:200]), not resp.will_close
        return Result(t0, t1, 200, node, int(pid) if pid.isdigit() else 0), not resp.will_close

    def _run(self, keepalive: int) -> None:
        conn: http.client.HTTPConnection | None = None
        used = 0
        while not self._stop.is_set() and len(self.results) < MAX_REQUESTS:
            if conn is None:
                conn = http.client.HTTPConnection(*self.address, timeout=self.timeout)
                used = 0
            result, reusable = self._one(conn)
            self._record(result)
            used += 1
            if not reusable or used >= keepalive:
                conn.close()
                conn = None
            self._stop.wait(self.pause)
        if conn is not None:
            conn.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("address")
    parser.add_argument("host")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--threads", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=5.0)
    args = parser.parse_args(argv)
    out_lock = threading.Lock()

    def emit(result: Result) -> None:
        with out_lock:
            sys.stdout.write(json.dumps(asdict(result)) + "\n")
            sys.stdout.flush()

    def interrupted(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    load = Load(args.address, args.host, threads=args.threads, timeout=args.timeout,
                on_result=emit).start()
    try:
        time.sleep(args.seconds)  # the run's length, cut short by SIGTERM/SIGINT
    except KeyboardInterrupt:
        pass
    load.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
