"""uWSGI's cache sync packet, pure: what ``--cache-udp-node`` sends and
``--cache-udp-server`` reads (uWSGI 2.0 core/cache.c, cache_send_udp_command and
cache_udp_server_loop).

A uwsgi packet with modifier1 111, modifier2 the command; little-endian 16-bit sizes::

    header:  111 | pktsize (u16) | cmd       pktsize: the bytes after the header
    body:    keylen (u16) | key
    cmd 10 (set/update) adds: vallen (u16) | value | explen (u16) | expires

``expires`` is decimal ASCII, an absolute unix time in seconds, 0 for never (the sender
turned its relative expiry into one); uWSGI's server treats a body that ends after the
value as "no expiry", and so does this decoder. Command 11 deletes the key. The
receiver sets with update semantics (a set of an existing key replaces it).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

MODIFIER1 = 111
SET = 10  # set or update
DELETE = 11
MAX_PACKET = 65535  # uWSGI reads at most UMAX16 bytes per datagram
_HEADER = struct.Struct("<BHB")
_U16 = struct.Struct("<H")


class SyncError(ValueError):
    """A packet that is not a valid cache sync packet; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class SyncCommand:
    """One decoded packet: ``value`` is None for a delete; ``expires`` 0: never."""

    key: bytes
    value: bytes | None = None
    expires: int = 0

    @property
    def delete(self) -> bool:
        return self.value is None


def encode_sync(cmd: SyncCommand) -> bytes:
    """The packet uWSGI would send for ``cmd``."""
    body = _U16.pack(len(cmd.key)) + cmd.key
    if cmd.value is not None:
        expires = str(max(0, cmd.expires)).encode()
        body += _U16.pack(len(cmd.value)) + cmd.value + _U16.pack(len(expires)) + expires
    if len(body) > 0xFFFF:
        raise ValueError("cache sync packet over 64 KiB")
    return _HEADER.pack(MODIFIER1, len(body), DELETE if cmd.value is None else SET) + body


def _take(data: bytes, pos: int, what: str) -> tuple[bytes, int]:
    if pos + 2 > len(data):
        raise SyncError(f"truncated before the {what} size")
    (size,) = _U16.unpack_from(data, pos)
    pos += 2
    if pos + size > len(data):
        raise SyncError(f"{what} of {size} bytes overruns the packet")
    return data[pos:pos + size], pos + size


def decode_sync(data: bytes) -> SyncCommand:
    """The command in ``data``; SyncError with the reason for anything else."""
    if len(data) < 6:
        raise SyncError(f"{len(data)} bytes, too short")
    modifier1, pktsize, cmd = _HEADER.unpack_from(data)
    if modifier1 != MODIFIER1:
        raise SyncError(f"modifier1 {modifier1}, not {MODIFIER1}")
    if pktsize != len(data) - 4:
        raise SyncError(f"header says {pktsize} bytes, {len(data) - 4} follow")
    if cmd not in (SET, DELETE):
        raise SyncError(f"unknown command {cmd}")
    key, pos = _take(data, 4, "key")
    if not key:
        raise SyncError("empty key")
    if cmd == DELETE:
        if pos != len(data):
            raise SyncError("bytes after the key of a delete")
        return SyncCommand(key)
    value, pos = _take(data, pos, "value")
    if not value:
        raise SyncError("empty value")
    expires = 0
    if pos < len(data):
        text, pos = _take(data, pos, "expires")
        if pos != len(data):
            raise SyncError("bytes after the expiry")
        if not text.isdigit() or len(text) > 20:
            raise SyncError(f"expiry {text[:24]!r} is not a number")
        expires = int(text)
    return SyncCommand(key, value, expires)
