"""The per-request socket path: try-first socket calls, the inline connect, the pipe pool,
the one-way answer relay and the exact splice of a framed body (real loopback sockets)."""

from __future__ import annotations

import socket
import struct
from functools import partial

import pytest
import trio
import trio.testing

from brood.routers.net import relay as relay_mod
from brood.routers.net import sockio
from brood.routers.net.relay import relay, relay_answer, splice_exactly
from brood.routers.node import Node


async def _pair() -> tuple[trio.socket.SocketType, trio.socket.SocketType]:
    """A connected TCP pair on loopback (trio sockets)."""
    lsock = trio.socket.socket()
    await lsock.bind(("127.0.0.1", 0))
    lsock.listen(1)
    a = trio.socket.socket()
    await a.connect(lsock.getsockname())
    b, _ = await lsock.accept()
    lsock.close()
    return a, b


async def _read_all(sock: trio.socket.SocketType) -> bytes:
    out = bytearray()
    while data := await sock.recv(1 << 20):
        out += data
    return bytes(out)


async def test_recv_send_and_try_recv():
    a, b = await _pair()
    with a, b:
        assert sockio.try_recv(b, 10) is None  # nothing there yet: no wait, no error
        await sockio.send_all(a, b"hello")
        assert await sockio.recv(b, 10) == b"hello"
        big = b"z" * (8 << 20)  # more than the socket buffers: send_all has to wait

        async def reader() -> bytes:
            got = bytearray()
            while len(got) < len(big):
                got += await sockio.recv(b, 1 << 20)
            return bytes(got)

        got = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(lambda: sockio.send_all(a, big))
            got.append(await reader())
        assert got[0] == big
        a.shutdown(socket.SHUT_WR)
        assert await sockio.recv(b, 10) == b""
        assert sockio.try_recv(b, 10) == b""


async def test_open_tcp_connects_refuses_and_falls_back():
    lsock = trio.socket.socket()
    await lsock.bind(("127.0.0.1", 0))
    lsock.listen(4)
    port = lsock.getsockname()[1]
    with lsock:
        sock = await sockio.open_tcp(Node(f"127.0.0.1:{port}"), 5, None)
        with sock:
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
            conn, _ = await lsock.accept()
            with conn:
                await sockio.send_all(sock, b"ping")
                assert await conn.recv(10) == b"ping"
    with pytest.raises(ConnectionRefusedError):
        await sockio.open_tcp(Node(f"127.0.0.1:{port}"), 5, None)  # nothing listens now

    opened = []

    async def fallback(node: Node, timeout: float) -> str:
        opened.append(node.name)
        return "fallback socket"

    waited = []
    for name in ("/run/app.sock", "@abstract", "localhost:3031"):
        assert await sockio.open_tcp(Node(name), 5, fallback, lambda: waited.append(1)) \
            == "fallback socket"
    assert opened == ["/run/app.sock", "@abstract", "localhost:3031"]
    assert waited == [1, 1, 1]  # before_wait runs before the general path may wait


async def test_a_node_that_resets_as_the_connect_completes_is_connected(monkeypatch):
    """The node accepted and reset between the connect's two looks (SO_ERROR or the
    second connect says ECONNRESET): a served connection that ended at once, as the fast
    lanes take it, not a refused connect (which marks the node and retries)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    real = socket.socket

    class ResetInBetween(real):
        calls = 0

        def connect_ex(self, address):
            ResetInBetween.calls += 1
            if ResetInBetween.calls == 2:  # the handshake is done: accept, and reset
                conn, _ = listener.accept()
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                conn.close()
            return super().connect_ex(address)

    monkeypatch.setattr(sockio.socket, "socket", ResetInBetween)
    with listener:
        sock = await sockio.open_tcp(Node(f"127.0.0.1:{listener.getsockname()[1]}"), 5, None)
    monkeypatch.undo()
    with sock:
        assert ResetInBetween.calls == 2
        with pytest.raises(OSError):  # ended (ENOTCONN): the relay ends the session
            await sockio.recv(sock, 10)


async def test_splice_exactly_moves_the_length_and_no_more():
    src_w, src = await _pair()
    dst, dst_r = await _pair()
    with src_w, src, dst, dst_r:
        body = bytes(range(256)) * 1024  # 256 KiB
        touched = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(sockio.send_all, src_w, body + b"NEXT")
            moved = await splice_exactly(src, dst, len(body), lambda: touched.append(1))
        assert moved == len(body) and touched
        dst.shutdown(socket.SHUT_WR)
        assert await _read_all(dst_r) == body
        assert await src.recv(10) == b"NEXT"  # what follows the body stays unread
        src_w.close()
        assert await splice_exactly(src, dst_r, 100, lambda: None) == 0  # EOF at once
    assert relay_mod._PIPES  # the pipe went back to the pool, drained


async def _one_spliced_session() -> None:
    client, router_a = await _pair()
    router_b, node = await _pair()
    with client, router_a, router_b, node:
        results = []

        async def run() -> None:
            results.append(await relay(router_a, router_b, idle_timeout=60))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(run)
            await sockio.send_all(client, b"request")
            assert await node.recv(100) == b"request"
            await sockio.send_all(node, b"answer")
            assert await client.recv(100) == b"answer"
            client.shutdown(socket.SHUT_WR)
            node.shutdown(socket.SHUT_WR)
        assert results[0].spliced and not results[0].error


async def test_pipe_pool_is_reused_across_relays():
    relay_mod._drop_pipes()
    for _ in range(3):
        await _one_spliced_session()
        assert 1 <= len(relay_mod._PIPES) <= 2  # each direction took one and gave it back


async def test_idle_relays_hold_no_pipe(monkeypatch):
    """Sessions that moved a chunk and wait for the next hold no pipe: a pipe is taken
    per chunk and given back before the relay yields (kept across the yield, each of a
    thousand websockets echoing at once held one per direction: EMFILE for new clients)."""
    relay_mod._drop_pipes()
    opened = []
    real_open = relay_mod._open_pipe
    monkeypatch.setattr(relay_mod, "_open_pipe", lambda: opened.append(1) or real_open())
    sessions = [(*await _pair(), *await _pair()) for _ in range(20)]
    try:
        async with trio.open_nursery() as nursery:
            for _, router_a, router_b, _ in sessions:
                nursery.start_soon(partial(relay, router_a, router_b, idle_timeout=60))
            for client, _, _, _ in sessions:  # all at once: every relay wakes in one batch
                await sockio.send_all(client, b"frame")
            for _, _, _, node in sessions:
                assert await node.recv(100) == b"frame"
            await trio.testing.wait_all_tasks_blocked()
            assert len(opened) <= 2 and len(relay_mod._PIPES) == len(opened)
            nursery.cancel_scope.cancel()
    finally:
        for ends in sessions:
            for sock in ends:
                sock.close()


async def test_relay_answer_is_one_way_until_the_node_closes():
    client, router_a = await _pair()
    router_b, node = await _pair()
    with client, router_a, router_b, node:
        async with trio.open_nursery() as nursery:
            results = []

            async def run() -> None:
                results.append(await relay_answer(router_a, router_b, idle_timeout=60))

            nursery.start_soon(run)
            await sockio.send_all(client, b"not read by the relay")
            await sockio.send_all(node, b"the answer")
            node.shutdown(socket.SHUT_WR)
        (result,) = results
        assert (result.a_to_b, result.b_to_a, result.timed_out) == (0, 10, False)
        router_a.shutdown(socket.SHUT_WR)
        assert await _read_all(client) == b"the answer"
        assert await router_a.recv(100) == b"not read by the relay"


async def test_relay_answer_idle_timeout(autojump_clock):
    client, router_a = trio.testing.memory_stream_pair()
    router_b, node = trio.testing.memory_stream_pair()
    start = trio.current_time()
    result = await relay_answer(router_a, router_b, idle_timeout=30)
    assert result.timed_out and result.b_to_a == 0
    assert trio.current_time() - start == pytest.approx(30)


@pytest.mark.parametrize("by", ["libc", "socket"])
def test_reset_on_close_sets_a_zero_linger_on_tcp_only(monkeypatch, by):
    """By libc's setsockopt through ctypes (half the cost of the socket method's), or
    by the socket method where there is no such thing."""
    assert sockio._setsockopt is not None  # Linux: there is
    if by == "socket":
        monkeypatch.setattr(sockio, "_setsockopt", None)
    linger = struct.Struct("ii")
    with socket.socket() as tcp:
        sockio.reset_on_close(tcp)
        assert linger.unpack(tcp.getsockopt(socket.SOL_SOCKET, socket.SO_LINGER, 8)) == (1, 0)
    a, b = socket.socketpair()
    with a, b:
        sockio.reset_on_close(a)  # a unix socket has no reset to give: left as it is
        assert linger.unpack(a.getsockopt(socket.SOL_SOCKET, socket.SO_LINGER, 8)) == (0, 0)
