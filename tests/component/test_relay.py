"""The two-way relay: half-close, idle timeout, end-on-node-close, splice, peeked bytes."""

from __future__ import annotations

import errno
import hashlib
import socket

import pytest
import trio
import trio.testing

from brood.routers.net import relay as relay_module
from brood.routers.net import sockio
from brood.routers.net.peek import PeekStream
from brood.routers.net.relay import can_splice, relay


async def _read_all(stream: trio.abc.ReceiveStream) -> bytes:
    out = bytearray()
    while data := await stream.receive_some(65536):
        out += data
    return bytes(out)


async def test_streams_copied_both_ways_with_half_close():
    client, router_a = trio.testing.memory_stream_pair()
    router_b, node = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        results = []

        async def run_relay():
            results.append(await relay(router_a, router_b, idle_timeout=60))

        nursery.start_soon(run_relay)
        await client.send_all(b"request")
        await client.send_eof()
        # The node sees the request then EOF: half-close went through...
        assert await _read_all(node) == b"request"
        # ...and can still answer on its own direction.
        await node.send_all(b"answer")
        await node.send_eof()
        assert await _read_all(client) == b"answer"
    (result,) = results
    assert (result.a_to_b, result.b_to_a, result.timed_out) == (7, 6, False)
    assert not result.spliced


async def test_idle_timeout_ends_relay(autojump_clock):
    client, router_a = trio.testing.memory_stream_pair()
    router_b, node = trio.testing.memory_stream_pair()
    start = trio.current_time()
    async with trio.open_nursery() as nursery:

        async def chatter():
            # Traffic every 50 s keeps a 60 s idle timeout from firing...
            for _ in range(3):
                await trio.sleep(50)
                await client.send_all(b"x")
                await node.receive_some()

        nursery.start_soon(chatter)
        result = await relay(router_a, router_b, idle_timeout=60)
    # ...then 60 s of silence ends it.
    assert result.timed_out
    assert result.a_to_b == 3
    assert trio.current_time() - start == pytest.approx(150 + 60)


async def test_end_when_b_done_does_not_wait_for_client_eof():
    client, router_a = trio.testing.memory_stream_pair()
    router_b, node = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:

        async def answer():
            await node.send_all(b"HTTP/1.0 200 OK\r\n\r\n")
            await node.send_eof()

        nursery.start_soon(answer)
        with trio.fail_after(5):
            result = await relay(router_a, router_b, idle_timeout=60, end_when_b_done=True)
    assert result.b_to_a == 19 and not result.timed_out
    assert await client.receive_some() == b"HTTP/1.0 200 OK\r\n\r\n"


async def test_broken_side_ends_both_directions():
    client, router_a = trio.testing.memory_stream_pair()
    router_b, node = trio.testing.memory_stream_pair()
    await node.aclose()  # the node vanished: sending to it breaks
    await client.send_all(b"data")
    with trio.fail_after(5):
        result = await relay(router_a, router_b, idle_timeout=60)
    assert isinstance(result.error, trio.BrokenResourceError | trio.ClosedResourceError)


class _EarlyAnswerNode(trio.abc.Stream):
    """A node's end that refuses the body (a write breaks) and only then has its answer
    to read, then EOF: the order in which a node's early answer and its reset may come."""

    def __init__(self) -> None:
        self.refused = trio.Event()
        self.unread = [b"HTTP/1.0 413 Content Too Large\r\n\r\n", b""]

    async def send_all(self, data) -> None:
        self.refused.set()
        raise trio.BrokenResourceError("reset by the node")

    async def wait_send_all_might_not_block(self) -> None:
        pass

    async def receive_some(self, max_bytes=None) -> bytes:
        await self.refused.wait()
        return self.unread.pop(0)

    async def send_eof(self) -> None:
        pass

    async def aclose(self) -> None:
        pass


async def test_a_node_refusing_the_body_still_has_its_answer_relayed():
    client, router_a = trio.testing.memory_stream_pair()
    await client.send_all(b"body bytes the node will not take")
    with trio.fail_after(5):
        result = await relay(router_a, _EarlyAnswerNode(), idle_timeout=60,
                             end_when_b_done=True)
    assert result.b_stopped_reading and result.b_to_a == 34
    assert await client.receive_some() == b"HTTP/1.0 413 Content Too Large\r\n\r\n"


def _no_fd_left():
    raise OSError(errno.EMFILE, "Too many open files")


async def _socket_pairs():
    a1, a2 = trio.socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    b1, b2 = trio.socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    return a1, a2, b1, b2


@pytest.mark.parametrize("use_splice", [True, False, "no pipe"])
async def test_raw_sockets_bulk_both_paths_preserve_bytes(use_splice, monkeypatch):
    """"no pipe": splicing, in a process out of fds for a pipe (each chunk copied)."""
    if use_splice == "no pipe":
        monkeypatch.setattr(relay_module, "_PIPES", [])
        monkeypatch.setattr(relay_module, "_open_pipe", _no_fd_left)
    client, router_a, router_b, node = await _socket_pairs()
    payload = bytes(range(256)) * (8 * 4096)  # 8 MiB
    digest = hashlib.sha256(payload).hexdigest()
    received = bytearray()
    with client, router_a, router_b, node:
        assert can_splice(router_a, router_b)
        async with trio.open_nursery() as nursery:

            async def send():
                view = memoryview(payload)
                while view:
                    view = view[await client.send(view):]
                client.shutdown(socket.SHUT_WR)

            async def sink():
                while data := await node.recv(1 << 20):
                    received.extend(data)
                node.shutdown(socket.SHUT_WR)

            nursery.start_soon(send)
            nursery.start_soon(sink)
            with trio.fail_after(30):
                result = await relay(router_a, router_b, idle_timeout=60, splice=use_splice)
            assert await client.recv(10) == b""  # the node's EOF reached the client
    assert result.spliced is bool(use_splice)
    assert result.a_to_b == len(payload) and result.b_to_a == 0
    assert hashlib.sha256(received).hexdigest() == digest


async def test_splice_not_used_with_a_stream_endpoint():
    a, _ = trio.testing.memory_stream_pair()
    s1, s2 = trio.socket.socketpair()
    with s1, s2:
        assert not can_splice(a, s1)
        assert can_splice(s1, s2)


async def test_peek_stream_replays_then_continues():
    left, right = trio.testing.memory_stream_pair()
    await left.send_all(b"world")
    await left.send_eof()
    peek = PeekStream(right, b"hello ")
    assert await peek.receive_some(3) == b"hel"
    peek.unread(b"<")
    assert peek.pending == b"<lo "
    assert await _read_all(peek) == b"<lo world"
    await peek.send_all(b"back")
    assert await left.receive_some() == b"back"
    await peek.send_eof()
    assert await left.receive_some() == b""


async def test_a_relay_ends_when_both_ways_ended_even_with_bytes_still_queued():
    """The node answered and closed while the client still drained its queue; then the
    client ends too: the session is over at once (it was held until the idle deadline,
    a finished way still watching its queue)."""
    client, router_a, router_b, node = await _socket_pairs()
    payload = b"x" * (1 << 20)

    async def node_side():
        await sockio.send_all(node, payload)
        node.shutdown(socket.SHUT_WR)

    async def client_side():
        got = 0
        while got < len(payload):
            data = await client.recv(65536)
            got += len(data)
            await trio.sleep(0.001)
        client.shutdown(socket.SHUT_WR)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(node_side)
        nursery.start_soon(client_side)
        started = trio.current_time()
        result = await relay(router_a, router_b, idle_timeout=30)
        took = trio.current_time() - started
    assert (result.b_to_a, result.timed_out) == (len(payload), False)
    assert took < 3, took  # (it was the idle timeout: 30 s)
    for sock in (client, router_a, router_b, node):
        sock.close()
