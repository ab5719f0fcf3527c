"""One connection on a uwsgi-protocol socket: a packet in, raw HTTP out, then close.

The vars block is read with brood.protocol.uwsgi (limited by --buffer-size); the body
follows on the same stream, CONTENT_LENGTH bytes, and is handed to the app as
wsgi.input without reading past it. The answer starts with the request's
SERVER_PROTOCOL (HTTP/1.0 when absent), as uWSGI's python workers do.
"""

from __future__ import annotations

import io

from brood.protocol.errors import ProtocolError
from brood.protocol.uwsgi import PacketReader
from brood.workers.conn import Conn
from brood.workers.environ import build_environ
from brood.workers.input import LengthInput
from brood.workers.response import Core, error_response, linger_close

_RECV = 65536
# Unread body bytes dropped before closing; past this, a lingering close.
_DRAIN_LIMIT = 65536


def serve_uwsgi(core: Core, client: Conn) -> bool:
    """Serve the one request a uwsgi connection carries; always False (close it)."""
    worker = core.worker
    conn = client.sock
    reader = PacketReader(worker.buffer_size)
    try:
        packet = reader.feed(client.buf) if client.buf else None
        while packet is None:
            data = conn.recv(_RECV)
            if not data:
                return False
            packet = reader.feed(data)
    except ProtocolError as exc:
        worker.log(f"invalid uwsgi request from {client.peer()}: {exc.reason}")
        conn.sendall(error_response("HTTP/1.0", exc.status))
        return False
    if packet.modifier1 != 0:
        worker.log(f"unsupported uwsgi modifier1 {packet.modifier1} from {client.peer()}")
        return False
    pairs = packet.vars
    environ = build_environ(
        pairs,
        wsgi_input=None,
        errors=worker.errors,
        multithread=worker.multithread,
        multiprocess=worker.multiprocess,
        file_wrapper=worker.file_wrapper,
        extra=worker.extra_environ,
    )
    raw_length = environ.get("CONTENT_LENGTH")
    try:
        length = int(raw_length) if raw_length else 0
    except ValueError:
        length = -1
    version = environ.get("SERVER_PROTOCOL") or "HTTP/1.0"
    if length < 0:
        worker.log(f"bad CONTENT_LENGTH {raw_length!r} from {client.peer()}")
        conn.sendall(error_response(version, 400))
        return False
    if worker.limit_post and length > worker.limit_post:
        worker.log(f"body of {length} bytes over limit-post {worker.limit_post}: 413")
        conn.sendall(error_response(version, 413))
        linger_close(conn)
        return False
    body = reader.rest
    inp = None
    if len(body) >= length:
        environ["wsgi.input"] = io.BytesIO(body[:length])
    else:
        environ["wsgi.input"] = inp = LengthInput(conn, body, length - len(body))
    core.version = version
    core.http = False
    core.keep = False
    core.head_only = False
    worker.serve_request(core, environ, len(packet.raw) - 4, len(pairs))
    if inp is not None:
        try:
            done = inp.drain(_DRAIN_LIMIT)
        except OSError:
            done = False
        if not done:
            linger_close(conn)  # unread body: a plain close would reset the answer
    return False
