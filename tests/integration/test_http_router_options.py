"""HTTP router options beyond the basics: --http-log-format, --http-manage-source and
--http-stud-prefix, on loopback, in-process (and one real start-up for a bad format)."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys

import pytest
import trio
import trio.testing
from _httpkit import HttpClient, http_router, node_server, open_client, packet_vars
from _routerkit import send_all

from brood.config.model import Config
from brood.routers.http.accesslog import LineFormat
from brood.routers.http.h1 import raw_answer_status
from brood.routers.http.settings import HttpSettings


def settings(**kw) -> HttpSettings:
    kw.setdefault("server_name", b"vm")
    return HttpSettings(**kw)


async def recv_exactly(sock, size: int) -> bytes:
    got = b""
    with trio.fail_after(5):
        while len(got) < size:
            data = await sock.recv(size - len(got))
            assert data, f"closed after {got!r}"
            got += data
    return got


async def test_custom_log_format_writes_the_access_line(capfd):
    fmt = LineFormat.parse('%(addr) "%(method) %(uri) %(proto)" %(status) %(size) '
                           '%(host) ref=%(referer) ua=%(uagent) node=%(node) %(msecs)ms')
    async with trio.open_nursery() as nursery:
        node = await nursery.start(node_server)
        async with http_router({b"a": [node.address]}, settings(log_format=fmt)) as router:
            with await open_client(router.address) as sock:
                client = HttpClient(sock)
                await client.send(b"GET /x?y=1 HTTP/1.1\r\nHost: a\r\nReferer: http://r/\r\n"
                                  b"User-Agent: probe/1\r\n\r\n")
                head, body = await client.response()
        nursery.cancel_scope.cancel()
    lines = [line for line in capfd.readouterr().err.splitlines()
             if line.startswith('127.0.0.1 "')]
    assert len(lines) == 1
    prefix = (f'127.0.0.1 "GET /x?y=1 HTTP/1.1" 200 {len(head) + len(body)} a ref=http://r/ '
              f'ua=probe/1 node={node.address} ')
    assert lines[0].startswith(prefix) and lines[0].endswith("ms"), lines[0]
    assert lines[0][len(prefix):-2].isdigit()


async def test_default_access_line_is_uwsgi_style(capfd):
    async with trio.open_nursery() as nursery:
        node = await nursery.start(node_server)
        async with http_router({b"a": [node.address]}, settings()) as router:
            with await open_client(router.address) as sock:
                client = HttpClient(sock)
                await client.send(b"GET /p?q HTTP/1.0\r\nHost: a\r\n\r\n")
                head, body = await client.response()
        nursery.cancel_scope.cancel()
    [line] = [ln for ln in capfd.readouterr().err.splitlines() if "|router: http]" in ln]
    assert re.fullmatch(
        rf"\[pid: {os.getpid()}\|router: http\] 127\.0\.0\.1 \(\) \{{node {node.address}\}} "
        rf"\[\w{{3}} \w{{3}} [ \d]\d \d\d:\d\d:\d\d \d{{4}}\] GET /p\?q => generated "
        rf"{len(head) + len(body)} bytes in \d+ msecs \(HTTP/1\.0 200\)", line), line


async def test_raw_body_request_line_has_the_nodes_status(capfd):
    """--http-raw-body: the answer is piped unread, its status looked at in place for
    the request line (it said 0), past an interim 100."""
    async def behave(conn, request):
        await send_all(conn, b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 418 Teapot\r\n\r\nx")

    async with trio.open_nursery() as nursery:
        node = await nursery.start(node_server, behave)
        async with http_router({b"a": [node.address]}, settings(raw_body=True)) as router:
            with await open_client(router.address) as sock:
                await send_all(sock, b"GET /r HTTP/1.0\r\nHost: a\r\n\r\n")
                got = b""
                with trio.fail_after(5):
                    while data := await sock.recv(1000):
                        got += data
                await trio.testing.wait_all_tasks_blocked()  # the line follows the close
        nursery.cancel_scope.cancel()
    assert got.endswith(b"418 Teapot\r\n\r\nx")
    [line] = [ln for ln in capfd.readouterr().err.splitlines() if "|router: http]" in ln]
    assert re.search(rf"GET /r => generated {len(got)} bytes in \d+ msecs \(HTTP/1\.0 418\)$",
                     line), line


@pytest.mark.parametrize("first, status", [
    (b"HTTP/1.1 200 OK\r\n", 200), (b"HTTP/1.0 404 Not Found\r\n\r\n", 404),
    (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\n", 201),
    (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 2", 100), (b"SSH-2.0-x\r\n", 0), (b"", 0),
])
def test_raw_answer_status(first, status):
    assert raw_answer_status(first) == status


async def echo_source(conn, request):
    """An Icecast-like node: OK, then every byte of the stream echoed upper-cased."""
    _, early = packet_vars(request)
    await send_all(conn, b"HTTP/1.0 200 OK\r\n\r\n" + early.upper())
    while data := await conn.recv(65536):
        await send_all(conn, data.upper())


SOURCE = (b"SOURCE /live.mp3 HTTP/1.0\r\nHost: a\r\nContent-Type: audio/mpeg\r\n"
          b"Authorization: Basic c291cmNlOmhhY2ttZQ==\r\n\r\n")


async def test_manage_source_pipes_the_stream_both_ways():
    async with trio.open_nursery() as nursery:
        node = await nursery.start(node_server, echo_source)
        async with http_router({b"a": [node.address]}, settings(manage_source=True)) as router:
            with await open_client(router.address) as sock:
                await send_all(sock, SOURCE + b"frame0")
                ok = b"HTTP/1.0 200 OK\r\n\r\n"
                assert await recv_exactly(sock, len(ok) + 6) == ok + b"FRAME0"
                for i in range(1, 4):  # an endless body: each piece goes through at once
                    await send_all(sock, b"frame%d" % i)
                    assert await recv_exactly(sock, 6) == b"FRAME%d" % i
                sock.shutdown(socket.SHUT_WR)
                with trio.fail_after(5):
                    assert await sock.recv(100) == b""
        nursery.cancel_scope.cancel()
    found, _ = packet_vars(node.requests[0])
    assert found[b"REQUEST_METHOD"] == b"SOURCE" and b"CONTENT_LENGTH" not in found
    assert found[b"HTTP_AUTHORIZATION"] == b"Basic c291cmNlOmhhY2ttZQ=="


async def test_without_manage_source_source_is_an_ordinary_bodiless_request():
    async with trio.open_nursery() as nursery:
        node = await nursery.start(node_server)
        async with http_router({b"a": [node.address]}, settings()) as router:
            with await open_client(router.address) as sock:
                client = HttpClient(sock)
                await client.send(SOURCE + b"frame0")
                head, body = await client.response()
                assert head.startswith(b"HTTP/1.1 200") and body == b"ok\n"
                assert await client.closed()  # HTTP/1.0: no stream relayed after the answer
        nursery.cancel_scope.cancel()
    found, rest = packet_vars(node.requests[0])
    assert found[b"REQUEST_METHOD"] == b"SOURCE" and rest == b""


async def test_stud_prefix_gives_remote_addr_from_listed_peers_only():
    request = b"GET / HTTP/1.0\r\nHost: a\r\n\r\n"
    v4 = bytes([socket.AF_INET]) + socket.inet_aton("198.51.100.23")
    v6 = bytes([socket.AF_INET6]) + socket.inet_pton(socket.AF_INET6, "2001:db8::9")
    async with trio.open_nursery() as nursery:
        node = await nursery.start(node_server)
        async with http_router({b"a": [node.address]},
                               settings(stud_prefix=frozenset({"127.0.0.1"}))) as router:
            for prefix in (v4, v6):
                with await open_client(router.address) as sock:
                    client = HttpClient(sock)
                    await client.send(prefix[:3])  # split: the prefix may come in pieces
                    await trio.testing.wait_all_tasks_blocked()
                    await client.send(prefix[3:] + request)
                    head, _ = await client.response()
                    assert head.startswith(b"HTTP/1.1 200")
            with await open_client(router.address) as sock:  # a bad family: closed
                client = HttpClient(sock)
                await client.send(b"\xfe" + request)
                assert await client.closed()
        async with http_router({b"a": [node.address]},
                               settings(stud_prefix=frozenset({"192.0.2.1"}))) as router:
            with await open_client(router.address) as sock:  # not from stud: no prefix
                client = HttpClient(sock)
                await client.send(request)
                await client.response()
        nursery.cancel_scope.cancel()
    addrs = [packet_vars(r)[0][b"REMOTE_ADDR"] for r in node.requests]
    assert addrs == [b"198.51.100.23", b"2001:db8::9", b"127.0.0.1"]


def test_unknown_log_variable_stops_start_up():
    done = subprocess.run(
        [sys.executable, "-m", "brood", "--http", "127.0.0.1:0", "--http-to", "127.0.0.1:1",
         "--http-log-format", "%(addr) %(bogus)"],
        capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1] == "brood: --http-log-format: unknown variable %(bogus)"


def test_an_http_var_the_encoder_refuses_stops_start_up():
    """A var with no name (or too long for a uwsgi block) failed every request of every
    router process: refused in the master now, naming the option."""
    for value, said in (("=v", "--http-var '=v': empty name"),
                        ("A=" + "x" * 70000, "--http-var 'A': a var name or value is longer")):
        done = subprocess.run(
            [sys.executable, "-m", "brood", "--http", "127.0.0.1:0", "--http-to", "127.0.0.1:1",
             "--http-var", value],
            capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
        assert done.returncode == 1
        assert done.stderr.splitlines()[-1].startswith(f"brood: {said}"), done.stderr[-300:]


def test_an_http_var_without_equals_is_skipped_as_uwsgi_does():
    cfg = Config.from_dict({"http-var": ["NOEQUALS", "A=B=C"]})
    assert HttpSettings.from_config(cfg).extra_vars == [(b"A", b"B=C")]
