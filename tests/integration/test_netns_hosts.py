"""Subscriptions across hosts (issue 4): network namespaces joined by veth links stand in
for four machines, a client, a router and two nodes::

    client 10.77.3.2 --- 10.77.3.1 router 10.77.1.1 --- 10.77.1.2 node a
                                          10.77.2.1 --- 10.77.2.2 node b

The router listens on its client link and runs one subscription server per node link;
each node announces its own address across its link. The client requests through the
router while node a's cable is pulled (its end of the link set down): the router's
connects to a time out, traffic moves to b, and a's subscription expires after the
tolerance; plugged back in, a announces again and gets traffic again.

Needs root and ``ip netns``; skipped otherwise. Every namespace is made for this test
(unique names) and deleted at teardown, failure or not; the 10.77.x.y addresses exist
only inside them. The figures are printed (``pytest -s``).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from _broodkit import wait_until

pytestmark = pytest.mark.slow

HERE = Path(__file__).parent
WHOAMI = str(HERE / "_whoami.py")
KEY = "example.test"
TOLERANCE = 3  # --subscription-tolerance
CONNECT_TIMEOUT = 1  # --http-connect-timeout, seconds
IDLE_TIMEOUT = 3  # --http-timeout: a request in flight on a cut node ends after this
THREADS = 3
STATS = "127.0.0.1:9191"  # inside the router's own namespace: nothing else listens there
# (namespace suffix, its address, peer suffix, peer address) of each link
LINKS = (("c", "10.77.3.2", "r", "10.77.3.1"),
         ("a", "10.77.1.2", "r", "10.77.1.1"),
         ("b", "10.77.2.2", "r", "10.77.2.1"))


@dataclass
class Hosts:
    """The namespaces of one test run: ``ns["r"]``, ``ns["c"]``, ... and the node end of
    each node's link, ``nic["a"]``."""

    ip: str
    ns: dict[str, str] = field(default_factory=dict)
    nic: dict[str, str] = field(default_factory=dict)

    def ip_cmd(self, host: str, *args: str) -> None:
        subprocess.run([self.ip, "-n", self.ns[host], *args], check=True,
                       capture_output=True, timeout=10)

    def exec_prefix(self, host: str) -> list[str]:
        return [self.ip, "netns", "exec", self.ns[host]]

    def run(self, host: str, *cmd: str, timeout: float = 10) -> subprocess.CompletedProcess:
        return subprocess.run([*self.exec_prefix(host), *cmd], capture_output=True,
                              timeout=timeout)


def _ip(ip: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([ip, *args], capture_output=True, timeout=10)


@pytest.fixture
def hosts() -> Iterator[Hosts]:
    ip = shutil.which("ip")
    if os.geteuid() != 0 or ip is None:
        pytest.skip("needs root and the ip command (network namespaces)")
    tag = secrets.token_hex(3)
    made = Hosts(ip)
    try:
        for host in ("r", "c", "a", "b"):
            name = f"brood-{tag}-{host}"
            probe = _ip(ip, "netns", "add", name)
            if probe.returncode != 0:
                pytest.skip(f"ip netns add failed: {probe.stderr.decode().strip()}")
            made.ns[host] = name
            if made.run(host, "true").returncode != 0:
                pytest.skip("ip netns exec does not work here")
            made.ip_cmd(host, "link", "set", "lo", "up")
        for host, address, peer, peer_address in LINKS:
            here, there = f"br{tag}{host}0", f"br{tag}{host}1"  # 15 bytes at most
            made.nic[host] = here
            result = _ip(ip, "link", "add", here, "netns", made.ns[host], "type", "veth",
                         "peer", "name", there, "netns", made.ns[peer])
            if result.returncode != 0:
                pytest.skip(f"cannot make a veth pair: {result.stderr.decode().strip()}")
            for side, nic, addr in ((host, here, address), (peer, there, peer_address)):
                made.ip_cmd(side, "addr", "add", f"{addr}/24", "dev", nic)
                made.ip_cmd(side, "link", "set", nic, "up")
        yield made
    finally:
        for name in made.ns.values():  # the veth pairs go with their namespaces
            _ip(ip, "netns", "del", name)


class Client:
    """``_loadkit`` run as a script in the client namespace; results read from its file."""

    def __init__(self, hosts: Hosts, address: str, out: Path) -> None:
        self.out = out
        self._file = open(out, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [*hosts.exec_prefix("c"), sys.executable, str(HERE / "_loadkit.py"), address, KEY,
             "--seconds", "60", "--threads", str(THREADS), "--timeout", "10"],
            stdout=self._file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def results(self) -> list[dict]:
        out = []
        for line in self.out.read_text().splitlines():
            if line.startswith("{") and line.endswith("}"):
                out.append(json.loads(line))
        return out

    def since(self, t: float) -> list[dict]:
        return [r for r in self.results() if r["t0"] >= t]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._file.close()


def router_nodes(hosts: Hosts) -> dict[str, dict] | None:
    """The router's nodes for KEY (its stats, read from inside its namespace)."""
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from _broodkit import read_stats; "
            "sys.stdout.buffer.write(read_stats(sys.argv[2]))")
    done = hosts.run("r", sys.executable, "-c", code, str(HERE), STATS)
    if done.returncode != 0:
        return None
    doc = json.loads(done.stdout)
    return {n["name"]: n for s in doc["subscriptions"] if s["key"] == KEY for n in s["nodes"]}


def test_pulled_cable_moves_traffic_to_the_other_host(hosts: Hosts, start_brood, tmp_path) -> None:
    router = start_brood("--master", "--http", "10.77.3.1:0",
                         "--http-subscription-server", "10.77.1.1:0",
                         "--http-subscription-server", "10.77.2.1:0",
                         "--subscription-tolerance", str(TOLERANCE),
                         "--http-connect-timeout", str(CONNECT_TIMEOUT),
                         "--http-timeout", str(IDLE_TIMEOUT),
                         "--http-stats", STATS,
                         prefix=hosts.exec_prefix("r"))
    servers = {m[2]: m[1] for m in router.wait_for_log(
        r"http subscription server bound on (10\.77\.(\d)\.1:\d+) fd", count=2)}
    subscription_server = {"a": servers["1"], "b": servers["2"]}
    front = router.address_of("http socket 0")
    node_ip = {"a": "10.77.1.2", "b": "10.77.2.2"}
    nodes = {name: start_brood("--master", "--socket", f"{node_ip[name]}:0",
                               "--processes", "2", "--wsgi-file", WHOAMI, "--disable-logging",
                               "--subscribe-to", f"{subscription_server[name]}:{KEY}",
                               "--subscribe-freq", "1", env={"BROOD_TEST_NODE": name},
                               prefix=hosts.exec_prefix(name))
             for name in ("a", "b")}
    addr = {name: p.address_of() for name, p in nodes.items()}
    for name in nodes:
        assert addr[name].startswith(node_ip[name] + ":")
        router.wait_for_log(re.escape(f"{KEY} => new node: {addr[name]}"), timeout=10)

    client = Client(hosts, front, tmp_path / "client.jsonl")
    figures: dict[str, object] = {}
    try:
        t_start = time.monotonic()

        def answered_by(t: float) -> set[str]:
            return {r["node"] for r in client.since(t) if r["status"] == 200}

        wait_until(lambda: answered_by(t_start) == {"a", "b"}, timeout=15,
                   what="answers from both hosts")

        # pull a's cable: its end of the link goes down
        t_cut = time.monotonic()
        hosts.ip_cmd("a", "link", "set", hosts.nic["a"], "down")
        # requests begun while the ip command ran may have connected to a just before
        # the link went down: they are in flight on a, not routed after the cut
        t_down = time.monotonic()
        t_moved = t_cut + CONNECT_TIMEOUT + 1  # a connect to a times out, then b is tried
        wait_until(lambda: len(client.since(t_moved)) >= 100, timeout=15,
                   what="100 requests after the cut")
        expired = None
        deadline = t_cut + TOLERANCE + 5
        while time.monotonic() < deadline:
            table = router_nodes(hosts)
            if table is not None and addr["a"] not in table:
                expired = time.monotonic()
                break
        assert expired is not None, f"a still in the router's table: {router_nodes(hosts)}"
        assert addr["b"] in (router_nodes(hosts) or {})
        router.wait_for_log(re.escape(f"marking {addr['a']} as failed (no announce received "
                                      f"in {TOLERANCE} seconds)"), timeout=5)
        after_cut = client.since(t_down)
        moved = client.since(t_moved)
        assert all(r["status"] == 200 and r["node"] == "b" for r in moved), \
            [r for r in moved if r["status"] != 200 or r["node"] != "b"][:5]
        slow = [r for r in after_cut if r["t1"] - r["t0"] >= CONNECT_TIMEOUT]
        # --http-connect-timeout, not the 3 s of a failed ARP nor --http-timeout
        assert all(r["t1"] - r["t0"] < CONNECT_TIMEOUT + 1.5 for r in after_cut), slow
        figures["requests before the cut"] = len(client.results()) - len(after_cut)
        figures["waited for a connect timeout, answered by b"] = len(
            [r for r in slow if r["status"] == 200])
        figures["a expired from the table after"] = f"{expired - t_cut:.3f} s"
        figures["requests after the move, all 200 from b"] = len(moved)
        assert expired - t_cut <= TOLERANCE + 2.5

        # plug it back in: a announces again and gets traffic again
        t_plug = time.monotonic()
        hosts.ip_cmd("a", "link", "set", hosts.nic["a"], "up")
        router.wait_for_log(re.escape(f"{KEY} => new node: {addr['a']}"), count=2, timeout=10)
        wait_until(lambda: "a" in answered_by(t_plug), timeout=10, what="a back in traffic")
        figures["a back in traffic after"] = f"{time.monotonic() - t_plug:.3f} s"
    finally:
        client.stop()
    results = client.results()
    lost = [r for r in results if r["status"] != 200]
    assert all(r["t0"] <= t_down for r in lost), lost  # only what a had in flight
    assert len(lost) <= THREADS, lost
    figures["lost (in flight on a at the cut)"] = len(lost)
    figures["requests"] = len(results)
    print("\nnetns figures:", json.dumps(figures, indent=1))
