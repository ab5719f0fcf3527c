"""The master's messages to the log master: one JSON object per datagram of a
SOCK_SEQPACKET socket pair, with file descriptors attached (SCM_RIGHTS) when it brings
the read ends of a new child's pipes (pure framing, no state)."""

from __future__ import annotations

import json
import socket
from typing import Any

MAX_MESSAGE = 65536
MAX_FDS = 64  # read ends per message: one child brings one, or two


def pair() -> tuple[socket.socket, socket.socket]:
    """(the master's end, the log master's end)."""
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)


def send(sock: socket.socket, message: dict[str, Any], fds: list[int] = ()) -> None:
    """One message; OSError (BlockingIOError on a full socket) when it cannot go."""
    data = json.dumps(message).encode()
    if fds:
        socket.send_fds(sock, [data], list(fds))
    else:
        sock.send(data)


def receive(sock: socket.socket) -> tuple[dict[str, Any] | None, list[int]]:
    """The next message and the fds it brought; (None, []) at end of file. A message
    that is no JSON object reads as ``{}`` (its fds are still returned, to be closed)."""
    data, fds, _flags, _addr = socket.recv_fds(sock, MAX_MESSAGE, MAX_FDS)
    if not data:
        return None, list(fds)
    try:
        message = json.loads(data)
    except ValueError:
        message = {}
    return (message if isinstance(message, dict) else {}), list(fds)
