"""Node answers the HTTP router must not pass on as they are: a 101 nobody asked for, 1xx
and chunked coding to HTTP/1.0 clients, the router's own uWSGI-Encoding instruction,
status codes under 100, and Content-Length beside a chunked re-framing."""

from __future__ import annotations

import logging

import pytest
import trio
from _httpkit import HttpClient, answer, http_router, node_server, open_client

from brood.routers.http.settings import HttpSettings


def settings(**kw) -> HttpSettings:
    kw.setdefault("server_name", b"vm")
    return HttpSettings(**kw)


async def exchange(answers: dict[bytes, bytes], raw: bytes, **kw) -> bytes:
    """Everything the client gets for ``raw`` until the router closes, with node "a"
    answering ``answers[path]`` (whole, then a close)."""
    async def behave(conn, request):
        path = next(p for p in answers if b"\x09\x00PATH_INFO" + len(p).to_bytes(2, "little")
                    + p in request)
        await answer(answers[path])(conn, request)

    async with trio.open_nursery() as nursery:
        node = await nursery.start(node_server, behave)
        async with http_router({b"a": [node.address]}, settings(**kw)) as router:
            with await open_client(router.address) as sock:
                await sock.send(raw)
                got = b""
                with trio.fail_after(5):
                    while data := await sock.recv(65536):
                        got += data
        nursery.cancel_scope.cancel()
    return got


async def test_a_101_to_a_request_without_upgrade_is_a_502():
    got = await exchange({b"/": b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: foo\r\n"
                                b"Connection: Upgrade\r\n\r\nRAW"},
                         b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /next HTTP/1.1\r\nHost: a\r\n\r\n")
    assert got.startswith(b"HTTP/1.1 502 ") and b"101" not in got and b"RAW" not in got


async def test_a_status_under_100_is_a_502():
    got = await exchange({b"/": b"HTTP/1.1 099 Odd\r\nContent-Length: 3\r\n\r\nabc"},
                         b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    assert got.startswith(b"HTTP/1.1 502 ") and b"abc" not in got


async def test_an_http10_client_gets_no_interim_answer():
    node_answer = (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </s>\r\n\r\n"
                   b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    got = await exchange({b"/": node_answer}, b"GET / HTTP/1.0\r\nHost: a\r\n\r\n")
    assert got == b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    got11 = await exchange({b"/": node_answer},
                           b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    assert got11.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 ")


async def test_a_chunked_answer_reaches_an_http10_client_decoded_and_closed():
    node_answer = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\n"
                   b"X-Kept: 1\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\nX-T: 1\r\n\r\n")
    async with trio.open_nursery() as nursery:
        node = await nursery.start(node_server, answer(node_answer))
        async with http_router({b"a": [node.address]}, settings()) as router:
            with await open_client(router.address) as sock:
                client = HttpClient(sock)
                await client.send(b"GET / HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n")
                head, body = await client.response()
                assert body == b"hello world"
                assert b"Transfer-Encoding" not in head and b"Trailer" not in head
                assert b"X-Kept: 1\r\n" in head and b"Connection: close\r\n" in head
                assert await client.closed()
        nursery.cancel_scope.cancel()


async def test_uwsgi_encoding_never_reaches_the_client_with_auto_gzip():
    opt_in = b"HTTP/1.1 200 OK\r\nuWSGI-Encoding: gzip\r\n\r\n"
    answers = {
        b"/head": opt_in,
        b"/204": b"HTTP/1.1 204 No Content\r\nuWSGI-Encoding: gzip\r\n\r\n",
        b"/length": b"HTTP/1.1 200 OK\r\nuWSGI-Encoding: gzip\r\nContent-Length: 5\r\n\r\nhello",
    }
    gz = b"Host: a\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n"
    head = await exchange(answers, b"HEAD /head HTTP/1.1\r\n" + gz, auto_gzip=True)
    # a HEAD gets the headers its GET would
    assert b"Content-Encoding: gzip\r\n" in head and b"Vary: Accept-Encoding\r\n" in head
    no_content = await exchange(answers, b"GET /204 HTTP/1.1\r\n" + gz, auto_gzip=True)
    length = await exchange(answers, b"GET /length HTTP/1.1\r\n" + gz, auto_gzip=True)
    assert length.endswith(b"\r\n\r\nhello")
    for got in (head, no_content, length):
        assert got.startswith(b"HTTP/1.1 2") and b"uwsgi-encoding" not in got.lower()


async def test_a_part_of_a_range_is_not_gzipped():
    """Content-Range counts the bytes before any coding: a gzipped part would corrupt
    the whole a client puts together (uWSGI gzips it)."""
    part = (b"HTTP/1.1 206 Partial Content\r\nuWSGI-Encoding: gzip\r\n"
            b"Content-Range: bytes 0-4/100\r\n\r\nhello")
    got = await exchange({b"/part": part}, b"GET /part HTTP/1.1\r\nHost: a\r\nRange: bytes=0-4"
                         b"\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n",
                         auto_gzip=True)
    assert got.startswith(b"HTTP/1.1 206 ") and got.endswith(b"\r\n\r\nhello")
    assert b"content-encoding" not in got.lower() and b"uwsgi-encoding" not in got.lower()


async def test_a_connect_2xx_is_a_tunnel_not_a_body_to_reframe():
    """Its Content-Length frames nothing (RFC 9110 §9.3.6) and goes; the bytes after the
    head are the tunnel's, passed as they are, never chunked."""
    got = await exchange({b"a:80": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: 1\r\n\r\nok"},
                         b"CONNECT a:80 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
                         auto_chunked=True)
    assert got == b"HTTP/1.1 200 OK\r\nX-A: 1\r\n\r\nok"


async def test_an_answer_head_that_trickles_in_is_not_a_timeout():
    """Each byte of a slow head restarts the node's idle timeout, on the fast lane too."""
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Slow: " + b"s" * 20 + b"\r\n\r\n"

    async def trickle(conn, request):
        for i in range(len(head)):
            await conn.send(head[i:i + 1])
            await trio.sleep(0.05)  # the node's pace: 2.5 s in all, 0.3 s idle at most
        await conn.send(b"ok")

    async with trio.open_nursery() as nursery:
        node = await nursery.start(node_server, trickle)
        async with http_router({b"a": [node.address]}, settings(timeout=0.3)) as router:
            with await open_client(router.address) as sock:
                client = HttpClient(sock)
                await client.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
                got_head, body = await client.response()
                assert got_head == head and body == b"ok"
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("path", ["lane", "general"])
async def test_an_answer_cut_short_by_the_node_is_logged(path, caplog):
    caplog.set_level(logging.INFO)
    cut = b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 30000
    raw = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"
    if path == "general":
        raw = b"PROXY TCP4 192.0.2.7 198.51.100.1 40000 80\r\n" + raw
    got = await exchange({b"/": cut}, raw, proxy_protocol=path == "general")
    assert got.startswith(b"HTTP/1.1 200 OK") and len(got) < len(cut) + 100  # then a close
    assert any("cut short" in r.getMessage() for r in caplog.records)


async def test_a_coded_chunked_answer_to_an_http10_client_is_a_502():
    """Decoded for it, the answer would lose its gzip coding unnamed."""
    got = await exchange({b"/": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
                                b"2\r\nGZ\r\n0\r\n\r\n"},
                         b"GET / HTTP/1.0\r\nHost: a\r\n\r\n")
    assert got.startswith(b"HTTP/1.1 502 ") and b"GZ" not in got


@pytest.mark.parametrize("after", [b"garbage\r\n\r\n", b""])
async def test_a_node_failing_after_an_interim_answer_still_gets_the_client_a_502(after):
    """A 1xx is no answer: the final status still can be the router's own (as haproxy
    does); the client was left with the 100 and a close."""
    got = await exchange({b"/": b"HTTP/1.1 100 Continue\r\n\r\n" + after},
                         b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    assert got.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 502 Bad Gateway\r\n")


async def test_a_node_silent_after_an_interim_answer_gets_the_client_a_504():
    async def behave(conn, request):
        await conn.send(b"HTTP/1.1 100 Continue\r\n\r\n")
        await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        node = await nursery.start(node_server, behave)
        async with http_router({b"a": [node.address]}, settings(timeout=0.3)) as router:
            with await open_client(router.address) as sock:
                await sock.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
                got = b""
                with trio.fail_after(5):
                    while data := await sock.recv(65536):
                        got += data
        nursery.cancel_scope.cancel()
    assert got.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 504 Gateway Timeout\r\n")


@pytest.mark.parametrize("coding, merged", [(b"identity", b"chunked"),
                                            (b"gzip", b"gzip, chunked")])
async def test_a_coded_close_delimited_answer_rechunked_has_one_transfer_encoding(coding,
                                                                                  merged):
    got = await exchange({b"/": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: " + coding
                                + b"\r\n\r\nhello"},
                         b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
                         auto_chunked=True)
    head, body = got.split(b"\r\n\r\n", 1)
    assert [line for line in head.split(b"\r\n") if line.lower().startswith(b"transfer-")] \
        == [b"Transfer-Encoding: " + merged]
    assert body == b"5\r\nhello\r\n0\r\n\r\n"


@pytest.mark.parametrize("node_answer", [
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",  # the lane's own
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",  # general
    b"HTTP/1.1 204 No Content\r\nConnection: keep-alive\r\n\r\n",
])
async def test_keepalive_off_tells_an_http11_client_the_connection_ends(node_answer):
    """--http-keepalive=0: the router closes after each answer; a client that would
    send its next request there is told so (RFC 9112 §9.6), not left to find it out."""
    got = await exchange({b"/": node_answer}, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
                         keepalive=False)
    head, body = got.split(b"\r\n\r\n", 1)
    assert head.endswith(b"\r\nConnection: close")
    assert body == node_answer.split(b"\r\n\r\n", 1)[1]
