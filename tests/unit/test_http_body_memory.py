"""A chunked request body held by the router costs about its bytes, whatever its
chunks: a body of 1-byte chunks once held a bytes object per chunk while it came (a
stalled client with 1 MiB of them held about 29 MB)."""

from __future__ import annotations

import tracemalloc

import trio
import trio.testing

from brood.protocol.http1 import parse_request_head
from brood.routers.http.body import Client, plan_body

HEAD = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"


async def test_tiny_chunks_held_cost_their_bytes_not_an_object_each() -> None:
    size = 64 * 1024
    wire = b"1\r\nx\r\n" * size
    head = parse_request_head(HEAD, 65535)
    ours, theirs = trio.socket.socketpair()
    client = Client(ours, "127.0.0.1", 1)
    plans = []
    with ours, theirs:
        async with trio.open_nursery() as nursery:
            async def plan() -> None:
                plans.append(await plan_body(client, head, chunked_input=False,
                                             chunked_buffer=1 << 20, timeout=5))

            tracemalloc.start()
            try:
                nursery.start_soon(plan)
                for i in range(0, len(wire), 4096):
                    await theirs.send(wire[i:i + 4096])
                await trio.testing.wait_all_tasks_blocked()  # the body stalls: all held
                held, _ = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
            await theirs.send(b"0\r\n\r\n")
    assert plans[0].prefix == b"x" * size and plans[0].content_length == size
    assert held < 4 * size, held  # a bytes object per chunk: about 40x the body
