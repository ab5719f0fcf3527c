"""The HTTP router answers every failure with a status and Connection: close."""

from __future__ import annotations

import logging

import trio
from _httpkit import OK, HttpClient, answer, http_router, node_server, open_client
from _routerkit import refused_address, send_all

from brood.routers.http.settings import HttpSettings


def settings(**kw) -> HttpSettings:
    kw.setdefault("server_name", b"vm")
    return HttpSettings(**kw)


async def status_of(router_address: str, raw: bytes, method: bytes = b"GET") -> bytes:
    with await open_client(router_address) as sock:
        client = HttpClient(sock)
        await client.send(raw)
        head, body = await client.response(method)
        assert b"\r\nConnection: close\r\n" in head
        assert await client.closed()
        return head.split(b"\r\n")[0]


async def test_client_errors():
    async with trio.open_nursery() as nursery:
        node = await nursery.start(node_server)
        async with http_router({b"a": [node.address]},
                               settings(head_limit=8192, manage_expect=10)) as router:
            cases = {
                b"GARBAGE\r\n\r\n": b"HTTP/1.1 400 Bad Request",
                b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + b"x" * 9000 + b"\r\n\r\n":
                    b"HTTP/1.1 431 Request Header Fields Too Large",
                b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n": b"HTTP/1.1 400 Bad Request",
                b"GET / HTTP/2.0\r\nHost: a\r\n\r\n": b"HTTP/1.1 505 HTTP Version Not Supported",
                b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n":
                    b"HTTP/1.1 501 Not Implemented",
                b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n":
                    b"HTTP/1.1 400 Bad Request",
                b"GET /" + b"x" * 9000 + b" HTTP/1.1\r\nHost: a\r\n\r\n":
                    b"HTTP/1.1 414 URI Too Long",
                # a bare LF in a head that can never end: at once, not a 408 later
                b"GET / HTTP/1.1\r\nHost: a\r\nX: y\n\r\n": b"HTTP/1.1 400 Bad Request",
                # --http-manage-expect's limit holds with the body sent along too
                b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n"
                b"Content-Length: 20\r\n\r\n" + b"x" * 20:
                    b"HTTP/1.1 413 Content Too Large",
            }
            for raw, status in cases.items():
                assert await status_of(router.address, raw) == status, raw[:40]
        nursery.cancel_scope.cancel()
    assert node.connections == 0


async def test_56k_head_passes_by_default_and_64k_is_431():
    async with trio.open_nursery() as nursery:
        node = await nursery.start(node_server)
        async with http_router({b"a": [node.address]}, settings()) as router:
            big = b"".join(b"X-Big%d: %s\r\n" % (i, b"x" * 8000) for i in range(7))
            with await open_client(router.address) as sock:
                client = HttpClient(sock)
                await client.send(b"GET / HTTP/1.1\r\nHost: a\r\n" + big + b"\r\n")
                assert (await client.response())[1] == b"ok\n"
            huge = b"".join(b"X-Big%d: %s\r\n" % (i, b"x" * 8000) for i in range(9))
            status = await status_of(router.address, b"GET / HTTP/1.1\r\nHost: a\r\n" + huge)
            assert status.startswith(b"HTTP/1.1 431")
        nursery.cancel_scope.cancel()


async def test_routing_errors_503_502_504():
    async def silent(conn, request):
        await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        stalled = await nursery.start(node_server, silent)
        garbage = await nursery.start(node_server, answer(b"NOT HTTP AT ALL\r\n\r\n"))
        mute = await nursery.start(node_server, answer(b""))
        table = {b"refused": [refused_address()], b"silent": [stalled.address],
                 b"garbage": [garbage.address], b"mute": [mute.address]}
        async with http_router(table, settings(timeout=0.3)) as router:
            for host, status in ((b"unknown", b"503"), (b"refused", b"502"),
                                 (b"silent", b"504"), (b"garbage", b"502"), (b"mute", b"502")):
                line = await status_of(router.address,
                                       b"GET / HTTP/1.1\r\nHost: " + host + b"\r\n\r\n")
                assert line.split(b" ")[1] == status, host
            # HEAD gets the status without a body
            line = await status_of(router.address, b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n", b"HEAD")
            assert line.startswith(b"HTTP/1.1 503")
        nursery.cancel_scope.cancel()


async def test_silent_node_named_in_the_504_line_on_the_general_path(caplog):
    async def silent(conn, request):
        await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        stalled = await nursery.start(node_server, silent)
        name = stalled.address.replace("127.0.0.1", "localhost")  # the general path's
        async with http_router({b"silent": [name]}, settings(timeout=0.3)) as router:
            with caplog.at_level(logging.WARNING, "brood.routers"):
                line = await status_of(router.address,
                                       b"GET / HTTP/1.1\r\nHost: silent\r\n\r\n")
        nursery.cancel_scope.cancel()
    assert line.startswith(b"HTTP/1.1 504")
    assert f"504 node {name} silent for 0.3s" in caplog.text


async def test_slow_head_is_408_and_holds_no_node():
    async with trio.open_nursery() as nursery:
        node = await nursery.start(node_server)
        async with http_router({b"a": [node.address]},
                               settings(headers_timeout=0.2)) as router:
            line = await status_of(router.address, b"GET / HTTP/1.1\r\nHost: a\r\n")
            assert line.startswith(b"HTTP/1.1 408")
            # idle before any byte: a quiet close
            with await open_client(router.address) as sock:
                assert await HttpClient(sock).closed()
        nursery.cancel_scope.cancel()
    assert node.connections == 0


async def test_keepalive_idle_timeout_closes_quietly():
    async with trio.open_nursery() as nursery:
        node = await nursery.start(node_server)
        async with http_router({b"a": [node.address]}, settings(keepalive_idle=0.2)) as router:
            with await open_client(router.address) as sock:
                client = HttpClient(sock)
                await client.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
                assert await client.response() == (OK[:-3], b"ok\n")
                assert await client.closed()
        nursery.cancel_scope.cancel()


async def test_truncated_answer_closes_the_client():
    async with trio.open_nursery() as nursery:
        node = await nursery.start(
            node_server, answer(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"))
        async with http_router({b"a": [node.address]}, settings()) as router:
            with await open_client(router.address) as sock:
                await send_all(sock, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
                got = b""
                with trio.fail_after(5):
                    while data := await sock.recv(100):
                        got += data
                assert got.endswith(b"\r\n\r\nabc")
        nursery.cancel_scope.cancel()
