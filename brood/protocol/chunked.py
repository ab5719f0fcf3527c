"""HTTP/1.1 chunked transfer coding: an incremental decoder and the encoder.

How it works. ``ChunkedDecoder.feed`` walks the bytes it is given with an
index: size lines and trailer lines are found with ``bytes.find``, chunk data
is sliced out whole (one copy per piece, no per-byte loop). Only an incomplete
line is kept between calls, so the buffer never grows past ``max_line``.

Strict where smuggling lives (RFC 9112 §7.1): sizes are 1 to 16 hex digits
with nothing else but an optional ``;extension``; lines end in CRLF only (a
bare LF or CR is an error); chunk data must be followed by exactly CRLF.
Extensions and trailer fields are checked for shape, then ignored.
"""

from __future__ import annotations

import re

from .errors import BadRequest, BodyTooLarge, HeadTooLarge, ProtocolError

LAST_CHUNK = b"0\r\n\r\n"
# A size line is a few hex digits plus rare extensions: 4 KiB is generous,
# and bounds what we buffer while waiting for its CRLF.
DEFAULT_MAX_LINE = 4096
# 16 hex digits are 64 bits; anything longer is an overflow attempt.
_MAX_SIZE_DIGITS = 16
# Trailers are rare and small; cap their total like a small request head.
MAX_TRAILER_SIZE = 16384

_HEX_RE = re.compile(rb"[0-9A-Fa-f]{1,%d}" % _MAX_SIZE_DIGITS)
# Extension text: visible bytes, SP and HTAB, starting with ';'.
_EXT_RE = re.compile(rb";[\t\x20-\x7e\x80-\xff]*")
_TRAILER_RE = re.compile(rb"[-!#$%&'*+.^_`|~0-9A-Za-z]+:[\t\x20-\x7e\x80-\xff]*")

_SIZE, _DATA, _DATA_END, _TRAILER, _DONE = range(5)


def encode_chunk(data: bytes) -> bytes:
    """One chunk; empty data gives b"" since an empty chunk would end the body."""
    if not data:
        return b""
    return b"%x\r\n%s\r\n" % (len(data), data)


class ChunkedDecoder:
    """Incremental chunked-body decoder.

    ``feed`` returns the payload pieces decoded so far; ``done`` turns true
    after the last chunk and trailers, and ``rest`` then holds what followed
    (the next pipelined request). ``max_body`` caps the decoded size with
    BodyTooLarge, checked as soon as a chunk size is read. ``error`` is the
    exception raised on malformed input (BadResponse when decoding a backend).
    """

    __slots__ = (
        "max_line",
        "max_body",
        "error",
        "_state",
        "_pending",
        "_remaining",
        "_trailer_size",
        "received",
        "rest",
    )

    def __init__(
        self,
        max_line: int = DEFAULT_MAX_LINE,
        *,
        max_body: int | None = None,
        error: type[ProtocolError] = BadRequest,
    ) -> None:
        self.max_line = max_line
        self.max_body = max_body
        self.error = error
        self._state = _SIZE
        self._pending = b""  # an incomplete line (or half a CRLF) from the last feed
        self._remaining = 0
        self._trailer_size = 0
        self.received = 0  # decoded payload bytes so far
        self.rest = b""

    @property
    def done(self) -> bool:
        return self._state == _DONE

    def _incomplete_line(self, buf: bytes, i: int) -> None:
        """Check a line still waiting for its CRLF: no bare LF, not too long."""
        lf = buf.find(b"\n", i, i + self.max_line + 2)
        if lf >= 0:
            raise self.error("bare LF in chunked framing")
        if len(buf) - i > self.max_line + 1:
            raise self.error("chunk line too long")

    def _size_line(self, line: bytes) -> int:
        semi = line.find(b";")
        if semi >= 0:
            digits = line[:semi].rstrip(b" \t")
            if not _EXT_RE.fullmatch(line, semi):
                raise self.error("invalid chunk extension")
        else:
            digits = line
        if not _HEX_RE.fullmatch(digits):
            raise self.error(f"invalid chunk size {digits[:20]!r}")
        return int(digits, 16)

    def feed(self, data: bytes) -> list[bytes]:
        """Decode what ``data`` completes; an empty list when nothing new."""
        if self._state == _DONE:
            self.rest += data
            return []
        buf = self._pending + data if self._pending else bytes(data)
        self._pending = b""
        out: list[bytes] = []
        i = 0
        n = len(buf)
        max_line = self.max_line
        while i < n:
            state = self._state
            if state == _DATA:
                take = min(self._remaining, n - i)
                out.append(buf[i : i + take])
                i += take
                self._remaining -= take
                if not self._remaining:
                    self._state = _DATA_END
            elif state == _DATA_END:
                if n - i < 2:
                    if buf[i : i + 1] != b"\r":
                        raise self.error("chunk data not followed by CRLF")
                    break
                if buf[i : i + 2] != b"\r\n":
                    raise self.error("chunk data not followed by CRLF")
                i += 2
                self._state = _SIZE
            else:  # _SIZE or _TRAILER: a CRLF-terminated line
                j = buf.find(b"\r\n", i, i + max_line + 2)
                if j < 0:
                    self._incomplete_line(buf, i)
                    break
                line = buf[i:j]
                if b"\r" in line or b"\n" in line:
                    raise self.error("bare CR or LF in chunked framing")
                i = j + 2
                if state == _SIZE:
                    size = self._size_line(line)
                    if self.max_body is not None and self.received + size > self.max_body:
                        raise BodyTooLarge(f"chunked body larger than {self.max_body} bytes")
                    self.received += size
                    if size:
                        self._remaining = size
                        self._state = _DATA
                    else:
                        self._state = _TRAILER
                elif not line:
                    self._state = _DONE
                    self.rest = buf[i:]
                    return out
                else:
                    self._trailer_size += len(line) + 2
                    if self._trailer_size > MAX_TRAILER_SIZE:
                        # a client's is a 431; a node's is a bad answer like any other
                        raise (HeadTooLarge if self.error is BadRequest else self.error)(
                            "chunked trailers too large")
                    if not _TRAILER_RE.fullmatch(line):
                        raise self.error("invalid trailer field")
        self._pending = buf[i:]
        return out


__all__ = ["DEFAULT_MAX_LINE", "LAST_CHUNK", "MAX_TRAILER_SIZE", "ChunkedDecoder", "encode_chunk"]
