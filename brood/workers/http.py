"""One connection on an --http-socket: HTTP/1.x requests, keep-alive, chunked bodies.

The head is parsed with brood.protocol.http1 (limited by --buffer-size) and turned
into the vars uWSGI's HTTP router would send (router=None), so both protocols share
one environ (``http_environ`` builds it straight from the head, equal to the vars
path). Unlike uWSGI, a chunked request body reaches the app de-chunked
(CONTENT_LENGTH absent, wsgi.input_terminated set). A malformed head is answered with
its ProtocolError's status and the connection closes.

``serve_http`` serves what is ready and returns instead of waiting for the client's
next request: the caller parks the connection (single-threaded loop) or waits on it
(threaded loop), then calls again. A worker is never idle on one keep-alive client
while others wait.
"""

from __future__ import annotations

from io import BytesIO
from typing import Any

from brood.protocol.errors import ProtocolError
from brood.protocol.http1 import parse_request_head
from brood.workers.conn import Conn
from brood.workers.environ import http_environ_on
from brood.workers.input import ChunkedInput, LengthInput
from brood.workers.response import Core, error_response, linger_close

_RECV = 65536
# Unread body bytes dropped to keep a connection alive; past this it is closed.
_DRAIN_LIMIT = 65536


def serve_http(core: Core, client: Conn) -> bool:
    """Serve the requests ready on ``client``; True when it may carry another one.

    Reads (blocking, bounded by the socket's read timeout) until a whole head is in,
    serves it and any request pipelined behind it, and returns once nothing more is
    buffered. ``client.buf`` holds bytes the caller already received.
    """
    worker = core.worker
    conn = client.sock
    base = client.endpoint.environ_base
    limit = worker.buffer_size
    remote_addr = client.remote_addr
    remote_port = client.remote_port
    buf = client.buf
    client.buf = b""
    while True:
        try:
            head = parse_request_head(buf, limit) if buf else None
            while head is None:
                data = conn.recv(_RECV)
                if not data:
                    return False
                buf += data
                head = parse_request_head(buf, limit)
        except ProtocolError as exc:
            worker.log(f"bad HTTP request from {remote_addr}: {exc.reason} ({exc.status})")
            try:
                conn.sendall(error_response("HTTP/1.1", exc.status))
                linger_close(conn)
            except OSError:
                pass
            return False
        except OSError:
            return False  # reset, or the read timeout (SO_RCVTIMEO) on a silent client
        version = "HTTP/1.1" if head.version == b"HTTP/1.1" else "HTTP/1.0"
        size = head.size
        if head.chunked:
            inp: Any = ChunkedInput(conn, buf[size:], worker.limit_post, head.expect_continue)
            buf = b""
        else:
            length = head.content_length or 0
            if worker.limit_post and length > worker.limit_post:
                worker.log(f"body of {length} bytes over limit-post {worker.limit_post}: 413")
                try:
                    conn.sendall(error_response(version, 413))
                    linger_close(conn)
                except OSError:
                    pass
                return False
            end = size + length
            if len(buf) >= end:  # the whole body came with the head
                inp = BytesIO(buf[size:end]) if length else BytesIO()
                buf = buf[end:] if len(buf) > end else b""
            else:
                inp = LengthInput(conn, buf[size:], end - len(buf), head.expect_continue)
                buf = b""
        environ = http_environ_on(head, base, remote_addr, remote_port, inp)
        core.version = version
        core.http = True
        core.head_only = head.method == b"HEAD"
        core.keep = head.keep_alive and worker.may_keep_alive()
        vsize = nvars = 0
        if worker.logging:
            for key, value in environ.items():
                if "." not in key:
                    nvars += 1
                    vsize += len(key) + len(value) + 4
        keep = worker.serve_request(core, environ, vsize, nvars)
        if type(inp) is not BytesIO:
            try:
                done = inp.drain(_DRAIN_LIMIT)
            except (ProtocolError, OSError):
                done = False
            if not done:
                linger_close(conn)  # unread body: a plain close would reset the answer
                return False
            if head.chunked:
                buf = inp.rest
        if not keep:
            return False
        if not buf:  # (stopping: parked, and ``Worker._last_requests`` serves or closes it)
            return True
