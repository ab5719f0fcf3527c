"""The accept loop without a fast lane: what an accepted connection starts with."""

from __future__ import annotations

import socket

import trio

from brood.routers.net.listen import accept_loop


async def test_accepted_connections_have_no_nagle():
    """TCP_NODELAY comes from the listening socket (set once there), not a setsockopt
    per connection."""
    seen: list[int] = []
    done = trio.Event()

    async def handler(conn: trio.socket.SocketType, peer) -> None:
        seen.append(conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        done.set()

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.setblocking(False)
    async with trio.open_nursery() as nursery:
        with trio.socket.from_stdlib_socket(listener) as lsock:
            await nursery.start(accept_loop, lsock, handler, nursery)
            with socket.create_connection(listener.getsockname()):
                with trio.fail_after(5):
                    await done.wait()
            assert seen == [1]
            assert lsock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
            nursery.cancel_scope.cancel()
