"""``BodyPlan.stream`` yields between pieces, never after the last one: the node's answer
ending at that yield cancelled the relay of a body already sent whole, which the router
then took for one cut short and closed the kept-alive connection after a keep-alive
answer (the client's next request lost)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import trio

from brood.protocol.chunked import ChunkedDecoder
from brood.routers.http.body import BodyPlan, Client


@pytest.mark.parametrize("plan, rest", [
    (lambda: BodyPlan(remaining=10), b"0123456789"),
    (lambda: BodyPlan(decoder=ChunkedDecoder()), b"5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n"),
])
async def test_a_body_at_hand_is_sent_whole_even_in_a_cancelled_scope(plan, rest) -> None:
    ours, node_end = trio.socket.socketpair()
    client_sock, _ = trio.socket.socketpair()
    with ours, node_end, client_sock, _:
        client = Client(client_sock, "127.0.0.1", 1)
        client.buf = rest + b"GET /next"
        body = plan()
        with trio.CancelScope() as scope:
            scope.cancel()  # as the answer's end does
            sent = await body.stream(client, ours, lambda: None, SimpleNamespace(waiting=""))
        assert not scope.cancelled_caught and sent > 0
        assert await node_end.recv(100) in (b"0123456789",
                                            b"5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n")
        assert client.buf == b"GET /next"
