"""The client side of a connection and request bodies on their way to a node.

``Client`` is one accepted connection: its socket (raw, or a TLS stream later) and the
bytes read but not used yet, so a pipelined next request is never lost.

A body is planned before the node is contacted (``plan_body``) and finished after
(``BodyPlan.stream``):

* Content-Length: the bytes already read go out with the request head, in one send;
  the rest is relayed as it comes, never held whole.
* chunked, default: de-chunked whole before the node is contacted, in memory up to
  ``chunked_buffer``, then in a temporary file (``brood.routers.net.spool``), and sent
  with CONTENT_LENGTH: a WSGI app reads it as any body (a node without
  ``--http-chunked-input`` would read a chunked one as empty). ``--limit-post`` bounds
  it (413).
* chunked with ``--http-chunked-input``: streamed chunked from the first byte
  (re-encoded, so the node only ever sees clean framing: no extensions, no trailers).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import trio

from brood.protocol.chunked import LAST_CHUNK, ChunkedDecoder, encode_chunk
from brood.protocol.errors import BadRequest
from brood.protocol.http1 import RequestHead
from brood.routers.net.relay import Endpoint, receive_some, send_all
from brood.routers.net.spool import Spool

RECV = 65536


class ClientGone(Exception):
    """The client closed or stalled in the middle of a request: nothing to answer."""


def peer_address(peer: object) -> tuple[str, int]:
    """(address, port) of an accepted socket's peer; ("", 0) for a unix peer."""
    if isinstance(peer, tuple) and len(peer) >= 2:
        return str(peer[0]), int(peer[1])
    return "", 0


class Client:
    """One client connection and its unread bytes."""

    __slots__ = ("sock", "buf", "remote_addr", "remote_port")

    def __init__(self, sock: Endpoint, remote_addr: str, remote_port: int) -> None:
        self.sock = sock
        self.buf = b""
        self.remote_addr = remote_addr
        self.remote_port = remote_port

    async def read_more(self) -> bool:
        """Append one read to ``buf``; False at EOF."""
        data = await receive_some(self.sock, RECV)
        if not data:
            return False
        self.buf = self.buf + data if self.buf else data
        return True

    async def read_next(self) -> bool:
        """``read_more`` for bytes that cannot have arrived yet (a keep-alive client's
        next request right after our answer): on a raw socket it waits for readability
        before the recv instead of after a recv that fails."""
        if isinstance(self.sock, trio.socket.SocketType):
            await trio.lowlevel.wait_readable(self.sock)
        return await self.read_more()

    async def receive(self, max_bytes: int = RECV) -> bytes:
        """Unread bytes first, then the socket."""
        if self.buf:
            data, self.buf = self.buf[:max_bytes], self.buf[max_bytes:]
            return data
        return await receive_some(self.sock, max_bytes)


@dataclass(slots=True)
class BodyPlan:
    """How a request body reaches the node: ``prefix`` goes with the head; ``remaining``
    Content-Length bytes, a ``decoder`` (chunked streaming) or a ``spool`` (a de-chunked
    body too large for the prefix) follow via ``stream``. ``close`` when done."""

    prefix: bytes = b""
    content_length: int | None = None  # set when a chunked body was de-chunked whole
    remaining: int = 0
    decoder: ChunkedDecoder | None = None
    spool: Spool | None = None
    lead: bytes = b""  # a prefix too large to go with the head: ``stream`` sends it first

    @property
    def pending(self) -> bool:
        return (self.remaining > 0 or self.decoder is not None or self.spool is not None
                or bool(self.lead))

    def with_head(self, limit: int) -> bytes:
        """What of the body goes with the request head, in its send: the prefix, unless
        it is over ``limit`` bytes (a chunked body held in memory, up to a MiB). Then it
        is the first thing ``stream`` sends, while the answer is read: a node that
        answers early (a 413) and closes without reading it gets its answer relayed,
        not a 502 from a head send blocked on it."""
        if len(self.prefix) <= limit:
            return self.prefix
        self.lead, self.prefix = self.prefix, b""
        return b""

    def close(self) -> None:
        if self.spool is not None:
            self.spool.close()

    async def stream(self, client: Client, node: Endpoint, touch: Callable[[], None],
                     out: Any) -> int:
        """Send the rest of the body to ``node``; returns the bytes sent. ClientGone when
        the client stops sending; OSError when the node stops reading. ``out.waiting`` is
        "read" while the client's next bytes are awaited (the idle timeout's culprit)."""
        sent = 0
        if self.lead:
            lead, self.lead = self.lead, b""
            await _send_owed(client, node, lead)
            sent += len(lead)
            touch()
        if self.spool is not None:
            sent += await self.spool.send_to(node, None, touch)  # type: ignore[arg-type]
        while self.remaining:
            out.waiting = "read"
            data = await _from_client(client, min(RECV, self.remaining))
            out.waiting = ""
            if not data:
                raise ClientGone(f"client closed with {self.remaining} body bytes missing")
            self.remaining -= len(data)
            touch()
            await _send_owed(client, node, data)
            sent += len(data)
            if self.remaining:  # (not after the last piece: see below)
                await trio.lowlevel.checkpoint()  # the socket calls yield only when they wait
        decoder = self.decoder
        while decoder is not None:
            out.waiting = "read"
            data = await _from_client(client, RECV)
            out.waiting = ""
            if not data:
                raise ClientGone("client closed inside a chunked body")
            touch()
            chunks = b"".join([encode_chunk(piece) for piece in decoder.feed(data)])
            if decoder.done:
                chunks += LAST_CHUNK
                client.buf = decoder.rest
                self.decoder = decoder = None
            if chunks:
                await _send_owed(client, node, chunks)
                sent += len(chunks)
            if decoder is not None:
                await trio.lowlevel.checkpoint()  # the socket calls yield only when they wait
        # No checkpoint once the last byte went: an answer that ends meanwhile cancels
        # the caller's relay there, and a body sent whole would be taken for one cut
        # short (the client's kept-alive connection closed after a keep-alive answer).
        return sent


async def _send_owed(client: Client, node: Endpoint, data: bytes) -> None:
    """``data``, read off the client, to the node. Cancelled midway (a 101 answered before
    the node read the whole body: the connection becomes a pipe), what the node has not
    taken goes back in front of ``client.buf``, which the pipe sends first: dropping it
    left a hole in the stream."""
    owed = [data]
    try:
        await send_all(node, data, owed)
    except trio.Cancelled:
        client.buf = bytes(owed[0]) + client.buf
        raise


async def _from_client(client: Client, max_bytes: int) -> bytes:
    """The client's next body bytes; ClientGone when it reset (not the node's failure:
    an OSError while a body streams means the node stopped reading)."""
    try:
        return await client.receive(max_bytes)
    except OSError as exc:
        raise ClientGone(f"client gone inside its body: {exc.strerror or exc}") from exc


async def plan_body(client: Client, head: RequestHead, *, chunked_input: bool,
                    chunked_buffer: int, timeout: float, body_limit: int = 0) -> BodyPlan:
    """Take the body bytes already read off ``client.buf`` and decide how the rest goes.
    Reads a chunked body whole (unless ``chunked_input``) before any node is chosen,
    held in memory up to ``chunked_buffer`` bytes, then in a temporary file;
    ProtocolError for a malformed one (a 408 when it stalls, a 413 past ``body_limit``,
    a 500 when the file cannot be written), ClientGone when the client closes."""
    if head.chunked:
        if chunked_input:
            return _stream_chunked(client)
        return await _buffer_chunked(client, chunked_buffer, timeout, body_limit)
    length = head.content_length or 0
    if not length:
        return BodyPlan()
    buf = client.buf
    if len(buf) >= length:
        client.buf = buf[length:]
        return BodyPlan(prefix=buf[:length] if len(buf) > length else buf)
    client.buf = b""
    return BodyPlan(prefix=buf, remaining=length - len(buf))


def _stream_chunked(client: Client) -> BodyPlan:
    """--http-chunked-input: what came with the head re-encoded, the rest streamed."""
    decoder = ChunkedDecoder()
    pieces = decoder.feed(client.buf) if client.buf else []
    client.buf = b""
    prefix = b"".join([encode_chunk(piece) for piece in pieces])
    if decoder.done:
        client.buf = decoder.rest
        return BodyPlan(prefix=prefix + LAST_CHUNK)
    return BodyPlan(prefix=prefix, decoder=decoder)


async def _buffer_chunked(client: Client, memory_limit: int, timeout: float,
                          body_limit: int) -> BodyPlan:
    """The whole de-chunked body, held as it comes (one buffer, not a piece per chunk:
    tiny chunks cost no more than their bytes)."""
    decoder = ChunkedDecoder()
    spool = Spool(memory_limit)
    try:
        data, client.buf = client.buf, b""
        while True:
            try:
                for piece in decoder.feed(data) if data else ():
                    spool.write(piece)
            except OSError as exc:  # the temporary file: no room, no fd left
                raise BadRequest(f"cannot hold the chunked body: {exc.strerror or exc}",
                                 status=500) from exc
            if body_limit and spool.size > body_limit:
                raise BadRequest(f"chunked body over {body_limit} bytes (--limit-post)",
                                 status=413)
            if decoder.done:
                break
            with trio.move_on_after(timeout):
                data = await receive_some(client.sock, RECV)
                if not data:
                    raise ClientGone("client closed inside a chunked body")
                await trio.lowlevel.checkpoint()  # the recv yields only when it waits
                continue
            raise BadRequest(f"client sent no body byte for {timeout:g}s", status=408)
    except BaseException:
        spool.close()
        raise
    client.buf = decoder.rest
    if spool.file is None:
        return BodyPlan(prefix=bytes(spool.memory), content_length=spool.size)
    return BodyPlan(content_length=spool.size, spool=spool)
