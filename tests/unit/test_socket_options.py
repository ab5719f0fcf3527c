"""--socket-sndbuf, --socket-rcvbuf, --socket-send-timeout: set on the sockets brood
binds, before bind, as uWSGI 2.0.21 does (strace shows its setsockopt calls right
before each bind: the buffers on TCP and unix stream sockets, SO_SNDTIMEO on TCP
ones); connections accepted on them inherit them."""

from __future__ import annotations

import socket
import struct

from brood.sockets import StreamOptions, bind_listener

OPTIONS = StreamOptions(sndbuf=65536, rcvbuf=32768, send_timeout=7)


def _timeout(sock: socket.socket) -> int:
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.calcsize("ll"))
    return struct.unpack("ll", raw)[0]


def _accepted(listener: socket.socket, family: int, address) -> socket.socket:
    client = socket.socket(family, socket.SOCK_STREAM)
    client.connect(address)
    conn, _ = listener.accept()
    client.close()
    return conn


def test_tcp_listener_and_accepted_connections_get_them() -> None:
    lst = bind_listener("127.0.0.1:0", "http", options=OPTIONS)
    try:
        conn = _accepted(lst.sock, socket.AF_INET, lst.sock.getsockname())
        for sock in (lst.sock, conn):
            # Linux doubles what it is given (its bookkeeping): as uWSGI's sockets show
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) == 2 * 65536
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) == 2 * 32768
            assert _timeout(sock) == 7
        conn.close()
    finally:
        lst.sock.close()


def test_unix_sockets_get_the_buffers_not_the_timeout(tmp_path) -> None:
    path = str(tmp_path / "w.sock")
    lst = bind_listener(path, "uwsgi", options=OPTIONS)
    try:
        assert lst.sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) == 2 * 65536
        assert lst.sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) == 2 * 32768
        assert _timeout(lst.sock) == 0
    finally:
        lst.sock.close()


def test_without_them_the_system_defaults_stay() -> None:
    plain = bind_listener("127.0.0.1:0", "http")
    given = bind_listener("127.0.0.1:0", "http", options=StreamOptions())
    try:
        for level in (socket.SO_SNDBUF, socket.SO_RCVBUF):
            assert (plain.sock.getsockopt(socket.SOL_SOCKET, level)
                    == given.sock.getsockopt(socket.SOL_SOCKET, level))
        assert _timeout(given.sock) == 0
    finally:
        plain.sock.close()
        given.sock.close()
