"""One accepted client connection as the worker loops see it (``Conn``).

A connection outlives a request: between keep-alive requests the worker loops park it
in their epoll set instead of waiting on it, so the bytes a client pipelined
(``buf``) and what the environ needs about the peer are kept here, computed once per
connection rather than once per request.
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from brood.workers.wsgi import Endpoint


class Conn:
    """An accepted socket, its listener, the peer as environ strings, unparsed bytes."""

    __slots__ = ("sock", "fd", "endpoint", "addr", "remote_addr", "remote_port", "buf",
                 "idle_since")  # fmt: skip

    def __init__(self, sock: socket.socket, addr: Any, endpoint: Endpoint) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.endpoint = endpoint
        self.addr = addr
        if endpoint.tcp:
            self.remote_addr: str = addr[0]
            self.remote_port: str = str(addr[1])
        else:
            self.remote_addr = ""
            self.remote_port = "0"
        self.buf = b""  # received, not yet parsed (the start of the next request)
        self.idle_since = 0.0  # loop clock when it was last parked

    def peer(self) -> str:
        """The client for log lines."""
        return f"{self.remote_addr}:{self.remote_port}" if self.endpoint.tcp else "unix"
