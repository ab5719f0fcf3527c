"""The fastrouter's fast lane (``brood.routers.fastrouter_lane``) on loopback, in-process.

Every connection of ``serve_router`` starts in the lane; ``resumed`` records the ones the
general path served, so each test says which served."""

from __future__ import annotations

import logging
import select
import socket
import struct
from functools import partial

import pytest
import trio
import trio.testing
from _httpkit import how_it_ends
from _routerkit import (
    ANSWER,
    Resumed,
    Watcher,
    connect,
    read_all,
    record_general_path,
    record_lanes,
    refused_address,
    send_all,
    uwsgi_backend,
    wait_for,
)
from test_fastrouter import engine_for, packet, request, roundtrip, start

from brood.routers import fastrouter
from brood.routers import lane as lane_module


@pytest.fixture
def resumed(monkeypatch) -> Resumed:
    """What the lane had read of each connection the general path served (b"" for one
    that never met the lane)."""
    return record_general_path(monkeypatch, fastrouter.FastRouter,
                               lambda first=b"", first_pick=None, held=False: first)


@pytest.fixture
def lanes(monkeypatch) -> list:
    return record_lanes(monkeypatch, fastrouter.FastRouter)


async def mute_backend(reset: bool, task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Reads a request, then closes without a byte of answer (``reset``: with an RST,
    SO_LINGER 0)."""
    lsock = trio.socket.socket()
    await lsock.bind(("127.0.0.1", 0))
    lsock.listen(8)
    task_status.started(f"127.0.0.1:{lsock.getsockname()[1]}")
    with lsock:
        while True:
            conn, _ = await lsock.accept()
            with conn:
                await conn.recv(65536)
                if reset:
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


async def test_packet_with_body_in_one_write_is_served_in_the_lane(resumed):
    data = request(body=b"0123456789" * 50)
    async with trio.open_nursery() as nursery:
        backend = await nursery.start(uwsgi_backend)
        engine, resolver = engine_for({b"a.example": [backend.address]})
        node = resolver.nodes[b"a.example"][0]
        node.modifier1, node.modifier2 = 5, 3
        address, server = await start(nursery, engine)
        assert await roundtrip(address, data) == ANSWER
        server.stop_accepting()
        assert await server.drain(5)
        nursery.cancel_scope.cancel()
    assert resumed == []
    assert backend.received == [bytes([5]) + data[1:3] + bytes([3]) + data[4:]]
    assert (node.requests, node.ref, node.rx, node.tx) == (1, 0, len(data), len(ANSWER))
    assert engine.active_sessions == 0


@pytest.mark.parametrize("cut", [False, True], ids=["lane", "general-path"])
async def test_node_that_half_closes_after_its_answer_is_reset(resumed, cut):
    """Its answer is over when it stops sending: nothing is owed either way, so its
    connection is reset (no FIN exchange, no TIME_WAIT on its side), on either path."""
    seen = []

    async def answer_then_listen(task_status=trio.TASK_STATUS_IGNORED) -> None:
        lsock = trio.socket.socket()
        await lsock.bind(("127.0.0.1", 0))
        lsock.listen(8)
        task_status.started(f"127.0.0.1:{lsock.getsockname()[1]}")
        with lsock:
            conn, _ = await lsock.accept()
            with conn:
                await conn.recv(65536)
                await send_all(conn, ANSWER)
                seen.append(await how_it_ends(conn))

    async with trio.open_nursery() as nursery:
        address = await nursery.start(answer_then_listen)
        engine, _ = engine_for({b"a.example": [address]})
        router_address, _ = await start(nursery, engine)
        data = request()
        if cut:  # the packet in two writes: the general path serves it
            sock = await connect(router_address)
            with sock:
                await send_all(sock, data[:10])
                await resumed.wait()
                await send_all(sock, data[10:])
                assert await read_all(sock) == ANSWER
        else:
            assert await roundtrip(router_address, data) == ANSWER
        await wait_for(lambda: seen)
        nursery.cancel_scope.cancel()
    assert resumed == ([data[:10]] if cut else [])
    assert seen == ["reset"]


async def test_packet_cut_in_two_writes_goes_to_the_general_path(resumed):
    data = request()
    async with trio.open_nursery() as nursery:
        backend = await nursery.start(uwsgi_backend)
        engine, _ = engine_for({b"a.example": [backend.address]})
        address, _ = await start(nursery, engine)
        sock = await connect(address)
        with sock:
            await send_all(sock, data[:10])
            await resumed.wait()  # the lane read the first part and handed it over
            await send_all(sock, data[10:])
            assert await read_all(sock) == ANSWER
        nursery.cancel_scope.cancel()
    assert resumed == [data[:10]]
    assert backend.received == [data]


@pytest.mark.parametrize("splice", [True, False], ids=["splice", "copy"])
async def test_long_answer_relayed_byte_exact(monkeypatch, resumed, splice):
    monkeypatch.setattr(lane_module, "HAS_SPLICE", splice)
    body = bytes(range(256)) * 16384  # 4 MiB
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    async with trio.open_nursery() as nursery:
        backend = await nursery.start(partial(uwsgi_backend, answer))
        engine, resolver = engine_for({b"a.example": [backend.address]})
        address, _ = await start(nursery, engine)
        assert await roundtrip(address, request()) == answer
        nursery.cancel_scope.cancel()
    assert resolver.nodes[b"a.example"][0].tx == len(answer)
    assert resumed == []


@pytest.mark.parametrize("reset, logged", [(False, "node closed without answering"),
                                           (True, "Connection reset by peer")],
                         ids=["close", "reset"])
@pytest.mark.parametrize("cut", [False, True], ids=["lane", "general path"])
async def test_node_failing_without_an_answer_is_502(resumed, caplog, cut, reset, logged):
    data = request()
    async with trio.open_nursery() as nursery:
        node_address = await nursery.start(mute_backend, reset)
        engine, _ = engine_for({b"a.example": [node_address]})
        address, _ = await start(nursery, engine)
        sock = await connect(address)
        with sock, caplog.at_level(logging.WARNING, "brood.routers"):
            await send_all(sock, data[:3] if cut else data)
            if cut:  # the lane hands the first bytes over
                await resumed.wait()
                await send_all(sock, data[3:])
            answer = await read_all(sock)
        nursery.cancel_scope.cancel()
    assert answer.startswith(b"HTTP/1.0 502 ")
    assert logged in caplog.text
    assert len(resumed) == (1 if cut else 0)


async def test_client_that_sends_nothing_is_dropped_after_the_timeout(caplog):
    async with trio.open_nursery() as nursery:
        engine, _ = engine_for({}, timeout=0.2)
        address, _ = await start(nursery, engine)
        sock = await connect(address)
        with sock, caplog.at_level(logging.WARNING, "brood.routers"):
            with trio.fail_after(5):
                assert await sock.recv(100) == b""  # closed by the sweep
        nursery.cancel_scope.cancel()
    assert "no complete uwsgi packet within 0.2s" in caplog.text


async def test_refused_first_node_is_marked_and_the_next_serves(resumed):
    async with trio.open_nursery() as nursery:
        backend = await nursery.start(uwsgi_backend)
        dead = refused_address()
        engine, resolver = engine_for({b"a.example": [dead, backend.address]})
        address, _ = await start(nursery, engine)
        for _ in range(3):
            assert await roundtrip(address, request()) == ANSWER
        nursery.cancel_scope.cancel()
    dead_node, good = resolver.nodes[b"a.example"]
    assert dead_node.failcnt == 1 and dead_node.grace_until > 0
    assert (good.requests, dead_node.requests) == (3, 0)
    assert len(resumed) == 1  # only the request that met the refusal


async def test_request_without_key_goes_to_the_general_path(resumed):
    async with trio.open_nursery() as nursery:
        engine, _ = engine_for({})
        address, _ = await start(nursery, engine)
        data = packet([(b"PATH_INFO", b"/")])
        answer = await roundtrip(address, data)
        nursery.cancel_scope.cancel()
    assert answer.startswith(b"HTTP/1.0 503 ")
    assert resumed == [data]


async def test_lane_accepts_until_accepting_stops(lanes):
    async with trio.open_nursery() as nursery:
        backend = await nursery.start(uwsgi_backend)
        engine, _ = engine_for({b"a.example": [backend.address]})
        address, server = await start(nursery, engine)
        assert await roundtrip(address, request()) == ANSWER
        (lane,) = lanes
        assert len(lane.listeners) == 1  # the lane accepts
        server.stop_accepting()
        await trio.testing.wait_all_tasks_blocked()
        assert lane.listeners == {}  # out of its epoll set before the fd closed
        sock = await connect(address)  # queued by the kernel, taken by no one
        with sock:
            await send_all(sock, request())
            with trio.move_on_after(0.3) as waited:
                await sock.recv(100)
            assert waited.cancelled_caught
        nursery.cancel_scope.cancel()
    assert backend.connections == 1


async def test_cheap_mode_accepts_only_while_nodes_exist(lanes):
    async with trio.open_nursery() as nursery:
        backend = await nursery.start(uwsgi_backend)
        engine, _ = engine_for({b"a.example": [backend.address]}, cheap=True)
        engine.nodes_changed(False)  # cheap: no node yet
        address, _ = await start(nursery, engine)
        (lane,) = lanes
        await trio.testing.wait_all_tasks_blocked()
        assert lane.listeners == {}
        sock = await connect(address)  # queued, not taken while cheap
        with sock:
            await send_all(sock, request())
            with trio.move_on_after(0.2) as waited:
                await sock.recv(100)
            assert waited.cancelled_caught
            engine.nodes_changed(True)  # leaving cheap mode: the lane takes it
            assert await read_all(sock) == ANSWER
        assert len(lane.listeners) == 1
        engine.nodes_changed(False)  # cheap again: out of the lane's epoll set
        await trio.testing.wait_all_tasks_blocked()
        assert lane.listeners == {}
        nursery.cancel_scope.cancel()


async def test_graceful_stop_waits_for_a_client_whose_packet_has_not_come(lanes):
    async with trio.open_nursery() as nursery:
        backend = await nursery.start(uwsgi_backend)
        engine, _ = engine_for({b"a.example": [backend.address]})
        address, server = await start(nursery, engine)
        sock = await connect(address)
        with sock:
            await wait_for(lambda: engine.active_sessions == 1)  # taken by the lane
            server.stop_accepting()
            drained = []

            async def drain():
                drained.append(await server.drain(5))

            nursery.start_soon(drain)
            await trio.testing.wait_all_tasks_blocked()
            assert drained == []  # waits for this client
            await send_all(sock, request())
            assert await read_all(sock) == ANSWER
        await wait_for(lambda: drained)
        assert drained == [True]
        assert engine.active_sessions == 0
        nursery.cancel_scope.cancel()


async def test_round_robin_kept_for_nodes_the_lane_cannot_connect_itself(resumed,
                                                                   monkeypatch):
    from brood.routers.net import sockio

    monkeypatch.setattr(sockio, "RESOLVED_TTL", 0.0)  # host names: never the lane's
    async with trio.open_nursery() as nursery:
        a = await nursery.start(partial(uwsgi_backend, b"A"))
        b = await nursery.start(partial(uwsgi_backend, b"B"))
        # host names: the lane hands the request over with its pick, unconnected
        names = [x.address.replace("127.0.0.1", "localhost") for x in (a, b)]
        engine, _ = engine_for({b"a.example": names})
        address, _ = await start(nursery, engine)
        answers = [await roundtrip(address, request()) for _ in range(4)]
        nursery.cancel_scope.cancel()
    assert answers == [b"A", b"B", b"A", b"B"]
    assert len(resumed) == 4


async def test_a_stray_event_while_connecting_sends_nothing(lanes):
    full = socket.socket()
    full.bind(("127.0.0.1", 0))
    full.listen(0)
    fillers = []
    for _ in range(3):  # the accept queue full: the next SYNs are dropped (SYN_SENT)
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(full.getsockname())
        fillers.append(filler)
    try:
        async with trio.open_nursery() as nursery:
            engine, _ = engine_for({b"a.example": ["{}:{}".format(*full.getsockname())]})
            address, _ = await start(nursery, engine)
            sock = await connect(address)
            with sock:
                await send_all(sock, request())
                await trio.testing.wait_all_tasks_blocked()
                (lane,) = lanes
                (conn,) = lane.conns.values()
                assert conn.state == lane_module.CONNECTING
                # an event meant for an earlier socket with this fd number
                lane._node_event(conn, select.EPOLLIN | select.EPOLLRDHUP)
                assert conn.state == lane_module.CONNECTING
                assert (conn.node.requests, conn.node.ref, conn.counted) == (0, 0, False)
            nursery.cancel_scope.cancel()
    finally:
        for filler in fillers:
            filler.close()
        full.close()


@pytest.mark.parametrize("how", ["close", "reset"])
@pytest.mark.parametrize("cut", [False, True], ids=["lane", "general-path"])
async def test_a_client_gone_before_the_answer_frees_its_node_at_once(resumed, how, cut):
    """As uWSGI: nginx giving up (its client left) closes the connection; the node's
    connection and the session go at once, not when the node answers or times out."""
    data = request()
    async with trio.open_nursery() as nursery:
        node_server = await nursery.start(Watcher().serve)
        engine, resolver = engine_for({b"a.example": [node_server.address]}, timeout=30)
        address, _ = await start(nursery, engine)
        sock = await connect(address)
        with sock:
            if cut:  # the packet in two parts: the general path serves it
                await send_all(sock, data[:10])
                await trio.testing.wait_all_tasks_blocked(cushion=0.05)
            await send_all(sock, data[10:] if cut else data)
            with trio.fail_after(5):
                await node_server.asked.wait()
            if how == "reset":
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        with trio.fail_after(5):
            await node_server.left.wait()
            await wait_for(lambda: engine.active_sessions == 0)
        node = resolver.nodes[b"a.example"][0]
        assert (node.requests, node.ref) == (1, 0)
        nursery.cancel_scope.cancel()
    assert bool(resumed) == cut
