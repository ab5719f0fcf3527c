"""Subscriptions across implementations: a real uWSGI node announcing to brood's server,
and brood's announcer subscribing to a real uWSGI HTTP router. Skipped without uWSGI."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import brood.demo.hello
from brood.subscription.announcer import Announcer, NodeFacts, resolve_target
from brood.subscription.server import SubscriptionHub, SubscriptionSocket
from brood.subscription.spec import parse_subscribe2, parse_subscribe_to
from brood.subscription.table import SubscriptionTable

UWSGI = shutil.which("uwsgi")
pytestmark = pytest.mark.skipif(UWSGI is None, reason="uwsgi is not installed")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp, socket.socket() as tcp:
        tcp.bind(("127.0.0.1", 0))
        port = tcp.getsockname()[1]
        udp.bind(("127.0.0.1", port))  # free for both kinds
        return port


def wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def uwsgi(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start real uWSGI instances; each is stopped with SIGINT (SIGTERM reloads it)."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(*args: str) -> subprocess.Popen[bytes]:
        log = open(tmp_path / f"uwsgi-{len(procs)}.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen([UWSGI, *args], stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def test_uwsgi_node_subscribes_to_brood(uwsgi) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    hub = SubscriptionHub("http", SubscriptionTable())
    service = SubscriptionSocket(sock, hub)
    port = sock.getsockname()[1]
    proc = uwsgi("--plugins", "python3", "--socket", "127.0.0.1:0", "--master",
                 "--worker-reload-mercy", "2", "--reload-mercy", "2",
                 "--wsgi-file", brood.demo.hello.__file__,
                 "--subscribe-to", f"127.0.0.1:{port}:example.com")
    try:
        def subscribed() -> Any:
            service.on_readable(time.time())
            slot = hub.table.slot(b"example.com")
            return slot is not None and slot.nodes

        nodes = wait_for(subscribed, 20, "the uWSGI node's announce")
        assert nodes[0].name.startswith("127.0.0.1:") and not nodes[0].name.endswith(":0")
        proc.send_signal(signal.SIGINT)  # uWSGI unsubscribes, then stops its workers

        def gone() -> bool:
            service.on_readable(time.time())
            return hub.table.slot(b"example.com") is None

        wait_for(gone, 10, "the unsubscribe at uWSGI's shutdown")
    finally:
        service.close()
        hub.close()


def router_nodes(stats_port: int) -> dict[str, list[dict[str, Any]]]:
    try:
        with socket.create_connection(("127.0.0.1", stats_port), timeout=5) as conn:
            data = b""
            while chunk := conn.recv(65536):
                data += chunk
    except OSError:
        return {}
    doc = json.loads(data)
    return {s["key"]: s["nodes"] for s in doc.get("subscriptions", [])}


def test_brood_announcer_subscribes_to_uwsgi_router(uwsgi) -> None:
    sub_port, stats_port = free_port(), free_port()
    uwsgi("--plugins", "http", "--master", "--http", "127.0.0.1:0",
          "--http-subscription-server", f"127.0.0.1:{sub_port}",
          "--http-stats", f"127.0.0.1:{stats_port}")
    wait_for(lambda: router_nodes(stats_port) == {} and _answers(stats_port), 20,
             "the uWSGI router's stats server")
    facts = NodeFacts(cores=2, weight=3, worker_sockets=["127.0.0.1:5555"])
    (plain,) = parse_subscribe_to(f"127.0.0.1:{sub_port}:brood.example.com,5")
    extra = parse_subscribe2(f"server=127.0.0.1:{sub_port},key=extra.example.com,"
                             "backup=1,algo=lrc")  # brood's additional vars: ignored
    ann = Announcer([resolve_target(plain, facts), resolve_target(extra, facts, "subscribe2")])
    ann.tick(time.time())
    nodes = wait_for(lambda: (n := router_nodes(stats_port)) and len(n) == 2 and n, 10,
                     "brood's nodes in the uWSGI router's stats")
    node = nodes["brood.example.com"][0]
    assert (node["name"], node["modifier1"], node["weight"], node["cores"]) == (
        "127.0.0.1:5555", 5, 3, 2)
    assert nodes["extra.example.com"][0]["name"] == "127.0.0.1:5555"
    ann.on_shutdown()
    wait_for(lambda: router_nodes(stats_port) == {}, 10, "the nodes gone after unsubscribe")


def _answers(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True
