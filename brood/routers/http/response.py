"""A node's answer on its way to the client: parse only the head, relay the body.

How it works. The first read from the node usually holds the whole answer of a small
request; its head is parsed once (``parse_response_head``) for status and framing, and
the bytes go to the client in one send. Then, by framing:

* ``length``: exactly Content-Length bytes are relayed (extra bytes are dropped); a long
  rest goes by splice(2) from socket to socket when both are plain sockets;
* ``chunked``: bytes are relayed as they come while a ChunkedDecoder follows the
  framing to find the last chunk; an HTTP/1.0 client gets the body decoded, and a close;
* ``none`` (HEAD, 1xx, 204, 304): the head only;
* ``close``: relayed until the node closes. With ``--http-auto-chunked`` (or auto-gzip)
  and an HTTP/1.1 client, such an answer is re-framed chunked so keep-alive continues.

Interim 1xx heads are relayed (to HTTP/1.1 clients only) and the next head read; 101
hands the connection over to the caller (an upgrade), and is a bad answer to a request
that asked for none. A 2xx to CONNECT opens a tunnel the same way (without it, the
client's bytes waited unread behind an answer the node never ended).

``--http-auto-gzip`` follows uWSGI: a node opts in with the
header ``uWSGI-Encoding: gzip`` on an answer that has no Content-Length,
Transfer-Encoding nor Content-Encoding; the router compresses it when the client
accepts gzip. The ``uWSGI-Encoding`` header is an instruction to the router and never
reaches the client while auto-gzip is on (the fast lane hands such answers over).

The answer is complete (the client connection may be kept) only when the whole framed
body went out; ``Outcome.complete`` says so.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass

import trio
from trio.lowlevel import checkpoint

from brood.protocol.chunked import LAST_CHUNK, ChunkedDecoder, encode_chunk
from brood.protocol.errors import BadResponse
from brood.protocol.http1 import RequestHead, ResponseHead, parse_response_head
from brood.routers.engine import Upstream
from brood.routers.http.body import ClientGone
from brood.routers.net.relay import (
    EndFailed,
    Endpoint,
    can_splice,
    send_patiently,
    splice_exactly,
    writable_or_moving,
)

RECV = 65536
# The first read of an answer: the head and the start of the body. 16 KiB holds nearly
# every head and small answer whole; the rest of a longer Content-Length body is spliced
# (measured here, 64 KiB answers: 16 KiB + splice costs about 30% less CPU per request
# than one 256 KiB read, and 4 KiB reads gain nothing more).
FIRST_RECV = 1 << 14
# The rest of a Content-Length body at least this long goes node -> client with splice(2)
# (no copy through Python) when both ends are plain sockets; shorter rests are one
# recv/send, as cheap in syscalls and without the pipe.
SPLICE_MIN = 16384
# A node's response head may be as large as a request head; more is garbage.
RESPONSE_HEAD_LIMIT = 65535
_UWSGI_ENCODING = b"uwsgi-encoding"
_FRAMING = {b"content-length", b"transfer-encoding", b"content-encoding"}
# What an answer decoded for an HTTP/1.0 client loses: its framing and keep-alive.
_DECHUNK_DROP = {b"transfer-encoding", b"trailer", b"connection", b"keep-alive"}
_GZIP_LINES = [b"Content-Encoding: gzip", b"Vary: Accept-Encoding"]
_TUNNEL_DROP = {b"content-length", b"transfer-encoding"}


@dataclass(slots=True)
class Outcome:
    """What one exchange did, for keep-alive, the access log and error handling."""

    status: int = 0
    sent: int = 0  # bytes written to the client
    interim: int = 0  # of which interim 1xx heads (a final 502/504 may still follow them)
    keep_alive: bool = False  # the node's answer allows another request
    complete: bool = False
    upgraded: bool = False

    @property
    def answered(self) -> bool:
        """Some of the final answer reached the client: no error page can follow."""
        return self.sent > self.interim
    # What the exchange waits on when its idle timeout fires: "read", the client's body;
    # "write", the client taking the answer; "" the node.
    waiting: str = ""


def rewrite_head(raw: bytes, drop: set[bytes], add: list[bytes]) -> bytes:
    """``raw`` (a response head) without the headers named in ``drop`` (lower case) and
    with the ``add`` lines; CRLF line endings."""
    lines = [line.rstrip(b"\r") for line in raw.split(b"\n")]
    out = [lines[0]]
    for line in lines[1:]:
        if line and line.split(b":", 1)[0].strip().lower() not in drop:
            out.append(line)
    out.extend(add)
    return b"\r\n".join(out) + b"\r\n\r\n"


def with_close(data: bytes, size: int) -> bytes:
    """``data`` (an answer whose head is its first ``size`` bytes) with a
    ``Connection: close`` line at the end of its head; with the node's own
    ``Connection: keep-alive`` it reads "keep-alive, close": close wins (RFC 9112 §9.6)."""
    if data[size - 4:size] == b"\r\n\r\n":
        return data[:size - 2] + b"Connection: close\r\n" + data[size - 2:]
    return data[:size - 1] + b"Connection: close\n" + data[size - 1:]  # a bare-LF head


def wants_gzip(headers: list[tuple[bytes, bytes]]) -> bool:
    """The client's Accept-Encoding lists gzip (without q=0)."""
    for name, value in headers:
        if name.lower() == b"accept-encoding":
            for part in value.lower().split(b","):
                coding, _, params = part.strip().partition(b";")
                if coding.strip() in (b"gzip", b"*"):
                    q = params.strip().replace(b" ", b"")
                    if q not in (b"q=0", b"q=0.0", b"q=0.00", b"q=0.000"):
                        return True
    return False


async def _send(client: Endpoint, data: bytes | memoryview, touch: Callable[[], None],
                out: Outcome) -> None:
    """``data`` to the client. ClientGone when it is gone (not the node's failure); while
    it takes bytes, however slowly, the idle timeout does not run out."""
    try:
        if isinstance(client, trio.socket.SocketType):
            await send_patiently(client, data, lambda sock: client_writable(sock, touch, out))
        else:
            await client.send_all(data)
    except (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
        raise ClientGone(f"client gone: {getattr(exc, 'strerror', None) or exc}") from exc


async def client_writable(client: trio.socket.SocketType, touch: Callable[[], None],
                          out: Outcome) -> None:
    """``writable_or_moving`` for the client, ``out.waiting`` saying whom the exchange
    waits for should the idle deadline fire meanwhile."""
    out.waiting = "write"
    await writable_or_moving(client, touch)
    out.waiting = ""


async def read_head(up: Upstream, method: bytes, client: Endpoint, touch: Callable[[], None],
                    out: Outcome, interim: bool = True) -> tuple[ResponseHead, bytes]:
    """The final response head and every byte read so far; interim 1xx heads are
    relayed, or dropped when not ``interim`` (an HTTP/1.0 client knows none)."""
    data = b""
    chunk = await up.receive_answer(FIRST_RECV)  # the one checkpoint every request makes
    while True:
        if not chunk:
            raise BadResponse("node closed before a complete response head"
                              if data else "node closed without answering")
        touch()
        data = data + chunk if data else chunk
        head = parse_response_head(data, RESPONSE_HEAD_LIMIT, method)
        while head is not None and head.status < 200 and head.status != 101:
            if interim:
                await _send(client, data[:head.size], touch, out)
                out.sent += head.size
                out.interim += head.size
            data = data[head.size:]
            head = parse_response_head(data, RESPONSE_HEAD_LIMIT, method) if data else None
        if head is not None:
            return head, data
        chunk = await up.receive_some(RECV)


async def relay_response(up: Upstream, client: Endpoint, *, request: RequestHead,
                         accepts_gzip: bool, auto_chunked: bool, auto_gzip: bool,
                         touch: Callable[[], None], out: Outcome,
                         closing: bool = False) -> None:
    """Relay the node's answer to ``request`` to ``client``, filling ``out``.
    ``closing``: the router closes the connection after it (keep-alive off), so a
    client that expects to go on is told so."""
    client_http11 = request.version == b"HTTP/1.1"
    head, data = await read_head(up, request.method, client, touch, out, interim=client_http11)
    out.status = head.status
    tunnel = request.method == b"CONNECT" and 200 <= head.status < 300
    if head.status == 101 or tunnel:  # (RFC 9110 §9.3.6: a CONNECT's 2xx opens a tunnel)
        if request.upgrade is None and not tunnel:  # RFC 9110 §15.2.2: only if asked
            raise BadResponse("101 Switching Protocols to a request that asked for no upgrade")
        out.upgraded = True
        if tunnel:  # (RFC 9110 §9.3.6: such an answer has no framing, and a client ignores it)
            data = rewrite_head(data[:head.size], _TUNNEL_DROP, []) + data[head.size:]
        await _send(client, data, touch, out)
        out.sent += len(data)
        return
    kind = head.body_kind
    out.keep_alive = head.keep_alive
    gzip = auto_gzip and accepts_gzip and _gzip_opt_in(head)
    size = head.size
    if auto_gzip and kind != "close" and _has_line(head, _UWSGI_ENCODING):
        # the router's instruction never reaches the client; a HEAD gets the headers
        # its GET would (RFC 9110 §9.3.2)
        new = rewrite_head(data[:size], {_UWSGI_ENCODING}, _GZIP_LINES if gzip else [])
        data, size = new + data[size:], len(new)
    if closing and head.keep_alive and request.keep_alive and kind in ("length", "none",
                                                                       "chunked"):
        new = with_close(data, size)
        data, size = new, size + len(new) - len(data)
    if closing:
        out.keep_alive = False  # (the connection ends after it, said or not)
    if kind == "length":
        await _relay_length(up, client, data, size + (head.content_length or 0), touch, out)
    elif kind == "none":
        await _send(client, data[:size], touch, out)
        out.sent += size
        out.complete = True
    elif kind == "chunked":
        if not client_http11 and _codings(head) != [b"chunked"]:
            # decoded for an HTTP/1.0 client, it would lose its other coding unnamed
            raise BadResponse("a transfer coding other than chunked for an HTTP/1.0 client")
        await _relay_chunked(up, client, size, data, touch, out, dechunk=not client_http11)
    elif auto_gzip or auto_chunked:
        # chunked framing needs an HTTP/1.1 answer to an HTTP/1.1 client
        # (and not when the connection ends anyway: the close delimits it)
        chunk = (client_http11 and head.version == b"HTTP/1.1" and (auto_chunked or gzip)
                 and not closing)
        await _relay_reframed(up, client, head, data, touch, out, gzip=gzip, chunk=chunk)
    else:
        await _relay_until_close(up, client, data, touch, out)
    up.over = out.complete  # (a 101 went on above: its raw pipe is not over)


def _codings(head: ResponseHead) -> list[bytes]:
    return [c.strip().lower() for name, value in head.headers
            if name.lower() == b"transfer-encoding" for c in value.split(b",") if c.strip()]


def _has_line(head: ResponseHead, lname: bytes) -> bool:
    return any(name.lower() == lname for name, _ in head.headers)


def _gzip_opt_in(head: ResponseHead) -> bool:
    """uWSGI's condition: ``uWSGI-Encoding: gzip`` and no size nor Content-Encoding;
    and (brood) no part of a range: a 206's Content-Range counts the bytes before the
    coding, a client putting parts together would get corrupt data."""
    opted = False
    for name, value in head.headers:
        lname = name.lower()
        if lname == _UWSGI_ENCODING and value.strip().lower() == b"gzip":
            opted = True
        elif lname in _FRAMING or lname == b"content-range":
            return False
    return opted and head.status not in (204, 206, 304) and head.status >= 200


async def _relay_length(up: Upstream, client: Endpoint, data: bytes, total: int,
                        touch: Callable[[], None], out: Outcome) -> None:
    if len(data) >= total:
        await _send(client, data if len(data) == total else data[:total], touch, out)
        out.sent += total
        out.complete = True
        return
    await _send(client, data, touch, out)
    out.sent += len(data)
    remaining = total - len(data)
    if remaining >= SPLICE_MIN and can_splice(up.sock, client):
        try:
            moved = await splice_exactly(up.sock, client, remaining, touch,  # type: ignore[arg-type]
                                         lambda sock: client_writable(sock, touch, out))
        except EndFailed as failed:
            raise ClientGone(f"client gone: {failed.error}") from failed.error
        up.node.tx += moved
        out.sent += moved
        out.complete = moved == remaining
        if not out.complete:
            out.keep_alive = False  # truncated by the node
        return
    while remaining:
        data = await up.receive_some(min(RECV, remaining))
        if not data:
            out.keep_alive = False
            return  # truncated by the node: the client sees the connection close
        touch()
        await _send(client, data, touch, out)
        out.sent += len(data)
        remaining -= len(data)
        await checkpoint()  # the socket calls yield only when they wait
    out.complete = True


async def _relay_chunked(up: Upstream, client: Endpoint, size: int, data: bytes,
                         touch: Callable[[], None], out: Outcome, *, dechunk: bool) -> None:
    """A chunked answer (its head the first ``size`` bytes of ``data``), relayed as it
    comes while a decoder finds its end; or, for an HTTP/1.0 client (``dechunk``: it
    knows no chunked coding, RFC 9112 §6.1), decoded and ended by a close."""
    decoder = ChunkedDecoder(error=BadResponse)
    body = data[size:]
    if dechunk:
        out.keep_alive = False
        data = rewrite_head(data[:size], _DECHUNK_DROP, [b"Connection: close"])
    while True:
        if body:
            pieces = decoder.feed(body)
            if dechunk:
                data += b"".join(pieces)
            elif decoder.done and decoder.rest:
                data = data[:len(data) - len(decoder.rest)]
        if data:
            await _send(client, data, touch, out)
            out.sent += len(data)
        if decoder.done:
            out.complete = True
            return
        await checkpoint()  # the socket calls yield only when they wait
        body = await up.receive_some(RECV)
        if not body:
            out.keep_alive = False
            return
        data = b"" if dechunk else body
        touch()


async def _relay_until_close(up: Upstream, client: Endpoint, data: bytes,
                             touch: Callable[[], None], out: Outcome) -> None:
    out.keep_alive = False
    while data:
        await _send(client, data, touch, out)
        out.sent += len(data)
        await checkpoint()  # the socket calls yield only when they wait
        data = await up.receive_some(RECV)
        touch()
    out.complete = True


async def _relay_reframed(up: Upstream, client: Endpoint, head: ResponseHead, data: bytes,
                          touch: Callable[[], None], out: Outcome, *, gzip: bool,
                          chunk: bool) -> None:
    """A close-delimited answer, maybe gzipped, maybe re-framed chunked."""
    add = list(_GZIP_LINES) if gzip else []
    drop = {_UWSGI_ENCODING}
    if chunk:  # one Transfer-Encoding line, chunked last (a second line read as
        # "identity, chunked" is no chunked framing to clients)
        codings = [c for c in _codings(head) if c != b"identity"]
        add.append(b"Transfer-Encoding: " + b", ".join([*codings, b"chunked"]))
        drop |= {b"connection", b"transfer-encoding"}
    pending = rewrite_head(data[:head.size], drop, add)
    out.keep_alive = chunk
    compressor = zlib.compressobj(6, zlib.DEFLATED, 31) if gzip else None
    body = data[head.size:]
    while True:
        if body:
            if compressor is not None:
                body = compressor.compress(body) + compressor.flush(zlib.Z_SYNC_FLUSH)
            pending += encode_chunk(body) if chunk else body
        if pending:
            await _send(client, pending, touch, out)
            out.sent += len(pending)
        await checkpoint()  # the socket calls yield only when they wait
        body = await up.receive_some(RECV)
        touch()
        if not body:
            break
        pending = b""
    tail = compressor.flush() if compressor is not None else b""
    if chunk:
        tail = encode_chunk(tail) + LAST_CHUNK
    if tail:
        await _send(client, tail, touch, out)
        out.sent += len(tail)
    out.complete = True
