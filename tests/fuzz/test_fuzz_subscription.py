"""Fuzzing the subscription codec and table: garbage only raises SubscriptionError,
encode/decode round-trips, and any announce sequence keeps the table consistent."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from brood.protocol.uwsgi import encode_vars
from brood.subscription.packet import (
    MAX_DATAGRAM,
    Subscription,
    SubscriptionError,
    decode_subscription,
    encode_subscription,
)
from brood.subscription.table import SubscriptionTable

NAMES = [b"key", b"address", b"modifier1", b"modifier2", b"cores", b"load", b"weight",
         b"sni_key", b"sni_crt", b"sni_ca", b"notify", b"backup", b"algo", b"unix",
         b"sign", b"other"]


@given(st.binary(max_size=MAX_DATAGRAM + 64))
def test_random_bytes_raise_only_subscription_error(data: bytes) -> None:
    try:
        decode_subscription(data)
    except SubscriptionError:
        pass


@given(
    st.integers(0, 255),
    st.integers(0, 255),
    st.lists(st.tuples(st.sampled_from(NAMES), st.binary(max_size=300)), max_size=12),
    st.integers(0, 8),
)
def test_shaped_packets_raise_only_subscription_error(
    m1: int, m2: int, pairs: list[tuple[bytes, bytes]], chop: int
) -> None:
    block = encode_vars(pairs)
    data = bytes([m1]) + len(block).to_bytes(2, "little") + bytes([m2]) + block
    data = data[: len(data) - chop] if chop else data
    try:
        sub = decode_subscription(data)
    except SubscriptionError:
        return
    assert 0 < len(sub.address) <= 255
    assert sub.command == m2
    if sub.sign is not None:
        assert sub.signed_base is not None


digits = st.integers(0, 2**40)
opt_bytes = st.none() | st.binary(max_size=40)
subscriptions = st.builds(
    Subscription,
    key=st.binary(max_size=300),
    address=st.binary(min_size=1, max_size=255),
    modifier1=st.integers(0, 255),
    modifier2=st.integers(0, 255),
    cores=digits,
    load=digits,
    weight=digits,
    sni_key=opt_bytes,
    sni_crt=opt_bytes,
    sni_ca=opt_bytes,
    notify=opt_bytes,
    backup=st.integers(0, 9),
    algo=st.none() | st.sampled_from(["wrr", "lrc", "wlrc", "iphash", "p2c", "chash"]),
    unix=st.none() | st.integers(0, 2**33),
    sign=st.none() | st.binary(max_size=256),
    command=st.integers(0, 255),
)


@given(subscriptions)
def test_encode_decode_round_trip(sub: Subscription) -> None:
    data = encode_subscription(sub)
    got = decode_subscription(data)
    assert got == sub
    assert encode_subscription(got) == data


announces = st.lists(
    st.tuples(
        st.sampled_from([b"a", b"b", b".b", b""]),
        st.sampled_from([b"n1:1", b"n2:1", b"n3:1"]),
        st.sampled_from([0, 0, 1]),
        st.integers(0, 5),
        st.integers(0, 30),
        st.sampled_from(["apply", "lookup", "expire", "dead", "release"]),
    ),
    max_size=60,
)


@given(announces)
def test_table_stays_consistent(steps: list[tuple[bytes, bytes, int, int, int, str]]) -> None:
    table = SubscriptionTable(tolerance=17, dotsplit=True)
    now = 1000.0
    held = []
    for key, address, command, weight, dt, action in steps:
        now += dt
        if action == "apply":
            table.apply(Subscription(key, address, weight=weight, command=command), now)
        elif action == "lookup":
            node = table.lookup(key, now)
            if node is not None:
                assert not node.death_mark
                node.ref += 1
                held.append(node)
        elif action == "expire":
            table.expire(now)
        elif action == "dead" and held:
            table.mark_dead(held[-1], now)
        elif action == "release" and held:
            table.release(held.pop(), now)
        for slot in table.slots():
            assert slot.nodes, "empty slots are removed"
            assert len({n.name for n in slot.nodes}) == len(slot.nodes)
            assert all(n.weight >= 1 for n in slot.nodes)
    assert table.has_nodes() == bool(table.stats_slots(now))
