"""Helpers for the HTTP router tests: an in-process router with explicit HttpSettings,
scriptable loopback nodes, and a small HTTP/1 client reading framed answers."""

from __future__ import annotations

import errno
import socket
from collections.abc import Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import trio
from _routerkit import DictResolver, bind_listener, send_all

from brood.protocol.http1 import parse_response_head
from brood.protocol.uwsgi import read_packet
from brood.routers.engine import Engine, RouterSettings
from brood.routers.http.router import HttpRouter
from brood.routers.http.settings import HttpSettings
from brood.routers.net.listen import accept_loop

OK = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nok\n"


@dataclass
class NodeServer:
    address: str
    requests: list[bytes] = field(default_factory=list)  # uwsgi packet (+ body) per connection
    connections: int = 0


async def read_request(conn: trio.socket.SocketType, *, chunked_body: bool = False) -> bytes:
    """One uwsgi request: the packet plus CONTENT_LENGTH body bytes, or a chunked body
    up to its last chunk when the vars say HTTP_TRANSFER_ENCODING and no length."""
    buf = b""
    while True:
        if len(buf) >= 4 and len(buf) >= 4 + int.from_bytes(buf[1:3], "little"):
            packet, rest = read_packet(buf)
            found = dict(packet.vars)
            if b"CONTENT_LENGTH" in found:
                if len(rest) >= int(found[b"CONTENT_LENGTH"] or 0):
                    return buf
            elif found.get(b"HTTP_TRANSFER_ENCODING") == b"chunked" and chunked_body:
                if rest.endswith(b"0\r\n\r\n"):
                    return buf
            else:
                return buf
        data = await conn.recv(65536)
        if not data:
            return buf
        buf += data


async def read_vars(conn: trio.socket.SocketType) -> bytes:
    """The uwsgi packet (header and vars) and not one byte more: a body stays unread,
    as a node that answers before reading it leaves it."""
    buf = b""
    while len(buf) < 4 or len(buf) < 4 + int.from_bytes(buf[1:3], "little"):
        want = 4 - len(buf) if len(buf) < 4 else 4 + int.from_bytes(buf[1:3], "little") - len(buf)
        data = await conn.recv(want)
        if not data:
            break
        buf += data
    return buf


Behaviour = Callable[[trio.socket.SocketType, bytes], Awaitable[None]]


def answer(data: bytes) -> Behaviour:
    async def behave(conn: trio.socket.SocketType, request: bytes) -> None:
        await send_all(conn, data)
    return behave


ANSWER_OK = answer(OK)


async def node_server(behave: Behaviour = ANSWER_OK, *, chunked_body: bool = True,
                      task_status=trio.TASK_STATUS_IGNORED) -> None:
    """A loopback uwsgi node: reads one request per connection, runs ``behave``, closes."""
    lsock = trio.socket.socket()
    await lsock.bind(("127.0.0.1", 0))
    lsock.listen(64)
    node = NodeServer(f"127.0.0.1:{lsock.getsockname()[1]}")

    async def serve(conn: trio.socket.SocketType) -> None:
        with conn:
            request = await read_request(conn, chunked_body=chunked_body)
            node.requests.append(request)
            try:
                await behave(conn, request)
            except OSError:
                pass

    with lsock:
        task_status.started(node)
        async with trio.open_nursery() as nursery:
            while True:
                conn, _ = await lsock.accept()
                node.connections += 1
                nursery.start_soon(serve, conn)


def answer_then_listen(answer: bytes, seen: list):
    """Answer ``answer``, stop sending (a half-close), then record how the router ended
    the connection: "reset", or "close" for a clean FIN."""
    async def behave(conn: trio.socket.SocketType, request: bytes) -> None:
        await send_all(conn, answer)
        seen.append(await how_it_ends(conn))
    return behave


async def how_it_ends(conn: trio.socket.SocketType) -> str:
    """Half-close ``conn``, then say how the peer ended it: "reset", or "close" (a FIN)."""
    try:
        conn.shutdown(socket.SHUT_WR)
        with trio.fail_after(5):
            return "close" if await conn.recv(16) == b"" else "bytes"
    except ConnectionResetError:
        return "reset"
    except OSError as exc:  # the reset came before the half-close
        return "reset" if exc.errno == errno.ENOTCONN else repr(exc)


@dataclass
class Router:
    address: str
    engine: Engine
    resolver: DictResolver
    listener_name: str
    handler: HttpRouter | None = None  # its ``lane`` is the fast lane, once a client came


@asynccontextmanager
async def http_router(table: dict[bytes, Sequence[str]], settings: HttpSettings | None = None,
                      *, proto: str = "http", timeout: float = 5.0):
    """An HTTP router on a loopback port 0 in front of ``table``; stopped on exit."""
    settings = settings or HttpSettings(server_name=socket.gethostname().encode())
    resolver = DictResolver(table)
    engine = Engine(RouterSettings("http", timeout=timeout, max_retries=0), resolver)
    listener = bind_listener(proto)
    handler = HttpRouter(engine, settings, listener)
    async with trio.open_nursery() as nursery:
        with trio.socket.from_stdlib_socket(listener.sock) as lsock:
            await nursery.start(accept_loop, lsock, handler, nursery)
            yield Router(listener.name, engine, resolver, listener.name, handler)
            nursery.cancel_scope.cancel()


async def open_client(address: str) -> trio.socket.SocketType:
    host, port = address.rsplit(":", 1)
    sock = trio.socket.socket()
    await sock.connect((host, int(port)))
    return sock


class HttpClient:
    """Reads framed answers (Content-Length, chunked or until close) off one socket."""

    def __init__(self, sock: trio.socket.SocketType) -> None:
        self.sock = sock
        self.buf = b""

    async def send(self, data: bytes) -> None:
        await send_all(self.sock, data)

    async def _more(self) -> bool:
        data = await self.sock.recv(1 << 20)
        self.buf += data
        return bool(data)

    async def response(self, method: bytes = b"GET", limit: float = 10) -> tuple[bytes, bytes]:
        """(head bytes, decoded body). Body read per the head's framing."""
        with trio.fail_after(limit):
            while (head := parse_response_head(self.buf, 65535, method)) is None:
                if not await self._more():
                    raise EOFError(f"closed before a head: {self.buf!r}")
            raw, self.buf = self.buf[:head.size], self.buf[head.size:]
            if head.body_kind == "none":
                return raw, b""
            if head.body_kind == "length":
                while len(self.buf) < head.content_length:
                    if not await self._more():
                        raise EOFError("closed inside a body")
                body, self.buf = self.buf[:head.content_length], self.buf[head.content_length:]
                return raw, body
            if head.body_kind == "chunked":
                from brood.protocol.chunked import ChunkedDecoder
                decoder = ChunkedDecoder()
                pieces = decoder.feed(self.buf)
                while not decoder.done:
                    data = await self.sock.recv(1 << 20)
                    if not data:
                        raise EOFError("closed inside a chunked body")
                    pieces += decoder.feed(data)
                self.buf = decoder.rest
                return raw, b"".join(pieces)
            while await self._more():
                pass
            body, self.buf = self.buf, b""
            return raw, body

    async def closed(self, limit: float = 5) -> bool:
        """True when the router closed the connection (nothing more to read)."""
        with trio.fail_after(limit):
            return not self.buf and not await self.sock.recv(1)


def packet_vars(request: bytes) -> tuple[dict[bytes, bytes], bytes]:
    packet, rest = read_packet(request)
    return dict(packet.vars), rest
