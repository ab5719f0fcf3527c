"""The HTTP router front on loopback, in-process: vars, keep-alive, bodies, upgrades."""

from __future__ import annotations

import gzip
import logging
import socket
import struct
from functools import partial
from pathlib import Path

import pytest
import trio
import trio.testing
from _httpkit import (
    OK,
    HttpClient,
    answer,
    answer_then_listen,
    http_router,
    node_server,
    open_client,
    packet_vars,
    read_vars,
)
from _routerkit import DictResolver, bind_listener, send_all

from brood.config.model import Config
from brood.protocol.uwsgi import encode_packet, read_packet
from brood.routers.engine import Engine, RouterSettings
from brood.routers.http.settings import HttpSettings
from brood.routers.net import spool as spool_module
from brood.routers.process import serve_router

FIXTURES = Path("/work/shared/fixtures/requests")
HOST = b"www.example.test"


def settings(**kw) -> HttpSettings:
    kw.setdefault("server_name", b"vm")
    return HttpSettings(**kw)


def normalised(captured: bytes, fixture: bytes) -> bytes:
    """``captured`` with REMOTE_PORT/SERVER_NAME/SERVER_PORT taken from ``fixture``."""
    mine, body = read_packet(captured)
    theirs = dict(read_packet(fixture)[0].vars)
    pairs = [(k, theirs[k] if k in (b"REMOTE_PORT", b"SERVER_NAME", b"SERVER_PORT") else v)
             for k, v in mine.vars]
    return encode_packet(pairs, mine.modifier1, mine.modifier2) + body


async def one_request(raw: bytes, *, host: bytes = HOST, proto: str = "http",
                      **kw) -> tuple[bytes, bytes, bytes]:
    """Send ``raw`` through a router to a capture node: (head, body, what the node got,
    b"" when nothing)."""
    async with trio.open_nursery() as nursery:
        node = await nursery.start(node_server)
        async with http_router({host: [node.address]}, settings(**kw), proto=proto) as router:
            with await open_client(router.address) as sock:
                client = HttpClient(sock)
                await client.send(raw)
                head, body = await client.response()
        nursery.cancel_scope.cancel()
    return head, body, node.requests[0] if node.requests else b""


def upper_echo_after(answer: bytes, then: bytes = b""):
    """A node that sends ``answer``, echoes what comes upper-cased until the client's
    end of stream, then sends ``then`` (a half-closed client still hears from it)."""
    async def behave(conn, request):
        await send_all(conn, answer)
        while data := await conn.recv(65536):
            await send_all(conn, data.upper())
        if then:
            await send_all(conn, then)
    return behave


FIXTURE_REQUESTS = {
    "httprouter_get_query.bin": (b"GET /path/x?a=1&b=2 HTTP/1.0\r\nHost: www.example.test\r\n"
                                 b"X-Custom: v1\r\nCookie: c=1\r\n\r\n", {}),
    "httprouter_post_form.bin": (b"POST /post HTTP/1.0\r\nHost: www.example.test\r\n"
                                 b"Content-Type: application/x-www-form-urlencoded\r\n"
                                 b"Content-Length: 11\r\n\r\nhello=world", {}),
    "httprouter_dup_headers.bin": (b"GET /dup HTTP/1.0\r\nHost: a.test\r\nX-A: 1\r\nX-A: 2\r\n"
                                   b"x-lower_under: z\r\n\r\n", {}),
    "httprouter_get_http11.bin": (b"GET /h11 HTTP/1.1\r\nHost: www.example.test\r\n"
                                  b"Connection: close\r\n\r\n", {}),
    "httprouter_post_chunked_input_flag.bin": (
        b"POST /chunked HTTP/1.1\r\nHost: www.example.test\r\nTransfer-Encoding: chunked\r\n"
        b"Connection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
        {"chunked_input": True}),
    "httprouter_get_56k_headers.bin": (
        b"GET /big56 HTTP/1.0\r\nHost: www.example.test\r\n"
        + b"".join(b"X-Big%d: %s\r\n" % (i, b"x" * 8000) for i in range(7)) + b"\r\n", {}),
    "httprouter_https_get_pctencoded_httpvar.bin": (
        b"GET /tls/%41%20b?q=%41 HTTP/1.0\r\nHost: www.example.test\r\n\r\n",
        {"extra_vars": [(b"EXTRA_VAR", b"hello")], "proto": "https"}),
}


async def test_vars_match_the_uwsgi_router_captures_byte_for_byte():
    for name, (raw, kw) in FIXTURE_REQUESTS.items():
        fixture = (FIXTURES / name).read_bytes()
        host = dict(read_packet(fixture)[0].vars)[b"HTTP_HOST"]
        head, _, captured = await one_request(raw, host=host, **kw)
        assert head.startswith(b"HTTP/1.1 200 OK"), name
        assert normalised(captured, fixture) == fixture, name


async def test_server_name_port_and_remote_address():
    head, _, captured = await one_request(b"GET / HTTP/1.0\r\nHost: www.example.test\r\n\r\n")
    found, _ = packet_vars(captured)
    assert found[b"SERVER_NAME"] == b"vm"
    assert found[b"REMOTE_ADDR"] == b"127.0.0.1" and int(found[b"REMOTE_PORT"]) > 0
    assert int(found[b"SERVER_PORT"]) > 0


async def test_server_name_as_http_host_and_modifiers():
    _, _, captured = await one_request(
        b"GET / HTTP/1.0\r\nHost: www.example.test\r\n\r\n",
        server_name_as_http_host=True, modifier1=5, modifier2=3)
    packet, _ = read_packet(captured)
    keys = [k for k, _ in packet.vars]
    assert (packet.modifier1, packet.modifier2) == (5, 3)
    assert keys[keys.index(b"HTTP_HOST") - 1] == b"SERVER_NAME"
    assert dict(packet.vars)[b"SERVER_NAME"] == HOST


@pytest.mark.parametrize("name", [b"X-Forwarded-For", b"X_Forwarded_For", b"x-forwarded_for"])
@pytest.mark.parametrize("body", [b"", b"abc"], ids=["lane", "general-path"])
async def test_x_forwarded_for_gets_the_client_appended(name, body):
    """However the name is spelled (the node sees one var), the chain gets the client:
    a spelling that escaped it would let a client pose as any address."""
    method = b"POST" if body else b"GET"
    length = b"Content-Length: 3\r\n" if body else b""
    _, _, captured = await one_request(
        method + b" / HTTP/1.0\r\nHost: www.example.test\r\n" + length + name
        + b": 10.0.0.1\r\n\r\n" + body)
    assert packet_vars(captured)[0][b"HTTP_X_FORWARDED_FOR"] == b"10.0.0.1, 127.0.0.1"


async def test_absolute_form_routes_and_tells_the_node_by_its_authority():
    raw = b"GET http://www.example.test/x?q=1 HTTP/1.1\r\nHost: other.test\r\n\r\n"
    _, body, captured = await one_request(raw)
    found, _ = packet_vars(captured)
    assert body == b"ok\n" and found[b"HTTP_HOST"] == HOST and found[b"PATH_INFO"] == b"/x"


async def test_no_host_routes_by_hostname():
    hostname = socket.gethostname().encode()
    head, _, captured = await one_request(b"GET / HTTP/1.0\r\n\r\n", host=hostname,
                                          server_name=hostname)
    assert head.startswith(b"HTTP/1.1 200")
    assert b"HTTP_HOST" not in packet_vars(captured)[0]


async def test_keepalive_two_requests_two_node_connections():
    fixture = (FIXTURES / "httprouter_keepalive_second_request.bin").read_bytes()
    async with trio.open_nursery() as nursery:
        node = await nursery.start(node_server)
        extra = [(b"EXTRA_VAR", b"hello")]
        async with http_router({b"a": [node.address]}, settings(extra_vars=extra)) as router:
            with await open_client(router.address) as sock:
                client = HttpClient(sock)
                await client.send(b"GET /ka1 HTTP/1.1\r\nHost: a\r\n\r\n")
                assert await client.response() == (OK[:-3], b"ok\n")
                await client.send(b"GET /ka2 HTTP/1.1\r\nHost: a\r\n\r\n")
                assert (await client.response())[1] == b"ok\n"
                # pipelined: both heads in one send
                await client.send(b"GET /p1 HTTP/1.1\r\nHost: a\r\n\r\n"
                                  b"GET /p2 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
                assert (await client.response())[1] == b"ok\n"
                assert (await client.response())[1] == b"ok\n"
                assert await client.closed()
        nursery.cancel_scope.cancel()
    assert node.connections == 4
    assert normalised(node.requests[1], fixture) == fixture
    assert [packet_vars(r)[0][b"PATH_INFO"] for r in node.requests] == [
        b"/ka1", b"/ka2", b"/p1", b"/p2"]


async def test_keepalive_off_and_http10_close():
    async with trio.open_nursery() as nursery:
        node = await nursery.start(node_server)
        async with http_router({b"a": [node.address]}, settings(keepalive=False)) as router:
            with await open_client(router.address) as sock:
                client = HttpClient(sock)
                await client.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
                await client.response()
                assert await client.closed()
        async with http_router({b"a": [node.address]}, settings()) as router:
            with await open_client(router.address) as sock:
                client = HttpClient(sock)
                await client.send(b"GET / HTTP/1.0\r\nHost: a\r\n\r\n")
                await client.response()
                assert await client.closed()
        nursery.cancel_scope.cancel()


async def test_content_length_bodies_stream_both_ways():
    size = 3 << 20
    payload = bytes(range(256)) * (size // 256)

    async def echo(conn, request):
        _, body = packet_vars(request)
        await send_all(conn, b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)

    async with trio.open_nursery() as nursery:
        node = await nursery.start(node_server, echo)
        async with http_router({b"a": [node.address]}, settings()) as router:
            with await open_client(router.address) as sock:
                client = HttpClient(sock)

                async def upload():
                    await client.send(b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: %d"
                                      b"\r\n\r\n" % size + payload)
                nursery.start_soon(upload)
                head, body = await client.response(limit=30)
                assert body == payload
        nursery.cancel_scope.cancel()


async def test_chunked_request_dechunked_with_content_length():
    raw = (b"POST /c HTTP/1.1\r\nHost: www.example.test\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nTrailer: x\r\n\r\n")
    _, _, captured = await one_request(raw)
    found, body = packet_vars(captured)
    assert body == b"hello world" and found[b"CONTENT_LENGTH"] == b"11"
    assert b"HTTP_TRANSFER_ENCODING" not in found


async def test_chunked_request_over_the_buffer_goes_whole_from_a_file(monkeypatch):
    """Past the memory buffer the de-chunked body is held in a temporary file and still
    goes with CONTENT_LENGTH: a node's WSGI app reads a chunked body as empty."""
    files = []
    real = spool_module.tempfile.TemporaryFile

    def recording(*args, **kwargs):
        files.append(real(*args, **kwargs))
        return files[-1]

    monkeypatch.setattr(spool_module.tempfile, "TemporaryFile", recording)
    raw = (b"POST /c HTTP/1.1\r\nHost: www.example.test\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"5\r\nhello\r\n6\r\n world\r\n")
    async with trio.open_nursery() as nursery:
        node = await nursery.start(node_server)
        async with http_router({HOST: [node.address]}, settings(chunked_buffer=8)) as router:
            with await open_client(router.address) as sock:
                client = HttpClient(sock)
                await client.send(raw)
                await trio.testing.wait_all_tasks_blocked()
                await client.send(b"3;x=y\r\n!!!\r\n0\r\n\r\n")
                head, body = await client.response()
                assert body == b"ok\n"
        nursery.cancel_scope.cancel()
    found, body = packet_vars(node.requests[0])
    assert found[b"CONTENT_LENGTH"] == b"14" and b"HTTP_TRANSFER_ENCODING" not in found
    assert body == b"hello world!!!"
    assert len(files) == 1 and files[0].closed  # and gone with the request


async def test_chunked_input_streams_a_body_over_several_reads():
    """--http-chunked-input: chunk by chunk as the client sends them (a body needing
    more than one read after the head crashed the stream with a traceback)."""
    parts = [b"5\r\nhello\r\n", b"6\r\n world\r\n", b"3\r\n!!!\r\n", b"0\r\n\r\n"]
    async with trio.open_nursery() as nursery:
        node = await nursery.start(node_server)
        async with http_router({HOST: [node.address]}, settings(chunked_input=True)) as router:
            with await open_client(router.address) as sock:
                client = HttpClient(sock)
                await client.send(b"POST /c HTTP/1.1\r\nHost: www.example.test\r\n"
                                  b"Transfer-Encoding: chunked\r\n\r\n")
                for part in parts:
                    await trio.testing.wait_all_tasks_blocked()
                    await client.send(part)
                head, body = await client.response()
                assert body == b"ok\n"
        nursery.cancel_scope.cancel()
    found, body = packet_vars(node.requests[0])
    assert found[b"HTTP_TRANSFER_ENCODING"] == b"chunked" and b"CONTENT_LENGTH" not in found
    assert body == b"".join(parts)


async def test_a_chunked_body_over_limit_post_is_413():
    async with trio.open_nursery() as nursery:
        node = await nursery.start(node_server)
        async with http_router({HOST: [node.address]}, settings(body_limit=10)) as router:
            with await open_client(router.address) as sock:
                client = HttpClient(sock)
                await client.send(b"POST /c HTTP/1.1\r\nHost: www.example.test\r\n"
                                  b"Transfer-Encoding: chunked\r\n\r\n"
                                  b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
                head, _ = await client.response()
                assert head.startswith(b"HTTP/1.1 413 ")
        nursery.cancel_scope.cancel()
    assert node.connections == 0


async def test_expect_100_continue_and_413():
    async with trio.open_nursery() as nursery:
        node = await nursery.start(node_server)
        async with http_router({b"a": [node.address]}, settings(manage_expect=10)) as router:
            with await open_client(router.address) as sock:
                client = HttpClient(sock)
                await client.send(b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n"
                                  b"Content-Length: 5\r\n\r\n")
                head, _ = await client.response()
                assert head.startswith(b"HTTP/1.1 100 Continue")
                await client.send(b"hello")
                head, body = await client.response()
                assert body == b"ok\n"
            with await open_client(router.address) as sock:
                client = HttpClient(sock)
                await client.send(b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n"
                                  b"Content-Length: 100\r\n\r\n")
                head, _ = await client.response()
                assert head.startswith(b"HTTP/1.1 413") and b"Connection: close" in head
        nursery.cancel_scope.cancel()
    assert node.connections == 1 and packet_vars(node.requests[0])[1] == b"hello"


async def test_head_204_304_have_no_body_and_keep_alive():
    responses = {
        b"/head": b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n",
        b"/204": b"HTTP/1.1 204 No Content\r\n\r\nJUNK",
        b"/304": b"HTTP/1.1 304 Not Modified\r\nETag: x\r\n\r\n",
    }

    async def behave(conn, request):
        await send_all(conn, responses[packet_vars(request)[0][b"PATH_INFO"]])

    async with trio.open_nursery() as nursery:
        node = await nursery.start(node_server, behave)
        async with http_router({b"a": [node.address]}, settings()) as router:
            with await open_client(router.address) as sock:
                client = HttpClient(sock)
                for path, method in ((b"/head", b"HEAD"), (b"/204", b"GET"), (b"/304", b"GET")):
                    await client.send(method + b" " + path + b" HTTP/1.1\r\nHost: a\r\n\r\n")
                    head, body = await client.response(method)
                    assert head == responses[path].split(b"\r\n\r\n")[0] + b"\r\n\r\n"
                    assert body == b""
                assert client.buf == b""
        nursery.cancel_scope.cancel()


async def test_chunked_and_close_delimited_answers():
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    close = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil close"

    async def behave(conn, request):
        await send_all(conn, chunked if packet_vars(request)[0][b"PATH_INFO"] == b"/c" else close)

    async with trio.open_nursery() as nursery:
        node = await nursery.start(node_server, behave)
        async with http_router({b"a": [node.address]}, settings()) as router:
            with await open_client(router.address) as sock:
                client = HttpClient(sock)
                await client.send(b"GET /c HTTP/1.1\r\nHost: a\r\n\r\n")
                assert (await client.response())[1] == b"abc"
                await client.send(b"GET /close HTTP/1.1\r\nHost: a\r\n\r\n")
                assert (await client.response())[1] == b"until close"
                assert await client.closed()
        async with http_router({b"a": [node.address]}, settings(auto_chunked=True)) as router:
            with await open_client(router.address) as sock:
                client = HttpClient(sock)
                for _ in range(2):
                    await client.send(b"GET /close HTTP/1.1\r\nHost: a\r\n\r\n")
                    head, body = await client.response()
                    assert b"Transfer-Encoding: chunked" in head and body == b"until close"
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize(("request_", "answer", "ending"), [
    (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nbody",
     b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", "reset"),
    (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
     b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", "reset"),
    (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nbody",
     b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nok", "close"),
], ids=["body-whole", "chunked-whole", "body-cut-short"])
async def test_general_path_resets_the_node_only_after_a_whole_answer(request_, answer, ending):
    """A request with a body, or an answer the lane hands over: once the node's answer
    is whole its connection is reset (nothing owed either way), else closed cleanly."""
    seen: list = []
    async with trio.open_nursery() as nursery:
        node = await nursery.start(node_server, answer_then_listen(answer, seen))
        async with http_router({b"a": [node.address]}, settings()) as router:
            with await open_client(router.address) as sock:
                client = HttpClient(sock)
                await client.send(request_)
                if ending == "reset":
                    assert (await client.response())[1] == b"ok"
                with trio.fail_after(5):
                    while not seen:
                        await trio.sleep(0.002)
        nursery.cancel_scope.cancel()
    assert seen == [ending]


async def test_an_early_answer_while_the_body_comes_closes_the_node_cleanly():
    """The node answers whole before the body is all in: part of the request is still
    owed, so its connection is not reset (a reset would drop body bytes queued to it)."""
    seen: list = []

    async def answer_early(task_status=trio.TASK_STATUS_IGNORED):
        """Reads the vars, not the body; answers; drains until the router's close."""
        with trio.socket.socket() as lsock:
            await lsock.bind(("127.0.0.1", 0))
            lsock.listen(1)
            task_status.started(f"127.0.0.1:{lsock.getsockname()[1]}")
            conn, _ = await lsock.accept()
            with conn:
                await read_vars(conn)
                await send_all(conn, b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 0"
                                     b"\r\n\r\n")
                conn.shutdown(socket.SHUT_WR)
                try:
                    with trio.fail_after(5):
                        while await conn.recv(65536):
                            pass
                    seen.append("close")
                except ConnectionResetError:
                    seen.append("reset")

    async with trio.open_nursery() as nursery:
        address = await nursery.start(answer_early)
        async with http_router({b"a": [address]}, settings()) as router:
            with await open_client(router.address) as sock:
                client = HttpClient(sock)
                # 100 of the 1000 body bytes: the rest never comes while the node answers
                await client.send(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\n"
                                  + b"x" * 100)
                head, _ = await client.response()
                assert head.startswith(b"HTTP/1.1 413 ")
                with trio.fail_after(5):
                    while not seen:
                        await trio.sleep(0.002)
        nursery.cancel_scope.cancel()
    assert seen == ["close"]


async def test_an_early_answer_to_a_chunked_body_held_in_memory_is_relayed():
    """A chunked body held whole in memory (under --http-chunked-buffer, so it once went
    with the head in one send) that the node answers 413 and closes without reading:
    the client gets the 413, not a 502 from the send the node never took. (7 MB: more
    than the kernel queues between router and node, so the send cannot finish early.)"""
    body = b"z" * 7_000_000

    async def answer_early(task_status=trio.TASK_STATUS_IGNORED):
        with trio.socket.socket() as lsock:
            lsock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)
            await lsock.bind(("127.0.0.1", 0))
            lsock.listen(1)
            task_status.started(f"127.0.0.1:{lsock.getsockname()[1]}")
            conn, _ = await lsock.accept()
            with conn:
                await read_vars(conn)
                await send_all(conn, b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 4"
                                     b"\r\nConnection: close\r\n\r\nbig\n")
            # closed with the body unread: a reset

    async with trio.open_nursery() as nursery:
        address = await nursery.start(answer_early)
        async with http_router({b"a": [address]}, settings(chunked_buffer=8 << 20)) as router:
            with await open_client(router.address) as sock:
                client = HttpClient(sock)
                await client.send(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked"
                                  b"\r\n\r\n%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))
                with trio.fail_after(10):
                    head, answer = await client.response()
                assert head.startswith(b"HTTP/1.1 413 ") and answer == b"big\n"
        nursery.cancel_scope.cancel()


async def test_auto_gzip_when_the_node_opts_in():
    text = b"hello gzip " * 200
    opted = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nuWSGI-Encoding: gzip\r\n\r\n" + text
    async with trio.open_nursery() as nursery:
        node = await nursery.start(node_server, answer(opted))
        async with http_router({b"a": [node.address]}, settings(auto_gzip=True)) as router:
            with await open_client(router.address) as sock:
                client = HttpClient(sock)
                for _ in range(2):  # chunked framing keeps the connection
                    await client.send(b"GET / HTTP/1.1\r\nHost: a\r\n"
                                      b"Accept-Encoding: deflate, gzip\r\n\r\n")
                    head, body = await client.response()
                    assert b"Content-Encoding: gzip" in head and b"uWSGI-Encoding" not in head
                    assert gzip.decompress(body) == text and len(body) < len(text)
                await client.send(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
                head, body = await client.response()
                assert b"Content-Encoding" not in head and b"uWSGI-Encoding" not in head
                assert body == text
        nursery.cancel_scope.cancel()


async def test_websocket_upgrade_is_a_raw_pipe_with_half_close():
    ws = upper_echo_after(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                          b"Connection: Upgrade\r\n\r\n", then=b"BYE")

    async with trio.open_nursery() as nursery:
        node = await nursery.start(node_server, ws)
        async with http_router({b"a": [node.address]}, settings()) as router:
            with await open_client(router.address) as sock:
                client = HttpClient(sock)
                await client.send(b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n"
                                  b"Connection: Upgrade\r\n\r\n")
                head, _ = await client.response()
                assert head.startswith(b"HTTP/1.1 101")
                await client.send(b"frame-one")
                with trio.fail_after(5):
                    got = client.buf
                    while got != b"FRAME-ONE":
                        got += await sock.recv(100)
                client.buf = b""
                await client.send(b"two")
                sock.shutdown(socket.SHUT_WR)
                rest = b""
                with trio.fail_after(5):
                    while data := await sock.recv(100):
                        rest += data
                assert rest == b"TWOBYE"
        nursery.cancel_scope.cancel()
    assert packet_vars(node.requests[0])[0][b"HTTP_UPGRADE"] == b"websocket"


async def test_an_escaped_nul_in_the_path_is_a_400_on_the_fast_lane_too():
    head, _, seen = await one_request(b"GET /c%00d HTTP/1.1\r\nHost: " + HOST + b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ") and seen == b""


async def test_an_idle_upgraded_connection_is_closed_with_a_reason(caplog):
    async def ws(conn, request):
        await send_all(conn, b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                             b"Connection: Upgrade\r\n\r\n")
        await conn.recv(10)  # silent until the router closes

    async with trio.open_nursery() as nursery:
        node = await nursery.start(node_server, ws)
        async with http_router({b"a": [node.address]}, settings(timeout=0.2),
                               timeout=0.2) as router:
            with await open_client(router.address) as sock:
                client = HttpClient(sock)
                await client.send(b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n"
                                  b"Connection: Upgrade\r\n\r\n")
                with caplog.at_level(logging.WARNING, "brood.routers"):
                    with trio.fail_after(5):
                        while await client._more():
                            pass  # until the router closes it
                    await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    assert client.buf.startswith(b"HTTP/1.1 101 ")
    assert any(m.endswith(": upgraded connection idle for 0.2s, closed")
               for m in caplog.messages), caplog.messages


async def test_a_2xx_to_connect_opens_a_tunnel_both_ways():
    """RFC 9110 §9.3.6: the client's bytes after a CONNECT's 2xx reach the node (they
    waited unread, and the node's silence was logged as a 504)."""
    tunnel = upper_echo_after(b"HTTP/1.1 200 Connection established\r\n\r\n")

    async with trio.open_nursery() as nursery:
        node = await nursery.start(node_server, tunnel)
        async with http_router({b"h.test:443": [node.address]}, settings()) as router:
            with await open_client(router.address) as sock:
                client = HttpClient(sock)
                await client.send(b"CONNECT h.test:443 HTTP/1.1\r\nHost: h.test:443\r\n\r\n"
                                  b"hello")
                with trio.fail_after(5):
                    while b"HELLO" not in client.buf:
                        await client._more()
                assert client.buf.startswith(b"HTTP/1.1 200 Connection established\r\n\r\n")
                sock.shutdown(socket.SHUT_WR)
                with trio.fail_after(5):
                    while await client._more():
                        pass
        nursery.cancel_scope.cancel()
    found = packet_vars(node.requests[0])[0]
    assert (found[b"PATH_INFO"], found[b"REQUEST_URI"]) == (b"h.test:443", b"h.test:443")


async def _upgrade_before_the_body_is_read(request: bytes) -> tuple[bytes, list]:
    """``request`` (head, body, then more bytes) through a router to a node that reads
    only the vars, answers 101 while the router waits on its full socket to send the
    body, then echoes all it gets; (what the client got, the CONTENT_LENGTH var)."""
    lsock = trio.socket.socket()
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)
    await lsock.bind(("127.0.0.1", 0))
    lsock.listen(4)
    echoed = bytearray()
    content_length: list = []

    async def node() -> None:
        conn, _ = await lsock.accept()
        with conn:
            packet = await read_vars(conn)  # the vars only: the body stays unread
            content_length.append(packet_vars(packet)[0].get(b"CONTENT_LENGTH"))
            await trio.testing.wait_all_tasks_blocked()  # the router waits on this socket
            await send_all(conn, b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n"
                                 b"Connection: Upgrade\r\n\r\n")
            while data := await conn.recv(1 << 16):
                await send_all(conn, data)

    async def client(sock: trio.socket.SocketType) -> None:
        await send_all(sock, request)
        sock.shutdown(socket.SHUT_WR)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(node)
        address = f"127.0.0.1:{lsock.getsockname()[1]}"
        async with http_router({b"a": [address]}, settings()) as router:
            with await open_client(router.address) as sock:
                nursery.start_soon(client, sock)
                with trio.fail_after(20):
                    while data := await sock.recv(1 << 20):
                        echoed += data
        nursery.cancel_scope.cancel()
    lsock.close()
    return bytes(echoed), content_length


async def test_a_101_before_the_node_read_the_body_loses_no_body_byte():
    """The node answers 101 without reading the request's body, while the router waits
    on the node's full socket to send the next part of it: that part goes first through
    the pipe (it was dropped, a hole of up to 64 KiB in the stream)."""
    body = bytes(range(256)) * (32 << 12)  # 32 MiB: more than the sockets between hold
    echoed, _ = await _upgrade_before_the_body_is_read(
        b"POST /up HTTP/1.1\r\nHost: a\r\nUpgrade: x\r\nConnection: Upgrade\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body) + body + b"FRAMES")
    head, _, rest = echoed.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101")
    assert len(rest) == len(body) + 6 and rest == body + b"FRAMES"


async def test_a_101_before_the_node_read_a_spooled_chunked_body_loses_no_byte():
    """A chunked body held whole in a temporary file (over --http-chunked-buffer) that
    the node answers 101 before reading: the rest of the file goes first through the
    pipe, then what the client sent after the body (it was dropped)."""
    body = bytes(range(256)) * (16 << 12)  # 16 MiB: more than the sockets between hold
    chunked = b"".join(b"%x\r\n%s\r\n" % (1 << 16, body[i:i + (1 << 16)])
                       for i in range(0, len(body), 1 << 16)) + b"0\r\n\r\n"
    echoed, content_length = await _upgrade_before_the_body_is_read(
        b"POST /up HTTP/1.1\r\nHost: a\r\nUpgrade: x\r\nConnection: Upgrade\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n" + chunked + b"FRAMES")
    assert content_length == [str(len(body)).encode()]  # held whole: a plain body
    head, _, rest = echoed.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101")
    assert len(rest) == len(body) + 6 and rest == body + b"FRAMES"


async def test_proxy_protocol_v1_and_v2_give_the_client_address():
    v1 = b"PROXY TCP4 192.0.2.7 198.51.100.1 40000 80\r\n"
    v2 = (b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, 0x11]) + struct.pack("!H", 12)
          + socket.inet_aton("203.0.113.9") + socket.inet_aton("198.51.100.1")
          + struct.pack("!HH", 41000, 80))
    request = b"GET / HTTP/1.0\r\nHost: www.example.test\r\n\r\n"
    for header, addr, port in ((v1, b"192.0.2.7", b"40000"), (v2, b"203.0.113.9", b"41000")):
        _, _, captured = await one_request(header + request, proxy_protocol=True)
        found, _ = packet_vars(captured)
        assert (found[b"REMOTE_ADDR"], found[b"REMOTE_PORT"]) == (addr, port)


async def test_a_proxy_v2_unix_address_keeps_the_connections_own():
    """A socket path (here not even UTF-8) is no client address: the request is served
    with the connection's address (it was a traceback and a silent close)."""
    paths = b"/tmp/\xc3\xa9\x87".ljust(108, b"\x00") + b"/tmp/b".ljust(108, b"\x00")
    header = b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, 0x31]) + struct.pack("!H", 216) + paths
    request = b"GET / HTTP/1.0\r\nHost: www.example.test\r\nX-Forwarded-For: 192.0.2.1\r\n\r\n"
    _, _, captured = await one_request(header + request, proxy_protocol=True)
    found, _ = packet_vars(captured)
    assert found[b"REMOTE_ADDR"] == b"127.0.0.1"
    assert found[b"HTTP_X_FORWARDED_FOR"] == b"192.0.2.1, 127.0.0.1"


async def test_to_https_answers_301():
    async with http_router({}, settings(), proto="http-to-https") as router:
        with await open_client(router.address) as sock:
            client = HttpClient(sock)
            await client.send(b"GET /a/b?c=1 HTTP/1.1\r\nHost: example.com:8080\r\n\r\n")
            head, body = await client.response()
            assert head.startswith(b"HTTP/1.1 301 ")
            # as uWSGI: the plain port is dropped (https is not served there)
            assert b"\r\nLocation: https://example.com/a/b?c=1\r\n" in head
            await client.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            head, _ = await client.response()
            assert b"Location: https://x/\r\n" in head


@pytest.mark.parametrize("host", [b"", b"[::1", b"a/b", b"a b", b"a@b"])
async def test_to_https_without_a_host_to_name_is_a_400(host):
    """A Host that would make a broken Location (empty, an unclosed IPv6 bracket, a path
    or userinfo in it) gets a 400, not a redirect somewhere odd."""
    async with http_router({}, settings(), proto="http-to-https") as router:
        with await open_client(router.address) as sock:
            client = HttpClient(sock)
            await client.send(b"GET /x HTTP/1.1\r\nHost: " + host + b"\r\n\r\n")
            head, _ = await client.response()
            assert head.startswith(b"HTTP/1.1 400 ") and b"Location" not in head


async def test_raw_body_pipes_everything_after_the_head():
    async def behave(conn, request):
        more = await conn.recv(100)
        await send_all(conn, b"HTTP/1.0 200 OK\r\n\r\n" + request[-3:] + more)

    async with trio.open_nursery() as nursery:
        node = await nursery.start(node_server, behave)
        async with http_router({b"a": [node.address]}, settings(raw_body=True)) as router:
            with await open_client(router.address) as sock:
                client = HttpClient(sock)
                await client.send(b"PUT / HTTP/1.1\r\nHost: a\r\n\r\nabc")
                await trio.testing.wait_all_tasks_blocked()
                await client.send(b"def")
                head, body = await client.response()
                assert body == b"abcdef"
        nursery.cancel_scope.cancel()


async def test_served_through_serve_router_with_default_config():
    async with trio.open_nursery() as nursery:
        node = await nursery.start(node_server)
        resolver = DictResolver({b"a": [node.address]})
        engine = Engine(RouterSettings("http"), resolver)
        listener = bind_listener("http")
        server = await nursery.start(partial(serve_router, "http", Config(), [listener],
                                             engine=engine))
        with await open_client(listener.name) as sock:
            client = HttpClient(sock)
            for _ in range(2):
                await client.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
                assert (await client.response())[1] == b"ok\n"
        server.stop_accepting()
        assert await server.drain(5)
        nursery.cancel_scope.cancel()
    assert (resolver.nodes[b"a"][0].requests, resolver.nodes[b"a"][0].ref) == (2, 0)


async def test_node_answer_read_whole_request_even_when_node_reads_slowly():
    async def slow(conn, request):
        await send_all(conn, OK)

    async with trio.open_nursery() as nursery:
        node = await nursery.start(node_server, slow)
        async with http_router({b"a": [node.address]}, settings()) as router:
            with await open_client(router.address) as sock:
                client = HttpClient(sock)
                await client.send(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nab")
                await trio.testing.wait_all_tasks_blocked()
                await client.send(b"cd")
                assert (await client.response())[1] == b"ok\n"
        nursery.cancel_scope.cancel()
    assert packet_vars(node.requests[0])[1] == b"abcd"



async def test_a_chunked_body_being_held_is_a_session():
    """A graceful stop waits for sessions: a chunked body held before a node is asked
    was none, and a reload cut the upload (second review)."""
    async with trio.open_nursery() as nursery:
        node = await nursery.start(node_server)
        async with http_router({HOST: [node.address]}, settings()) as router:
            with await open_client(router.address) as sock:
                client = HttpClient(sock)
                await client.send(b"POST /c HTTP/1.1\r\nHost: www.example.test\r\n"
                                  b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
                await trio.testing.wait_all_tasks_blocked()
                assert router.engine.active_sessions == 1 and node.connections == 0
                await client.send(b"0\r\n\r\n")
                head, body = await client.response()
                assert body == b"ok\n"
        nursery.cancel_scope.cancel()


def test_chunked_bodies_held_have_a_ceiling_by_default():
    """Held whole on disk before a node is asked: without --limit-post, 100 MiB."""
    assert HttpSettings.from_config(Config()).body_limit == 100 << 20
    assert HttpSettings.from_config(Config.from_dict({"limit-post": 5000})).body_limit == 5000
