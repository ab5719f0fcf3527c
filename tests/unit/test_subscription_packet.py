"""Subscription datagram codec against the captured uWSGI 2.0.21 packets (WIRE §2.2, §2.11)."""

from __future__ import annotations

from pathlib import Path

import pytest

from brood.protocol.uwsgi import decode_vars, encode_vars
from brood.subscription.packet import (
    MAX_DATAGRAM,
    Subscription,
    SubscriptionError,
    decode_subscription,
    encode_subscription,
)
from brood.subscription.signing import Signer

FIX = Path("/work/shared/fixtures")
SUBS = FIX / "subscription"
KEY = FIX / "keys" / "TEST-ONLY-test.example.com.key"

if not SUBS.is_dir():  # pragma: no cover - the fixtures ship with the project workspace
    pytest.skip("subscription fixtures not available", allow_module_level=True)


def raw(name: str) -> bytes:
    return (SUBS / name).read_bytes()


PLAIN = {
    "sub_plain.bin": (
        Subscription(b"example.com", b"127.0.0.1:27091", cores=2), 0),
    "unsub_plain_shutdown.bin": (
        Subscription(b"example.com", b"127.0.0.1:27091", cores=2, weight=7), 1),
    "sub_modifier1_5.bin": (
        Subscription(b"mod5.example.com", b"127.0.0.1:27091", modifier1=5, cores=2), 0),
    "sub_explicit_address.bin": (
        Subscription(b"explicit.example.com", b"127.0.0.1:5555", cores=2), 0),
    "sub2_full_sni.bin": (
        Subscription(b"s2.example.com", b"127.0.0.1:9999", modifier1=30, modifier2=4,
                     cores=2, weight=7, sni_key=b"/k.pem", sni_crt=b"/c.pem",
                     sni_ca=b"/ca.pem"), 0),
    "sub2_unknown_keys_ignored.bin": (
        Subscription(b"s2b.example.com", b"127.0.0.1:27091", cores=2, weight=7), 0),
    "sub_notify_autoweight_m1override.bin": (
        Subscription(b"example.com", b"127.0.0.1:27091", modifier1=9, cores=3, weight=3,
                     notify=b"/tmp/uw/notify.sock"), 0),
}

SIGNED = {
    # file: (subscription, command, digest, the node's clock when it sent it)
    "sub_signed_sha1.bin": (
        Subscription(b"test.example.com", b"127.0.0.1:27091", cores=2), 0, "SHA1",
        1795435350),
    "unsub_signed_sha1_shutdown.bin": (
        Subscription(b"test.example.com", b"127.0.0.1:27091", cores=2, weight=7), 1, "SHA1",
        1795435362),
    "sub2_signed_sha256.bin": (
        Subscription(b"s2sign.example.com", b"127.0.0.1:27091", cores=2, weight=7), 0,
        "SHA256", 1795435350),
}


@pytest.mark.parametrize("name", sorted(PLAIN))
def test_encode_plain_is_byte_identical(name: str) -> None:
    sub, command = PLAIN[name]
    assert encode_subscription(sub, command) == raw(name)


@pytest.mark.parametrize("name", sorted(PLAIN))
def test_decode_plain(name: str) -> None:
    sub, command = PLAIN[name]
    got = decode_subscription(raw(name))
    assert got == Subscription(**{**sub.__dict__, "command": command, "signed_base": None})
    assert got.unsubscribe is bool(command)
    assert got.signed_base is None and not got.signed


@pytest.mark.parametrize("name", sorted(SIGNED))
def test_encode_signed_is_byte_identical(name: str) -> None:
    sub, command, digest, now = SIGNED[name]
    signer = Signer(digest, KEY)
    assert encode_subscription(sub, command, signer=signer, now=now) == raw(name)


@pytest.mark.parametrize("name", sorted(SIGNED))
def test_decode_signed_keeps_the_signed_base(name: str) -> None:
    sub, command, _digest, now = SIGNED[name]
    data = raw(name)
    got = decode_subscription(data)
    assert got.unix == now + command
    assert got.sign is not None and len(got.sign) == 256
    assert got.command == command
    # the base runs from the first var through the unix pair (header and sign excluded)
    assert got.signed_base == data[4 : len(data) - (2 + 4 + 2 + 256)]
    assert decode_vars(got.signed_base)[-1] == (b"unix", str(now + command).encode())


def test_unsubscribe_differs_from_subscribe_only_in_byte_3() -> None:
    sub = raw("sub_plain.bin")
    unsub = encode_subscription(decode_subscription(sub), 1)
    assert unsub[3] == 1 and unsub[:3] + unsub[4:] == sub[:3] + sub[4:]


def test_every_captured_packet_round_trips() -> None:
    for path in sorted(SUBS.glob("*.bin")):
        data = path.read_bytes()
        assert encode_subscription(decode_subscription(data)) == data, path.name


def test_brood_additions_come_after_uwsgi_fields_and_before_unix() -> None:
    sub = Subscription(b"k", b"127.0.0.1:1", notify=b"/n", backup=2, algo="lrc")
    data = encode_subscription(sub, 0, signer=Signer("SHA1", KEY), now=100)
    names = [k for k, _ in decode_vars(data[4:])]
    assert names == [b"key", b"address", b"modifier1", b"modifier2", b"cores", b"load",
                     b"weight", b"notify", b"backup", b"algo", b"unix", b"sign"]
    got = decode_subscription(data)
    assert (got.backup, got.algo, got.unix) == (2, "lrc", 100)


def test_additions_not_sent_when_unset() -> None:
    data = encode_subscription(Subscription(b"k", b"a:1"), 0)
    assert b"backup" not in data and b"algo" not in data


def test_signing_needs_the_time() -> None:
    with pytest.raises(ValueError):
        encode_subscription(Subscription(b"k", b"a:1"), 0, signer=Signer("SHA1", KEY))


def test_oversized_packet_is_refused_on_encode() -> None:
    with pytest.raises(ValueError):
        encode_subscription(Subscription(b"k" * 5000, b"a:1"), 0)
    with pytest.raises(ValueError):
        encode_subscription(Subscription(b"k" * 70000, b"a:1"), 0)


# -- WIRE §2.11: malformed packets --------------------------------------------------------

DROPPED = {
    "crafted/short3.bin": "too short",
    "crafted/header_only.bin": "no address",
    "crafted/garbage.bin": "no address",
    "crafted/no_address.bin": "no address",
    "crafted/address_256.bin": "address of 256 bytes",
}


@pytest.mark.parametrize("name", sorted(DROPPED))
def test_crafted_dropped(name: str) -> None:
    with pytest.raises(SubscriptionError) as info:
        decode_subscription(raw(name))
    assert info.value.reason.startswith(DROPPED[name])


def test_empty_datagram_dropped() -> None:
    with pytest.raises(SubscriptionError):
        decode_subscription(b"")


def test_truncated_vars_keep_the_pairs_before_the_damage() -> None:
    got = decode_subscription(raw("crafted/trunc_vars_last3.bin"))
    assert (got.key, got.address, got.cores, got.load) == (b"bad1.example.com",
                                                          b"127.0.0.1:1", 1, 0)
    assert got.weight == 0  # lost: the table turns it into 1


def test_datasize_is_ignored() -> None:
    got = decode_subscription(raw("crafted/datasize_9999.bin"))
    assert got.key == b"bad2.example.com" and got.weight == 1


def test_header_modifier1_is_not_checked() -> None:
    assert decode_subscription(raw("crafted/header_modifier1_0.bin")).key == b"m1zero.example.com"


def test_missing_key_is_the_empty_key() -> None:
    got = decode_subscription(raw("crafted/no_key.bin"))
    assert got.key == b"" and got.address == b"127.0.0.1:27101"


@pytest.mark.parametrize("name,length", [("crafted/key_255.bin", 255),
                                         ("crafted/key_256.bin", 256)])
def test_long_keys_decode(name: str, length: int) -> None:
    assert len(decode_subscription(raw(name)).key) == length


def test_any_nonzero_modifier2_is_an_unsubscribe() -> None:
    got = decode_subscription(raw("crafted/modifier2_7.bin"))
    assert got.command == 7 and got.unsubscribe


def test_only_the_first_4096_bytes_count() -> None:
    sub = Subscription(b"k", b"127.0.0.1:1")
    data = encode_subscription(sub, 0) + encode_vars([(b"junk", b"x" * 5000)])
    data = data[:1] + (100).to_bytes(2, "little") + data[3:]
    assert len(data) > MAX_DATAGRAM
    assert decode_subscription(data).address == b"127.0.0.1:1"


def test_numbers_read_like_atoi_and_modifiers_wrap() -> None:
    block = encode_vars([(b"key", b"k"), (b"address", b"a:1"), (b"cores", b"12abc"),
                         (b"weight", b"x"), (b"modifier1", b"300")])
    got = decode_subscription(bytes([224]) + len(block).to_bytes(2, "little") + b"\0" + block)
    assert (got.cores, got.weight, got.modifier1) == (12, 0, 300 & 0xFF)


def test_repeated_var_last_wins_and_unknown_ignored() -> None:
    block = encode_vars([(b"key", b"a"), (b"address", b"x:1"), (b"proto", b"uwsgi"),
                         (b"key", b"b")])
    got = decode_subscription(b"\xe0" + len(block).to_bytes(2, "little") + b"\0" + block)
    assert got.key == b"b"
