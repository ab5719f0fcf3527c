"""The accept loop without a fast lane: what an accepted connection starts with."""

from __future__ import annotations

import logging
import os
import resource
import socket

import pytest
import trio

from brood.routers.net import listen
from brood.routers.net.listen import accept_loop
from brood.sockets import bind_listener


def _foreign_listener() -> socket.socket:
    """A listening socket made elsewhere (``fd://``): no TCP_NODELAY."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


@pytest.mark.parametrize("made_by", ["brood", "elsewhere"])
async def test_accepted_connections_have_no_nagle(monkeypatch, made_by):
    """A listener brood binds has TCP_NODELAY from before ``listen``, so every
    connection has it, even one queued before the router came, with no setsockopt of
    its own; one made elsewhere without it gets a setsockopt per connection."""
    per_connection: list = []
    real = listen.set_nodelay
    monkeypatch.setattr(listen, "set_nodelay", lambda s: per_connection.append(s) or real(s))
    seen: list[int] = []
    done = trio.Event()

    async def handler(conn: trio.socket.SocketType, peer) -> None:
        seen.append(conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        done.set()

    listener = (bind_listener("127.0.0.1:0", "http").sock if made_by == "brood"
                else _foreign_listener())
    listener.setblocking(False)
    with socket.create_connection(listener.getsockname()):  # queued before the loop
        async with trio.open_nursery() as nursery:
            with trio.socket.from_stdlib_socket(listener) as lsock:
                await nursery.start(accept_loop, lsock, handler, nursery)
                with trio.fail_after(5):
                    await done.wait()
                assert lsock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
                nursery.cancel_scope.cancel()
    assert seen == [1]
    assert len(per_connection) == (0 if made_by == "brood" else 1)


async def test_out_of_fds_is_one_log_line_while_it_lasts(monkeypatch, caplog):
    """EMFILE on accept: the loop pauses and retries; one line names the address, not one
    per retry, and the queued connection is served once fds are free."""
    monkeypatch.setattr(listen, "_RESOURCE_PAUSE", 0.01)
    done = trio.Event()
    retries = 0
    real_sleep = trio.sleep

    async def counted_sleep(delay):
        nonlocal retries
        if delay == 0.01:
            retries += 1
        await real_sleep(delay)

    monkeypatch.setattr(listen.trio, "sleep", counted_sleep)

    async def handler(conn: trio.socket.SocketType, peer) -> None:
        done.set()

    listener = bind_listener("127.0.0.1:0", "http").sock
    listener.setblocking(False)
    host, port = listener.getsockname()
    address = f"{host}:{port}"
    limits = resource.getrlimit(resource.RLIMIT_NOFILE)
    with caplog.at_level(logging.ERROR, "brood.routers"), socket.socket() as client:
        async with trio.open_nursery() as nursery:
            with trio.socket.from_stdlib_socket(listener) as lsock:
                await nursery.start(accept_loop, lsock, handler, nursery)
                lowest = os.dup(0)
                os.close(lowest)
                resource.setrlimit(resource.RLIMIT_NOFILE, (lowest, limits[1]))
                try:
                    client.connect(listener.getsockname())  # fd made before the limit bites
                    with trio.fail_after(5):
                        while retries < 5:
                            await real_sleep(0.005)
                finally:
                    resource.setrlimit(resource.RLIMIT_NOFILE, limits)
                with trio.fail_after(5):
                    await done.wait()
                nursery.cancel_scope.cancel()
    lines = [r.getMessage() for r in caplog.records if "pausing" in r.getMessage()]
    assert len(lines) == 1 and address in lines[0], lines
