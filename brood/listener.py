"""A bound listening socket handed from the master to the processes that serve it."""

from __future__ import annotations

import socket
from dataclasses import dataclass


@dataclass
class Listener:
    """One listening socket and what it speaks.

    ``name`` is the address as written, as uWSGI names it (":3031" for ":3031", not
    "0.0.0.0:3031"; "127.0.0.1:40123" after binding "127.0.0.1:0"; "/tmp/app.sock",
    "@abstract"): the rawrouter's routing key, and what stats, logs and subscriptions show.
    ``proto`` is "uwsgi" or "http" for worker sockets, or the router kind ("http",
    "fastrouter", "rawrouter", "subscription", "stats") for the others.
    """

    sock: socket.socket
    name: str
    proto: str
    shared: bool = False
    shared_index: int | None = None  # N of an "=N" reference to --shared-socket N
    https_port: int | None = None  # --http-to-https ADDR,PORT: the port its 301s name

    def fileno(self) -> int:
        return self.sock.fileno()
