"""Out of fds for a splice pipe in the middle of a long answer: the rest is copied, not
cut, on the fast lane and on the general path alike."""

from __future__ import annotations

import errno
import logging

import pytest
import trio
from _httpkit import HttpClient, answer, http_router, node_server, open_client

from brood.routers.http.settings import HttpSettings
from brood.routers.net import relay

BODY = bytes(range(256)) * 4096  # 1 MiB


@pytest.mark.parametrize("path", ["lane", "general"])
async def test_a_long_answer_is_copied_when_no_pipe_can_be_made(path, caplog, monkeypatch):
    caplog.set_level(logging.INFO)

    def no_fd_left():
        raise OSError(errno.EMFILE, "Too many open files")

    node_answer = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(BODY) + BODY
    prefix = b"PROXY TCP4 192.0.2.7 198.51.100.1 40000 80\r\n" if path == "general" else b""
    settings = HttpSettings(server_name=b"vm", proxy_protocol=path == "general")
    async with trio.open_nursery() as nursery:
        node = await nursery.start(node_server, answer(node_answer))
        async with http_router({b"a": [node.address]}, settings) as router:
            relay._drop_pipes()  # none pooled: the relay must make one
            sock = await open_client(router.address)
            with sock:
                client = HttpClient(sock)
                monkeypatch.setattr(relay, "_open_pipe", no_fd_left)
                await client.send(prefix + b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
                head, body = await client.response()
                assert head.startswith(b"HTTP/1.1 200 ") and body == BODY
        nursery.cancel_scope.cancel()
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"
    assert not [r for r in caplog.records if "Too many open files" in r.getMessage()]
