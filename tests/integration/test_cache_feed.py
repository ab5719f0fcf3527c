"""The master's caches on real loopback sockets, in one process: cache sync packets on
a UDP socket, the subscription channel carrying the changes to a router replica,
snapshots for a respawned replica, expiry, bad packets; and the plan's checks."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from brood.cache.hub import CacheHub, CacheSyncSocket
from brood.cache.replica import CacheReplica
from brood.cache.spec import CacheSpec
from brood.cache.sync import SyncCommand, encode_sync
from brood.config.model import Config
from brood.config.option import OptionError
from brood.master_env import Binder
from brood.plan import build_plan
from brood.subscription.feed import Channel, RouterFeed, table_from_config
from brood.subscription.packet import Subscription, encode_subscription
from brood.subscription.server import ChannelService, SubscriptionHub
from brood.subscription.table import SubscriptionTable

NOW = 1_800_000_000.0
SPECS = [CacheSpec("c", 10), CacheSpec("other", 10)]


class Wired:
    """A master hub with its UDP socket, one channel, and the replica at its far end."""

    def __init__(self, subscriptions: bool = False) -> None:
        self.caches = CacheHub(SPECS, clock=lambda: NOW)
        self.channel = Channel(1)
        self.hub = SubscriptionHub("fastrouter", SubscriptionTable(), channels=[self.channel])
        self.hub.subscriptions = subscriptions
        self.hub.caches = self.caches
        self.caches.add_sink(self.hub.push_cache)
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        self.udp = CacheSyncSocket(sock, self.caches, "c")
        self.client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.feed = self.replica(subscriptions)

    def replica(self, subscriptions: bool) -> RouterFeed:
        self.channel.child.setblocking(False)
        return RouterFeed(self.channel.child,
                          table_from_config(Config()) if subscriptions else None,
                          clock=lambda: NOW, caches=CacheReplica(SPECS, clock=lambda: NOW))

    def send(self, *packets: bytes) -> None:
        for packet in packets:
            self.client.sendto(packet, self.udp.sock.getsockname())
        self.udp.on_readable(NOW)
        self.pump()

    def pump(self) -> int:
        for count in range(1000):
            try:
                message = self.feed.sock.recv(65536)
            except BlockingIOError:
                return count
            self.feed.handle(message, NOW)
        raise AssertionError("endless channel")

    def get(self, key: bytes, cache: str = "c") -> bytes | None:
        assert self.feed.caches is not None
        return self.feed.caches.caches[cache].get(key)

    def close(self) -> None:
        self.client.close()
        self.udp.on_shutdown()
        self.channel.master.close()
        self.channel.child.close()


@pytest.fixture
def wired() -> Iterator[Wired]:
    w = Wired()
    yield w
    w.close()


def test_set_update_delete_reach_the_replica(wired: Wired) -> None:
    assert wired.feed.resolver is None  # no subscription server: no table replica
    wired.send(encode_sync(SyncCommand(b"k", b"127.0.0.1:1")))
    assert wired.get(b"k") == b"127.0.0.1:1"
    wired.send(encode_sync(SyncCommand(b"k", b"127.0.0.1:2 127.0.0.1:3")))
    assert wired.get(b"k") == b"127.0.0.1:2 127.0.0.1:3"
    assert wired.get(b"k", "other") is None  # the socket belongs to cache "c"
    wired.send(encode_sync(SyncCommand(b"k")))
    assert wired.get(b"k") is None
    assert wired.caches.caches.caches["c"].get(b"k") is None


def test_expiry_carried_by_the_packet_then_the_ticks_deletion(wired: Wired) -> None:
    wired.send(encode_sync(SyncCommand(b"k", b"127.0.0.1:1", int(NOW) + 5)))
    assert wired.get(b"k") == b"127.0.0.1:1"
    assert wired.feed.caches.caches["c"].get(b"k", NOW + 5) is None  # lazy, in the replica
    wired.caches.tick(NOW + 5)
    assert wired.pump() == 1
    assert wired.feed.caches.caches["c"].all_keys() == []


def test_bad_packets_are_logged_and_change_nothing(wired: Wired, capfd) -> None:
    wired.send(encode_sync(SyncCommand(b"k", b"127.0.0.1:1")))
    wired.send(b"garbage!", b"o\x04\x00\x0b\x01\x00k",
               encode_sync(SyncCommand(b"x" * 3000, b"127.0.0.1:9")))
    err = capfd.readouterr().err
    assert "[cache-udp-server] invalid packet from 127.0.0.1:" in err
    assert "(modifier1 103, not 111), dropped" in err
    assert "(header says 4 bytes, 3 follow), dropped" in err
    assert "key of 3000 bytes over keysize 2048" in err
    assert "Traceback" not in err
    assert wired.get(b"k") == b"127.0.0.1:1" and wired.caches.dropped == 3


def test_a_respawned_replica_gets_a_snapshot(wired: Wired) -> None:
    wired.send(encode_sync(SyncCommand(b"kept", b"127.0.0.1:1")),
               encode_sync(SyncCommand(b"gone", b"127.0.0.1:2")))
    wired.caches.put("other", b"o", b"127.0.0.1:3")
    wired.feed = wired.replica(False)  # a new process: empty, then a missed deletion
    wired.feed.caches.caches["c"].put(b"stale", b"127.0.0.1:9")
    wired.send(encode_sync(SyncCommand(b"gone")))
    assert wired.feed.drain() == 0  # the test pumped everything already
    wired.feed.sock.send(b"H")
    ChannelService(wired.channel, wired.hub).on_readable(NOW)
    wired.pump()
    assert wired.feed.caches.caches["c"].all_keys() == [b"kept"]
    assert wired.get(b"o", "other") == b"127.0.0.1:3"


def test_subscriptions_and_caches_share_the_channel() -> None:
    wired = Wired(subscriptions=True)
    try:
        wired.hub.receive(encode_subscription(Subscription(b"sub", b"127.0.0.1:7")), NOW)
        wired.send(encode_sync(SyncCommand(b"k", b"127.0.0.1:1")))
        assert wired.feed.table is not None
        assert [s.key for s in wired.feed.table.slots()] == [b"sub"]
        assert wired.get(b"k") == b"127.0.0.1:1"
    finally:
        wired.close()


def plan_for(*pairs: tuple[str, object]):
    return build_plan(Config([("fastrouter", "127.0.0.1:0"), *pairs]), Binder())


def close(plan) -> None:
    for lst in plan.listeners:
        lst.sock.close()
    for svc in plan.services:
        svc.on_shutdown()


@pytest.mark.parametrize(("pairs", "message"), [
    ([("fastrouter-use-cache", "c")], "--fastrouter-use-cache: no cache is declared"),
    ([("cache2", "name=a,items=5"), ("fastrouter-use-cache", "c")],
     '--fastrouter-use-cache c: unable to find cache "c" \\(declared: a\\)'),
    ([("cache2", "name=a"), ("fastrouter-use-cache", "a")], "--cache2 name=a: cache 'a' needs"),
    ([("cache2", "name=a,items=5"), ("add-cache-item", "b k=v")],
     "--add-cache-item b k=v: no cache named 'b'"),
    ([("cache2", "name=a,items=2"), ("add-cache-item", "a k=v"), ("add-cache-item", "a j=v")],
     '--add-cache-item a j=v: cannot store it in "a": cache is full'),
    ([("cache-udp-server", "127.0.0.1:0")], "--cache-udp-server 127.0.0.1:0: no cache"),
])
def test_plan_stops_on_cache_mistakes(pairs, message) -> None:
    with pytest.raises(OptionError, match=message):
        close(plan_for(*pairs))


def test_plan_builds_the_hub_and_binds_the_sync_servers() -> None:
    plan = plan_for(("cache2", "name=a,items=5,udp=127.0.0.1:0"), ("cache2", "name=b,items=5"),
                    ("cache-udp-server", "127.0.0.1:0"), ("add-cache-item", "k=127.0.0.1:1"),
                    ("fastrouter-use-cache", ""), ("fastrouter-processes", 2))
    try:
        (hub,) = [s for s in plan.services if isinstance(s, CacheHub)]
        sockets = [s for s in plan.services if isinstance(s, CacheSyncSocket)]
        assert sorted(s.cache for s in sockets) == ["a", "a"]  # the default cache is "a"
        assert [c.get(b"k") for c in hub.caches] == [b"127.0.0.1:1"] * 2  # every cache
        (sub,) = [s for s in plan.services if isinstance(s, SubscriptionHub)]
        assert sub.caches is hub and not sub.subscriptions and len(sub.channels) == 2
    finally:
        close(plan)


def test_a_burst_of_bad_packets_logs_a_few_lines(wired: Wired, capfd) -> None:
    wired.send(*[b"garbage!"] * 50)
    lines = [line for line in capfd.readouterr().err.splitlines() if "invalid packet" in line]
    assert 1 <= len(lines) <= 5 and wired.caches.dropped == 50


def test_a_burst_reaches_each_channel_as_one_message(wired: Wired) -> None:
    """One read of the socket, one push: a fleet re-registering at once costs the master
    one message per router channel per read, not one per datagram."""
    pushes = []
    wired.caches.add_sink(pushes.append)
    wired.send(*[encode_sync(SyncCommand(b"k%d" % i, b"127.0.0.1:1")) for i in range(8)])
    assert [len(records) for records in pushes] == [8]
    assert wired.get(b"k7") == b"127.0.0.1:1"


def test_sync_sockets_ask_for_a_large_receive_buffer(wired: Wired) -> None:
    asked = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        default = asked.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    finally:
        asked.close()
    assert wired.udp.sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) > default
