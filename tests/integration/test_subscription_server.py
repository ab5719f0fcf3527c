"""The master-side subscription server on real loopback sockets: packets, bad packets,
signatures, notify acks, resubscribe (and its loop breaker), replicas and snapshots."""

from __future__ import annotations

import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from brood.subscription import feed as feed_module
from brood.subscription.feed import Channel, RouterFeed, table_from_config
from brood.subscription.packet import (
    UNSUBSCRIBE,
    Subscription,
    decode_subscription,
    encode_subscription,
)
from brood.subscription.server import (
    ChannelService,
    Forwarder,
    SubscriptionHub,
    SubscriptionSocket,
)
from brood.subscription.signing import SignChecker, Signer
from brood.subscription.table import SubscriptionTable

FIX = Path("/work/shared/fixtures")
SUBS = FIX / "subscription"
KEYS = FIX / "keys"

if not SUBS.is_dir():  # pragma: no cover
    pytest.skip("subscription fixtures not available", allow_module_level=True)

NOW = 1_800_000_000.0


def udp() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    return sock


def addr(sock: socket.socket) -> str:
    host, port = sock.getsockname()
    return f"{host}:{port}"


@pytest.fixture
def served() -> Iterator[tuple[SubscriptionSocket, socket.socket]]:
    """A hub behind a real UDP socket, and a client socket to send from."""
    hub = SubscriptionHub("fastrouter", SubscriptionTable())
    service = SubscriptionSocket(udp(), hub)
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    yield service, client
    client.close()
    service.close()


def send(service: SubscriptionSocket, client: socket.socket, *datagrams: bytes) -> None:
    for data in datagrams:
        client.sendto(data, service.sock.getsockname())
    service.on_readable(NOW)


def nodes(table: SubscriptionTable) -> dict[str, list[str]]:
    return {s.key.decode(): [n.name for n in s.nodes] for s in table.slots()}


def test_fixture_packets_applied(served, capfd) -> None:
    service, client = served
    send(service, client, *[(SUBS / f).read_bytes() for f in (
        "sub_plain.bin", "sub_modifier1_5.bin", "sub_explicit_address.bin",
        "sub2_full_sni.bin")])
    assert nodes(service.hub.table) == {
        "example.com": ["127.0.0.1:27091"], "mod5.example.com": ["127.0.0.1:27091"],
        "explicit.example.com": ["127.0.0.1:5555"], "s2.example.com": ["127.0.0.1:9999"]}
    err = capfd.readouterr().err
    assert "new pool: example.com (hash key: " in err
    assert "example.com => new node: 127.0.0.1:27091" in err
    send(service, client, (SUBS / "unsub_plain_shutdown.bin").read_bytes())
    assert "example.com" not in nodes(service.hub.table)
    assert "example.com => marking 127.0.0.1:27091 as failed" in capfd.readouterr().err


def test_bad_packets_logged_dropped_server_keeps_going(served, capfd) -> None:
    service, client = served
    crafted = {p.name: p.read_bytes() for p in (SUBS / "crafted").glob("*.bin")}
    send(service, client, b"", *crafted.values())
    err = capfd.readouterr().err
    assert "invalid subscription packet (no address), dropped" in err
    assert "invalid subscription packet (address of 256 bytes (max 255)), dropped" in err
    assert "invalid subscription packet (too short (3 bytes)), dropped" in err
    assert "key of 256 bytes is never routable" in err
    assert service.hub.dropped >= 5
    send(service, client, (SUBS / "sub_plain.bin").read_bytes())
    assert nodes(service.hub.table)["example.com"] == ["127.0.0.1:27091"]


@pytest.fixture
def signed_hub(tmp_path: Path) -> SubscriptionHub:
    shutil.copy(KEYS / "TEST-ONLY-test.example.com.pub.pem", tmp_path / "test.example.com.pem")
    return SubscriptionHub("http", SubscriptionTable(),
                           checker=SignChecker("SHA1", tmp_path))


def signed(unix_now: float, weight: int = 0, command: int = 0) -> bytes:
    signer = Signer("SHA1", KEYS / "TEST-ONLY-test.example.com.key")
    sub = Subscription(b"test.example.com", b"127.0.0.1:27091", cores=2, weight=weight)
    return encode_subscription(sub, command, signer=signer, now=unix_now)


def test_signed_accepted_forged_replayed_unsigned(signed_hub: SubscriptionHub, capfd) -> None:
    hub = signed_hub
    good = signed(NOW)
    assert hub.receive(good, NOW)[-1][0] == "new_node"
    assert hub.receive(good, NOW + 1)[0][0] == "rejected"  # exact replay
    forged = bytearray(signed(NOW + 2, weight=5))
    forged[forged.index(b"weight") + 8] = ord("9")
    assert hub.receive(bytes(forged), NOW + 2)[0][0] == "rejected"
    unsigned = encode_subscription(Subscription(b"test.example.com", b"127.0.0.1:1"))
    assert hub.receive(unsigned, NOW + 2)[0][0] == "rejected"
    assert nodes(hub.table) == {"test.example.com": ["127.0.0.1:27091"]}
    err = capfd.readouterr().err
    assert "invalid (sniffed ?) packet" in err and "invalid signature" in err
    assert "unsigned packet for a signed key" in err
    # the captured uWSGI packet signed with the same key (its own clock: Nov 2026)
    capture = (SUBS / "sub_signed_sha1.bin").read_bytes()
    hub2 = SubscriptionHub("http", SubscriptionTable(), checker=hub.checker)
    hub2.checker._last.clear()  # type: ignore[union-attr]
    assert hub2.receive(capture, 1795435350.0)[-1][0] == "new_node"


def test_unsigned_packet_refused_for_a_key_without_key_file(signed_hub: SubscriptionHub,
                                                            capfd) -> None:
    """uWSGI 2.0.21 refuses every unsigned packet once the check is on; a key with no
    ``.pem`` is no way around it (else anyone routes that key to anywhere)."""
    channel = Channel(1)
    signed_hub.channels = [channel]
    for command in (0, 1):
        sub = encode_subscription(Subscription(b"victim.example", b"127.0.0.1:1"), command)
        assert signed_hub.receive(sub, NOW)[0][0] == "rejected"
    assert nodes(signed_hub.table) == {}
    with pytest.raises(BlockingIOError):
        channel.child.recv(65536, socket.MSG_DONTWAIT)  # the replicas saw nothing
    err = capfd.readouterr().err
    assert ("subscription for victim.example refused: unsigned packet (no public key "
            "for the key)") in err
    assert "unsubscribe for victim.example refused: unsigned packet" in err
    channel.master.close()
    channel.child.close()


def test_signed_node_back_within_the_second_is_a_new_node(signed_hub: SubscriptionHub,
                                                          capfd) -> None:
    """A node paused and resumed (or reloaded) within the second: its unsubscribe says
    now + 1, its subscribe now. The unsubscribe removed it, so, as in uWSGI, its replay
    mark went with it and the subscribe is a new node's, not a replay."""
    hub = signed_hub
    assert hub.receive(signed(NOW), NOW)[-1][0] == "new_node"
    unsubscribe = signed(NOW, command=1)
    assert [e[0] for e in hub.receive(unsubscribe, NOW)][-1] == "removed_pool"
    back = signed(NOW + 1)
    assert hub.receive(back, NOW + 1)[-1][0] == "new_node"
    assert nodes(hub.table) == {"test.example.com": ["127.0.0.1:27091"]}
    assert hub.receive(back, NOW + 1)[0][0] == "rejected"  # while it lives: a replay
    err = capfd.readouterr().err
    assert err.count("test.example.com => new node: 127.0.0.1:27091") == 2
    assert err.count("invalid (sniffed ?) packet") == 1


def test_a_node_that_expired_keeps_its_replay_mark(signed_hub: SubscriptionHub) -> None:
    """Only an accepted unsubscribe ends the mark: a node that went silent and expired
    cannot be brought back with its captured announce."""
    hub = signed_hub
    captured = signed(NOW)
    assert hub.receive(captured, NOW)[-1][0] == "new_node"
    hub.tick(NOW + 20)  # silent for 20 s > 17 s
    assert nodes(hub.table) == {}
    assert hub.receive(captured, NOW + 20)[0][0] == "rejected"


def test_notify_ack_sent_once(tmp_path: Path) -> None:
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.bind(str(path))
        notify.setblocking(False)
        hub = SubscriptionHub("http", SubscriptionTable(), channels=[Channel(1), Channel(2)])
        sub = Subscription(b"py.example.com", b"127.0.0.1:27101", notify=str(path).encode())
        for _ in range(3):  # new node, then two refreshes
            hub.receive(encode_subscription(sub), NOW)
        assert notify.recv(4096) == b"[subscription ack] py.example.com => new node: 127.0.0.1:27101"
        with pytest.raises(BlockingIOError):
            notify.recv(4096)
        hub.close()


def test_resubscribe_announces_this_router_for_the_key_as_uwsgi_does() -> None:
    # uWSGI 2.0.21, --fastrouter :19142 --fastrouter-resubscribe, a node announcing
    # 127.0.0.1:3031 with modifiers 5/2, weight 7 and more: the upper server got
    # key, the router's first socket, the modifiers and zero cores/load/weight.
    upper = udp()
    hub = SubscriptionHub("fastrouter", SubscriptionTable(), forwarder=Forwarder([addr(upper)]),
                          router_address=lambda: ":19142")
    node = Subscription(b"example.com", b"127.0.0.1:3031", 5, 2, cores=4, load=3, weight=7,
                        notify=b"/tmp/n", backup=1)
    hub.receive(encode_subscription(node), NOW)
    hub.receive(b"garbage!", NOW)
    uwsgi_sent = (b"\xe0]\x00\x00\x03\x00key\x0b\x00example.com\x07\x00address\x06\x00:19142"
                  b"\t\x00modifier1\x01\x005\t\x00modifier2\x01\x002\x05\x00cores\x01\x000"
                  b"\x04\x00load\x01\x000\x06\x00weight\x01\x000")
    assert upper.recv(4096) == uwsgi_sent
    with pytest.raises(BlockingIOError):
        upper.recv(4096)
    hub.receive(encode_subscription(node), NOW + 1)  # the node's next announce: sent on
    assert upper.recv(4096) == uwsgi_sent
    hub.close()
    upper.close()


def test_resubscribe_sends_an_unsubscribe_on_once_the_last_node_of_the_key_left() -> None:
    upper = udp()
    hub = SubscriptionHub("http", SubscriptionTable(), forwarder=Forwarder([addr(upper)]),
                          router_address=lambda: "10.0.0.1:8080")
    one = Subscription(b"example.com", b"127.0.0.1:3031")
    two = Subscription(b"example.com", b"127.0.0.1:3032")
    hub.receive(encode_subscription(one), NOW)
    hub.receive(encode_subscription(two), NOW + 1)
    assert decode_subscription(upper.recv(4096)).address == b"10.0.0.1:8080"
    assert not decode_subscription(upper.recv(4096)).unsubscribe
    hub.receive(encode_subscription(one, UNSUBSCRIBE), NOW + 2)
    with pytest.raises(BlockingIOError):  # 3032 still serves the key here
        upper.recv(4096)
    hub.receive(encode_subscription(two, UNSUBSCRIBE), NOW + 3)
    gone = decode_subscription(upper.recv(4096))
    assert (gone.key, gone.address, gone.unsubscribe) == (b"example.com", b"10.0.0.1:8080", True)
    hub.close()
    upper.close()


def test_two_servers_resubscribing_to_each_other_do_not_loop() -> None:
    sock_a, sock_b = udp(), udp()
    hub_a = SubscriptionHub("fastrouter", SubscriptionTable(), forwarder=Forwarder([addr(sock_b)]),
                            router_address=lambda: "127.0.0.1:1")
    hub_b = SubscriptionHub("fastrouter", SubscriptionTable(), forwarder=Forwarder([addr(sock_a)]),
                            router_address=lambda: "127.0.0.1:2")
    svc_a, svc_b = SubscriptionSocket(sock_a, hub_a), SubscriptionSocket(sock_b, hub_b)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as node:
        node.sendto((SUBS / "sub_plain.bin").read_bytes(), sock_a.getsockname())
        for _ in range(50):  # bounded pump; a loop would keep both busy every round
            svc_a.on_readable(NOW)
            svc_b.on_readable(NOW)
    assert (hub_a.received, hub_b.received) == (2, 1)
    assert hub_a.forwarder.forwarded == 1 and hub_b.forwarder.forwarded == 1  # type: ignore[union-attr]
    assert hub_a.forwarder.suppressed == 1  # type: ignore[union-attr]
    assert nodes(hub_b.table) == {"example.com": ["127.0.0.1:1"]}
    for svc in (svc_a, svc_b):
        svc.close()
        svc.hub.close()


def replica(channel: Channel) -> RouterFeed:
    from brood.config.model import Config

    channel.child.setblocking(False)
    return RouterFeed(channel.child, table_from_config(Config()), clock=lambda: NOW)


def pump(feed: RouterFeed) -> int:
    """Apply what the channel holds; the number of messages."""
    for count in range(1000):
        try:
            message = feed.sock.recv(65536)
        except BlockingIOError:
            return count
        feed.handle(message, NOW)
    raise AssertionError("endless channel")


def test_replica_follows_and_new_child_gets_a_snapshot() -> None:
    channel = Channel(1)
    hub = SubscriptionHub("fastrouter", SubscriptionTable(), channels=[channel])
    service = ChannelService(channel, hub)
    for port in range(5000, 5300):  # more nodes than one batch and the dgram queue
        hub.receive(encode_subscription(Subscription(b"k%d" % (port % 7),
                                                     b"127.0.0.1:%d" % port)), NOW)
    # a respawned process: stale updates are drained, the hello brings a snapshot
    feed = replica(channel)
    assert feed.drain() > 0
    feed.sock.send(b"H")
    service.on_readable(NOW)
    assert pump(feed) >= 3
    assert nodes(feed.table) == nodes(hub.table)
    assert sum(len(v) for v in nodes(feed.table).values()) == 300
    # live updates, then an expiry pushed by the master's tick
    hub.receive(encode_subscription(Subscription(b"new", b"127.0.0.1:1")), NOW + 10)
    pump(feed)
    assert nodes(feed.table)["new"] == ["127.0.0.1:1"]
    hub.tick(NOW + 20)  # the 300 first nodes are silent for 20 s > 17 s
    pump(feed)
    assert nodes(feed.table) == {"new": ["127.0.0.1:1"]} == nodes(hub.table)
    channel.master.close()
    channel.child.close()


def test_snapshot_removes_what_the_replica_should_not_have() -> None:
    channel = Channel(1)
    hub = SubscriptionHub("fastrouter", SubscriptionTable(), channels=[channel])
    feed = replica(channel)
    feed.table.apply(Subscription(b"gone", b"127.0.0.1:9"), NOW)  # e.g. a missed removal
    hub.receive(encode_subscription(Subscription(b"kept", b"127.0.0.1:8")), NOW)
    hub.resync(channel)
    pump(feed)
    assert nodes(feed.table) == {"kept": ["127.0.0.1:8"]}
    channel.master.close()
    channel.child.close()


def test_full_queue_marks_resync_and_tick_recovers(monkeypatch) -> None:
    monkeypatch.setattr(feed_module, "MAX_BACKLOG", 4096)  # given up on soon
    monkeypatch.setattr(feed_module, "STUCK_AFTER", 0.0)
    channel = Channel(1)
    hub = SubscriptionHub("fastrouter", SubscriptionTable(), channels=[channel])
    sub = encode_subscription(Subscription(b"k", b"127.0.0.1:1"))
    for _ in range(5000):  # nobody reads: the queue fills, the master never blocks
        hub.push([sub])
        if channel.needs_resync:
            break
    assert channel.needs_resync
    hub.receive(sub, NOW)
    feed = replica(channel)
    feed.drain()
    hub.tick(NOW)
    assert not channel.needs_resync
    pump(feed)
    assert nodes(feed.table) == {"k": ["127.0.0.1:1"]}
    channel.master.close()
    channel.child.close()


def test_a_stuck_replica_costs_no_snapshot_until_it_reads(monkeypatch, capfd) -> None:
    """A table whose snapshot is over MAX_BACKLOG (made 4 KiB here) and a replica that
    reads nothing: its queue is dropped once, logged once, and no snapshot is built
    tick after tick (each would be dropped at once); the replica reading again gets
    one, and ends up exact."""
    monkeypatch.setattr(feed_module, "MAX_BACKLOG", 4096)
    monkeypatch.setattr(feed_module, "STUCK_AFTER", 0.0)
    channel = Channel(1)
    hub = SubscriptionHub("fastrouter", SubscriptionTable(), channels=[channel])
    for i in range(300):  # a snapshot of ~10 KiB
        hub.table.apply(Subscription(b"k%d" % i, b"127.0.0.1:1"), NOW)
    snapshots = 0
    build = hub.snapshot

    def counted() -> list:
        nonlocal snapshots
        snapshots += 1
        return build()

    monkeypatch.setattr(hub, "snapshot", counted)
    sub = encode_subscription(Subscription(b"k0", b"127.0.0.1:1"))
    for _ in range(5000):  # nobody reads: the queue fills and is given up on
        hub.push([sub])
        if channel.needs_resync:
            break
    assert channel.needs_resync and channel.dropped == 1
    for tick in range(5):
        hub.tick(NOW + tick)
        hub.receive(sub, NOW + tick)  # refreshes keep coming
    assert (snapshots, channel.dropped) == (0, 1)
    assert capfd.readouterr().err.count("unread, dropped") == 1
    feed = replica(channel)
    feed.drain()  # it reads again (the stale queue)
    hub.tick(NOW + 5)
    assert snapshots == 1 and not channel.needs_resync
    for _ in range(100):
        pump(feed)
        if not channel.backlog:
            break
        hub.tick(NOW + 5)
    pump(feed)
    assert nodes(feed.table) == nodes(hub.table) and len(nodes(feed.table)) == 300
    err = capfd.readouterr().err
    assert "unread, dropped" not in err and "reads again: sending a snapshot" in err
    channel.master.close()
    channel.child.close()


def test_a_snapshot_too_large_for_the_queue_goes_out_over_ticks(monkeypatch) -> None:
    """30k nodes: far more than the channel's send buffer holds. The rest waits, in
    order, and the master's ticks write it as the replica reads; an update pushed
    meanwhile goes behind it, and the replica ends up exact. A snapshot larger than
    MAX_BACKLOG still goes out to a replica that reads (made 64 KiB here)."""
    monkeypatch.setattr(feed_module, "MAX_BACKLOG", 65536)
    channel = Channel(1)
    hub = SubscriptionHub("fastrouter", SubscriptionTable(), channels=[channel])
    feed = replica(channel)
    feed.table.apply(Subscription(b"gone", b"127.0.0.1:9"), NOW)  # e.g. a missed removal
    for i in range(30000):  # in the master's table (as if from before the replica)
        hub.table.apply(Subscription(b"k%d" % i, b"127.0.0.1:1"), NOW)
    assert not hub.resync(channel) and channel.backlog  # not all at once
    hub.push([encode_subscription(Subscription(b"late", b"127.0.0.1:2"))])
    for _ in range(1000):
        pump(feed)
        hub.tick(NOW + 1)
        if not channel.backlog:
            break
    pump(feed)
    assert not channel.needs_resync and not channel.backlog
    got = nodes(feed.table)
    assert len(got) == 30001 and "gone" not in got and got["late"] == ["127.0.0.1:2"]
    channel.master.close()
    channel.child.close()


def test_the_subscription_socket_has_room_for_a_burst() -> None:
    """25,000 announces at once (a fleet restarting) lost half of them in the default
    receive buffer while the master was busy."""
    from types import SimpleNamespace

    from brood.subscription.server import RECEIVE_BUFFER, SubscriptionSocket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        default = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        SubscriptionSocket(sock, SimpleNamespace(credentials=False))  # type: ignore[arg-type]
        got = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    with open("/proc/sys/net/core/rmem_max") as fh:
        ceiling = int(fh.read())
    assert got >= min(RECEIVE_BUFFER, ceiling) and (got > default or ceiling <= default // 2)
