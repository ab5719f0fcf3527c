"""Client connections spread evenly over a router's processes (brood.routers.net.spread):
routers sharing one listening socket, in one test process, each with its entry of one
table; then two real router processes under the master."""

from __future__ import annotations

import json
import logging
import socket
from contextlib import asynccontextmanager

import trio
from _broodkit import read_stats, wait_until
from _httpkit import HttpClient, node_server
from _routerkit import DictResolver, FdLimit, bind_listener, send_all, wait_for

from brood.routers import lane as lane_module
from brood.routers.engine import Engine, RouterSettings
from brood.routers.http.router import HttpRouter
from brood.routers.http.settings import HttpSettings
from brood.routers.lane import Lane
from brood.routers.net import spread as spread_module
from brood.routers.net.listen import ACCEPT_BATCH, accept_loop
from brood.routers.net.spread import SLACK, Spread, SpreadTable

HOST = b"spread.test"
GET = b"GET / HTTP/1.1\r\nHost: " + HOST + b"\r\n\r\n"


@asynccontextmanager
async def routers_on_one_socket(members: list[Spread], node: str, listener):
    """One HTTP router (engine, fast lane) per table entry, all accepting on
    ``listener``, as the processes of a router kind do; their handlers."""
    handlers = []
    async with trio.open_nursery() as nursery:
        for member in members:
            engine = Engine(RouterSettings("http", timeout=5, max_retries=0),
                            DictResolver({HOST: [node]}))
            engine.spread = member
            handler = HttpRouter(engine, HttpSettings(server_name=b"vm"), listener)
            lsock = trio.socket.from_stdlib_socket(listener.sock.dup())
            nursery.start_soon(_accept_until_cancelled, lsock, handler, nursery, member)
            handlers.append(handler)
        yield handlers
        nursery.cancel_scope.cancel()


async def _accept_until_cancelled(lsock, handler, nursery, member) -> None:
    with lsock:
        await accept_loop(lsock, handler, nursery, spread=member)


async def connect(address: str, count: int) -> list[trio.socket.SocketType]:
    host, port = address.rsplit(":", 1)
    socks = []
    for _ in range(count):
        sock = trio.socket.socket()
        await sock.connect((host, int(port)))
        socks.append(sock)
    return socks


async def ask_each(socks: list[trio.socket.SocketType]) -> None:
    """One GET on each connection, answered; the connections stay open."""
    for sock in socks:
        client = HttpClient(sock)
        await client.send(GET)
        head, body = await client.response(limit=5)
        assert head.startswith(b"HTTP/1.1 200") and body == b"ok\n"


def accepting(table: SpreadTable, count: int) -> list[Spread]:
    """The entries of ``count`` processes that accept (they beat)."""
    members = [table.member(i) for i in range(1, count + 1)]
    for member in members:
        member.beat()
    return members


async def test_connections_queued_at_once_are_shared_out_evenly():
    """40 connections queued before two routers accept: each takes its share (without
    the table, ACCEPT_BATCH at a time: 16 and 16, then 8)."""
    members = accepting(SpreadTable(2), 2)
    listener = bind_listener("http")
    async with trio.open_nursery() as nursery:
        node = await nursery.start(node_server)
        socks = await connect(listener.name, 40)  # in the backlog before any accept
        async with routers_on_one_socket(members, node.address, listener) as handlers:
            await ask_each(socks)
            counts = [len(h.lane.conns) for h in handlers]
            assert sum(counts) == 40
            assert abs(counts[0] - counts[1]) <= SLACK + 2, counts
            assert [m.open for m in members] == counts
        for sock in socks:
            sock.close()
        nursery.cancel_scope.cancel()
    listener.sock.close()


async def test_a_sibling_that_never_accepts_delays_silent_clients_once(monkeypatch):
    """100 clients queued that send nothing (no data to wake the lane), and a sibling
    entry that holds none and never accepts: all are taken, a batch per two DEFERs, not
    one per DEFER, and none is left in the queue (the listener's edge is long spent)."""
    monkeypatch.setattr(spread_module, "STALE_MS", 60_000)  # its heartbeat stays fresh
    member, _silent = accepting(SpreadTable(2), 2)
    deferred = []
    real_defer = Lane._defer

    def counting(self, fd, *seen):
        deferred.append(fd)
        real_defer(self, fd, *seen)

    monkeypatch.setattr(Lane, "_defer", counting)
    listener = bind_listener("http")
    count = 100
    async with trio.open_nursery() as nursery:
        node = await nursery.start(node_server)
        socks = await connect(listener.name, count)
        async with routers_on_one_socket([member], node.address, listener) as handlers:
            with trio.fail_after(5):
                while len(handlers[0].lane.conns if handlers[0].lane else ()) < count:
                    await trio.sleep(0.005)
            assert member.open == count
            assert 1 <= len(deferred) <= 2 * (count // ACCEPT_BATCH + 2), len(deferred)
            await ask_each(socks[-1:])  # and they are served
        for sock in socks:
            sock.close()
        nursery.cancel_scope.cancel()
    listener.sock.close()


async def test_new_connections_on_a_deferred_listener_do_not_restart_its_wait(monkeypatch):
    """Connections arriving while the lane waits on a sibling (one that never accepts):
    their edges leave the wait as it is (each one used to start it over, so a steady
    stream kept the lane from ever taking one), and every connection is taken."""
    monkeypatch.setattr(spread_module, "STALE_MS", 60_000)
    member, _silent = accepting(SpreadTable(2), 2)
    restarted = []
    real_accept = Lane._accept

    def watching(self, fd, deferred=None):
        if deferred is None and fd in self.deferred:
            restarted.append(fd)
        real_accept(self, fd, deferred)

    monkeypatch.setattr(Lane, "_accept", watching)
    listener = bind_listener("http")
    async with trio.open_nursery() as nursery:
        node = await nursery.start(node_server)
        async with routers_on_one_socket([member], node.address, listener) as handlers:
            held = await connect(listener.name, SLACK + 2)
            await ask_each(held)  # not its turn from here: the sibling holds none
            assert not member.my_turn()
            with trio.fail_after(5):
                stream = [sock for _ in range(30) for sock in await connect(listener.name, 1)]
                while member.open < len(held) + len(stream):
                    await trio.sleep(0.005)
            assert restarted == []
            assert len(handlers[0].lane.conns) == len(held) + len(stream)
            for sock in held + stream:
                sock.close()
        nursery.cancel_scope.cancel()
    listener.sock.close()


async def test_a_deferred_listener_takes_connections_once_it_is_its_turn(monkeypatch):
    """A connection left to a sibling, then the sibling takes its share: the next
    connection's edge has both taken at once, not at the deferred retry."""
    monkeypatch.setattr(spread_module, "STALE_MS", 60_000)
    monkeypatch.setattr(lane_module, "DEFER", 60.0)  # the retry would come too late
    member, sibling = accepting(SpreadTable(2), 2)
    listener = bind_listener("http")
    async with trio.open_nursery() as nursery:
        node = await nursery.start(node_server)
        async with routers_on_one_socket([member], node.address, listener) as handlers:
            held = await connect(listener.name, SLACK + 1)  # taken: the next is left over
            await ask_each(held)
            lane = handlers[0].lane
            waiting = await connect(listener.name, 1)
            with trio.fail_after(5):
                while not lane.deferred:
                    await trio.sleep(0.005)
            for _ in range(len(held) + 2):
                sibling.opened()  # it took its share: this process's turn again
            with trio.fail_after(5):
                later = await connect(listener.name, 1)
                await ask_each(waiting + later)
            assert member.open == len(held) + 2
            for sock in held + waiting + later:
                sock.close()
        nursery.cancel_scope.cancel()
    listener.sock.close()


async def test_an_accept_pause_lasts_while_connections_are_left_to_a_sibling(monkeypatch, caplog):
    """Out of fds while connections keep coming and a sibling holds fewer: one log line
    and one pause (not a line and a retry per connection), then all are taken."""
    monkeypatch.setattr(spread_module, "STALE_MS", 60_000)
    member, _silent = accepting(SpreadTable(2), 2)
    listener = bind_listener("http")
    host, port = listener.name.rsplit(":", 1)
    async with trio.open_nursery() as nursery:
        node = await nursery.start(node_server)
        async with routers_on_one_socket([member], node.address, listener) as handlers:
            held = await connect(listener.name, SLACK + 2)
            await ask_each(held)
            lane = handlers[0].lane
            late = [trio.socket.socket() for _ in range(20)]  # their fds before the limit
            with caplog.at_level(logging.ERROR, "brood.routers"), FdLimit(0):
                await late[0].connect((host, int(port)))
                await wait_for(lambda: lane.accept_paused)
                for sock in late[1:]:  # a connection every few ms, well within the pause
                    await sock.connect((host, int(port)))
                    await trio.sleep(0.003)
                assert lane.accept_paused
            assert caplog.text.count("pausing") == 1, caplog.text
            with trio.fail_after(5):
                while member.open < len(held) + len(late):
                    await trio.sleep(0.005)
            for sock in held + late:
                sock.close()
        nursery.cancel_scope.cancel()
    listener.sock.close()


async def test_general_path_counts_each_connection_as_it_accepts():
    """Two plain accept loops (no fast lane) and 24 connections queued before they
    start: shared out as evenly as by the lanes (a count taken only when a connection's
    task starts would let the first loop take a whole batch)."""
    members = accepting(SpreadTable(2), 2)
    held = trio.Event()
    served = [0, 0]

    def holder(i):
        async def hold(conn, peer):
            served[i] += 1
            await send_all(conn, b"hi")
            await held.wait()
        return hold

    listener = bind_listener("plain")
    async with trio.open_nursery() as nursery:
        socks = await connect(listener.name, 24)
        for i, member in enumerate(members):
            lsock = trio.socket.from_stdlib_socket(listener.sock.dup())
            nursery.start_soon(_accept_until_cancelled, lsock, holder(i), nursery, member)
        with trio.fail_after(5):
            for sock in socks:
                assert await sock.recv(2) == b"hi"
        assert sum(served) == 24 and [m.open for m in members] == served
        assert abs(served[0] - served[1]) <= SLACK + 2, served
        held.set()
        for sock in socks:
            sock.close()
        nursery.cancel_scope.cancel()
    listener.sock.close()


async def test_a_sibling_that_never_accepts_only_delays_the_general_path(monkeypatch):
    """Without a fast lane (a plain handler), the accept loop defers the same way."""
    monkeypatch.setattr(spread_module, "STALE_MS", 60_000)
    member, _silent = accepting(SpreadTable(2), 2)
    asked = []
    real_turn = member.my_turn

    def turn():
        answer = real_turn()
        asked.append(answer)
        return answer

    member.my_turn = turn  # type: ignore[method-assign]
    held = trio.Event()

    async def hold(conn, peer):
        await send_all(conn, b"hi")
        await held.wait()

    listener = bind_listener("plain")
    async with trio.open_nursery() as nursery:
        lsock = trio.socket.from_stdlib_socket(listener.sock)
        nursery.start_soon(_accept_until_cancelled, lsock, hold, nursery, member)
        socks = []
        with trio.fail_after(5):
            for _ in range(SLACK + 4):
                socks += await connect(listener.name, 1)
                assert await socks[-1].recv(2) == b"hi"
        assert member.open == len(socks)
        assert False in asked  # some were left to the sibling first
        held.set()
        for sock in socks:
            sock.close()
        nursery.cancel_scope.cancel()


# -- real processes ---------------------------------------------------------------------------
def test_two_router_processes_hold_even_shares_of_a_connection_pool(start_brood, hello_app):
    """48 keep-alive connections opened one after the other: each process holds about
    half, as its stats say (``connections`` in the ``processes`` list)."""
    pool = start_brood("--master", "--socket", "127.0.0.1:0", "--processes", "2",
                       "--wsgi-file", hello_app, "--disable-logging")
    router = start_brood("--master", "--http", "127.0.0.1:0", "--http-processes", "2",
                         "--http-keepalive", "--http-to", pool.address_of(),
                         "--http-stats", "127.0.0.1:0")
    front = router.address_of("http socket 0")

    def processes() -> list[dict]:
        return json.loads(read_stats(router.address_of("http stats server")))["processes"]

    # Each process publishes its figures once its accept loops run (no request sent:
    # a stream of short connections first would turn the balancing off for a while).
    wait_until(lambda: len(processes()) == 2, timeout=30, interval=0.01,
               what="both processes accepting")
    host, port = front.rsplit(":", 1)
    socks = [socket.create_connection((host, int(port)), timeout=10) for _ in range(48)]
    try:
        for sock in socks:  # /big: the demo's "/" ends its answer with a close
            sock.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
        for sock in socks:
            data = b""
            while not data.endswith(b"x" * 65536):
                chunk = sock.recv(1 << 17)
                assert chunk, data[:200]
                data += chunk
        held = wait_until(lambda: (c := [p["connections"] for p in processes()])
                          and sum(c) == 48 and c, timeout=10,
                          what="the 48 connections in the stats")
        assert abs(held[0] - held[1]) <= 8, held
    finally:
        for sock in socks:
            sock.close()
