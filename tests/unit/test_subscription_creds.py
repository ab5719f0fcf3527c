"""Sender credentials of subscriptions (``--subscriptions-use-credentials``): reading the
SCM_CREDENTIALS ancillary data, the uid list of ``--subscriptions-sign-skip-uid``, their
way through the master -> router channel, the table and the stats (merged too)."""

from __future__ import annotations

import json
import socket

import pytest

from brood.config.option import OptionError
from brood.routers.node import Node
from brood.routers.stats import router_stats
from brood.routers.stats_merge import dumps, loads, merge, render, snapshot
from brood.subscription import creds as scm
from brood.subscription.feed import CREDS, MAX_MESSAGE, PACKETS, RouterFeed, pack, unpack
from brood.subscription.packet import UNSUBSCRIBE, Subscription, encode_subscription
from brood.subscription.table import SubscriptionTable

T = 1_000_000.0
KEY = b"py.example.com"


def datagram(address: bytes = b"127.0.0.1:1", key: bytes = KEY, command: int = 0) -> bytes:
    return encode_subscription(Subscription(key, address), command)


def pid_uid_gid(table: SubscriptionTable, key: bytes = KEY) -> list[tuple[int, int, int]]:
    slot = table.slot(key)
    assert slot is not None
    return [(n.pid, n.uid, n.gid) for n in slot.nodes]


# -- ancillary data -----------------------------------------------------------------------

def test_ucred_is_what_the_kernel_sends() -> None:
    # struct ucred { pid_t pid; uid_t uid; gid_t gid; }: three 4-byte ints ("3i" in size)
    assert scm.UCRED.size == 12
    assert socket.CMSG_SPACE(12) == scm.ANCILLARY_SIZE


def test_from_ancillary_reads_pid_uid_gid() -> None:
    assert scm.from_ancillary(scm.ancillary((4242, 1000, 1001))) == (4242, 1000, 1001)
    # uid_t/gid_t are unsigned: large ids survive
    assert scm.from_ancillary(scm.ancillary((7, 4294967294, 65534))) == (7, 4294967294, 65534)


def test_from_ancillary_skips_other_messages() -> None:
    rights = (socket.SOL_SOCKET, socket.SCM_RIGHTS, b"\x03\x00\x00\x00")
    assert scm.from_ancillary([rights, *scm.ancillary((5, 6, 7))]) == (5, 6, 7)
    assert scm.from_ancillary([rights]) is None
    assert scm.from_ancillary([]) is None


def test_from_ancillary_no_sender_or_short_data_is_none() -> None:
    # a datagram queued before SO_PASSCRED was set: pid 0, overflow uid/gid
    assert scm.from_ancillary(scm.ancillary((0, 65534, 65534))) is None
    short = [(socket.SOL_SOCKET, socket.SCM_CREDENTIALS, b"\x01\x00\x00\x00")]
    assert scm.from_ancillary(short) is None


def test_enable_only_touches_unix_sockets() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        assert scm.enable(udp) is False  # (recent kernels refuse SO_PASSCRED there)
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as unix:
        assert scm.enable(unix) is True
        assert unix.getsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED) == 1


# -- --subscriptions-sign-skip-uid ----------------------------------------------------------

def test_parse_uids_numbers_and_names() -> None:
    assert scm.parse_uids(["1000", " 0 ", "root"]) == frozenset({0, 1000})
    assert scm.parse_uids([]) == frozenset()
    with pytest.raises(OptionError, match=r"^--subscriptions-sign-skip-uid nobody-here-x"):
        scm.parse_uids(["nobody-here-x"])


def test_skips_sign_check_needs_a_listed_uid() -> None:
    uids = frozenset({1000})
    assert scm.skips_sign_check((1, 1000, 5), uids)
    assert not scm.skips_sign_check((1, 1001, 1000), uids)  # a gid is not a uid
    assert not scm.skips_sign_check(None, uids)  # UDP, or no credentials read
    assert not scm.skips_sign_check((1, 1000, 5), frozenset())


# -- the channel ----------------------------------------------------------------------------

def test_pack_keeps_order_and_credentials() -> None:
    a, b, c, d = (datagram(b"127.0.0.1:%d" % i) for i in range(4))
    entries = [a, (b, (10, 0, 0)), (c, (11, 1000, 1000)), (d, None)]
    messages = pack(entries)
    assert [m[:1] for m in messages] == [PACKETS, CREDS, PACKETS]
    got = [entry for m in messages for entry in unpack(m)]
    assert got == [(a, None), (b, (10, 0, 0)), (c, (11, 1000, 1000)), (d, None)]


def test_plain_packets_keep_the_old_framing() -> None:
    a = datagram()
    assert pack([a]) == [PACKETS + len(a).to_bytes(2, "big") + a]
    assert pack([]) == []


def test_pack_splits_big_batches_of_credentialed_packets() -> None:
    entries = [(datagram(b"127.0.0.1:%d" % i), (i + 1, i, i)) for i in range(2000)]
    messages = pack(entries)
    assert len(messages) > 1 and all(len(m) <= MAX_MESSAGE for m in messages)
    assert all(m[:1] == CREDS for m in messages)
    assert [e for m in messages for e in unpack(m)] == entries


def test_unpack_drops_a_truncated_tail() -> None:
    (message,) = pack([(datagram(), (1, 2, 3)), (datagram(b"127.0.0.1:2"), (4, 5, 6))])
    assert [c for _, c in unpack(message[:-1])] == [(1, 2, 3)]
    assert list(unpack(message[:8])) == []  # the credentials themselves cut


def test_replica_applies_credentials() -> None:
    feed = RouterFeed(None, SubscriptionTable())  # type: ignore[arg-type]  # handle only
    for message in pack([(datagram(), (4242, 0, 0)), datagram(b"127.0.0.1:2")]):
        feed.handle(message, T)
    assert pid_uid_gid(feed.table) == [(4242, 0, 0), (0, 0, 0)]
    # a refresh without credentials (say, over UDP) keeps them; a new sender replaces them
    feed.handle(pack([datagram()])[0], T + 1)
    assert pid_uid_gid(feed.table)[0] == (4242, 0, 0)
    feed.handle(pack([(datagram(), (4243, 1000, 1000))])[0], T + 2)
    assert pid_uid_gid(feed.table)[0] == (4243, 1000, 1000)
    feed.handle(pack([(datagram(command=UNSUBSCRIBE), (4243, 1000, 1000))])[0], T + 3)
    assert pid_uid_gid(feed.table) == [(0, 0, 0)]


# -- table and stats --------------------------------------------------------------------------

def test_table_stats_show_the_sender() -> None:
    table = SubscriptionTable()
    table.apply(Subscription(KEY, b"127.0.0.1:1"), T, creds=(4242, 1000, 1001))
    table.apply(Subscription(KEY, b"127.0.0.1:2"), T)
    first, second = table.stats_slots(T)[0]["nodes"]
    assert (first["pid"], first["uid"], first["gid"]) == (4242, 1000, 1001)
    assert (second["pid"], second["uid"], second["gid"]) == (0, 0, 0)
    doc = json.loads(router_stats("http", pid=1, uid=2, gid=3, cwd="/", active_sessions=0,
                                  socket_names=[], static_nodes=[], subscriptions=table,
                                  cheap=False, now=T))
    node = doc["subscriptions"][0]["nodes"][0]
    assert list(node)[3:7] == ["last_check", "pid", "uid", "gid"]  # uWSGI's order
    assert (node["pid"], node["uid"], node["gid"]) == (4242, 1000, 1001)


def test_merged_stats_keep_the_senders_credentials() -> None:
    def process(index: int, requests: int) -> dict:
        node = Node("127.0.0.1:1", requests=requests, pid=4242, uid=1000, gid=1001)
        slot = {"key": KEY.decode(), "hash": 7, "hits": 1, "sni_enabled": 0, "nodes": [node]}
        return snapshot(index=index, pid=100 + index, now=T, active_sessions=0,
                        sessions_total=0, static_nodes=[], subscriptions=[slot])

    own, sibling = process(1, 3), loads(dumps(process(2, 4)))
    merged = merge(own, [sibling], T)
    doc = json.loads(render("http", merged, pid=101, uid=0, gid=0, cwd="/",
                            socket_names=[], cheap=False, now=T))
    (node,) = doc["subscriptions"][0]["nodes"]
    assert node["requests"] == 7  # summed over processes
    assert (node["pid"], node["uid"], node["gid"]) == (4242, 1000, 1001)  # not summed
