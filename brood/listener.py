"""A bound listening socket handed from the master to the processes that serve it."""

from __future__ import annotations

import socket
from dataclasses import dataclass


@dataclass
class Listener:
    """One listening socket and what it speaks.

    ``name`` is the address as uWSGI prints it ("127.0.0.1:3031" with the real port after
    binding ":0", "/tmp/app.sock", "@abstract"); stats and subscriptions announce it.
    ``proto`` is "uwsgi" or "http" for worker sockets, or the router kind ("http",
    "fastrouter", "rawrouter", "subscription", "stats") for the others.
    """

    sock: socket.socket
    name: str
    proto: str
    shared: bool = False
    shared_index: int | None = None  # N of an "=N" reference to --shared-socket N

    def fileno(self) -> int:
        return self.sock.fileno()
