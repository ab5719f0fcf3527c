"""Failures while a request body is still on its way (the general path streams it while
it reads the answer): each one ends its own request with the right status, and the
router process goes on serving its other connections."""

from __future__ import annotations

import logging
import socket
import struct

import pytest
import trio
import trio.testing
from _httpkit import HttpClient, http_router, node_server, open_client
from _routerkit import send_all, vars_then

from brood.routers.http.settings import HttpSettings


def settings(**kw) -> HttpSettings:
    kw.setdefault("server_name", b"vm")
    return HttpSettings(**kw)


async def still_serves(address: str) -> None:
    """Another client of the same router gets its answer: the process is alive."""
    with await open_client(address) as sock:
        client = HttpClient(sock)
        await client.send(b"GET / HTTP/1.1\r\nHost: ok\r\n\r\n")
        assert (await client.response())[1] == b"ok\n"


@pytest.mark.parametrize("how", ["close", "garbage", "reset"])
async def test_a_node_failing_while_the_body_streams_gets_a_502(how, caplog):
    caplog.set_level(logging.INFO)
    async with trio.open_nursery() as nursery:
        bad = await nursery.start(vars_then, how, 1)
        good = await nursery.start(node_server)
        async with http_router({b"a": [bad], b"ok": [good.address]}, settings()) as router:
            with await open_client(router.address) as sock:
                client = HttpClient(sock)
                # far more than the fast lane buffers: the general path streams the body
                await client.send(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 400000\r\n\r\n"
                                  + b"x" * 200000)
                head, _ = await client.response()
                assert head.startswith(b"HTTP/1.1 502 ") and b"Connection: close" in head
            await still_serves(router.address)
        nursery.cancel_scope.cancel()
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"


async def test_a_bad_chunk_after_the_body_began_to_stream_gets_a_400(caplog):
    caplog.set_level(logging.INFO)
    async with trio.open_nursery() as nursery:
        node = await nursery.start(node_server)
        table = {b"a": [node.address], b"ok": [node.address]}
        async with http_router(table, settings(chunked_buffer=8)) as router:
            with await open_client(router.address) as sock:
                client = HttpClient(sock)
                await client.send(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
                                  b"\r\n10\r\n0123456789abcdef\r\n")
                await trio.testing.wait_all_tasks_blocked()  # streaming to the node by now
                await client.send(b"zz\r\n")
                head, _ = await client.response()
                assert head.startswith(b"HTTP/1.1 400 ") and await client.closed()
            await still_serves(router.address)
        nursery.cancel_scope.cancel()
    assert any("invalid chunk size" in r.getMessage() for r in caplog.records)
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"


async def test_a_node_answer_with_oversized_trailers_is_cut_not_fatal(caplog):
    caplog.set_level(logging.INFO)
    trailers = b"".join(b"X-T%d: %s\r\n" % (i, b"a" * 3990) for i in range(5))
    answer = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n"
              + trailers + b"\r\n")

    async def behave(conn, request):
        await send_all(conn, answer)

    async with trio.open_nursery() as nursery:
        node = await nursery.start(node_server, behave)
        good = await nursery.start(node_server)
        async with http_router({b"a": [node.address], b"ok": [good.address]},
                               settings()) as router:
            with await open_client(router.address) as sock:
                client = HttpClient(sock)
                await client.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
                with trio.fail_after(5):
                    got = b""
                    while data := await sock.recv(65536):
                        got += data
                # the answer had begun: it is cut (a close), never a 431 inside it
                assert got.startswith(b"HTTP/1.1 200 OK") and b" 431 " not in got
            await still_serves(router.address)
        nursery.cancel_scope.cancel()
    assert any("chunked trailers too large" in r.getMessage() for r in caplog.records)
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"



async def test_a_client_reset_inside_its_body_releases_the_node_at_once(caplog):
    """Not "the node stopped reading": the node connection closes now, not after a
    timeout, and no 502 or 408 blames anyone (the client is gone)."""
    caplog.set_level(logging.INFO)
    released = trio.Event()

    async def reads_to_the_end(task_status=trio.TASK_STATUS_IGNORED):
        with trio.socket.socket() as lsock:
            await lsock.bind(("127.0.0.1", 0))
            lsock.listen(8)
            task_status.started(f"127.0.0.1:{lsock.getsockname()[1]}")
            conn, _ = await lsock.accept()
            with conn:
                try:
                    while await conn.recv(65536):
                        pass
                except OSError:
                    pass
                released.set()

    async with trio.open_nursery() as nursery:
        node = await nursery.start(reads_to_the_end)
        async with http_router({b"a": [node]}, settings(timeout=30)) as router:
            sock = await open_client(router.address)
            await sock.send(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10000000\r\n\r\n"
                            + b"x" * 300000)
            await trio.testing.wait_all_tasks_blocked(cushion=0.05)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()
            with trio.fail_after(5):
                await released.wait()
        nursery.cancel_scope.cancel()
    assert not [r for r in caplog.records  # ": 502 ": a client's port may hold "502"
                if ": 502 " in r.getMessage() or ": 408 " in r.getMessage()]
