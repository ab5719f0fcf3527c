"""PROXY protocol v1/v2 headers."""

import socket
import struct

import pytest

from brood.protocol.errors import BadRequest
from brood.protocol.proxy import V2_SIGNATURE, ProxyInfo, parse_proxy


def v2(command: int, fam: int, body: bytes) -> bytes:
    return V2_SIGNATURE + bytes([0x20 | command, fam]) + struct.pack("!H", len(body)) + body


def test_v1_tcp4():
    data = b"PROXY TCP4 192.168.0.1 10.0.0.2 56324 443\r\nGET / HTTP/1.1\r\n"
    info, used = parse_proxy(data)
    assert info == ProxyInfo("192.168.0.1", 56324, "10.0.0.2", 443, "TCP4")
    assert data[used:] == b"GET / HTTP/1.1\r\n"


def test_v1_tcp6_and_unknown():
    info, used = parse_proxy(b"PROXY TCP6 2001:db8::1 ::1 1 65535\r\n")
    assert info == ProxyInfo("2001:db8::1", 1, "::1", 65535, "TCP6")
    assert used == 36
    assert parse_proxy(b"PROXY UNKNOWN\r\nrest") == (None, 15)
    assert parse_proxy(b"PROXY UNKNOWN ffff::1 ::1 1 2\r\n") == (None, 31)


def test_v1_incomplete():
    data = b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n"
    for i in range(len(data)):
        assert parse_proxy(data[:i]) is None, i
    assert parse_proxy(bytearray(data))[1] == len(data)


@pytest.mark.parametrize(
    "data",
    [
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n",
        b"PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n",
        b"PROXY TCP4 ::1 ::1 1 2\r\n",  # family mismatch
        b"PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n",
        b"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",
        b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n",
        b"PROXY UNKNOWNX\r\n",
        b"PROXY " + b"A" * 120,
        b"GET / HTTP/1.1\r\n",
        b"proxy TCP4",
        b"\r\n\r\n\x00\r\nQUIX\n",
    ],
)
def test_malformed(data):
    with pytest.raises(BadRequest) as info:
        parse_proxy(data)
    assert info.value.status == 400


def test_v2_tcp4_with_tlv():
    body = socket.inet_aton("1.2.3.4") + socket.inet_aton("5.6.7.8") + struct.pack("!HH", 1000, 80)
    tlv = b"\x04\x00\x01x"  # a NOOP TLV, ignored
    data = v2(1, 0x11, body + tlv)
    info, used = parse_proxy(data + b"payload")
    assert info == ProxyInfo("1.2.3.4", 1000, "5.6.7.8", 80, "TCP4")
    assert used == len(data)
    for i in range(len(data)):
        assert parse_proxy(data[:i]) is None, i


def test_v2_tcp6_udp_unix():
    body = socket.inet_pton(socket.AF_INET6, "2001:db8::1") + socket.inet_pton(socket.AF_INET6, "::2")
    info, _ = parse_proxy(v2(1, 0x21, body + struct.pack("!HH", 5, 6)))
    assert info == ProxyInfo("2001:db8::1", 5, "::2", 6, "TCP6")
    body4 = bytes(4) + bytes(4) + struct.pack("!HH", 5, 6)
    assert parse_proxy(v2(1, 0x12, body4))[0].family == "UDP4"
    # A unix block (any bytes in its paths) is read past, its addresses not used.
    unix = "/tmp/\u00e9.sock".encode().ljust(108, b"\x00") + b"/tmp/\x87".ljust(108, b"\x00")
    assert parse_proxy(v2(1, 0x31, unix)) == (None, 16 + 216)
    assert parse_proxy(v2(1, 0x32, unix + b"rest")) == (None, 16 + 220)


def test_v2_local_and_unspec():
    assert parse_proxy(v2(0, 0x00, b"")) == (None, 16)
    assert parse_proxy(v2(0, 0x11, bytes(12))) == (None, 28)  # LOCAL ignores addresses
    assert parse_proxy(v2(1, 0x00, b"xyz")) == (None, 19)


@pytest.mark.parametrize(
    "data",
    [
        V2_SIGNATURE + b"\x11\x11\x00\x00",  # version 1
        V2_SIGNATURE + b"\x22\x11\x00\x00",  # command 2
        v2(1, 0x11, bytes(11)),  # short IPv4 block
        v2(1, 0x21, bytes(35)),
        v2(1, 0x31, bytes(215)),
        v2(1, 0x41, bytes(12)),  # unknown family
        v2(1, 0x13, bytes(12)),  # unknown transport
        V2_SIGNATURE + b"\x21\x11\xff\xff",  # absurd length
    ],
)
def test_v2_malformed(data):
    with pytest.raises(BadRequest):
        parse_proxy(data)
