"""The uwsgi packet codec (WIRE.md §1): 4-byte header, then a block of vars.

How it works. A packet is ``modifier1 (u8) | datasize (u16 LE) | modifier2 (u8)``
followed by exactly ``datasize`` bytes of vars, each ``u16le klen | key |
u16le vlen | value``. There is no terminator and no count, so the header alone
says where the vars end; whatever follows (the request body) is not framed by
the packet. ``PacketReader`` is the incremental side: feed it bytes as they
arrive, it answers ``None`` until the whole vars block is in, then a
``Packet`` whose ``raw`` is the header and vars exactly as received (routers
forward them unchanged) and leaves the first body bytes in ``reader.rest``.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass

from .errors import HeadTooLarge, PacketError

HEADER_SIZE = 4
# datasize is a u16: no vars block can be longer, whatever the producer wants.
MAX_VARS_SIZE = 65535
# uWSGI's default --buffer-size: a worker refuses vars blocks larger than this.
DEFAULT_BUFFER_SIZE = 4096

_HEADER = struct.Struct("<BHB")
_U16 = struct.Struct("<H").unpack_from
_U16_PACK = struct.Struct("<H").pack


# ``encode_header`` without its range check, for a hot path whose fields are known to
# fit (a field that does not raises struct.error).
pack_header = _HEADER.pack


def encode_header(modifier1: int, size: int, modifier2: int) -> bytes:
    """Pack a header; ``ValueError`` when a field does not fit its width."""
    if not (0 <= modifier1 <= 255 and 0 <= modifier2 <= 255 and 0 <= size <= MAX_VARS_SIZE):
        raise ValueError(f"header field out of range: {modifier1}/{size}/{modifier2}")
    return _HEADER.pack(modifier1, size, modifier2)


def decode_header(data: bytes | bytearray | memoryview) -> tuple[int, int, int]:
    """Return ``(modifier1, datasize, modifier2)`` from the first 4 bytes."""
    if len(data) < HEADER_SIZE:
        raise PacketError(f"short header: {len(data)} bytes")
    return _HEADER.unpack_from(data)


def header_with_modifiers(raw_header: bytes, modifier1: int, modifier2: int) -> bytes:
    """Rewrite bytes 0 and 3 of a header, keeping datasize (fastrouter, WIRE §1.4)."""
    if len(raw_header) < HEADER_SIZE:
        raise ValueError("raw_header needs 4 bytes")
    if not (0 <= modifier1 <= 255 and 0 <= modifier2 <= 255):
        raise ValueError(f"modifier out of range: {modifier1}/{modifier2}")
    return bytes((modifier1,)) + bytes(raw_header[1:3]) + bytes((modifier2,))


def encode_vars(pairs: Iterable[tuple[bytes, bytes]]) -> bytes:
    """Concatenate ``klen key vlen value`` for each pair (no size check on the total)."""
    parts: list[bytes] = []
    extend = parts.extend
    u16 = _U16_PACK
    try:
        for key, value in pairs:
            if not key:
                raise PacketError("empty var name")
            extend((u16(len(key)), key, u16(len(value)), value))
    except struct.error:
        raise HeadTooLarge("a var name or value is longer than 65535 bytes") from None
    return b"".join(parts)


def encode_packet(
    pairs: Iterable[tuple[bytes, bytes]],
    modifier1: int = 0,
    modifier2: int = 0,
    limit: int = MAX_VARS_SIZE,
) -> bytes:
    """Header + vars; ``HeadTooLarge`` when the vars exceed ``limit`` (nginx: 500, WIRE §1.5)."""
    block = encode_vars(pairs)
    if len(block) > min(limit, MAX_VARS_SIZE):
        raise HeadTooLarge(f"vars block of {len(block)} bytes exceeds {limit}")
    return encode_header(modifier1, len(block), modifier2) + block


def _decode(
    buf: bytes, start: int, end: int
) -> tuple[list[tuple[bytes, bytes]], PacketError | None]:
    """Parse pairs in ``buf[start:end]``; stop at the first damage and say why."""
    pairs: list[tuple[bytes, bytes]] = []
    append = pairs.append
    i = start
    while i < end:
        if i + 2 > end:
            return pairs, PacketError(f"truncated key length at offset {i - start}")
        klen = _U16(buf, i)[0]
        if klen == 0:
            return pairs, PacketError(f"zero key length at offset {i - start}")
        i += 2
        kend = i + klen
        # The key and the value's length field must both fit in the block.
        if kend + 2 > end:
            return pairs, PacketError(f"key overruns the block at offset {i - start - 2}")
        vlen = _U16(buf, kend)[0]
        vstart = kend + 2
        vend = vstart + vlen
        if vend > end:
            return pairs, PacketError(f"value overruns the block at offset {kend - start}")
        append((buf[i:kend], buf[vstart:vend]))
        i = vend
    return pairs, None


def decode_vars(block: bytes | bytearray, start: int = 0,
                end: int | None = None) -> list[tuple[bytes, bytes]]:
    """All pairs of a vars block (``block[start:end]``, read in place); ``PacketError``
    on any damage."""
    pairs, error = _decode(bytes(block), start, len(block) if end is None else end)
    if error is not None:
        raise error
    return pairs


def decode_vars_partial(
    block: bytes | bytearray,
) -> tuple[list[tuple[bytes, bytes]], PacketError | None]:
    """The pairs before any damage, and the damage (the subscription server keeps them)."""
    return _decode(bytes(block), 0, len(block))


@dataclass(slots=True)
class Packet:
    """One received uwsgi packet; ``raw`` is header + vars exactly as received."""

    modifier1: int
    modifier2: int
    vars: list[tuple[bytes, bytes]]
    raw: bytes


class PacketReader:
    """Incremental packet reader for one connection.

    ``limit`` is uWSGI's ``--buffer-size``: a datasize above it is refused with
    ``HeadTooLarge`` as soon as the header is in, before reading the vars.
    """

    __slots__ = ("limit", "_buf", "_need", "rest", "packet")

    def __init__(self, limit: int = DEFAULT_BUFFER_SIZE) -> None:
        if not 0 <= limit <= MAX_VARS_SIZE:
            raise ValueError(f"limit must be within 0..{MAX_VARS_SIZE}")
        self.limit = limit
        self._buf = bytearray()
        self._need = 0  # total bytes of header + vars, once the header is known
        self.rest = b""
        self.packet: Packet | None = None

    def feed(self, data: bytes) -> Packet | None:
        """Add bytes; the Packet once complete, else None (need more data)."""
        if self.packet is not None:
            raise RuntimeError("packet already complete; read .rest")
        buf = self._buf
        buf += data
        if not self._need:
            if len(buf) < HEADER_SIZE:
                return None
            size = _U16(buf, 1)[0]
            if size > self.limit:
                raise HeadTooLarge(f"vars block of {size} bytes exceeds buffer size {self.limit}")
            self._need = HEADER_SIZE + size
        need = self._need
        if len(buf) < need:
            return None
        raw = bytes(buf[:need])
        self.rest = bytes(buf[need:])
        self._buf = bytearray()
        pairs, error = _decode(raw, HEADER_SIZE, need)
        if error is not None:
            raise error
        self.packet = Packet(raw[0], raw[3], pairs, raw)
        return self.packet


def read_packet(data: bytes, limit: int = MAX_VARS_SIZE) -> tuple[Packet, bytes]:
    """Decode a packet that is wholly in ``data``; returns it and the bytes after it."""
    reader = PacketReader(limit)
    packet = reader.feed(data)
    if packet is None:
        raise PacketError(f"truncated packet: {len(data)} bytes")
    return packet, reader.rest


__all__ = [
    "DEFAULT_BUFFER_SIZE",
    "HEADER_SIZE",
    "MAX_VARS_SIZE",
    "Packet",
    "PacketReader",
    "decode_header",
    "decode_vars",
    "decode_vars_partial",
    "encode_header",
    "encode_packet",
    "encode_vars",
    "header_with_modifiers",
    "read_packet",
]
