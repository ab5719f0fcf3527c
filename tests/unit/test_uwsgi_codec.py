"""uwsgi packet codec against the captured packets (WIRE.md §1)."""

import os
from pathlib import Path

import pytest

from brood.protocol.errors import HeadTooLarge, PacketError, ProtocolError
from brood.protocol.uwsgi import (
    HEADER_SIZE,
    MAX_VARS_SIZE,
    Packet,
    PacketReader,
    decode_header,
    decode_vars,
    decode_vars_partial,
    encode_header,
    encode_packet,
    encode_vars,
    header_with_modifiers,
    read_packet,
)

REQUESTS = Path(os.environ.get("BROOD_FIXTURES", "/work/shared/fixtures")) / "requests"
FILES = sorted(REQUESTS.glob("*.bin"))
# Body bytes after the vars block in each capture (fixtures README).
BODIES = {
    "fastrouter_forwarded_m5_m3_with_body.bin": b"HELLO",
    "httprouter_post_form.bin": b"hello=world",
    "nginx_post_form.bin": b"hello=world",
    "nginx_post_chunked_dechunked.bin": b"hello world",
    "httprouter_post_chunked_input_flag.bin": b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
}


def test_fixtures_present():
    assert len(FILES) >= 14


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_fixture_decodes_and_reencodes(path):
    data = path.read_bytes()
    packet, rest = read_packet(data)
    assert rest == BODIES.get(path.name, b"")
    assert packet.raw == data[: len(data) - len(rest)]
    assert dict(packet.vars)[b"REQUEST_METHOD"] in (b"GET", b"POST")
    assert encode_packet(packet.vars, packet.modifier1, packet.modifier2) == packet.raw
    assert encode_vars(decode_vars(packet.raw[HEADER_SIZE:])) == packet.raw[HEADER_SIZE:]


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_fixture_byte_at_a_time(path):
    data = path.read_bytes()
    whole, rest = read_packet(data)
    reader = PacketReader(MAX_VARS_SIZE)
    for i in range(len(data)):
        packet = reader.feed(data[i : i + 1])
        if packet is not None:
            break
    assert packet == whole
    assert i == len(whole.raw) - 1
    assert reader.rest + data[i + 1 :] == rest


def test_get_query_header_and_first_vars():
    data = (REQUESTS / "httprouter_get_query.bin").read_bytes()
    assert data[:4] == b"\x00\x2f\x01\x00"
    assert decode_header(data) == (0, 303, 0)
    packet, _ = read_packet(data)
    assert packet.vars[:2] == [(b"REQUEST_METHOD", b"GET"), (b"PATH_INFO", b"/path/x")]


def test_56k_headers_decode_but_exceed_default_buffer():
    data = (REQUESTS / "nginx_get_56k_headers.bin").read_bytes()
    packet, _ = read_packet(data)
    assert decode_header(data)[1] == 56420
    assert sum(1 for k, _ in packet.vars if k.startswith(b"HTTP_X_BIG")) == 7
    with pytest.raises(HeadTooLarge) as info:
        PacketReader().feed(data[:4])  # default --buffer-size 4096 refuses at the header
    assert info.value.status == 431


def test_fastrouter_fixture_modifiers_and_rewrite():
    data = (REQUESTS / "fastrouter_forwarded_m5_m3_with_body.bin").read_bytes()
    packet, rest = read_packet(data)
    assert (packet.modifier1, packet.modifier2) == (5, 3)
    # The client's header was 07 87 00 09; the router rewrote only bytes 0 and 3.
    client = header_with_modifiers(data[:4], 7, 9)
    assert client == b"\x07\x88\x00\x09"
    assert header_with_modifiers(client, 5, 3) == data[:4]
    assert rest == b"HELLO"


def test_header_roundtrip_and_ranges():
    assert encode_header(224, 0x1234, 1) == b"\xe0\x34\x12\x01"
    assert decode_header(b"\xe0\x34\x12\x01rest") == (224, 0x1234, 1)
    for bad in [(256, 0, 0), (0, 65536, 0), (0, 0, -1)]:
        with pytest.raises(ValueError):
            encode_header(*bad)
    with pytest.raises(PacketError):
        decode_header(b"\x00\x01")


def test_vars_empty_value_and_duplicates():
    pairs = [(b"A", b""), (b"A", b"2"), (b"HTTP_HOST", b"x")]
    block = encode_vars(pairs)
    assert block == b"\x01\x00A\x00\x00\x01\x00A\x01\x002\x09\x00HTTP_HOST\x01\x00x"
    assert decode_vars(block) == pairs


@pytest.mark.parametrize(
    "block, reason",
    [
        (b"\x00\x00\x01\x00x", "zero key length"),
        (b"\x01", "truncated key length"),
        (b"\x05\x00AB", "key overruns"),
        (b"\x01\x00A", "key overruns"),
        (b"\x01\x00A\x01", "key overruns"),
        (b"\x01\x00A\x05\x00xy", "value overruns"),
    ],
)
def test_vars_damage(block, reason):
    with pytest.raises(PacketError) as info:
        decode_vars(block)
    assert reason in info.value.reason
    assert info.value.status == 400


def test_partial_keeps_pairs_before_damage():
    good = encode_vars([(b"key", b"example.com"), (b"address", b"127.0.0.1:9")])
    pairs, error = decode_vars_partial(good + b"\x00\x00junk")
    assert pairs == [(b"key", b"example.com"), (b"address", b"127.0.0.1:9")]
    assert isinstance(error, PacketError)
    assert decode_vars_partial(good) == (pairs, None)


def test_encode_limits():
    with pytest.raises(PacketError):
        encode_vars([(b"", b"x")])
    with pytest.raises(HeadTooLarge):
        encode_vars([(b"K", b"x" * 65536)])
    big = [(b"K", b"x" * 60000), (b"L", b"y" * 6000)]
    with pytest.raises(HeadTooLarge) as info:
        encode_packet(big)
    assert info.value.status == 431
    with pytest.raises(HeadTooLarge):
        encode_packet([(b"K", b"x" * 100)], limit=50)
    # Exactly at the u16 limit is fine.
    exact = [(b"K", b"x" * (MAX_VARS_SIZE - 5))]
    assert decode_header(encode_packet(exact))[1] == MAX_VARS_SIZE


def test_reader_limit_and_misuse():
    reader = PacketReader(limit=10)
    with pytest.raises(HeadTooLarge):
        reader.feed(encode_header(0, 11, 0))
    reader = PacketReader(limit=10)
    assert reader.feed(encode_header(0, 10, 0)) is None
    packet = reader.feed(b"\x01\x00A\x05\x00hellobody")
    assert packet == Packet(0, 0, [(b"A", b"hello")], encode_header(0, 10, 0) + b"\x01\x00A\x05\x00hello")
    assert reader.rest == b"body"
    with pytest.raises(RuntimeError):
        reader.feed(b"more")
    with pytest.raises(ValueError):
        PacketReader(limit=65536)


def test_reader_bad_vars_raise_packet_error():
    reader = PacketReader()
    with pytest.raises(PacketError):
        reader.feed(encode_header(0, 3, 0) + b"\x00\x00\x00")


def test_reader_empty_vars_packet():
    packet, rest = read_packet(b"\x64\x00\x00\x00")
    assert packet.vars == [] and packet.modifier1 == 100 and rest == b""


def test_read_packet_truncated():
    with pytest.raises(ProtocolError):
        read_packet(b"\x00\x05\x00\x00\x01")
