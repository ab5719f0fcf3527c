"""uWSGI's cache sync packet codec (brood.cache.sync) and the channel records built on
it (brood.cache.replica)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from brood.cache.replica import decode_record, encode_record
from brood.cache.sync import SyncCommand, SyncError, decode_sync, encode_sync

# Sent by uWSGI 2.0.21 (--cache2 name=c,items=10,nodes=127.0.0.1:PORT) for, in order,
# cache_update("k", "127.0.0.1:1234", 0, "c"), cache_update("k2", ..., 30, "c") and
# cache_del("k", "c"): expiry is absolute (the sender added its clock), "0" for never.
UWSGI_SET = b"o\x16\x00\n\x01\x00k\x0e\x00127.0.0.1:1234\x01\x000"
UWSGI_SET_EXPIRING = b"o \x00\n\x02\x00k2\x0e\x00127.0.0.1:1234\n\x001795530100"
UWSGI_DEL = b"o\x03\x00\x0b\x01\x00k"


def test_packets_real_uwsgi_sent() -> None:
    assert decode_sync(UWSGI_SET) == SyncCommand(b"k", b"127.0.0.1:1234", 0)
    assert decode_sync(UWSGI_SET_EXPIRING) == SyncCommand(b"k2", b"127.0.0.1:1234", 1795530100)
    assert decode_sync(UWSGI_DEL) == SyncCommand(b"k")
    assert decode_sync(UWSGI_DEL).delete
    for packet in (UWSGI_SET, UWSGI_SET_EXPIRING, UWSGI_DEL):
        assert encode_sync(decode_sync(packet)) == packet


def test_a_set_without_expiry_field_never_expires() -> None:
    body = b"\x01\x00k\x01\x00v"
    assert decode_sync(bytes([111, len(body), 0, 10]) + body) == SyncCommand(b"k", b"v", 0)


@pytest.mark.parametrize(("packet", "reason"), [
    (b"", "too short"),
    (b"o\x03\x00\x0b\x01", "too short"),
    (b"p\x03\x00\x0b\x01\x00k", "modifier1 112"),
    (b"o\x04\x00\x0b\x01\x00k", "header says 4 bytes, 3 follow"),
    (b"o\x03\x00\x0c\x01\x00k", "unknown command 12"),
    (b"o\x03\x00\x0b\x02\x00k", "key of 2 bytes overruns"),
    (b"o\x02\x00\x0b\x00\x00", "empty key"),
    (b"o\x03\x00\x0b\x00\x00x", "empty key"),
    (b"o\x04\x00\x0b\x01\x00kx", "bytes after the key"),
    (b"o\x04\x00\x0a\x01\x00kx", "truncated before the value size"),
    (b"o\x05\x00\x0a\x01\x00k\x00\x00", "empty value"),
    (b"o\x09\x00\x0a\x01\x00k\x01\x00v\x01\x00x", "expiry b'x' is not a number"),
    (b"o\x0a\x00\x0a\x01\x00k\x01\x00v\x01\x001z", "bytes after the expiry"),
])
def test_bad_packets_say_why(packet: bytes, reason: str) -> None:
    with pytest.raises(SyncError, match=reason):
        decode_sync(packet)


commands = st.builds(
    SyncCommand, st.binary(min_size=1, max_size=300),
    st.one_of(st.none(), st.binary(min_size=1, max_size=300)),
    st.integers(min_value=0, max_value=2**64 - 1))


@given(commands)
def test_roundtrip(cmd: SyncCommand) -> None:
    decoded = decode_sync(encode_sync(cmd))
    assert decoded.key == cmd.key and decoded.value == cmd.value
    assert decoded.expires == (0 if cmd.value is None else cmd.expires)


@given(st.binary(max_size=400))
def test_any_bytes_decode_or_raise_sync_error(data: bytes) -> None:
    try:
        cmd = decode_sync(data)
    except SyncError as exc:
        assert exc.reason
    else:
        assert cmd.key and (cmd.value is None or cmd.value)


@given(commands, st.integers(min_value=0, max_value=60))
def test_truncated_packets_are_refused(cmd: SyncCommand, cut: int) -> None:
    packet = encode_sync(cmd)
    with pytest.raises(SyncError):
        decode_sync(packet[:max(0, len(packet) - 1 - cut)])


@given(st.text(max_size=40), commands)
def test_records_carry_the_cache_name(name: str, cmd: SyncCommand) -> None:
    got_name, got = decode_record(encode_record(name, cmd))
    assert got_name == name and got.key == cmd.key and got.value == cmd.value


def test_bad_records() -> None:
    for record in (b"", b"\x00", b"\x00\x05ab", b"\x00\x01c" + b"junk"):
        with pytest.raises(SyncError):
            decode_record(record)
