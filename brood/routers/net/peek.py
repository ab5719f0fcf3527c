"""A stream that gives back bytes already read from it.

Fronts peek at the start of a connection (a uwsgi header, a TLS ClientHello, a PROXY
line) to decide where it goes, then hand the connection on as if nothing had been read:
the peeked bytes come out of ``receive_some`` first, then the wrapped stream continues.
"""

from __future__ import annotations

import trio


class PeekStream(trio.abc.HalfCloseableStream):
    """Replays ``peeked`` before reading from ``stream``; everything else passes through."""

    def __init__(self, stream: trio.abc.Stream, peeked: bytes = b"") -> None:
        self.stream = stream
        self._peeked = memoryview(bytes(peeked))

    @property
    def pending(self) -> bytes:
        """Peeked bytes not handed out yet."""
        return bytes(self._peeked)

    def unread(self, data: bytes) -> None:
        """Put ``data`` back in front of what is still pending."""
        self._peeked = memoryview(bytes(data) + bytes(self._peeked))

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self._peeked:
            n = len(self._peeked) if max_bytes is None else max(1, max_bytes)
            out, self._peeked = bytes(self._peeked[:n]), self._peeked[n:]
            await trio.lowlevel.checkpoint()
            return out
        return await self.stream.receive_some(max_bytes)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.stream.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        send_eof = getattr(self.stream, "send_eof", None)
        if send_eof is None:
            raise trio.BrokenResourceError("wrapped stream cannot half-close")
        await send_eof()

    async def aclose(self) -> None:
        self._peeked = memoryview(b"")
        await self.stream.aclose()
