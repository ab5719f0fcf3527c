"""The rawrouter on loopback: byte pipe with half-close, node-first protocols, xclient,
no-node close (the fast lane's own cases, bulk by splice among them:
test_rawrouter_lane)."""

from __future__ import annotations

import hashlib
import os
import socket
from functools import partial

import trio
from _routerkit import DictResolver, bind_listener, connect, read_all, send_all

from brood.config.model import Config
from brood.listener import Listener
from brood.routers.engine import Engine, RouterSettings
from brood.routers.process import serve_router


async def tcp_backend(conversation, *, task_status=trio.TASK_STATUS_IGNORED):
    """Runs ``conversation(conn)`` for each connection."""
    lsock = trio.socket.socket()
    await lsock.bind(("127.0.0.1", 0))
    lsock.listen(16)

    async def serve(conn):
        with conn:
            await conversation(conn)

    with lsock:
        task_status.started(f"127.0.0.1:{lsock.getsockname()[1]}")
        async with trio.open_nursery() as nursery:
            while True:
                conn, _ = await lsock.accept()
                nursery.start_soon(serve, conn)


async def digest_after_eof(conn):
    """Reads to EOF (the client's half-close), then answers the sha256 and closes."""
    data = await read_all(conn, 30)
    await send_all(conn, hashlib.sha256(data).hexdigest().encode())


async def start_raw(nursery, backend_address, cfg=None, **settings):
    """A rawrouter to ``backend_address`` (a node name, or a list of them)."""
    listener = bind_listener("rawrouter")
    names = [backend_address] if isinstance(backend_address, str) else backend_address
    resolver = DictResolver({listener.name.encode(): names})
    engine = Engine(RouterSettings("rawrouter", **settings), resolver)
    server = await nursery.start(
        partial(serve_router, "rawrouter", cfg or Config(), [listener], engine=engine))
    return listener.name, server, resolver


async def test_half_close_both_ways():
    payload = os.urandom(300_000)
    async with trio.open_nursery() as nursery:
        backend = await nursery.start(tcp_backend, digest_after_eof)
        address, server, resolver = await start_raw(nursery, backend)
        sock = await connect(address)
        with sock:
            await send_all(sock, payload)
            sock.shutdown(socket.SHUT_WR)  # the node must see EOF and still answer
            assert await read_all(sock) == hashlib.sha256(payload).hexdigest().encode()
        await server.engine.wait_idle()
        nursery.cancel_scope.cancel()
    (node,) = resolver.nodes[address.encode()]
    assert (node.requests, node.ref, node.rx, node.tx) == (1, 0, len(payload), 64)


async def test_node_speaks_first():
    async def banner(conn):
        await send_all(conn, b"220 hello\r\n")
        assert await conn.recv(100) == b"QUIT\r\n"
        await send_all(conn, b"221 bye\r\n")

    async with trio.open_nursery() as nursery:
        backend = await nursery.start(tcp_backend, banner)
        address, _, _ = await start_raw(nursery, backend)
        sock = await connect(address)
        with sock:
            with trio.fail_after(5):
                assert await sock.recv(100) == b"220 hello\r\n"  # nothing sent yet
            await send_all(sock, b"QUIT\r\n")
            assert await read_all(sock) == b"221 bye\r\n"
        nursery.cancel_scope.cancel()


async def test_xclient_after_banner():
    seen = []

    async def smtp(conn):
        await send_all(conn, b"220 first greeting\r\n")
        seen.append(await conn.recv(100))
        await send_all(conn, b"220 second greeting\r\n")
        seen.append(await read_all(conn))

    cfg = Config.from_dict({"rawrouter-xclient": True})
    async with trio.open_nursery() as nursery:
        backend = await nursery.start(tcp_backend, smtp)
        address, _, _ = await start_raw(nursery, backend, cfg)
        sock = await connect(address)
        with sock:
            with trio.fail_after(5):
                assert await sock.recv(100) == b"220 second greeting\r\n"
            await send_all(sock, b"EHLO x\r\n")
            sock.shutdown(socket.SHUT_WR)
            assert await read_all(sock) == b""
        nursery.cancel_scope.cancel()
    assert seen == [b"XCLIENT ADDR=127.0.0.1\r\n", b"EHLO x\r\n"]


async def smtp_through(listener, peer_family, address):
    """A greeting, one client line, through an xclient rawrouter on ``listener``: what
    the node read (its XCLIENT line, if any, then the client's) and the client's first
    line."""
    seen = []

    async def smtp(conn):
        await send_all(conn, b"220 first greeting\r\n")
        line = await conn.recv(100)
        if line.startswith(b"XCLIENT"):
            seen.append(line)
            await send_all(conn, b"220 second greeting\r\n")
            line = b""
        seen.append(line + await read_all(conn))

    cfg = Config.from_dict({"rawrouter-xclient": True})
    async with trio.open_nursery() as nursery:
        backend = await nursery.start(tcp_backend, smtp)
        engine = Engine(RouterSettings("rawrouter"),
                        DictResolver({listener.name.encode(): [backend]}))
        await nursery.start(partial(serve_router, "rawrouter", cfg, [listener], engine=engine))
        sock = trio.socket.socket(peer_family)
        with sock:
            await sock.connect(address)
            with trio.fail_after(5):
                first = await sock.recv(100)
            await send_all(sock, b"EHLO x\r\n")
            sock.shutdown(socket.SHUT_WR)
            await read_all(sock)
        nursery.cancel_scope.cancel()
    return seen, first


async def test_xclient_from_a_unix_client_relays_plainly(tmp_path):
    """No IP address to give: no XCLIENT (uWSGI the same), never a made-up 127.0.0.1
    that the mail server would trust as local."""
    path = str(tmp_path / "raw.sock")
    lsock = socket.socket(socket.AF_UNIX)
    lsock.bind(path)
    lsock.listen(8)
    seen, first = await smtp_through(Listener(lsock, path, "rawrouter"), socket.AF_UNIX, path)
    assert first == b"220 first greeting\r\n" and seen == [b"EHLO x\r\n"]


async def test_xclient_from_an_ipv6_client_says_ipv6():
    lsock = socket.socket(socket.AF_INET6)
    lsock.bind(("::1", 0))
    lsock.listen(8)
    port = lsock.getsockname()[1]
    seen, _ = await smtp_through(Listener(lsock, f"[::1]:{port}", "rawrouter"),
                                 socket.AF_INET6, ("::1", port))
    assert seen == [b"XCLIENT ADDR=IPV6:::1\r\n", b"EHLO x\r\n"]


async def test_no_node_closes_and_keeps_serving():
    async with trio.open_nursery() as nursery:
        listener = bind_listener("rawrouter")
        engine = Engine(RouterSettings("rawrouter"), DictResolver({}))
        await nursery.start(partial(serve_router, "rawrouter", Config(), [listener],
                                    engine=engine))
        for _ in range(2):
            sock = await connect(listener.name)
            with sock:
                assert await read_all(sock) == b""
        nursery.cancel_scope.cancel()
