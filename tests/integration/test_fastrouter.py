"""The fastrouter on loopback, served in-process in front of tiny trio backends."""

from __future__ import annotations

import json
import logging
import socket
import struct
from functools import partial
from pathlib import Path

import pytest
import trio
import trio.testing
from _routerkit import (
    ANSWER,
    DictResolver,
    bind_listener,
    connect,
    read_all,
    refused_address,
    send_all,
    uwsgi_backend,
    wait_for,
)

from brood.config.model import Config
from brood.protocol.uwsgi import encode_header, encode_vars
from brood.routers import fastrouter
from brood.routers.engine import Engine, RouterSettings
from brood.routers.process import serve_router

FIXTURE = Path("/work/shared/fixtures/requests/fastrouter_forwarded_m5_m3_with_body.bin")


def packet(pairs, body=b"", m1=0, m2=0) -> bytes:
    block = encode_vars(pairs)
    return encode_header(m1, len(block), m2) + block + body


def request(host: bytes = b"a.example", body: bytes = b"") -> bytes:
    pairs = [(b"REQUEST_METHOD", b"POST" if body else b"GET"), (b"PATH_INFO", b"/"),
             (b"HTTP_HOST", host)]
    if body:
        pairs.append((b"CONTENT_LENGTH", str(len(body)).encode()))
    return packet(pairs, body)


def engine_for(table, **settings) -> tuple[Engine, DictResolver]:
    resolver = DictResolver(table)
    return Engine(RouterSettings("fastrouter", **settings), resolver), resolver


async def roundtrip(address: str, data: bytes) -> bytes:
    sock = await connect(address)
    with sock:
        await send_all(sock, data)
        return await read_all(sock)


async def start(nursery, engine, cfg=None, proto="fastrouter"):
    listener = bind_listener(proto)
    server = await nursery.start(
        partial(serve_router, "fastrouter", cfg or Config(), [listener], engine=engine))
    return listener.name, server


async def test_forwarded_packet_matches_capture_with_node_modifiers():
    expected = FIXTURE.read_bytes()
    sent = bytes([7]) + expected[1:3] + bytes([9]) + expected[4:]  # client used 7/9
    async with trio.open_nursery() as nursery:
        backend = await nursery.start(uwsgi_backend)
        engine, resolver = engine_for({b"m5.example": [backend.address]})
        node = resolver.nodes[b"m5.example"][0]
        node.modifier1, node.modifier2 = 5, 3
        address, server = await start(nursery, engine)
        assert await roundtrip(address, sent) == ANSWER  # relayed verbatim
        server.stop_accepting()
        assert await server.drain(5)
        nursery.cancel_scope.cancel()
    assert backend.received == [expected]
    assert (node.requests, node.ref, node.rx, node.tx) == (1, 0, len(expected), len(ANSWER))


@pytest.mark.parametrize(
    "pairs, key",
    [
        ([(b"HTTP_HOST", b"h"), (b"UWSGI_FASTROUTER_KEY", b"k"), (b"SERVER_NAME", b"s")], b"k"),
        ([(b"SERVER_NAME", b"s"), (b"HTTP_HOST", b"h1"), (b"HTTP_HOST", b"h2")], b"h2"),
        ([(b"SERVER_NAME", b"s"), (b"PATH_INFO", b"/")], b"s"),
    ],
)
async def test_key_resolution_order(pairs, key):
    async with trio.open_nursery() as nursery:
        backend = await nursery.start(uwsgi_backend)
        engine, resolver = engine_for({key: [backend.address]})
        address, server = await start(nursery, engine)
        assert await roundtrip(address, packet(pairs)) == ANSWER
        nursery.cancel_scope.cancel()
    assert resolver.keys == [key]


async def test_force_key_overrides_vars():
    cfg = Config.from_dict({"fastrouter-force-key": "forced"})
    async with trio.open_nursery() as nursery:
        backend = await nursery.start(uwsgi_backend)
        engine, resolver = engine_for({b"forced": [backend.address]})
        address, _ = await start(nursery, engine, cfg)
        assert await roundtrip(address, request(b"other")) == ANSWER
        nursery.cancel_scope.cancel()
    assert resolver.keys == [b"forced"]


async def test_static_round_robin_a_b_a_b():
    async with trio.open_nursery() as nursery:
        a = await nursery.start(uwsgi_backend, b"HTTP/1.0 200 OK\r\n\r\nA")
        b = await nursery.start(uwsgi_backend, b"HTTP/1.0 200 OK\r\n\r\nB")
        cfg = Config.from_dict({"fastrouter-to": [a.address, b.address]})
        listener = bind_listener("fastrouter")
        await nursery.start(serve_router, "fastrouter", cfg, [listener])
        answers = [(await roundtrip(listener.name, request(b"ignored")))[-1:] for _ in range(4)]
        nursery.cancel_scope.cancel()
    assert answers == [b"A", b"B", b"A", b"B"]


async def test_refused_node_gets_gracetime_and_next_node_serves():
    dead = refused_address()
    async with trio.open_nursery() as nursery:
        backend = await nursery.start(uwsgi_backend)
        engine, resolver = engine_for({b"a.example": [dead, backend.address]})
        address, _ = await start(nursery, engine)
        assert await roundtrip(address, request()) == ANSWER
        assert await roundtrip(address, request()) == ANSWER
        nursery.cancel_scope.cancel()
    dead_node, good = resolver.nodes[b"a.example"]
    assert dead_node.failcnt == 1  # skipped while in gracetime on the second request
    assert dead_node.grace_until > dead_node.grace_marked_at > 0
    assert (good.requests, dead_node.requests) == (2, 0)


async def test_fallback_after_dead_nodes():
    async with trio.open_nursery() as nursery:
        backend = await nursery.start(uwsgi_backend)
        engine, _ = engine_for({b"a.example": [refused_address()]},
                               fallbacks=(backend.address,))
        address, _ = await start(nursery, engine)
        assert await roundtrip(address, request()) == ANSWER
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize(
    "table, data, status",
    [
        ({b"a.example": [refused_address(), refused_address()]}, request(), b"502"),
        ({b"other": ["127.0.0.1:9"]}, request(), b"503"),  # unknown key
        ({}, packet([(b"PATH_INFO", b"/")]), b"503"),  # no key at all
        ({}, encode_header(0, 10, 0) + b"\x00\x00garbage!", b"400"),  # zero key length
    ],
)
async def test_errors_answer_http_status(table, data, status):
    async with trio.open_nursery() as nursery:
        engine, _ = engine_for(table)
        address, _ = await start(nursery, engine)
        answer = await roundtrip(address, data)
        nursery.cancel_scope.cancel()
    assert answer.startswith(b"HTTP/1.0 " + status + b" ")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b"Content-Length: %d" % len(body) in head


async def test_fallback_on_no_key():
    """A key with no node goes to the fallback; a request with no key (none, or an
    empty HTTP_HOST) does not, as in real uWSGI 2.0 (which closes it)."""
    cfg = Config.from_dict({"fastrouter-fallback-on-no-key": True})
    async with trio.open_nursery() as nursery:
        backend = await nursery.start(uwsgi_backend)
        engine, _ = engine_for({}, fallbacks=(backend.address,))
        address, _ = await start(nursery, engine, cfg)
        unknown = packet([(b"PATH_INFO", b"/"), (b"HTTP_HOST", b"nobody.example")])
        assert await roundtrip(address, unknown) == ANSWER
        for keyless in ([(b"PATH_INFO", b"/")], [(b"PATH_INFO", b"/"), (b"HTTP_HOST", b"")]):
            assert (await roundtrip(address, packet(keyless))).startswith(b"HTTP/1.0 503 ")
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"], ids=["lane", "general-path"])
async def test_silent_node_times_out_with_504(caplog, host):
    async with trio.open_nursery() as nursery:
        backend = await nursery.start(partial(uwsgi_backend, ANSWER, stall=True))
        name = backend.address.replace("127.0.0.1", host)  # a host name: the general path
        engine, _ = engine_for({b"a.example": [name]}, timeout=0.3)
        address, _ = await start(nursery, engine)
        with caplog.at_level(logging.WARNING, "brood.routers"):
            answer = await roundtrip(address, request())
        nursery.cancel_scope.cancel()
    assert answer.startswith(b"HTTP/1.0 504 ")
    assert f"504 node {name} silent for 0.3s" in caplog.text  # the same line on both


async def test_client_gone_before_the_answer_is_not_a_node_failure(caplog):
    """The client resets before the answer: a debug line, no 502 and no warning against
    the node (the router sees the reset as it comes, or at its first write)."""
    client_gone = trio.Event()
    answered = trio.Event()

    async def late_node(task_status=trio.TASK_STATUS_IGNORED):
        lsock = trio.socket.socket()
        await lsock.bind(("127.0.0.1", 0))
        lsock.listen(4)
        task_status.started(f"localhost:{lsock.getsockname()[1]}")  # the general path
        with lsock:
            conn, _ = await lsock.accept()
            with conn:
                await conn.recv(65536)
                await client_gone.wait()
                try:
                    await send_all(conn, ANSWER * 1000)
                    await conn.recv(1)
                except OSError:
                    pass  # the router closed it first
                answered.set()

    async with trio.open_nursery() as nursery:
        name = await nursery.start(late_node)
        engine, resolver = engine_for({b"a.example": [name]})
        address, _ = await start(nursery, engine)
        with caplog.at_level(logging.DEBUG, "brood.routers"):
            sock = await connect(address)
            await send_all(sock, request())
            await trio.testing.wait_all_tasks_blocked()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()  # an RST: the router's first write to it fails
            client_gone.set()
            with trio.fail_after(5):
                await answered.wait()
                await engine.wait_idle()
        nursery.cancel_scope.cancel()
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings == []
    assert any("gone" in r.getMessage() for r in caplog.records)
    (node,) = resolver.nodes[b"a.example"]
    assert node.ref == 0


@pytest.mark.parametrize("size, on_disk", [(10, False), (5000, True)])
async def test_post_buffering_reads_body_before_contacting_node(tmp_path, monkeypatch,
                                                                size, on_disk):
    files = []
    real = fastrouter.tempfile.TemporaryFile

    def recording(*args, **kwargs):
        files.append(kwargs.get("dir"))
        return real(*args, **kwargs)

    monkeypatch.setattr(fastrouter.tempfile, "TemporaryFile", recording)
    cfg = Config.from_dict({"fastrouter-post-buffering": 100,
                            "fastrouter-post-buffering-dir": str(tmp_path)})
    body = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    data = request(body=body)
    async with trio.open_nursery() as nursery:
        backend = await nursery.start(uwsgi_backend)
        engine, _ = engine_for({b"a.example": [backend.address]})
        address, _ = await start(nursery, engine, cfg)
        sock = await connect(address)
        with sock:
            await send_all(sock, data[:-3])
            await trio.testing.wait_all_tasks_blocked(cushion=0.05)
            assert backend.connections == 0  # the body is not complete yet
            await send_all(sock, data[-3:])
            assert await read_all(sock) == ANSWER
        nursery.cancel_scope.cancel()
    assert backend.received == [data]
    assert files == ([str(tmp_path)] if on_disk else [])


async def test_router_stats_json_served():
    stats = bind_listener("fastrouter-stats")
    async with trio.open_nursery() as nursery:
        backend = await nursery.start(uwsgi_backend)
        cfg = Config.from_dict({"fastrouter-to": [backend.address]})
        listener = bind_listener("fastrouter")
        server = await nursery.start(serve_router, "fastrouter", cfg, [listener, stats])
        assert await roundtrip(listener.name, request()) == ANSWER
        await server.engine.wait_idle()
        sock = await connect(stats.name)
        with sock:
            document = json.loads(await read_all(sock))
        nursery.cancel_scope.cancel()
    assert document["fastrouter"] == [listener.name]
    assert document["active_sessions"] == 0
    assert [(n["name"], n["hits"]) for n in document["static_nodes"]] == [(backend.address, 1)]


async def test_post_buffering_answers_a_key_nobody_serves_before_the_body(caplog):
    """As uWSGI, which resolves first: a 503 at once, not once a body announced as 100 MB
    (never sent here) is in."""
    cfg = Config.from_dict({"fastrouter-post-buffering": 65536})
    head = packet([(b"REQUEST_METHOD", b"POST"), (b"PATH_INFO", b"/"),
                   (b"HTTP_HOST", b"nobody.example"), (b"CONTENT_LENGTH", b"100000000")])
    async with trio.open_nursery() as nursery:
        backend = await nursery.start(uwsgi_backend)
        engine, resolver = engine_for({b"a.example": [backend.address]}, timeout=30)
        resolver.static_nodes = []  # keys as subscriptions map them: nobody.example has none
        address, _ = await start(nursery, engine, cfg)
        sock = await connect(address)
        with sock, trio.fail_after(5):
            await send_all(sock, head + b"x" * 1000)
            answer = await read_all(sock)
        nursery.cancel_scope.cancel()
    assert answer.startswith(b"HTTP/1.0 503 ")
    assert "no node for key 'nobody.example'" in caplog.text
    assert backend.connections == 0


async def test_an_error_answered_before_the_body_lets_the_client_finish_sending():
    """The 503 goes before the body is read; then the body is taken and dropped a
    while, so the close resets nothing: nginx, still writing it, saw a reset and
    turned the 503 into a 502 (second review)."""
    cfg = Config.from_dict({"fastrouter-post-buffering": 65536})
    size = 512 * 1024
    head = packet([(b"REQUEST_METHOD", b"POST"), (b"PATH_INFO", b"/"),
                   (b"HTTP_HOST", b"nobody.example"), (b"CONTENT_LENGTH", str(size).encode())])
    async with trio.open_nursery() as nursery:
        engine, resolver = engine_for({b"a.example": ["127.0.0.1:9"]})
        resolver.static_nodes = []
        address, _ = await start(nursery, engine, cfg)
        sock = await connect(address)
        with sock, trio.fail_after(10):
            await send_all(sock, head)
            await trio.testing.wait_all_tasks_blocked(cushion=0.05)  # the 503 is on its way
            await send_all(sock, b"x" * size)  # a reset would raise here
            answer = await read_all(sock)
        nursery.cancel_scope.cancel()
    assert answer.startswith(b"HTTP/1.0 503 ")


async def test_post_buffering_without_its_directory_answers_500(tmp_path, caplog):
    """The spool's directory gone after start: a 500 and a line saying why (the client
    got nothing and the log nothing at warning level)."""
    spool = tmp_path / "spool"
    spool.mkdir()
    cfg = Config.from_dict({"fastrouter-post-buffering": 100,
                            "fastrouter-post-buffering-dir": str(spool)})
    async with trio.open_nursery() as nursery:
        backend = await nursery.start(uwsgi_backend)
        engine, _ = engine_for({b"a.example": [backend.address]})
        address, _ = await start(nursery, engine, cfg)
        spool.rmdir()
        data = request(body=b"x" * 5000)
        sock = await connect(address)
        with caplog.at_level(logging.WARNING, "brood.routers"), sock, trio.fail_after(10):
            await send_all(sock, data[:-3000])  # the rest apart: the general path spools
            await trio.testing.wait_all_tasks_blocked(cushion=0.05)
            await send_all(sock, data[-3000:])
            answer = await read_all(sock)
        nursery.cancel_scope.cancel()
    assert answer.startswith(b"HTTP/1.0 500 ")
    assert f"500: cannot buffer the body in {spool}: No such file or directory" in caplog.text
    assert backend.connections == 0


async def test_post_buffering_a_client_reset_is_no_disk_error(caplog):
    """A reset mid-body: 'request body ended', not '500: cannot buffer the body in
    /tmp' (which reads as a full disk; second review)."""
    cfg = Config.from_dict({"fastrouter-post-buffering": 1000})
    data = request(body=b"x" * 50000)
    async with trio.open_nursery() as nursery:
        backend = await nursery.start(uwsgi_backend)
        engine, _ = engine_for({b"a.example": [backend.address]})
        address, _ = await start(nursery, engine, cfg)
        sock = await connect(address)
        with caplog.at_level(logging.WARNING, "brood.routers"):
            await send_all(sock, data[:20000])
            await trio.testing.wait_all_tasks_blocked(cushion=0.05)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()
            await wait_for(lambda: "request body ended" in caplog.text)
            await engine.wait_idle()
        nursery.cancel_scope.cancel()
    assert "cannot buffer" not in caplog.text and backend.connections == 0
