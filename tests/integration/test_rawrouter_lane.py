"""The rawrouter's fast lane (``brood.routers.rawrouter_lane``) on loopback, in-process.

Every connection of ``serve_router`` starts in the lane; ``resumed`` records the ones the
general path served, so each test says which served."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import select
import socket
import struct
import termios
from functools import partial

import pytest
import trio
import trio.testing
from _routerkit import (
    DictResolver,
    FdLimit,
    Resumed,
    bind_listener,
    connect,
    read_all,
    record_general_path,
    record_lanes,
    refused_address,
    send_all,
    wait_for,
)
from test_rawrouter import digest_after_eof, start_raw, tcp_backend

from brood.config.model import Config
from brood.listener import Listener
from brood.routers import lane as lane_module
from brood.routers import rawrouter, rawrouter_lane
from brood.routers.engine import Engine, RouterSettings


@pytest.fixture
def resumed(monkeypatch) -> Resumed:
    """The ``first_pick`` of each connection the general path served."""
    return record_general_path(monkeypatch, rawrouter.RawRouter,
                               lambda first_pick=None, held=False: first_pick)


@pytest.fixture
def lanes(monkeypatch) -> list:
    return record_lanes(monkeypatch, rawrouter.RawRouter)


@pytest.fixture
def splices(monkeypatch) -> list[int]:
    """The bytes each os.splice call moved (the lane's and the general path's)."""
    moved: list[int] = []
    real = os.splice

    def counting(*args, **kwargs):
        n = real(*args, **kwargs)
        moved.append(n)
        return n

    monkeypatch.setattr(os, "splice", counting)
    return moved


async def echo(conn) -> None:
    """Sends back what comes, until EOF."""
    while data := await conn.recv(1 << 16):
        await send_all(conn, data)


async def banner(text: bytes, conn) -> None:
    """Speaks first, then closes."""
    await send_all(conn, text)


async def exchange(sock, payload: bytes) -> bytes:
    """Sends ``payload`` then EOF while reading everything back until the relay closes."""
    async with trio.open_nursery() as nursery:
        async def sender():
            await send_all(sock, payload)
            sock.shutdown(socket.SHUT_WR)

        nursery.start_soon(sender)
        return await read_all(sock, 30)


async def through_router(conversation, payload: bytes, *, host: str = "127.0.0.1"):
    """``payload`` (then EOF) through a rawrouter to a backend running ``conversation``,
    the node named by ``host`` (a host name sends the connection to the general path):
    (what came back, the resolver, the router's address)."""
    async with trio.open_nursery() as nursery:
        backend = await nursery.start(tcp_backend, conversation)
        address, _, resolver = await start_raw(nursery, backend.replace("127.0.0.1", host))
        sock = await connect(address)
        with sock:
            reply = await exchange(sock, payload)
        nursery.cancel_scope.cancel()
    return reply, resolver, address


def full_backlog() -> tuple[socket.socket, list[socket.socket]]:
    """A listener whose accept queue is full: a connect to it stays in SYN_SENT."""
    full = socket.socket()
    full.bind(("127.0.0.1", 0))
    full.listen(0)
    fillers = []
    for _ in range(3):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(full.getsockname())
        fillers.append(filler)
    return full, fillers


async def test_short_exchange_is_relayed_in_the_lane(resumed, lanes):
    async with trio.open_nursery() as nursery:
        backend = await nursery.start(tcp_backend, digest_after_eof)
        address, server, resolver = await start_raw(nursery, backend)
        sock = await connect(address)
        with sock:
            assert await exchange(sock, b"hello") == hashlib.sha256(b"hello").hexdigest().encode()
        await server.engine.wait_idle()
        (lane,) = lanes
        await wait_for(lambda: not lane.conns)
        nursery.cancel_scope.cancel()
    assert resumed == []
    (node,) = resolver.nodes[address.encode()]
    assert (node.requests, node.ref, node.rx, node.tx) == (1, 0, 5, 64)
    assert server.engine.active_sessions == 0


async def test_a_host_name_node_is_served_in_the_lane_once_resolved(resumed):
    """The lanes never wait for a name lookup: the first connection to "localhost:N"
    goes to the general path, which resolves it; the next ones, within the TTL, are
    served in the lane (a lookup per connect sent every one to the general path)."""
    async with trio.open_nursery() as nursery:
        backend = await nursery.start(tcp_backend, digest_after_eof)
        address, server, _ = await start_raw(nursery, backend.replace("127.0.0.1", "localhost"))
        for _ in range(3):
            sock = await connect(address)
            with sock:
                assert await exchange(sock, b"hi") == hashlib.sha256(b"hi").hexdigest().encode()
        await server.engine.wait_idle()
        nursery.cancel_scope.cancel()
    assert len(resumed) == 1


@pytest.mark.parametrize("splice", [True, False], ids=["splice", "copy"])
async def test_bulk_both_ways_is_byte_exact(monkeypatch, resumed, splices, splice):
    monkeypatch.setattr(lane_module, "HAS_SPLICE", splice)
    payload = os.urandom(8 << 20)
    reply, resolver, address = await through_router(echo, payload)
    assert reply == payload
    assert resumed == []
    (node,) = resolver.nodes[address.encode()]
    assert (node.rx, node.tx) == (len(payload), len(payload))
    if splice:  # past the first full read, each byte crosses twice (in and out of a pipe)
        assert sum(splices) >= 3 * len(payload)
    else:
        assert splices == []


async def test_general_path_bulk_goes_through_splice(resumed, splices):
    payload = os.urandom(8 << 20)
    # a host name: the lane hands the connection over with its pick, unconnected
    reply, _, _ = await through_router(digest_after_eof, payload, host="localhost")
    assert reply == hashlib.sha256(payload).hexdigest().encode()
    ((node, failure),) = resumed
    assert failure is None
    # every byte crossed twice (socket -> pipe -> socket), both directions included
    assert sum(splices) == 2 * (len(payload) + 64)


async def test_turns_go_round_in_a_long_stream(monkeypatch, lanes):
    monkeypatch.setattr(rawrouter_lane, "TURN", 4096)
    resumes = []
    real = rawrouter_lane.RawLane._resume

    def counting(self, conn):
        resumes.append(conn.fd)
        real(self, conn)

    monkeypatch.setattr(rawrouter_lane.RawLane, "_resume", counting)
    payload = os.urandom(2 << 20)
    assert (await through_router(echo, payload))[0] == payload
    assert len(resumes) > 2  # _connected once, then the turns handed on


async def test_a_reader_that_stops_holds_the_rest_in_the_lane(lanes):
    payload = os.urandom(8 << 20)
    async with trio.open_nursery() as nursery:
        backend = await nursery.start(tcp_backend, partial(banner, payload))
        address, server, resolver = await start_raw(nursery, backend)
        sock = await connect(address)
        with sock:
            (lane,) = lanes
            await wait_for(lambda: any(c.down_way and c.down_way.pending
                                       for c in lane.conns.values()))
            assert await read_all(sock, 30) == payload
        await server.engine.wait_idle()
        nursery.cancel_scope.cancel()
    (node,) = resolver.nodes[address.encode()]
    assert (node.requests, node.ref, node.tx) == (1, 0, len(payload))


async def test_refused_first_node_is_marked_and_the_next_serves(resumed):
    async with trio.open_nursery() as nursery:
        backend = await nursery.start(tcp_backend, partial(banner, b"hi"))
        address, _, resolver = await start_raw(nursery, [refused_address(), backend])
        for _ in range(3):
            sock = await connect(address)
            with sock:
                assert await read_all(sock) == b"hi"
        nursery.cancel_scope.cancel()
    dead, good = resolver.nodes[address.encode()]
    assert dead.failcnt == 1 and dead.grace_until > 0
    assert (good.requests, dead.requests, good.ref) == (3, 0, 0)
    ((node, failure),) = resumed  # only the connection that met the refusal
    assert node is dead and failure.errno == 111


async def test_round_robin_kept_for_nodes_the_lane_cannot_connect_itself(resumed,
                                                                   monkeypatch):
    from brood.routers.net import sockio

    monkeypatch.setattr(sockio, "RESOLVED_TTL", 0.0)  # host names: never the lane's
    async with trio.open_nursery() as nursery:
        a = await nursery.start(tcp_backend, partial(banner, b"A"))
        b = await nursery.start(tcp_backend, partial(banner, b"B"))
        names = [x.replace("127.0.0.1", "localhost") for x in (a, b)]
        address, _, _ = await start_raw(nursery, names)
        answers = []
        for _ in range(4):
            sock = await connect(address)
            with sock:
                answers.append(await read_all(sock))
        nursery.cancel_scope.cancel()
    assert answers == [b"A", b"B", b"A", b"B"]
    assert len(resumed) == 4


async def test_connect_that_times_out_goes_to_the_next_node(resumed):
    full, fillers = full_backlog()
    try:
        async with trio.open_nursery() as nursery:
            backend = await nursery.start(tcp_backend, partial(banner, b"hi"))
            address, _, _ = await start_raw(
                nursery, ["{}:{}".format(*full.getsockname()), backend], connect_timeout=0.2)
            sock = await connect(address)
            with sock:
                assert await read_all(sock) == b"hi"
            nursery.cancel_scope.cancel()
    finally:
        for filler in fillers:
            filler.close()
        full.close()
    ((node, failure),) = resumed
    assert isinstance(failure, trio.TooSlowError)
    assert node.failcnt == 1


async def test_idle_connection_is_closed_after_the_timeout(caplog):
    async with trio.open_nursery() as nursery:
        backend = await nursery.start(tcp_backend, digest_after_eof)
        address, server, resolver = await start_raw(nursery, backend, timeout=0.2)
        sock = await connect(address)
        with sock, caplog.at_level(logging.WARNING, "brood.routers"):
            await send_all(sock, b"some")  # then nothing, either way
            with trio.fail_after(5):
                assert await sock.recv(100) == b""  # closed by the sweep
        await server.engine.wait_idle()
        nursery.cancel_scope.cancel()
    assert "idle for 0.2s, closed" in caplog.text
    (node,) = resolver.nodes[address.encode()]
    assert node.ref == 0


async def test_harakiri_cuts_a_busy_connection(caplog):
    async def ticking(conn):
        while True:
            await send_all(conn, b".")
            await trio.sleep(0.02)

    async with trio.open_nursery() as nursery:
        backend = await nursery.start(tcp_backend, ticking)
        address, server, _ = await start_raw(nursery, backend, max_age=0.3)
        sock = await connect(address)
        with sock, caplog.at_level(logging.WARNING, "brood.routers"):
            data = await read_all(sock, 5)  # until the cut
        await server.engine.wait_idle()
        nursery.cancel_scope.cancel()
    assert data.startswith(b"...")
    assert "session older than 0.3s cut (--rawrouter-session-max-age)" in caplog.text


@pytest.mark.parametrize("side", ["node", "client"])
async def test_a_reset_on_either_side_ends_both(side):
    node_saw = []

    async def node_side(conn):
        if side == "node":
            await conn.recv(100)
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return
        try:
            node_saw.append(await read_all(conn))
        except OSError as exc:
            node_saw.append(exc.errno)

    async with trio.open_nursery() as nursery:
        backend = await nursery.start(tcp_backend, node_side)
        address, server, resolver = await start_raw(nursery, backend)
        sock = await connect(address)
        with sock:
            await send_all(sock, b"ping")
            if side == "client":
                await wait_for(lambda: server.engine.active_sessions == 1
                               and resolver.nodes[address.encode()][0].rx == 4)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            else:
                with trio.fail_after(5):
                    try:
                        assert await sock.recv(100) == b""
                    except OSError:
                        pass  # the reset passed on as one: both fine
        await server.engine.wait_idle()
        if side == "client":
            await wait_for(lambda: node_saw)
            assert node_saw == [b"ping"]  # the node's side was closed, not left open
        nursery.cancel_scope.cancel()
    (node,) = resolver.nodes[address.encode()]
    assert node.ref == 0


@pytest.mark.parametrize("client_leaves", [True, False])
async def test_graceful_stop_waits_for_an_open_connection(lanes, caplog, client_leaves):
    """The drain waits for the client; one still there at the mercy's end is cut, and
    the log says how many were."""
    async with trio.open_nursery() as nursery:
        backend = await nursery.start(tcp_backend, echo)
        address, server, _ = await start_raw(nursery, backend)
        sock = await connect(address)
        with sock:
            await wait_for(lambda: server.engine.active_sessions == 1)
            server.stop_accepting()
            drained = []

            async def drain():
                with caplog.at_level(logging.WARNING, "brood.routers"):
                    drained.append(await server.drain(5 if client_leaves else 0.2))

            nursery.start_soon(drain)
            await trio.testing.wait_all_tasks_blocked()
            assert drained == []  # waits for this client
            if client_leaves:
                assert await exchange(sock, b"bye") == b"bye"
            else:
                await wait_for(lambda: drained)  # the mercy's end, the client still there
        await wait_for(lambda: drained)
        assert drained == [client_leaves]
        nursery.cancel_scope.cancel()
    cut = "rawrouter: reload mercy (0.2s) is over: 1 sessions cut"
    assert (cut in caplog.messages) is not client_leaves


async def test_a_stray_event_while_connecting_moves_nothing(lanes):
    full, fillers = full_backlog()
    try:
        async with trio.open_nursery() as nursery:
            address, _, _ = await start_raw(nursery, "{}:{}".format(*full.getsockname()))
            sock = await connect(address)
            with sock:
                (lane,) = lanes
                await wait_for(lambda: lane.conns)
                (conn,) = lane.conns.values()
                assert conn.state == lane_module.CONNECTING
                # an event meant for an earlier socket with this fd number
                lane._node_event(conn, select.EPOLLOUT)
                assert conn.state == lane_module.CONNECTING
                assert (conn.node.requests, conn.node.ref, conn.counted) == (0, 0, False)
            nursery.cancel_scope.cancel()
    finally:
        for filler in fillers:
            filler.close()
        full.close()


@contextlib.contextmanager
def a_lane_fed_by_hand(nursery, node_address: str):
    """A RawLane that is not run (the test feeds its events) with one client taken:
    (lane, its connection, the client's socket, the engine, the resolver)."""
    listener = bind_listener("rawrouter")
    resolver = DictResolver({listener.name.encode(): [node_address]})
    engine = Engine(RouterSettings("rawrouter"), resolver)
    lane = rawrouter_lane.RawLane(rawrouter.RawRouter(engine, Config(), listener), nursery)
    client = socket.create_connection(listener.sock.getsockname())
    try:
        lane.take(*listener.sock.accept())
        (conn,) = lane.conns.values()
        assert conn.state == lane_module.CONNECTING
        yield lane, conn, client, engine, resolver
        lane._drop(conn)
        assert engine.active_sessions == 0
    finally:
        client.close()
        lane.ep.close()
        listener.sock.close()


async def test_a_node_that_spoke_before_its_connect_was_seen_is_read_at_once():
    """The first event of a connect can say "readable" too (a banner that came before
    the lane looked): no later edge comes for those bytes."""
    greeted = trio.Event()

    async def greet(conn):
        await send_all(conn, b"220 hi\r\n")
        greeted.set()
        await conn.recv(10)

    async with trio.open_nursery() as nursery:
        backend = await nursery.start(tcp_backend, greet)
        with a_lane_fed_by_hand(nursery, backend) as (lane, conn, client, _, _):
            with trio.fail_after(5):
                await greeted.wait()
            lane._node_event(conn, select.EPOLLOUT | select.EPOLLIN)
            client.setblocking(False)
            assert client.recv(100) == b"220 hi\r\n"  # relayed within that one event
        nursery.cancel_scope.cancel()


async def test_unix_node_is_relayed_in_the_lane(tmp_path, resumed):
    path = str(tmp_path / "node.sock")
    lsock = trio.socket.socket(socket.AF_UNIX)
    await lsock.bind(path)
    lsock.listen(8)

    async def serve_one():
        conn, _ = await lsock.accept()
        with conn:
            await echo(conn)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(serve_one)
        address, _, _ = await start_raw(nursery, path)
        sock = await connect(address)
        with sock:
            assert await exchange(sock, b"over unix") == b"over unix"
        nursery.cancel_scope.cancel()
    lsock.close()
    assert resumed == []


async def test_out_of_fds_pauses_accepting_for_a_second(caplog, lanes):
    """EMFILE on accept: one log line, the connection stays queued, and the lane takes
    it once the pause is over and fds are free again."""
    async with trio.open_nursery() as nursery:
        backend = await nursery.start(tcp_backend, echo)
        address, _, _ = await start_raw(nursery, backend)
        (lane,) = lanes
        host, port = address.rsplit(":", 1)
        sock = trio.socket.socket()
        with sock, caplog.at_level(logging.ERROR, "brood.routers"):
            with FdLimit(0):  # the router's accept gets EMFILE
                await sock.connect((host, int(port)))
                await wait_for(lambda: lane.accept_paused)
            assert await exchange(sock, b"later") == b"later"  # taken after the pause
        assert not lane.accept_paused
        nursery.cancel_scope.cancel()
    assert caplog.text.count("pausing") == 1


async def test_out_of_fds_for_the_node_socket_closes_and_blames_no_node(caplog, lanes):
    async with trio.open_nursery() as nursery:
        backend = await nursery.start(tcp_backend, echo)
        address, server, resolver = await start_raw(nursery, backend)
        host, port = address.rsplit(":", 1)
        sock = trio.socket.socket()
        with sock, caplog.at_level(logging.WARNING, "brood.routers"):
            with FdLimit(1):  # the accept fits, the node's socket does not
                await sock.connect((host, int(port)))
                with trio.fail_after(5):
                    assert await sock.recv(10) == b""  # closed
            await server.engine.wait_idle()
        nursery.cancel_scope.cancel()
    (node,) = resolver.nodes[address.encode()]
    assert (node.failcnt, node.grace_until, node.requests, node.ref) == (0, 0, 0, 0)
    assert f"503 no socket for node {backend}: Too many open files" in caplog.text


@pytest.fixture(params=["lane", "general"])
def path(request, monkeypatch) -> str:
    """Each case on the lane and on the general path (no lane at all)."""
    if request.param == "general":
        monkeypatch.setattr(rawrouter.RawRouter, "lane_for", lambda self, sessions: None)
    return request.param


class Collector:
    """A node that keeps what it reads (``got``; after ``banner``, when given) and says
    ``done`` once ``expected`` bytes are in, or at the EOF when ``then_eof``."""

    def __init__(self, expected: int, then_eof: bool, banner: bytes = b"") -> None:
        self.expected, self.then_eof, self.banner = expected, then_eof, banner
        self.got = bytearray()
        self.done = trio.Event()

    async def __call__(self, conn) -> None:
        if self.banner:
            await send_all(conn, self.banner)
        while data := await conn.recv(1 << 16):
            self.got.extend(data)
            if len(self.got) >= self.expected and not self.then_eof:
                self.done.set()
        self.done.set()


@pytest.mark.parametrize("then_eof", [False, True], ids=["open", "then-eof"])
@pytest.mark.parametrize("bulk", [0, 300_000], ids=["short", "after-bulk"])
async def test_urgent_byte_is_relayed_in_its_place(path, bulk, then_eof):
    """MSG_OOB (telnet's interrupt): reads stop short at the urgent mark and splice never
    crosses it (EAGAIN there, or 0 when the EOF is queued behind it); the relay goes on,
    the urgent byte as a plain byte of the stream."""
    sent = b"A" * bulk + b"A" * 10 + b"!" + b"B" * 10
    node_side = Collector(len(sent), then_eof, banner=b"hello\n")

    async with trio.open_nursery() as nursery:
        backend = await nursery.start(tcp_backend, node_side)
        address, _, _ = await start_raw(nursery, backend)
        sock = await connect(address)
        with sock:
            with trio.fail_after(5):
                assert await sock.recv(100) == b"hello\n"
            await send_all(sock, b"A" * bulk)  # a bulk direction is spliced from here on
            raw = sock._sock  # the sends in a row, no yield between
            raw.send(b"A" * 10)
            raw.send(b"!", socket.MSG_OOB)
            raw.send(b"B" * 10)
            if then_eof:
                raw.shutdown(socket.SHUT_WR)
            with trio.fail_after(5):  # no later byte to raise a new edge
                await node_side.done.wait()
        nursery.cancel_scope.cancel()
    assert bytes(node_side.got) == sent


@pytest.mark.parametrize("then_eof", [False, True], ids=["open", "then-eof"])
async def test_urgent_mark_behind_more_than_a_read_when_the_lane_first_looks(then_eof):
    """Everything (300 kB, the urgent byte, the tail, maybe the EOF) is in the router's
    socket before the lane reads a byte: the first full read turns splicing on, and
    splice stops at the mark."""
    sent = b"A" * 300_000 + b"!" + b"B" * 10
    node_side = Collector(len(sent), then_eof)

    async with trio.open_nursery() as nursery:
        node_address = await nursery.start(tcp_backend, node_side)
        lsock = socket.socket()
        lsock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)  # holds it all
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(8)
        name = f"127.0.0.1:{lsock.getsockname()[1]}"
        engine = Engine(RouterSettings("rawrouter"),
                        DictResolver({name.encode(): [node_address]}))
        router = rawrouter.RawRouter(engine, Config(), Listener(lsock, name, "rawrouter"))
        lane = rawrouter_lane.RawLane(router, nursery)
        client = socket.create_connection(lsock.getsockname())
        try:
            lane.take(*lsock.accept())
            (conn,) = lane.conns.values()
            client.sendall(b"A" * 300_000)
            client.send(b"!", socket.MSG_OOB)
            client.sendall(b"B" * 10)
            if then_eof:
                client.shutdown(socket.SHUT_WR)
            await wait_for(lambda: queued(conn.fd) >= 300_000)  # nothing read yet
            nursery.start_soon(lane.run)  # the real lane from here on
            with trio.fail_after(5):
                await node_side.done.wait()
        finally:
            client.close()
            lsock.close()
        nursery.cancel_scope.cancel()
    assert bytes(node_side.got) == sent


def queued(fd: int) -> int:
    """Bytes waiting in a socket's receive queue (FIONREAD)."""
    return struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, bytes(4)))[0]


async def test_a_client_that_takes_nothing_is_closed_after_one_timeout(path, caplog):
    payload = os.urandom(32 << 20)

    async def flood(conn):
        with contextlib.suppress(OSError):
            await send_all(conn, payload)
        await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        backend = await nursery.start(tcp_backend, flood)
        address, server, resolver = await start_raw(nursery, backend, timeout=2)
        sock = trio.socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        host, port = address.rsplit(":", 1)
        await sock.connect((host, int(port)))  # and reads nothing
        with sock:
            await wait_for(lambda: server.engine.active_sessions == 1)
            started = trio.current_time()
            with caplog.at_level(logging.WARNING, "brood.routers"):
                with trio.fail_after(10):
                    await server.engine.wait_idle()
            took = trio.current_time() - started
            received = 0
            with trio.fail_after(10), contextlib.suppress(ConnectionResetError):
                while data := await sock.recv(1 << 20):
                    received += len(data)
        nursery.cancel_scope.cancel()
    assert took < 2 + 1 + 0.5, took  # the timeout, the sweep's second, slack
    (node,) = resolver.nodes[address.encode()]
    assert node.tx == received  # bytes delivered, not bytes read and dropped at the close


async def test_a_node_that_resets_as_it_accepts_served_not_failed(path):
    async def resetting(task_status=trio.TASK_STATUS_IGNORED):
        lsock = trio.socket.socket()
        await lsock.bind(("127.0.0.1", 0))
        lsock.listen(16)
        with lsock:
            task_status.started(f"127.0.0.1:{lsock.getsockname()[1]}")
            while True:
                conn, _ = await lsock.accept()
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                conn.close()

    async with trio.open_nursery() as nursery:
        node_address = await nursery.start(resetting)
        address, server, resolver = await start_raw(nursery, node_address)
        for _ in range(2):
            sock = await connect(address)
            with sock, trio.fail_after(5), contextlib.suppress(ConnectionResetError):
                assert await sock.recv(10) == b""  # the close passed on
        await server.engine.wait_idle()
        nursery.cancel_scope.cancel()
    (node,) = resolver.nodes[address.encode()]
    assert (node.requests, node.failcnt, node.grace_until, node.ref) == (2, 0, 0, 0)


async def test_a_reset_seen_as_the_connect_completes_is_a_served_connection():
    """The node accepted and reset before the lane looked at its connect (SO_ERROR says
    ECONNRESET, and reading it clears it): served and ended on both sides, as a reset
    ends a relay, not a failed connect (no mark, no retry)."""
    reset_done = trio.Event()

    async def resetting(task_status=trio.TASK_STATUS_IGNORED):
        lsock = trio.socket.socket()
        await lsock.bind(("127.0.0.1", 0))
        lsock.listen(4)
        with lsock:
            task_status.started(f"127.0.0.1:{lsock.getsockname()[1]}")
            conn, _ = await lsock.accept()
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()
            reset_done.set()

    async with trio.open_nursery() as nursery:
        node_address = await nursery.start(resetting)
        with a_lane_fed_by_hand(nursery, node_address) as (lane, conn, client, _, resolver):
            with trio.fail_after(5):
                await reset_done.wait()
            lane._node_event(conn, select.EPOLLOUT | select.EPOLLERR | select.EPOLLHUP)
            client.settimeout(5)
            assert client.recv(10) == b""  # the node's reset ends the client's side too
            assert conn.up_way is not None  # relayed: not handed over as a failed connect
            assert lane.conns == {}  # both sides closed, not a half-close left open
        nursery.cancel_scope.cancel()
    (node,) = next(iter(resolver.nodes.values()))
    assert (node.requests, node.failcnt, node.ref) == (1, 0, 0)


async def test_a_client_that_stops_reading_holds_little_in_python(lanes):
    """A node that sends much to a client that reads nothing: the lane splices no more
    than the client's send buffer has room for, so what waits in Python is about
    SLOW_TAKE, not a pipeful (a pipeful each made 150 stalled clients cost 70 MB)."""
    from brood.routers.net.relay import SLOW_TAKE

    async def flood(conn) -> None:
        chunk = b"x" * (1 << 20)
        with contextlib.suppress(OSError):
            for _ in range(16):
                await send_all(conn, chunk)

    async with trio.open_nursery() as nursery:
        backend = await nursery.start(tcp_backend, flood)
        address, _, _ = await start_raw(nursery, backend)
        host, port = address.rsplit(":", 1)
        sock = trio.socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        with sock:
            await sock.connect((host, int(port)))
            (lane,) = lanes
            def held() -> list[int]:
                return [len(c.down_way.pending) for c in lane.conns.values()
                        if c.down_way is not None and c.down_way.pending]

            await wait_for(held)
            assert 0 < held()[0] <= SLOW_TAKE
        nursery.cancel_scope.cancel()


async def test_a_node_that_stops_reading_holds_little_in_python(lanes):
    """The same toward a node: an upload to a node that reads nothing waits in the
    kernel, not a pipeful in Python (100 such uploads cost 67 MB)."""
    from brood.routers.net.relay import SLOW_TAKE

    async def deaf(conn) -> None:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        backend = await nursery.start(tcp_backend, deaf)
        address, _, _ = await start_raw(nursery, backend)
        sock = await connect(address)
        with sock:
            async def upload():
                with contextlib.suppress(OSError):
                    await send_all(sock, b"x" * (16 << 20))

            nursery.start_soon(upload)
            (lane,) = lanes

            def held() -> list[int]:
                return [len(c.up_way.pending) for c in lane.conns.values()
                        if c.up_way is not None and c.up_way.pending]

            await wait_for(held)
            assert 0 < held()[0] <= SLOW_TAKE
            nursery.cancel_scope.cancel()


async def test_a_node_that_reads_slowly_is_not_cut_as_idle(path, caplog):
    """An upload to a node that reads a little at a time, slower than the timeout lets
    the kernel wake a blocked sender (it waits for a third of a large buffer): still
    moving, so not idle, also once the client's last byte went to the node's kernel
    queue. 2 MiB at 16 KiB per 10 ms, 0.3 s timeout."""
    total = 2 << 20
    got = []

    async def slow(conn) -> None:
        received = 0
        while data := await conn.recv(16384):
            received += len(data)
            await trio.sleep(0.01)
        got.append(received)
        await send_all(conn, b"done")

    async with trio.open_nursery() as nursery:
        backend = await nursery.start(tcp_backend, slow)
        address, server, _ = await start_raw(nursery, backend, timeout=0.3)
        sock = await connect(address)
        with sock, caplog.at_level(logging.WARNING, "brood.routers"):
            reply = await exchange(sock, b"x" * total)
        nursery.cancel_scope.cancel()
    assert reply == b"done" and got == [total]
    assert not [r for r in caplog.records if "idle" in r.getMessage()]
