"""PROXY protocol v1 (text) and v2 (binary) headers, as HAProxy's spec defines them.

A load balancer in front of a router prepends one such header to each
connection to say who the real client is. ``parse_proxy`` looks at the start
of a connection's first bytes: None means "need more", otherwise the parsed
addresses (None for LOCAL / UNKNOWN / unspecified families: use the socket's
own addresses) and how many bytes the header took. Callers only call it when
proxy protocol is on, so anything that is not a PROXY header is an error.
"""

from __future__ import annotations

import ipaddress
import re
import struct
from dataclasses import dataclass

from .errors import BadRequest

V1_PREFIX = b"PROXY "
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
# The v1 spec caps a header line at 107 bytes including CRLF.
V1_MAX_LENGTH = 107
# v2 fixed part: 12-byte signature, version/command, family, u16 length.
V2_HEADER_SIZE = 16
# A v2 address block plus TLVs we are willing to buffer before the payload:
# the spec allows 65535 but real senders use well under 1 KiB.
V2_MAX_LENGTH = 4096

_V1_RE = re.compile(
    rb"PROXY (TCP4|TCP6) ([0-9A-Fa-f.:]{2,45}) ([0-9A-Fa-f.:]{2,45}) ([0-9]{1,5}) ([0-9]{1,5})"
)
_V2_FIXED = struct.Struct("!12sBBH")
_V2_INET = struct.Struct("!4s4sHH")
_V2_INET6 = struct.Struct("!16s16sHH")
_V2_FAMILIES = {0x1: "TCP4", 0x2: "UDP4"}
_V2_FAMILIES6 = {0x1: "TCP6", 0x2: "UDP6"}


@dataclass(frozen=True, slots=True)
class ProxyInfo:
    """The real client's address as the balancer saw it."""

    src_addr: str
    src_port: int
    dst_addr: str
    dst_port: int
    family: str  # TCP4, TCP6, UDP4, UDP6


def _port(text: bytes) -> int:
    port = int(text)
    if port > 65535:
        raise BadRequest("PROXY v1 port out of range")
    return port


def _v1_address(text: bytes, family: bytes) -> str:
    try:
        address = ipaddress.ip_address(text.decode("ascii"))
    except ValueError:
        raise BadRequest("PROXY v1 invalid address")
    if address.version != (4 if family == b"TCP4" else 6):
        raise BadRequest("PROXY v1 address does not match its family")
    return str(address)


def _parse_v1(buf: bytes) -> tuple[ProxyInfo | None, int] | None:
    end = buf.find(b"\r\n", 0, V1_MAX_LENGTH)
    if end < 0:
        if len(buf) >= V1_MAX_LENGTH or b"\n" in buf:
            raise BadRequest("PROXY v1 line too long or not CRLF-terminated")
        return None
    line = buf[:end]
    if line.startswith(b"PROXY UNKNOWN") and line[13:14] in (b"", b" "):
        if b"\r" in line or b"\n" in line:
            raise BadRequest("PROXY v1 bare CR or LF")
        return None, end + 2
    match = _V1_RE.fullmatch(line)
    if match is None:
        raise BadRequest("malformed PROXY v1 line")
    family = match[1]
    info = ProxyInfo(
        src_addr=_v1_address(match[2], family),
        src_port=_port(match[4]),
        dst_addr=_v1_address(match[3], family),
        dst_port=_port(match[5]),
        family=family.decode("ascii"),
    )
    return info, end + 2


def _parse_v2(buf: bytes) -> tuple[ProxyInfo | None, int] | None:
    if len(buf) < V2_HEADER_SIZE:
        return None
    _, ver_cmd, fam, length = _V2_FIXED.unpack_from(buf)
    if ver_cmd >> 4 != 2:
        raise BadRequest("PROXY v2 unknown version")
    command = ver_cmd & 0xF
    if command > 1:
        raise BadRequest("PROXY v2 unknown command")
    if length > V2_MAX_LENGTH:
        raise BadRequest("PROXY v2 header too long")
    total = V2_HEADER_SIZE + length
    if len(buf) < total:
        return None
    if command == 0:  # LOCAL: a health check from the balancer itself
        return None, total
    family, transport = fam >> 4, fam & 0xF
    if transport > 2 or family > 3:
        raise BadRequest("PROXY v2 unknown family or transport")
    if family == 0 or transport == 0:  # AF_UNSPEC / UNSPEC: no usable address
        return None, total
    body = buf[V2_HEADER_SIZE:total]
    if family == 1:
        if length < _V2_INET.size:
            raise BadRequest("PROXY v2 IPv4 block too short")
        src, dst, sport, dport = _V2_INET.unpack_from(body)
        info = ProxyInfo(
            str(ipaddress.IPv4Address(src)), sport,
            str(ipaddress.IPv4Address(dst)), dport,
            _V2_FAMILIES[transport],
        )
    elif family == 2:
        if length < _V2_INET6.size:
            raise BadRequest("PROXY v2 IPv6 block too short")
        src, dst, sport, dport = _V2_INET6.unpack_from(body)
        info = ProxyInfo(
            str(ipaddress.IPv6Address(src)), sport,
            str(ipaddress.IPv6Address(dst)), dport,
            _V2_FAMILIES6[transport],
        )
    else:
        if length < 216:  # two 108-byte sun_path fields
            raise BadRequest("PROXY v2 unix block too short")
        # A socket path is no client address (REMOTE_ADDR, X-Forwarded-For): the
        # connection's own address is kept, as nginx does for this family.
        return None, total
    return info, total


def parse_proxy(buf: bytes | bytearray) -> tuple[ProxyInfo | None, int] | None:
    """Parse a PROXY v1 or v2 header at the start of ``buf``.

    Returns None when more bytes are needed, else ``(info, consumed)`` where
    info is None for LOCAL/UNKNOWN. BadRequest for anything malformed.
    """
    data = bytes(buf[: V2_HEADER_SIZE + V2_MAX_LENGTH])
    if data.startswith(V2_SIGNATURE):
        return _parse_v2(data)
    if data.startswith(V1_PREFIX):
        return _parse_v1(data)
    if V2_SIGNATURE.startswith(data) or V1_PREFIX.startswith(data):
        return None
    raise BadRequest("no PROXY protocol header")


__all__ = ["V1_MAX_LENGTH", "V2_SIGNATURE", "ProxyInfo", "parse_proxy"]
