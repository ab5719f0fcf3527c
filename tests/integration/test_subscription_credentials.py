"""``--subscriptions-use-credentials`` on real sockets: the kernel fills in the sender's
SCM_CREDENTIALS with nothing done by the sender (brood's announcer included), UDP
sockets are left alone, the credentials travel to every replica and snapshot,
``--subscriptions-sign-skip-uid`` lets a listed uid past the sign check, and a real
router's stats show the pid/uid/gid of a real node's master."""

from __future__ import annotations

import json
import os
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from _broodkit import read_stats, wait_until

from brood.config.model import Config
from brood.subscription.announcer import Announcer, NodeFacts, resolve_target
from brood.subscription.feed import Channel, RouterFeed, table_from_config
from brood.subscription.packet import Subscription, encode_subscription
from brood.subscription.server import ChannelService, SubscriptionHub, SubscriptionSocket
from brood.subscription.signing import SignChecker
from brood.subscription.spec import parse_subscribe_to
from brood.subscription.table import SubscriptionTable

KEYS = Path("/work/shared/fixtures/keys")
NOW = 1_800_000_000.0
KEY = "creds.example"
ME = (os.getpid(), os.getuid(), os.getgid())


def short_path(tmp_path: Path, name: str = "s.sock") -> str:
    path = str(tmp_path / name)
    assert len(path) < 100, path  # sun_path holds 108 bytes
    return path


def creds_of(table: SubscriptionTable, key: bytes = KEY.encode()) -> list[tuple[int, int, int]]:
    slot = table.slot(key)
    return [] if slot is None else [(n.pid, n.uid, n.gid) for n in slot.nodes]


def plain(address: bytes = b"127.0.0.1:1") -> bytes:
    return encode_subscription(Subscription(KEY.encode(), address))


@pytest.fixture
def unix_served(tmp_path: Path) -> Iterator[tuple[SubscriptionSocket, str]]:
    """A hub reading SCM_CREDENTIALS behind a bound unix datagram socket, and its path."""
    path = short_path(tmp_path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    service = SubscriptionSocket(sock, SubscriptionHub("http", SubscriptionTable(),
                                                       credentials=True))
    yield service, path
    service.on_shutdown()


def test_a_plain_sender_is_identified_by_the_kernel(unix_served) -> None:
    service, path = unix_served
    assert service.credentials
    assert service.sock.getsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED) == 1
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sender:  # no option, no SCM
        sender.sendto(plain(), path)
    service.on_readable(NOW)
    assert creds_of(service.hub.table) == [ME]


def test_the_announcer_needs_nothing_to_send_credentials(unix_served) -> None:
    service, path = unix_served
    (target,) = parse_subscribe_to(f"{path}:{KEY}")
    facts = NodeFacts(cores=1, weight=0, worker_sockets=("127.0.0.1:3031",))
    announcer = Announcer([resolve_target(target, facts)])
    try:
        announcer.announce(NOW)
        service.on_readable(NOW)
    finally:
        announcer.close()
    assert creds_of(service.hub.table) == [ME]
    assert service.hub.table.stats_slots(NOW)[0]["nodes"][0]["pid"] == os.getpid()


def test_without_the_option_nothing_is_read(tmp_path: Path) -> None:
    path = short_path(tmp_path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    service = SubscriptionSocket(sock, SubscriptionHub("http", SubscriptionTable()))
    assert not service.credentials
    assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED) == 0
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sender:
        sender.sendto(plain(), path)
    service.on_readable(NOW)
    assert creds_of(service.hub.table) == [(0, 0, 0)]
    service.on_shutdown()


def test_udp_sockets_are_unaffected() -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    service = SubscriptionSocket(sock, SubscriptionHub("http", SubscriptionTable(),
                                                       credentials=True))
    assert not service.credentials
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        sender.sendto(plain(), sock.getsockname())
    service.on_readable(NOW)
    assert creds_of(service.hub.table) == [(0, 0, 0)]
    service.close()


def replica(channel: Channel) -> RouterFeed:
    channel.child.setblocking(False)
    return RouterFeed(channel.child, table_from_config(Config()), clock=lambda: NOW)


def pump(feed: RouterFeed) -> None:
    for _ in range(1000):
        try:
            message = feed.sock.recv(65536)
        except BlockingIOError:
            return
        feed.handle(message, NOW)
    raise AssertionError("endless channel")


def test_credentials_reach_replicas_and_snapshots() -> None:
    channel = Channel(1)
    hub = SubscriptionHub("http", SubscriptionTable(), channels=[channel], credentials=True)
    live = replica(channel)
    hub.receive(plain(b"127.0.0.1:1"), NOW, (4242, 1000, 1001))
    hub.receive(plain(b"127.0.0.1:2"), NOW)  # e.g. over UDP: none
    pump(live)
    assert creds_of(live.table) == creds_of(hub.table) == [(4242, 1000, 1001), (0, 0, 0)]
    # a respawned router process: drains, says hello, gets a snapshot with them
    fresh = replica(channel)
    fresh.drain()
    fresh.sock.send(b"H")
    ChannelService(channel, hub).on_readable(NOW)
    pump(fresh)
    assert creds_of(fresh.table) == [(4242, 1000, 1001), (0, 0, 0)]
    channel.master.close()
    channel.child.close()


@pytest.fixture
def keys_dir(tmp_path: Path) -> Path:
    if not KEYS.is_dir():  # pragma: no cover
        pytest.skip("key fixtures not available")
    shutil.copy(KEYS / "TEST-ONLY-test.example.com.pub.pem", tmp_path / "test.example.com.pem")
    return tmp_path


def test_sign_skip_uid_lets_only_listed_uids_past_the_sign_check(keys_dir, capfd) -> None:
    hub = SubscriptionHub("http", SubscriptionTable(), checker=SignChecker("SHA1", keys_dir),
                          credentials=True, sign_skip_uids=frozenset({1000}))
    unsigned = encode_subscription(Subscription(b"test.example.com", b"127.0.0.1:1"))
    assert hub.receive(unsigned, NOW, (7, 1001, 1000))[0][0] == "rejected"
    assert hub.receive(unsigned, NOW)[0][0] == "rejected"  # no credentials (UDP)
    assert hub.receive(unsigned, NOW, (7, 1000, 1000))[-1][0] == "new_node"
    assert creds_of(hub.table, b"test.example.com") == [(7, 1000, 1000)]
    assert "unsigned packet for a signed key" in capfd.readouterr().err


def test_sign_skip_uid_without_credentials_is_reported(capfd) -> None:
    cfg = Config([("http-subscription-server", "127.0.0.1:0"),
                  ("subscriptions-sign-skip-uid", "0")])
    hub = SubscriptionHub.from_config(cfg, "http", 1)
    assert hub.sign_skip_uids == frozenset({0}) and not hub.credentials
    assert "has no effect without --subscriptions-use-credentials" in capfd.readouterr().err
    for channel in hub.channels:
        channel.master.close()
        channel.child.close()


def test_router_stats_show_the_nodes_master(start_brood, hello_app, tmp_path) -> None:
    path = short_path(tmp_path)
    router = start_brood("--master", "--http", "127.0.0.1:0", "--http-processes", "2",
                         "--http-subscription-server", path,
                         "--subscriptions-use-credentials", "--http-stats", "127.0.0.1:0")
    router.wait_for_log(r"http subscription server bound on \S+ fd")
    pool = start_brood("--master", "--socket", "127.0.0.1:0", "--wsgi-file", hello_app,
                       "--disable-logging", "--subscribe-to", f"{path}:{KEY}")
    stats = router.address_of("http stats server")
    routers = {int(m[1]) for m in router.wait_for_log(r"spawned uWSGI http \d+ \(pid: (\d+)",
                                                      count=2)}
    seen: dict[int, dict] = {}

    def every_process_shows_the_node() -> bool:
        doc = json.loads(read_stats(stats))
        nodes = [n for s in doc["subscriptions"] if s["key"] == KEY for n in s["nodes"]]
        if nodes:
            seen[doc["pid"]] = nodes[0]
        return set(seen) == routers

    wait_until(every_process_shows_the_node, timeout=20, interval=0.01,
               what="the node in the stats of both router processes")
    sockets = json.loads(read_stats(stats))["http"]
    assert len(sockets) == 2 and sockets[1] == path  # the subscription server too, as uWSGI
    for node in seen.values():
        assert node["name"] == pool.address_of()
        assert (node["pid"], node["uid"], node["gid"]) == (pool.pid, os.getuid(), os.getgid())
