"""The general path's idle timeout and failures on the client's side: a slow reader is
not cut, a client that stops reading or sending is named in the log (not the node), a
stalled body gets a 408, and a client gone mid-answer is no node failure."""

from __future__ import annotations

import logging
import socket
import struct

import trio
from _httpkit import HttpClient, answer, http_router, node_server, open_client
from _routerkit import wait_for

from brood.routers.http.settings import HttpSettings

PROXY = b"PROXY TCP4 192.0.2.7 198.51.100.1 40000 80\r\n"  # the general path from the start


def settings(**kw) -> HttpSettings:
    kw.setdefault("server_name", b"vm")
    kw.setdefault("proxy_protocol", True)
    return HttpSettings(**kw)


def chunked(total: int, piece: int = 65536) -> bytes:
    chunk = b"%x\r\n" % piece + b"x" * piece + b"\r\n"
    return (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            + chunk * (total // piece) + b"0\r\n\r\n")


def messages(caplog) -> list[str]:
    """The log lines; a status in them reads ": 504 " (a client's port may hold "504")."""
    return [r.getMessage() for r in caplog.records]


async def test_a_slow_but_steady_reader_is_not_cut(caplog):
    """The kernel wakes a blocked sender only once a third of a large send buffer is
    free: a client taking about 5 MB/s leaves the router's send blocked for longer than the
    idle timeout, while bytes keep moving."""
    caplog.set_level(logging.INFO)
    total = 8 << 20
    node_answer = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % total + b"x" * total
    async with trio.open_nursery() as nursery:
        node = await nursery.start(node_server, answer(node_answer))
        async with http_router({b"a": [node.address]}, settings(timeout=0.15)) as router:
            with await open_client(router.address) as sock:
                await sock.send(PROXY + b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
                got = 0
                with trio.fail_after(20):
                    while got < total:
                        data = await sock.recv(65536)
                        assert data, "cut"
                        got += len(data)
                        await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    assert not [m for m in messages(caplog) if ": 504 " in m or "took no byte" in m]


async def test_a_client_that_stops_reading_is_named_not_the_node(caplog):
    caplog.set_level(logging.INFO)
    async with trio.open_nursery() as nursery:
        node = await nursery.start(node_server, answer(chunked(16 << 20)))
        async with http_router({b"a": [node.address]}, settings(timeout=0.3)) as router:
            with await open_client(router.address) as sock:
                await sock.send(PROXY + b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
                await wait_for(lambda: any("took no byte" in m for m in messages(caplog)))
        nursery.cancel_scope.cancel()
    assert not [m for m in messages(caplog) if ": 504 " in m or "silent" in m]


async def test_a_body_that_stops_coming_is_a_408(caplog):
    caplog.set_level(logging.INFO)
    async with trio.open_nursery() as nursery:
        node = await nursery.start(node_server)
        async with http_router({b"a": [node.address]}, settings(timeout=0.3)) as router:
            for body in (b"Content-Length: 10\r\n\r\nhello",
                         b"Transfer-Encoding: chunked\r\n\r\n5\r\nhel"):
                with await open_client(router.address) as sock:
                    client = HttpClient(sock)
                    await client.send(PROXY + b"POST / HTTP/1.1\r\nHost: a\r\n" + body)
                    head, _ = await client.response()
                    assert head.startswith(b"HTTP/1.1 408 "), body
        nursery.cancel_scope.cancel()
    assert sum("client sent no body byte" in m for m in messages(caplog)) == 2


async def test_a_client_gone_mid_answer_is_no_node_failure(caplog):
    caplog.set_level(logging.DEBUG)
    async with trio.open_nursery() as nursery:
        node = await nursery.start(node_server, answer(chunked(16 << 20)))
        async with http_router({b"a": [node.address]}, settings()) as router:
            sock = await open_client(router.address)
            await sock.send(PROXY + b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            await sock.recv(65536)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()  # a reset, the answer half sent
            await wait_for(lambda: any("client gone" in m for m in messages(caplog)))
        nursery.cancel_scope.cancel()
    assert not [m for m in messages(caplog) if ": 502 " in m]


async def test_the_fast_lane_holds_little_for_a_client_that_stops_reading():
    """As the rawrouter's lane: no more spliced than the client's send buffer takes."""
    from brood.routers.net.relay import SLOW_TAKE

    total = 16 << 20
    node_answer = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % total + b"x" * total
    async with trio.open_nursery() as nursery:
        node = await nursery.start(node_server, answer(node_answer))
        async with http_router({b"a": [node.address]}, settings(proxy_protocol=False)) as router:
            sock = trio.socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            with sock:
                host, port = router.address.rsplit(":", 1)
                await sock.connect((host, int(port)))
                await sock.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")

                def held() -> list[int]:
                    lane = router.handler.lane
                    return [len(c.pending) for c in lane.conns.values() if c.pending]

                await wait_for(lambda: router.handler.lane is not None and held())
                assert 0 < held()[0] <= SLOW_TAKE
        nursery.cancel_scope.cancel()
