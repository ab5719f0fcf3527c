"""A request body held before (or while) it goes to a node: in memory up to a limit,
then in an unnamed temporary file. The fastrouter's ``--fastrouter-post-buffering``
and the HTTP router's de-chunked request bodies use it.

File writes are synchronous: they land in the page cache, far faster than the socket
feeding them, so a thread hop would cost more than it saves."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from typing import Any

import trio

from brood.routers.net.relay import send_patiently


class Spool:
    """Bytes in memory up to ``memory_limit``, then in a temporary file in ``directory``
    (None: the system's). OSError from ``write`` when the file cannot be made or
    written (no directory, disk full, no fd left)."""

    def __init__(self, memory_limit: int, directory: str | None = None) -> None:
        self.memory_limit = memory_limit
        self.directory = directory
        self.memory = bytearray()
        self.file: Any = None
        self.size = 0
        self.sent = 0  # bytes ``send_to`` got out so far

    def write(self, data: bytes) -> None:
        self.size += len(data)
        if self.file is None and len(self.memory) + len(data) <= self.memory_limit:
            self.memory += data
            return
        if self.file is None:
            self.file = tempfile.TemporaryFile(dir=self.directory or None)  # noqa: SIM115 (lives past this call; close() ends it)
            self.file.write(self.memory)
            self.memory = bytearray()
        self.file.write(data)

    async def send_to(self, sock: trio.socket.SocketType, timeout: float | None,
                      touch: Callable[[], None] | None = None) -> int:
        """Write the spooled bytes not sent yet to ``sock`` (sendfile(2) for the file
        case); the bytes sent by this call. OSError when the peer fails;
        trio.TooSlowError when it takes no byte for ``timeout`` (None: the caller's own
        deadline bounds the waits, ``touch`` is called at each progress). ``sent``
        follows the file's progress, so a caller cancelled midway can send the rest
        later (an HTTP router whose node answered 101 before reading it all)."""
        async def writable(sock: trio.socket.SocketType) -> None:
            if timeout is None:
                await trio.lowlevel.wait_writable(sock)
            else:
                with trio.fail_after(timeout):
                    await trio.lowlevel.wait_writable(sock)
            if touch is not None:
                touch()

        start = self.sent
        if self.file is None:
            await send_patiently(sock, memoryview(self.memory)[start:], writable)
            self.sent = self.size
            return self.size - start
        self.file.flush()
        fd = self.file.fileno()
        while self.sent < self.size:
            try:
                self.sent += os.sendfile(sock.fileno(), fd, self.sent, self.size - self.sent)
            except BlockingIOError:
                await writable(sock)
        return self.size - start

    @property
    def unsent(self) -> bool:
        return self.sent < self.size

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None
