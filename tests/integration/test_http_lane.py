"""The HTTP router's fast lane (``brood.routers.http.lane``) on loopback, in-process.

``http_router`` goes through ``accept_loop``, so every plain connection starts in the
lane; each test also checks where the connection is (``Router.handler.lane.conns``) when
that is the point: kept in the lane, or handed to the general path (``HttpRouter.resume``
before a request went out, ``HttpRouter.resume_answer`` mid-answer)."""

from __future__ import annotations

import logging
import os
import random
import socket
import struct
from contextlib import asynccontextmanager

import pytest
import trio
from _httpkit import (
    OK,
    HttpClient,
    answer,
    answer_then_listen,
    http_router,
    node_server,
    open_client,
    packet_vars,
)
from _routerkit import FdLimit, Watcher, refused_address, send_all

from brood.routers import lane as lane_module
from brood.routers.http import lane as http_lane_module
from brood.routers.http.lane import HttpLane
from brood.routers.http.settings import HttpSettings
from brood.routers.net import relay

HOST = b"lane.test"


class LaneClient(HttpClient):
    """HttpClient with short deadlines: a lane that drops a request fails fast."""

    async def response(self, method: bytes = b"GET", limit: float = 2) -> tuple[bytes, bytes]:
        return await super().response(method, limit)


def settings(**kw) -> HttpSettings:
    kw.setdefault("server_name", b"vm")
    return HttpSettings(**kw)


def ok(body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body


def get(path: bytes = b"/", host: bytes = HOST) -> bytes:
    return b"GET " + path + b" HTTP/1.1\r\nHost: " + host + b"\r\n\r\n"


async def echo(conn: trio.socket.SocketType, request: bytes) -> None:
    """Answer ``METHOD PATH BODY`` with a Content-Length: which request got which answer."""
    found, body = packet_vars(request)
    await send_all(conn, ok(found[b"REQUEST_METHOD"] + b" " + found[b"PATH_INFO"] + b" "
                            + body))


def gated(data: bytes, gate: trio.Event):
    """Answer ``data`` once ``gate`` is set."""
    async def behave(conn: trio.socket.SocketType, request: bytes) -> None:
        await gate.wait()
        await send_all(conn, data)
    return behave


async def eventually(predicate, limit: float = 2.0) -> None:
    """Wait until ``predicate()`` holds (router tasks run between the polls)."""
    with trio.fail_after(limit):
        while not predicate():
            await trio.sleep(0.002)


def lane_of(router):
    lane = router.handler.lane
    assert lane is not None, "the connection did not go through the fast lane"
    return lane


def node_of(router, host: bytes = HOST):
    (node,) = router.resolver.nodes[host]
    return node


async def small_window_client(router, rcvbuf: int):
    """A client socket with a small receive buffer: the router feels back-pressure."""
    sock = trio.socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    host, port = router.address.rsplit(":", 1)
    await sock.connect((host, int(port)))
    return sock


async def settled(router, host: bytes = HOST) -> None:
    """Every request let go of its node and its session (the general path closes its
    upstream just after the client got the last byte, hence the wait)."""
    node = node_of(router, host)
    await eventually(lambda: node.ref == 0 and router.engine.active_sessions == 0)


async def test_client_connections_have_no_nagle_from_their_listener():
    """TCP_NODELAY is set once on the listening socket, and Linux passes it on to every
    connection accepted from it (a 40 ms stall per keep-alive answer otherwise)."""
    async with trio.open_nursery() as nursery:
        server = await nursery.start(node_server, echo)
        async with http_router({HOST: [server.address]}, settings()) as router:
            with await open_client(router.address) as sock:
                client = LaneClient(sock)
                await client.send(get(b"/one"))
                assert (await client.response())[1] == b"GET /one "
                (conn,) = lane_of(router).conns.values()
                assert conn.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
                for lsock, _family in lane_of(router).listeners.values():
                    assert lsock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        nursery.cancel_scope.cancel()


@asynccontextmanager
async def echo_client(**kw):
    """An ``echo`` node, the router in front of it (``settings(**kw)``) and one client
    connection: ``(router, client)``; every request let go of its node on the way out."""
    async with trio.open_nursery() as nursery:
        server = await nursery.start(node_server, echo)
        async with http_router({HOST: [server.address]}, settings(**kw)) as router:
            with await open_client(router.address) as sock:
                yield router, LaneClient(sock)
            await settled(router)
        nursery.cancel_scope.cancel()


def record_hand_overs(monkeypatch) -> list:
    """The buffers the lane hands to the general path before a request went out."""
    handed: list = []
    real = HttpLane._to_general
    monkeypatch.setattr(HttpLane, "_to_general",
                        lambda self, conn, *a: handed.append(conn.buf) or real(self, conn, *a))
    return handed


def waiting_buf(router) -> bytes:
    """What the lane holds of the one connection's request (b"" when it holds none)."""
    conns = list(router.handler.lane.conns.values()) if router.handler.lane else []
    return conns[0].buf if conns else b""


async def test_a_connection_queued_on_a_listener_made_elsewhere_gets_no_nagle(monkeypatch):
    """``fd://``: a listener made without TCP_NODELAY passes none on to the connections
    queued before the router came, so the lane sets it on each it accepts."""
    import _httpkit

    from brood.listener import Listener

    queued: list[socket.socket] = []

    def made_elsewhere(proto: str) -> Listener:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        queued.append(socket.create_connection(sock.getsockname()))
        host, port = sock.getsockname()
        return Listener(sock, f"{host}:{port}", proto)

    monkeypatch.setattr(_httpkit, "bind_listener", made_elsewhere)
    async with trio.open_nursery() as nursery:
        server = await nursery.start(node_server, echo)
        async with http_router({HOST: [server.address]}, settings()) as router:
            with trio.socket.from_stdlib_socket(queued[0]) as sock:
                client = LaneClient(sock)
                await client.send(get(b"/queued"))
                assert (await client.response())[1] == b"GET /queued "
                (conn,) = lane_of(router).conns.values()
                assert conn.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        nursery.cancel_scope.cancel()


# -- 1. pipelining --------------------------------------------------------------------------
async def test_two_pipelined_gets_in_one_write_answered_in_order_and_kept():
    async with trio.open_nursery() as nursery:
        server = await nursery.start(node_server, echo)
        async with http_router({HOST: [server.address]}, settings()) as router:
            with await open_client(router.address) as sock:
                client = LaneClient(sock)
                await client.send(get(b"/one") + get(b"/two"))
                head1, body1 = await client.response()
                head2, body2 = await client.response()
                assert (body1, body2) == (b"GET /one ", b"GET /two ")
                assert b"Connection: close" not in head1 + head2
                # kept, and still in the lane
                assert len(lane_of(router).conns) == 1
                await client.send(get(b"/three"))
                assert (await client.response())[1] == b"GET /three "
                assert len(lane_of(router).conns) == 1
            assert server.connections == 3
            node = node_of(router)
            assert (node.requests, node.ref) == (3, 0)
        nursery.cancel_scope.cancel()


async def test_pipelined_get_then_a_head_cut_in_two_is_waited_for_in_the_lane(monkeypatch):
    handed = record_hand_overs(monkeypatch)
    async with echo_client() as (router, client):
        second = get(b"/two")
        await client.send(get(b"/one") + second[:10])
        assert (await client.response())[1] == b"GET /one "
        await eventually(lambda: waiting_buf(router) == second[:10])
        await client.send(second[10:])
        assert (await client.response())[1] == b"GET /two "
        await client.send(get(b"/three"))
        assert (await client.response())[1] == b"GET /three "
        assert len(lane_of(router).conns) == 1
    assert node_of(router).requests == 3
    assert handed == []


async def test_a_head_written_in_parts_is_waited_for_in_the_lane(monkeypatch):
    """A head longer than a segment, or a client that writes it in pieces: each part
    is read as it comes, and the request is served in the lane once the head is whole."""
    handed = record_hand_overs(monkeypatch)
    request = get(b"/parts")
    async with echo_client() as (router, client):
        prev = 0
        for at in (3, 9, 20):
            await client.send(request[prev:at])
            await eventually(lambda at=at: waiting_buf(router) == request[:at])
            prev = at
        await client.send(request[prev:])
        assert (await client.response())[1] == b"GET /parts "
        assert len(lane_of(router).conns) == 1
    assert handed == []


async def test_a_head_stalled_past_the_wait_goes_to_the_general_path_then_back(monkeypatch):
    from brood.routers.http import lane as http_lane

    monkeypatch.setattr(http_lane, "REST_WAIT", 0.05)
    handed = record_hand_overs(monkeypatch)
    request = get(b"/slow")
    async with echo_client() as (router, client):
        await client.send(request[:12])
        await eventually(lambda: handed == [request[:12]])
        await client.send(request[12:])
        assert (await client.response())[1] == b"GET /slow "
        await eventually(lambda: len(lane_of(router).conns) == 1)  # back
        await client.send(get(b"/b"))
        assert (await client.response())[1] == b"GET /b "


async def test_a_slow_head_has_the_headers_timeout_from_its_first_part(monkeypatch):
    """--http-headers-timeout counts the time a head waited in the lane: the 408 comes
    about that long after its first part, not REST_WAIT later."""
    from brood.routers.http import lane as http_lane

    monkeypatch.setattr(http_lane, "REST_WAIT", 0.9)
    async with echo_client(headers_timeout=1.0) as (router, client):
        started = trio.current_time()
        await client.send(get(b"/slow")[:12])
        head, _ = await client.response(limit=5)
        waited = trio.current_time() - started
        assert head.split(b" ")[1] == b"408", head
        assert 0.9 <= waited < 1.5, waited  # 1.9 s if the lane's wait were not counted


async def test_the_next_head_has_its_own_headers_timeout(monkeypatch):
    """A head that waited in the lane and came whole leaves nothing behind: the next
    one, begun well after, is timed from its own first part."""
    from brood.routers.http import lane as http_lane

    handed = record_hand_overs(monkeypatch)
    async with echo_client(headers_timeout=0.5) as (router, client):
        first = get(b"/one")
        await client.send(first[:9])
        await eventually(lambda: waiting_buf(router) == first[:9])
        await client.send(first[9:])
        assert (await client.response())[1] == b"GET /one "
        await trio.sleep(0.6)  # longer than the headers timeout, between two requests
        monkeypatch.setattr(http_lane, "REST_WAIT", 0.05)
        second = get(b"/two")
        await client.send(second[:9])
        await eventually(lambda: handed == [second[:9]])
        await client.send(second[9:])
        assert (await client.response())[1] == b"GET /two "


@pytest.mark.parametrize("start", [b"\x16\x03\x01\x02\x00\x01", b"PRI * HTTP/2.0\r\n",
                                   b"\x00\x01garbage"], ids=["tls", "h2-preface", "binary"])
async def test_the_start_of_a_bad_head_is_refused_at_once(monkeypatch, start):
    """Only the start of a head that may still be valid is waited for: TLS to the plain
    port, an HTTP/2 preface or binary bytes are answered at once, the rest never
    awaited."""
    from brood.routers.http import lane as http_lane

    monkeypatch.setattr(http_lane, "REST_WAIT", 30.0)
    async with echo_client() as (router, client):
        await client.send(start)
        head, _ = await client.response()
        assert head.split(b" ")[1] in (b"400", b"505"), head
    assert node_of(router).requests == 0


# -- 2. a body that came with its head is served in the lane; one still coming goes to the
#       general path, and the connection comes back -------------------------------------
@pytest.mark.parametrize("one_write", [False, True], ids=["one-by-one", "pipelined"])
async def test_get_post_get_on_one_connection(one_write, monkeypatch):
    handed = record_hand_overs(monkeypatch)
    post = (b"POST /form HTTP/1.1\r\nHost: " + HOST + b"\r\nContent-Type: text/plain\r\n"
            b"Content-Length: 11\r\n\r\nhello=world")
    async with trio.open_nursery() as nursery:
        server = await nursery.start(node_server, echo)
        async with http_router({HOST: [server.address]}, settings()) as router:
            with await open_client(router.address) as sock:
                client = LaneClient(sock)
                if one_write:
                    await client.send(get(b"/a") + post + get(b"/b"))
                    bodies = [(await client.response())[1] for _ in range(3)]
                else:
                    bodies = []
                    await client.send(get(b"/a"))
                    bodies.append((await client.response())[1])
                    assert len(lane_of(router).conns) == 1  # the first GET: in the lane
                    await client.send(post)
                    bodies.append((await client.response())[1])
                    await eventually(lambda: len(lane_of(router).conns) == 1)  # back
                    await client.send(get(b"/b"))
                    bodies.append((await client.response())[1])
                assert bodies == [b"GET /a ", b"POST /form hello=world", b"GET /b "]
                assert len(lane_of(router).conns) == 1
            found, body = packet_vars(server.requests[1])
            assert (found[b"REQUEST_METHOD"], found[b"CONTENT_LENGTH"], body) == (
                b"POST", b"11", b"hello=world")
            await settled(router)
            assert node_of(router).requests == 3
        nursery.cancel_scope.cancel()
    assert handed == []  # the body came whole with its head: all three in the lane


POST_HEAD = b"POST /form HTTP/1.1\r\nHost: " + HOST + b"\r\nContent-Length: 11\r\n\r\n"


async def test_a_body_written_after_its_head_is_waited_for_in_the_lane(monkeypatch):
    handed = record_hand_overs(monkeypatch)
    async with trio.open_nursery() as nursery:
        server = await nursery.start(node_server, echo)
        async with http_router({HOST: [server.address]}, settings()) as router:
            with await open_client(router.address) as sock:
                client = LaneClient(sock)
                await client.send(POST_HEAD + b"hello")
                await eventually(lambda: waiting_buf(router) == POST_HEAD + b"hello")
                await client.send(b"=world")
                assert (await client.response())[1] == b"POST /form hello=world"
                await client.send(get(b"/b"))
                assert (await client.response())[1] == b"GET /b "
            await settled(router)
        nursery.cancel_scope.cancel()
    assert handed == []


@pytest.mark.parametrize("length", [11, 100_000], ids=["stalled", "longer-than-a-read"])
async def test_a_body_still_coming_goes_to_the_general_path_then_back(monkeypatch, length):
    """A body that stalls past REST_WAIT, or that is longer than the lane buffers, is
    streamed by the general path; the connection comes back after it."""
    from brood.routers.http import lane as http_lane

    monkeypatch.setattr(http_lane, "REST_WAIT", 0.05)
    handed = record_hand_overs(monkeypatch)
    head = POST_HEAD.replace(b"11", b"%d" % length)
    body = (b"hello=world" * (length // 11 + 1))[:length]
    async with trio.open_nursery() as nursery:
        server = await nursery.start(node_server, echo)
        async with http_router({HOST: [server.address]}, settings()) as router:
            with await open_client(router.address) as sock:
                client = LaneClient(sock)
                await client.send(head + body[:5])
                await eventually(lambda: handed)
                await client.send(body[5:])
                assert (await client.response())[1] == b"POST /form " + body
                await eventually(lambda: len(lane_of(router).conns) == 1)  # back
                await client.send(get(b"/b"))
                assert (await client.response())[1] == b"GET /b "
            await settled(router)
        nursery.cancel_scope.cancel()
    assert handed == [head + body[:5]]


# -- 3. a chunked answer: mid-answer hand-over -------------------------------------------
CHUNKED_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
CHUNKS = b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"


@pytest.mark.parametrize("split", [False, True], ids=["whole", "head-first"])
async def test_chunked_answer_is_relayed_whole_and_the_connection_goes_on(split):
    gate = trio.Event()

    async def behave(conn, request):
        found, _ = packet_vars(request)
        if found[b"PATH_INFO"] != b"/chunked":
            await send_all(conn, OK)
        elif split:
            await send_all(conn, CHUNKED_HEAD)
            await gate.wait()  # until the client got the head: the lane took only it
            await send_all(conn, CHUNKS)
        else:
            await send_all(conn, CHUNKED_HEAD + CHUNKS)

    async with trio.open_nursery() as nursery:
        server = await nursery.start(node_server, behave)
        async with http_router({HOST: [server.address]}, settings()) as router:
            handed = []
            relay_rest = router.handler.resume_answer

            async def resume_answer(*args):
                handed.append(args[3].target)
                await relay_rest(*args)

            router.handler.resume_answer = resume_answer
            with await open_client(router.address) as sock:
                client = LaneClient(sock)
                await client.send(get(b"/chunked"))
                if split:
                    with trio.fail_after(2):
                        while b"\r\n\r\n" not in client.buf:
                            assert await client._more(), "closed before the answer head"
                    gate.set()
                head, body = await client.response()
                assert head == CHUNKED_HEAD
                assert body == b"hello world"
                assert handed == [b"/chunked"]  # relayed by resume_answer
                await eventually(lambda: len(lane_of(router).conns) == 1)  # then back
                await client.send(get(b"/after"))
                assert (await client.response())[1] == b"ok\n"
                assert handed == [b"/chunked"]  # /after: the lane's own
            await settled(router)
            # counted once by the lane, not again by resume_answer
            assert node_of(router).requests == 2
        nursery.cancel_scope.cancel()


# -- 4. half-close ---------------------------------------------------------------------------
@pytest.mark.parametrize("when", ["with-the-request", "while-the-node-works"])
async def test_half_closed_client_gets_the_answer_then_the_close(when):
    gate = trio.Event()
    big = ok(b"y" * 300_000)  # several reads and sends
    async with trio.open_nursery() as nursery:
        server = await nursery.start(node_server, gated(big, gate))
        async with http_router({HOST: [server.address]}, settings()) as router:
            with await open_client(router.address) as sock:
                client = LaneClient(sock)
                if when == "with-the-request":
                    os.write(sock.fileno(), get())  # the request and the FIN in one edge
                    sock.shutdown(socket.SHUT_WR)
                    await eventually(lambda: server.requests)
                else:
                    await client.send(get())
                    await eventually(lambda: server.requests)  # the lane is waiting
                    sock.shutdown(socket.SHUT_WR)
                gate.set()
                head, body = await client.response()
                assert head + body == big
                assert await client.closed(limit=2)
            await settled(router)
            assert not lane_of(router).conns
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("path", ["lane", "general"])
async def test_a_client_reset_before_the_answer_frees_its_node_at_once(path, capfd):
    """A reset (not a half-close, which still gets its answer above): the node's
    connection, its ref and the session go at once, not when the node answers. A node
    named by host name is connected by the general path."""
    node_server = Watcher()
    async with trio.open_nursery() as nursery:
        await nursery.start(node_server.serve)
        name = node_server.address
        if path == "general":
            name = name.replace("127.0.0.1", "localhost")
        async with http_router({HOST: [name]}, settings()) as router:
            sock = await open_client(router.address)
            await LaneClient(sock).send(get())
            with trio.fail_after(5):
                await node_server.asked.wait()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()
            with trio.fail_after(5):
                await node_server.left.wait()
            await settled(router)
            assert not lane_of(router).conns
            seen = ""

            def logged() -> bool:
                nonlocal seen
                seen += capfd.readouterr().err
                return "(HTTP/1.1 499)" in seen

            await eventually(logged, limit=3.0)  # its request line: 499, as nginx's
        nursery.cancel_scope.cancel()


# -- 5. back-pressure ------------------------------------------------------------------------
async def test_large_answer_to_a_slow_reader_arrives_byte_exact():
    body = random.Random(5).randbytes(8 << 20)
    whole = ok(body)
    async with trio.open_nursery() as nursery:
        server = await nursery.start(node_server, answer(whole))
        async with http_router({HOST: [server.address]}, settings()) as router:
            with await small_window_client(router, 1 << 16) as sock:
                await send_all(sock, get())
                # no read until the router's sends filled the socket buffers: the lane
                # holds the rest of a read (``pending``) and waits for EPOLLOUT
                await eventually(lambda: router.handler.lane is not None)
                lane = router.handler.lane
                await eventually(lambda: any(c.out_armed and c.pending
                                             for c in lane.conns.values()))
                got = bytearray()
                with trio.fail_after(3):
                    while len(got) < len(whole):
                        data = await sock.recv(16384)  # small pieces
                        assert data, f"closed after {len(got)} bytes"
                        got += data
                assert len(got) == len(whole)
                assert bytes(got) == whole
                # and the connection is still good for the next request
                client = LaneClient(sock)
                await client.send(get())
                assert await client.response() == (whole[:-len(body)], body)
            await settled(router)
            node = node_of(router)
            assert (node.requests, node.tx) == (2, 2 * len(whole))
        nursery.cancel_scope.cancel()


# -- 6. 502 / 504 ----------------------------------------------------------------------------
PART_HEAD = b"HTTP/1.1 200 OK\r\nContent-"


async def test_node_closing_without_an_answer_is_502_with_a_body(monkeypatch):
    """A node that closes without a word: a 502 with a body, and the close. The lane
    hands it to a task of its own, which counts a session while it is written (a
    drain ending then would cut the answer)."""
    from brood.routers.http.router import HttpRouter

    sessions: list[int] = []
    real = HttpRouter.fail

    async def fail(self, *args, **kw):
        sessions.append(self.engine.active_sessions)
        await real(self, *args, **kw)

    monkeypatch.setattr(HttpRouter, "fail", fail)
    async with trio.open_nursery() as nursery:
        server = await nursery.start(node_server, answer(b""))
        async with http_router({HOST: [server.address]}, settings()) as router:
            with await open_client(router.address) as sock:
                client = LaneClient(sock)
                await client.send(get())
                head, body = await client.response()
                assert head.startswith(b"HTTP/1.1 502 ")
                assert b"\r\nConnection: close\r\n" in head
                assert body
                assert await client.closed(limit=2)
            assert len(server.requests) == 1  # it went out through the lane
            await settled(router)
            assert node_of(router).requests == 1
        nursery.cancel_scope.cancel()
    assert sessions == [1]


def lane_reading_a_head(router) -> bool:
    lane = router.handler.lane
    return lane is not None and any(c.answer_head for c in lane.conns.values())


async def test_node_closing_after_part_of_a_head_is_502():
    """The lane read the start of the head, then the close comes as an edge of its own."""
    gate = trio.Event()

    async def behave(conn, request):
        await send_all(conn, PART_HEAD)
        await gate.wait()

    async with trio.open_nursery() as nursery:
        server = await nursery.start(node_server, behave)
        async with http_router({HOST: [server.address]}, settings(timeout=5)) as router:
            with await open_client(router.address) as sock:
                client = LaneClient(sock)
                await client.send(get())
                await eventually(lambda: lane_reading_a_head(router))
                gate.set()  # the node closes now
                head, body = await client.response(limit=1)
                assert head.startswith(b"HTTP/1.1 502 ")
                assert body
                assert await client.closed(limit=2)
            await settled(router)
        nursery.cancel_scope.cancel()


async def test_answer_head_in_two_pieces_is_served_in_the_lane():
    gate = trio.Event()
    whole = ok(b"two pieces")

    async def behave(conn, request):
        await send_all(conn, whole[:len(PART_HEAD)])
        await gate.wait()
        await send_all(conn, whole[len(PART_HEAD):])

    async with trio.open_nursery() as nursery:
        server = await nursery.start(node_server, behave)
        async with http_router({HOST: [server.address]}, settings()) as router:
            with await open_client(router.address) as sock:
                client = LaneClient(sock)
                await client.send(get())
                await eventually(lambda: lane_reading_a_head(router))
                gate.set()
                assert (await client.response())[1] == b"two pieces"
                await client.send(get())
                assert (await client.response())[1] == b"two pieces"
                assert len(lane_of(router).conns) == 1
        nursery.cancel_scope.cancel()


async def test_part_of_a_head_and_the_close_in_one_edge_is_502_at_once():
    async def behave(conn, request):
        os.write(conn.fileno(), PART_HEAD)  # and the close, with no checkpoint between:
        # the lane sees the bytes and the hang-up in one event

    async with trio.open_nursery() as nursery:
        server = await nursery.start(node_server, behave)
        async with http_router({HOST: [server.address]}, settings(timeout=0.5)) as router:
            with await open_client(router.address) as sock:
                client = LaneClient(sock)
                await client.send(get())
                head, body = await client.response(limit=2)
                assert head.startswith(b"HTTP/1.1 502 "), head  # observed: 504 after ~1 s
            await settled(router)
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("timeout", [0.5, 1.5])
async def test_silent_node_is_504_after_http_timeout(caplog, timeout):
    """The 504 comes at the timeout: one past a sweep tick too (the sweep ran once a
    second, and fired up to a second late; it wakes for the soonest deadline now)."""
    caplog.set_level(logging.WARNING, "brood.routers")

    async def silent(conn, request):
        await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        server = await nursery.start(node_server, silent)
        async with http_router({HOST: [server.address]}, settings(timeout=timeout)) as router:
            with await open_client(router.address) as sock:
                client = LaneClient(sock)
                started = trio.current_time()
                await client.send(get())
                await eventually(lambda: server.requests)
                node = node_of(router)
                # the lane holds the node and a session while it waits
                assert (node.ref, router.engine.active_sessions) == (1, 1)
                assert lane_of(router).conns
                head, body = await client.response(limit=timeout + 1.5)
                elapsed = trio.current_time() - started
                assert head.startswith(b"HTTP/1.1 504 ")
                assert body
                assert timeout - 0.05 <= elapsed <= timeout + 0.15, elapsed  # (was up to 1 s late)
                assert await client.closed(limit=2)
                assert f"504 node {server.address} silent for {timeout:g}s" in caplog.text
            await settled(router)
        nursery.cancel_scope.cancel()


# -- 7. a truncated Content-Length answer: test_http_router_errors.py covers it
#       (test_truncated_answer_closes_the_client goes through the lane too).


@pytest.mark.parametrize(("method", "answer", "body", "ending"), [
    # nothing is owed either way: no FIN exchange, no TIME_WAIT
    (b"GET", ok(b"whole"), b"whole", "reset"),
    (b"HEAD", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", b"", "reset"),
    (b"GET", b"HTTP/1.1 204 No Content\r\n\r\n", b"", "reset"),
    (b"GET", b"HTTP/1.1 200 OK\r\n\r\nuntil the end", b"until the end", "reset"),
    (b"GET", b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\ncut", None, "close"),
], ids=["whole", "head", "204", "close-delimited", "cut-short"])
async def test_node_is_reset_only_after_a_whole_answer(method, answer, body, ending):
    seen: list = []
    async with trio.open_nursery() as nursery:
        server = await nursery.start(node_server, answer_then_listen(answer, seen))
        async with http_router({HOST: [server.address]}, settings()) as router:
            with await open_client(router.address) as sock:
                client = LaneClient(sock)
                await client.send(get().replace(b"GET", method, 1))
                if body is not None:
                    head, got = await client.response(method)
                    assert (head + got).startswith(answer[:12]) and got == body
                await eventually(lambda: seen)
            await settled(router)
        nursery.cancel_scope.cancel()
    assert seen == [ending]


async def test_forwarded_for_is_served_in_the_lane_with_the_client_appended(monkeypatch):
    parsed_in_full = []
    real = HttpLane._start_other
    monkeypatch.setattr(HttpLane, "_start_other",
                        lambda self, conn: parsed_in_full.append(conn.buf) or real(self, conn))
    async with trio.open_nursery() as nursery:
        server = await nursery.start(node_server)
        async with http_router({HOST: [server.address]}, settings()) as router:
            with await open_client(router.address) as sock:
                client = LaneClient(sock)
                for chain in (b"10.0.0.1", b"10.0.0.1, 10.0.0.2"):
                    await client.send(b"GET / HTTP/1.1\r\nHost: " + HOST
                                      + b"\r\nX-Forwarded-For: " + chain + b"\r\n\r\n")
                    assert (await client.response())[1] == b"ok\n"
                assert len(lane_of(router).conns) == 1
        nursery.cancel_scope.cancel()
    assert [packet_vars(r)[0][b"HTTP_X_FORWARDED_FOR"] for r in server.requests] == [
        b"10.0.0.1, 127.0.0.1", b"10.0.0.1, 10.0.0.2, 127.0.0.1"]
    assert parsed_in_full == []  # both read by usual_request, none by the full parser


# -- 8. counters -------------------------------------------------------------------------------
async def test_node_counters_after_lane_requests():
    async with trio.open_nursery() as nursery:
        server = await nursery.start(node_server)
        async with http_router({HOST: [server.address]}, settings()) as router:
            with await open_client(router.address) as sock:
                client = LaneClient(sock)
                for _ in range(3):
                    await client.send(get())
                    assert await client.response() == (OK[:-3], b"ok\n")
                    node = node_of(router)
                    # counted back synchronously by the lane: no wait needed
                    assert (node.ref, router.engine.active_sessions) == (0, 0)
            for _ in range(2):
                with await open_client(router.address) as sock:
                    client = LaneClient(sock)
                    await client.send(get(b"/x"))
                    assert (await client.response())[1] == b"ok\n"
            node = node_of(router)
            assert node.requests == 5
            assert node.ref == 0
            assert router.engine.active_sessions == 0
            assert router.engine.sessions_total == 5
            assert node.rx == sum(len(r) for r in server.requests)
            assert node.tx == 5 * len(OK)
        nursery.cancel_scope.cancel()


def sized_answer(n: int) -> bytes:
    """An answer of exactly ``n`` bytes, head included, with a body that tells its bytes."""
    head = b"HTTP/1.1 200 OK\r\nContent-Length: %010d\r\n\r\n"
    body = random.Random(n).randbytes(n - len(head % 0))
    return head % len(body) + body


async def by_size(conn: trio.socket.SocketType, request: bytes) -> None:
    """``GET /N`` is answered with ``sized_answer(N)``."""
    found, _ = packet_vars(request)
    await send_all(conn, sized_answer(int(found[b"PATH_INFO"][1:])))


@pytest.mark.parametrize("size", [100, lane_module.HEAD_RECV - 1, lane_module.HEAD_RECV,
                                  lane_module.HEAD_RECV + 1, 40000])
async def test_answers_around_the_first_read_arrive_whole_and_counted(size):
    """Shorter than the lane's first read: checked whole and sent in one; as long or
    longer: relayed by the lane. Either way byte-exact, and the connection stays."""
    async with trio.open_nursery() as nursery:
        server = await nursery.start(node_server, by_size)
        async with http_router({HOST: [server.address]}, settings()) as router:
            with await open_client(router.address) as sock:
                client = LaneClient(sock)
                for _ in range(2):
                    await client.send(get(b"/%d" % size))
                    head, body = await client.response()
                    assert head + body == sized_answer(size)
                assert len(lane_of(router).conns) == 1
            await settled(router)
            node = node_of(router)
            assert (node.requests, node.tx) == (2, 2 * size)
        nursery.cancel_scope.cancel()


async def test_whole_answers_to_a_reader_that_waits_go_out_in_parts(monkeypatch):
    """Pipelined GETs whose whole answers fill the client's window: the lane's one-send
    answer falls short, the rest waits for the client, then the next request goes on."""
    waited_from = []
    wait_writable = HttpLane._wait_writable

    def note(self, conn):
        waited_from.append(conn.state)
        return wait_writable(self, conn)

    monkeypatch.setattr(HttpLane, "_wait_writable", note)
    size, count = 12000, 600
    async with trio.open_nursery() as nursery:
        server = await nursery.start(node_server, by_size)
        async with http_router({HOST: [server.address]}, settings()) as router:
            with await small_window_client(router, 4096) as sock:
                await send_all(sock, get(b"/%d" % size) * count)
                await eventually(lambda: router.handler.lane is not None
                                 and any(c.pending for c in router.handler.lane.conns.values()))
                client = LaneClient(sock)
                for i in range(count):
                    head, body = await client.response()
                    assert head + body == sized_answer(size), i
                assert len(lane_of(router).conns) == 1
            await settled(router)
            node = node_of(router)
            assert (node.requests, node.tx) == (count, count * size)
            assert router.engine.sessions_total == count
        nursery.cancel_scope.cancel()
    assert lane_module.BODY in waited_from


async def test_a_long_answer_whose_first_part_falls_short_goes_on(monkeypatch):
    """An answer longer than the first read, whose first part the client socket takes
    only in part: the rest of that part waits for the client, then the body follows
    (the node's edge was spent on the first read: the relay must read on without one)."""
    short = []

    def write_short_once(fd, data):
        if len(data) == lane_module.HEAD_RECV and not short:
            short.append(fd)
            data = data[:1000]
        return os.write(fd, data)

    monkeypatch.setattr(http_lane_module, "_write", write_short_once)
    size = 300_000
    async with trio.open_nursery() as nursery:
        server = await nursery.start(node_server, by_size)
        async with http_router({HOST: [server.address]}, settings()) as router:
            with await open_client(router.address) as sock:
                client = LaneClient(sock)
                await client.send(get(b"/%d" % size))
                with trio.fail_after(5):
                    head, body = await client.response()
                assert head + body == sized_answer(size)
                assert short == [next(iter(lane_of(router).conns))]
                await client.send(get(b"/100"))  # the connection goes on
                assert b"".join(await client.response()) == sized_answer(100)
            await settled(router)
        nursery.cancel_scope.cancel()


# -- 9. close-delimited answer ---------------------------------------------------------------
async def test_close_delimited_answer_relayed_whole_then_closed():
    body = random.Random(9).randbytes(300_000)
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n"
    gate = trio.Event()

    async def behave(conn, request):
        await send_all(conn, head + body[:100_000])
        await gate.wait()
        await send_all(conn, body[100_000:])  # then the close ends it

    async with trio.open_nursery() as nursery:
        server = await nursery.start(node_server, behave)
        async with http_router({HOST: [server.address]}, settings()) as router:
            with await open_client(router.address) as sock:
                client = LaneClient(sock)
                await client.send(get())
                with trio.fail_after(2):
                    while len(client.buf) < len(head):
                        assert await client._more()
                assert client.buf.startswith(head)
                assert len(lane_of(router).conns) == 1  # relayed by the lane itself
                gate.set()
                got_head, got_body = await client.response()  # reads until the close
                assert got_head == head
                assert got_body == body
                assert await client.closed(limit=1)
            assert not lane_of(router).conns
            await settled(router)
            assert node_of(router).requests == 1
        nursery.cancel_scope.cancel()


# -- 10. long bodies by splice -----------------------------------------------------------------
@pytest.mark.parametrize("cut", [False, True], ids=["whole", "node-cuts-it-short"])
async def test_long_body_goes_by_splice(monkeypatch, cut):
    """Past the first read a long body moves node -> client by splice(2), byte exact; a
    node that closes before its Content-Length is complete gets the client closed."""
    body = random.Random(10).randbytes(300_000)
    whole = ok(body)
    sent = whole[:len(whole) - 1000] if cut else whole
    spliced = []
    real_splice = os.splice

    def counting_splice(src, dst, count, *args, **kw):
        moved = real_splice(src, dst, count, *args, **kw)
        spliced.append(moved)
        return moved

    monkeypatch.setattr(os, "splice", counting_splice)
    async with trio.open_nursery() as nursery:
        server = await nursery.start(node_server, answer(sent))
        async with http_router({HOST: [server.address]}, settings()) as router:
            with await open_client(router.address) as sock:
                await send_all(sock, get())
                got = bytearray()
                with trio.fail_after(5):
                    while len(got) < len(sent):
                        data = await sock.recv(65536)
                        assert data, f"closed after {len(got)} bytes"
                        got += data
                assert bytes(got) == sent
                if cut:
                    assert await LaneClient(sock).closed(limit=2)
                else:
                    client = LaneClient(sock)  # kept alive: the next request works
                    await client.send(get())
                    assert await client.response() == (whole[:-len(body)], body)
            await settled(router)
        nursery.cancel_scope.cancel()
    # the body past the first read and before a last short piece went through pipes
    # (in and out: counted twice)
    past_first_read = len(sent) - (len(whole) - len(body)) - lane_module.HEAD_RECV
    assert sum(spliced) >= 2 * (past_first_read - lane_module.SPLICE_MIN)


@pytest.mark.parametrize("splice", [True, False], ids=["splice", "copy"])
async def test_long_answer_moves_in_turns(monkeypatch, splice):
    """A long answer moves ``TURN`` bytes at a time; the lane serves its other sockets in
    between and takes the answer up again (``later``), byte exact."""
    monkeypatch.setattr(lane_module, "TURN", 65536)
    monkeypatch.setattr(lane_module, "HAS_SPLICE", splice)
    resumed = []
    real = HttpLane._resume

    def counting(self, conn):
        resumed.append(conn.fd)
        real(self, conn)

    monkeypatch.setattr(HttpLane, "_resume", counting)
    body = random.Random(12).randbytes(2 << 20)
    async with trio.open_nursery() as nursery:
        server = await nursery.start(node_server, answer(ok(body)))
        async with http_router({HOST: [server.address]}, settings()) as router:
            with await open_client(router.address) as sock:
                client = LaneClient(sock)
                await client.send(get())
                assert await client.response(limit=10) == (ok(body)[:-len(body)], body)
                assert lane_of(router).conns  # kept alive, in the lane
            await settled(router)
        nursery.cancel_scope.cancel()
    assert len(resumed) >= (1 if splice else 4)  # a splice moves up to a pipeful


async def test_spliced_body_with_small_pipes_does_not_stall():
    """A pipe smaller than asked (F_SETPIPE_SZ can fail under the per-user pipe limit)
    moves less per splice: the lane keeps splicing until EAGAIN, so a node that pauses
    mid-body does not leave bytes the router already has waiting."""
    first, rest = b"a" * 900_000, b"b" * 100_000
    head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (len(first) + len(rest))
    gate = trio.Event()

    async def behave(conn, request):
        await send_all(conn, head + first)
        await gate.wait()  # a slow producer: the rest comes later
        await send_all(conn, rest)

    relay._drop_pipes()
    for _ in range(4):  # default-sized (64 KiB) pipes in the pool
        relay._PIPES.append(os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC))
    try:
        async with trio.open_nursery() as nursery:
            server = await nursery.start(node_server, behave)
            async with http_router({HOST: [server.address]}, settings()) as router:
                with await open_client(router.address) as sock:
                    await send_all(sock, get())
                    got = bytearray()
                    with trio.fail_after(3):  # all of the first part, gate still closed
                        while len(got) < len(head + first):
                            data = await sock.recv(1 << 20)
                            assert data, f"closed after {len(got)} bytes"
                            got += data
                    gate.set()
                    with trio.fail_after(3):
                        while len(got) < len(head + first + rest):
                            data = await sock.recv(1 << 20)
                            assert data, f"closed after {len(got)} bytes"
                            got += data
                    assert got == head + first + rest
                await settled(router)
            nursery.cancel_scope.cancel()
    finally:
        relay._drop_pipes()


async def test_slow_reader_that_keeps_reading_is_not_cut_by_the_timeout():
    """The idle timeout counts from the last byte the client took: a slow reader that
    keeps reading (draining a large send buffer without an EPOLLOUT edge for seconds)
    outlives --http-timeout."""
    timeout = 1.0
    body = random.Random(11).randbytes(4 << 20)
    whole = ok(body)
    async with trio.open_nursery() as nursery:
        server = await nursery.start(node_server, answer(whole))
        async with http_router({HOST: [server.address]}, settings(timeout=timeout)) as router:
            with await small_window_client(router, 1 << 14) as sock:
                await send_all(sock, get())
                got = bytearray()
                started = trio.current_time()
                with trio.fail_after(20):
                    while len(got) < len(whole):
                        data = await sock.recv(32768)
                        assert data, f"cut after {len(got)} bytes"
                        got += data
                        await trio.sleep(0.03)  # a slow reader: about 1 MB/s
                assert bytes(got) == whole
                assert trio.current_time() - started > 2 * timeout  # it did outlive it
            await settled(router)
        nursery.cancel_scope.cancel()


async def test_client_that_takes_nothing_is_dropped_after_the_timeout():
    body = random.Random(12).randbytes(16 << 20)
    async with trio.open_nursery() as nursery:
        server = await nursery.start(node_server, answer(ok(body)))
        async with http_router({HOST: [server.address]}, settings(timeout=0.5)) as router:
            with await open_client(router.address) as sock:
                await send_all(sock, get())  # and never read
                await eventually(lambda: router.handler.lane is not None)
                lane = router.handler.lane
                await eventually(lambda: any(c.pending for c in lane.conns.values()))
                await eventually(lambda: not lane.conns, limit=4)  # dropped
            await settled(router)
        nursery.cancel_scope.cancel()


async def test_a_failure_serving_a_handed_back_connection_drops_only_it(monkeypatch):
    """A connection back from the general path is served under the lane's own guard: an
    unexpected error closes that connection and the lane goes on."""
    post = (b"POST /form HTTP/1.1\r\nHost: " + HOST + b"\r\nContent-Length: 2\r\n\r\nhi")
    start = HttpLane._start

    def failing_start(self, conn):
        if conn.buf.startswith(b"GET /boom"):
            raise RuntimeError("boom")
        start(self, conn)

    monkeypatch.setattr(HttpLane, "_start", failing_start)
    async with trio.open_nursery() as nursery:
        server = await nursery.start(node_server, echo)
        async with http_router({HOST: [server.address]}, settings()) as router:
            with await open_client(router.address) as sock:
                client = LaneClient(sock)
                await client.send(post + get(b"/boom"))  # the POST takes the general path
                assert (await client.response())[1] == b"POST /form hi"
                assert await client.closed(limit=2)  # /boom: dropped by the guard
            with await open_client(router.address) as sock:  # the lane still serves
                client = LaneClient(sock)
                await client.send(get(b"/after"))
                assert (await client.response())[1] == b"GET /after "
            await settled(router)
        nursery.cancel_scope.cancel()


async def test_refused_first_node_is_marked_and_the_next_serves():
    dead = refused_address()
    async with trio.open_nursery() as nursery:
        server = await nursery.start(node_server, echo)
        async with http_router({HOST: [dead, server.address]}, settings()) as router:
            with await open_client(router.address) as sock:
                client = LaneClient(sock)
                # The general path goes on from the lane's failed attempt as from its
                # own: with max_retries 0 (http_router's engine) that was the only try.
                await client.send(get(b"/1"))
                head, _ = await client.response()
                assert head.startswith(b"HTTP/1.1 502 ")
            with await open_client(router.address) as sock:
                client = LaneClient(sock)
                for path in (b"/2", b"/3"):
                    await client.send(get(path))
                    assert (await client.response())[1] == b"GET " + path + b" "
            dead_node, good = router.resolver.nodes[HOST]
            # marked as the general path marks a refused connect: skipped while in grace
            assert dead_node.failcnt == 1 and dead_node.grace_until > 0
            assert (good.requests, dead_node.requests) == (2, 0)
        nursery.cancel_scope.cancel()


# -- out of fds, and the silent node's name after a hand-over -----------------------------
@pytest.mark.parametrize("first", [True, False], ids=["first-request", "kept-alive"])
async def test_out_of_fds_for_the_node_socket_is_503(first):
    """No fd for the node's socket: the router's own 503, also on a connection that had
    answers before (their byte count must not make it look half-answered)."""
    async with trio.open_nursery() as nursery:
        server = await nursery.start(node_server, answer(ok(b"hi")))
        async with http_router({HOST: [server.address]}, settings()) as router:
            with await open_client(router.address) as sock:
                client = LaneClient(sock)
                if not first:
                    await client.send(get(b"/one"))
                    assert (await client.response())[1] == b"hi"
                await eventually(lambda: lane_of(router).conns)
                with FdLimit(0):
                    await client.send(get(b"/two"))
                    head, _ = await client.response()
                assert head.startswith(b"HTTP/1.1 503 "), head
            await settled(router)
        nursery.cancel_scope.cancel()
    node = node_of(router)
    assert (node.failcnt, node.requests) == (0, 0 if first else 1)


async def test_silent_node_named_after_a_hand_over_mid_answer(caplog):
    """A chunked answer goes on in the general path (``resume_answer``); the node then
    goes silent: the 504 line names it."""
    caplog.set_level(logging.WARNING, "brood.routers")

    async def chunked_then_silent(conn, request):
        await send_all(conn, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n")
        await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        server = await nursery.start(node_server, chunked_then_silent)
        async with http_router({HOST: [server.address]}, settings(timeout=0.3)) as router:
            with await open_client(router.address) as sock:
                await send_all(sock, get())
                with trio.fail_after(5):
                    while await sock.recv(65536):
                        pass
        nursery.cancel_scope.cancel()
    assert f"504 node {server.address} silent for 0.3s" in caplog.text


async def test_a_connection_being_handed_over_is_work_for_a_drain():
    """Between the lane's hand-over and the general path's task starting, the connection
    is in no table and no session: a drain checking then must still see work left, or
    it ends the process under a request (chunked POSTs were lost so at reloads)."""
    async with echo_client() as (router, client):
        await client.send(get(b"/one"))
        assert (await client.response())[1] == b"GET /one "
        lane = lane_of(router)
        (conn,) = lane.conns.values()
        engine = router.engine
        lane._to_general(conn)  # (no checkpoint until the asserts are done)
        assert not lane.conns and not router.handler.conns
        assert engine.work_left()
        await eventually(lambda: engine.handing_over == 0)
        assert len(router.handler.conns) == 1
        await client.send(get(b"/two"))
        assert (await client.response())[1] == b"GET /two "
