"""The --threads shared epoll set (``brood.workers.threaded``): the idle sweep."""

from __future__ import annotations

import os
import select
import socket
import time
from types import SimpleNamespace

from brood.workers.threaded import SharedPoll


class _Conn:
    def __init__(self, sock: socket.socket, idle_since: float) -> None:
        self.sock, self.fd, self.idle_since = sock, sock.fileno(), idle_since


def test_the_sweep_closes_only_connections_idle_past_the_read_timeout() -> None:
    wake_r, wake_w = os.pipe()
    worker = SimpleNamespace(wake_r=wake_r, parked={},
                             listening_epoll=lambda: (select.epoll(), {}))
    poll = SharedPoll(worker, tick=0.0, read_timeout=5.0, recv_size=4096)
    pairs = [socket.socketpair() for _ in range(2)]
    try:
        old, fresh = (_Conn(pairs[0][0], 0.0), _Conn(pairs[1][0], 0.0))
        poll._park(old)
        poll._park(fresh)
        old.idle_since = time.monotonic() - 6.0  # idle past the read timeout
        poll._sweep_due()
        assert list(worker.parked) == [fresh.fd]
        assert old.sock.fileno() == -1 and fresh.sock.fileno() >= 0
        assert pairs[0][1].recv(1) == b""  # its client sees the close
    finally:
        poll.close()
        for a, b in pairs:
            a.close()
            b.close()
        os.close(wake_r)
        os.close(wake_w)
