"""wsgi.input streams that read the request body from the socket as the app asks.

A body that already arrived with the head is handed to the app as an ``io.BytesIO``
(no socket involved). Otherwise one of these streams reads it on demand:
``LengthInput`` for CONTENT_LENGTH bodies (never reads a byte past the body, so the
next keep-alive request stays on the socket), ``ChunkedInput`` for chunked bodies
(de-chunked on the fly; what follows the last chunk is kept in ``rest``). Both send
``100 Continue`` before the first socket read when the client asked for it.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

from brood.protocol.chunked import ChunkedDecoder

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_RECV = 65536


class ClientDisconnected(OSError):
    """The client went away (or timed out) before sending the whole body."""


class _Stream:
    """Buffered reads over ``_fill()``; subclasses say where more bytes come from."""

    __slots__ = ("_sock", "_buf", "_eof", "_broken", "_continue", "received")

    def __init__(self, sock: socket.socket, buf: bytes, expect_continue: bool) -> None:
        self._sock = sock
        self._buf = buf
        self._eof = False
        self._broken = False  # a read failed: the rest of the body is unknown
        self._continue = expect_continue and not buf
        self.received = 0  # body bytes taken from the socket (not counting ``buf``)

    def _fill(self) -> bytes:  # pragma: no cover - abstract
        raise NotImplementedError

    def _more(self) -> bool:
        """Append the next piece to the buffer; False at the end of the body."""
        if self._eof:
            return False
        if self._continue:
            self._continue = False
            self._sock.sendall(CONTINUE)
        try:
            data = self._fill()
        except BaseException:
            self._broken = self._eof = True
            raise
        if not data:
            self._eof = True
            return False
        self._buf += data
        return True

    @property
    def continue_pending(self) -> bool:
        """The client waits for 100 Continue that was never sent (body not read)."""
        return self._continue

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            while self._more():
                pass
            data, self._buf = self._buf, b""
            return data
        while len(self._buf) < size and self._more():
            pass
        data, self._buf = self._buf[:size], self._buf[size:]
        return data

    def read1(self, size: int = -1) -> bytes:
        if not self._buf:
            self._more()
        if size < 0:
            size = len(self._buf)
        data, self._buf = self._buf[:size], self._buf[size:]
        return data

    def readline(self, size: int | None = -1) -> bytes:
        limit = -1 if size is None else size
        start = 0
        while True:
            pos = self._buf.find(b"\n", start)
            if pos >= 0:
                end = pos + 1
                break
            if 0 <= limit <= len(self._buf):
                end = limit
                break
            start = len(self._buf)
            if not self._more():
                end = len(self._buf)
                break
        if 0 <= limit < end:
            end = limit
        data, self._buf = self._buf[:end], self._buf[end:]
        return data

    def readlines(self, hint: int = -1) -> list[bytes]:
        lines: list[bytes] = []
        total = 0
        while True:
            line = self.readline()
            if not line:
                return lines
            lines.append(line)
            total += len(line)
            if 0 < hint <= total:
                return lines

    def __iter__(self) -> Iterator[bytes]:
        while True:
            line = self.readline()
            if not line:
                return
            yield line

    def drain(self, limit: int) -> bool:
        """Read and drop the rest of the body, up to ``limit`` socket bytes.

        True when the body ended (the connection can carry another request).
        """
        if self._continue or self._broken:
            return False
        self._buf = b""
        while self.received <= limit:
            if not self._more():
                return True
            self._buf = b""
        return False


class LengthInput(_Stream):
    """A body of known length: ``buf`` holds the part already read with the head."""

    __slots__ = ("_remaining",)

    def __init__(
        self, sock: socket.socket, buf: bytes, remaining: int, expect_continue: bool = False
    ) -> None:
        super().__init__(sock, buf, expect_continue)
        self._remaining = remaining

    def _fill(self) -> bytes:
        if self._remaining <= 0:
            return b""
        try:
            data = self._sock.recv(min(self._remaining, _RECV))
        except OSError as exc:
            raise ClientDisconnected(f"reading request body: {exc}") from exc
        if not data:
            raise ClientDisconnected(f"client closed with {self._remaining} body bytes unsent")
        self._remaining -= len(data)
        self.received += len(data)
        return data


class ChunkedInput(_Stream):
    """A chunked body, de-chunked as it is read; over ``limit`` decoded bytes (0: no
    limit) a read raises BodyTooLarge, a malformed chunk BadRequest."""

    __slots__ = ("_decoder", "_pending")

    def __init__(
        self, sock: socket.socket, buf: bytes, limit: int = 0, expect_continue: bool = False
    ) -> None:
        super().__init__(sock, b"", expect_continue and not buf)
        self._decoder = ChunkedDecoder(max_body=limit or None)
        self._pending = buf  # raw, still chunked

    def _fill(self) -> bytes:
        decoder = self._decoder
        while not decoder.done:
            raw, self._pending = self._pending, b""
            if not raw:
                try:
                    raw = self._sock.recv(_RECV)
                except OSError as exc:
                    raise ClientDisconnected(f"reading chunked body: {exc}") from exc
                if not raw:
                    raise ClientDisconnected("client closed inside a chunked body")
                self.received += len(raw)
            data = b"".join(decoder.feed(raw))
            if data:
                return data
        return b""

    @property
    def rest(self) -> bytes:
        """Bytes after the terminating chunk (the next pipelined request), once done."""
        return self._decoder.rest if self._decoder.done else b""
