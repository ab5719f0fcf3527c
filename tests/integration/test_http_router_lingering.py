"""A connection the router ends after a whole answer, with request bytes still unread
(pipelined requests, a body the node answered before reading): a plain close would be a
reset, and a reset throws away the tail of the answer still on its way to the client.
The router half-closes and drops what comes first (nginx's lingering close)."""

from __future__ import annotations

import socket

import pytest
import trio
from _httpkit import http_router, node_server
from _routerkit import send_all

from brood.routers.http.settings import HttpSettings

BIG = 4 << 20  # more than the loopback send buffers hold with a client that reads late


async def slow_reader(sock: trio.socket.SocketType, limit: float = 10) -> tuple[bytes, str]:
    """Everything until the end, and how it ended: "fin" or "reset"."""
    got = bytearray()
    with trio.fail_after(limit):
        try:
            while data := await sock.recv(1 << 16):
                got += data
        except ConnectionResetError:
            return bytes(got), "reset"
    return bytes(got), "fin"


def small_buffers() -> trio.socket.SocketType:
    sock = trio.socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32768)
    return sock


@pytest.mark.parametrize("close_line", [b"Connection: close\r\n", b""])
async def test_a_big_answer_ending_the_connection_survives_pipelined_requests(close_line):
    """The lane's way: a 4 MiB answer that ends the connection (Connection: close, or a
    close-delimited body), 300 KiB of pipelined requests behind its request."""
    length = b"Content-Length: %d\r\n" % BIG if close_line else b""
    node_answer = b"HTTP/1.1 200 OK\r\n" + close_line + length + b"\r\n" + b"z" * BIG

    async def behave(conn, request):
        await send_all(conn, node_answer)

    async with trio.open_nursery() as nursery:
        node = await nursery.start(node_server, behave)
        async with http_router({b"a": [node.address]}, HttpSettings(server_name=b"vm")) as router:
            host, port = router.address.rsplit(":", 1)
            with small_buffers() as sock:
                await sock.connect((host, int(port)))
                request = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"
                await send_all(sock, request + request * (300_000 // len(request)))
                await trio.sleep(0.3)  # the client reads late: the answer waits in buffers
                got, end = await slow_reader(sock)
        nursery.cancel_scope.cancel()
    assert end == "fin"
    assert got.endswith(b"\r\n\r\n" + b"z" * BIG)


async def test_a_big_early_answer_survives_the_upload_it_came_before():
    """The general path's way: the node answers 413 with a 2 MiB body without reading
    the 20 MB upload; the client uploads on (a little past its Content-Length, as some
    do) and reads the answer after."""
    body_size = 20_000_000
    page = b"HTTP/1.1 413 Too Large\r\nContent-Length: %d\r\n\r\n" % (2 << 20) + b"p" * (2 << 20)

    async def node(task_status=trio.TASK_STATUS_IGNORED):
        lsock = trio.socket.socket()
        await lsock.bind(("127.0.0.1", 0))
        lsock.listen(8)
        task_status.started(f"127.0.0.1:{lsock.getsockname()[1]}")
        conn, _ = await lsock.accept()
        with conn:
            head = await conn.recv(4)
            left = 4 + int.from_bytes(head[1:3], "little") - len(head)
            while left > 0:
                left -= len(await conn.recv(left))
            await send_all(conn, page)  # the body never read
            await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        address = await nursery.start(node)
        async with http_router({b"a": [address]}, HttpSettings(server_name=b"vm")) as router:
            host, port = router.address.rsplit(":", 1)
            with small_buffers() as sock:
                await sock.connect((host, int(port)))
                await send_all(sock, b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n"
                               % body_size)

                async def upload():
                    block, sent = b"b" * 65536, 0
                    while sent < body_size:  # whole blocks: 20,971,520 bytes in all
                        await send_all(sock, block)
                        sent += len(block)

                with trio.fail_after(20):
                    await upload()
                got, end = await slow_reader(sock)
        nursery.cancel_scope.cancel()
    assert end == "fin"
    assert got == page
