"""One connection on an --http-socket: HTTP/1.x requests, keep-alive, chunked bodies.

The head is parsed with brood.protocol.http1 (limited by --buffer-size) and turned
into the vars uWSGI's HTTP router would send (router=None), so both protocols share
one environ (``http_environ`` builds it straight from the head, equal to the vars path). Unlike uWSGI, a chunked request body reaches the app de-chunked
(CONTENT_LENGTH absent, wsgi.input_terminated set). A malformed head is answered with
its ProtocolError's status and the connection closes. Between keep-alive requests the
worker waits through ``Worker.recv_idle``, which a graceful stop may cut short.
"""

from __future__ import annotations

import io
import socket
from typing import TYPE_CHECKING, Any

from brood.protocol.errors import ProtocolError
from brood.protocol.http1 import parse_request_head
from brood.workers.environ import http_environ
from brood.workers.input import ChunkedInput, LengthInput
from brood.workers.response import Core, error_response, linger_close

if TYPE_CHECKING:
    from brood.workers.wsgi import Endpoint

_RECV = 65536
# Unread body bytes dropped to keep a connection alive; past this it is closed.
_DRAIN_LIMIT = 65536


def serve_http(core: Core, conn: socket.socket, addr: Any, endpoint: Endpoint) -> None:
    """Serve requests on one HTTP connection until either side ends it."""
    worker = core.worker
    limit = worker.buffer_size
    remote_addr, port = endpoint.remote(addr)
    remote_port = str(port)
    buf = b""
    first = True
    while True:
        try:
            head = parse_request_head(buf, limit) if buf else None
            while head is None:
                data = conn.recv(_RECV) if first or buf else worker.recv_idle(conn)
                if not data:
                    return
                buf += data
                head = parse_request_head(buf, limit)
        except ProtocolError as exc:
            worker.log(f"bad HTTP request from {remote_addr}: {exc.reason} ({exc.status})")
            try:
                conn.sendall(error_response("HTTP/1.1", exc.status))
                linger_close(conn)
            except OSError:
                pass
            return
        except OSError:
            return  # reset, or the read timeout (SO_RCVTIMEO) on a silent client
        first = False
        body = buf[head.size :]
        buf = b""
        version = "HTTP/1.1" if head.version == b"HTTP/1.1" else "HTTP/1.0"
        if head.chunked:
            inp: Any = ChunkedInput(conn, body, worker.limit_post, head.expect_continue)
        else:
            length = head.content_length or 0
            if worker.limit_post and length > worker.limit_post:
                worker.log(f"body of {length} bytes over limit-post {worker.limit_post}: 413")
                try:
                    conn.sendall(error_response(version, 413))
                    linger_close(conn)
                except OSError:
                    pass
                return
            if len(body) >= length:
                inp = io.BytesIO(body[:length]) if length else io.BytesIO()
                buf = body[length:]
            else:
                inp = LengthInput(conn, body, length - len(body), head.expect_continue)
        environ = http_environ(
            head,
            remote_addr=remote_addr,
            remote_port=remote_port,
            server_name=endpoint.server_name_str,
            server_port=endpoint.server_port_str,
            wsgi_input=inp,
            errors=worker.errors,
            multithread=worker.multithread,
            multiprocess=worker.multiprocess,
            file_wrapper=worker.file_wrapper,
            extra=worker.extra_environ,
        )
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
        if type(inp) is not io.BytesIO:
            try:
                done = inp.drain(_DRAIN_LIMIT)
            except (ProtocolError, OSError):
                done = False
            if not done:
                linger_close(conn)  # unread body: a plain close would reset the answer
                return
            if head.chunked:
                buf = inp.rest
        if not keep or worker.stopping:
            return
