"""One HTTP/1 request through a node: the uwsgi packet, the body, the answer, upgrades.

``build_packet`` turns a parsed head into the vars block uWSGI's router would send
(WIRE §1.6) plus brood's additions (X-Forwarded-For append, de-chunked length).
``exchange`` runs on a connected ``Upstream``: head and the body bytes already read go
out in one send; a body still arriving is relayed by a sibling task while the answer is
read, so a node answering early (413, 401) is not held up by a slow upload. Both
directions share one idle deadline, pushed forward by every chunk moved: the deadline of
the connection's own cancel scope (one scope per connection, not per request or per
read: on this path a cancel scope costs as much as a syscall).

Upgrades: when the node answers 101 the connection becomes a two-way pipe with
half-close (relay with ``end_when_b_done=False``). ``--http-raw-body`` pipes everything
after the head to the node unparsed and ends when the node has answered.
"""

from __future__ import annotations

import math
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import trio

from brood.protocol.http1 import RequestHead
from brood.protocol.uwsgi import encode_header, encode_vars
from brood.protocol.vars import encode_request_vars, request_vars
from brood.routers.engine import Upstream
from brood.routers.http.body import BodyPlan, Client, ClientGone
from brood.routers.http.response import Outcome, relay_response, wants_gzip
from brood.routers.http.settings import HttpSettings
from brood.routers.net.relay import b_speaks_first, deadline_slack, push_deadline

# --http-raw-body: the node's first bytes, looked at for the request line's status.
_STATUS_PEEK = 1024
_STATUS_LINE_RE = re.compile(rb"(?:\A|\r\n\r\n)HTTP/\d\.\d (\d\d\d)[ \r]")

# A cheap C-level test for the rare header that needs a second pass over the vars.
# X-Forwarded-For by the var it makes: X_Forwarded_For is HTTP_X_FORWARDED_FOR too, and
# must not pass as the chain without the client appended.
_XFF_RE = re.compile(rb"\r\nx[-_]forwarded[-_]for:", re.IGNORECASE)


@dataclass(slots=True)
class Request:
    """A parsed request ready for a node: the vars block and how the body follows."""

    head: RequestHead
    block: bytes  # encoded vars, without the 4-byte header
    body: BodyPlan


def has_forwarded_for(buf: bytes, head_size: int) -> bool:
    """Whether the head in ``buf`` carries X-Forwarded-For (one C-level scan)."""
    return _XFF_RE.search(buf, 0, head_size) is not None


# The most body bytes sent with the request head in its one send: the kernel takes this
# much at once on loopback; a larger held body goes while the answer is read (see
# ``BodyPlan.with_head``).
PREFIX_WITH_HEAD = 64 * 1024


def build_vars_block(head: RequestHead, client: Client, settings: HttpSettings, *,
                     server_port: bytes, https: bool, content_length: int | None,
                     forwarded_for: bool) -> bytes:
    """The encoded vars block for ``head``."""
    facts = dict(
        remote_addr=client.remote_addr,
        remote_port=client.remote_port,
        server_name=settings.server_name,
        server_port=server_port,
        https=https,
        extra=settings.extra_vars,
        server_name_as_http_host=settings.server_name_as_http_host,
        content_length=content_length,
    )
    if not forwarded_for or not client.remote_addr:  # (a unix socket: nothing to add)
        return encode_request_vars(head, **facts)
    pairs = request_vars(head, **facts)
    # The proxy chain grows by the client we saw: "<existing>, <client ip>".
    addr = client.remote_addr.encode("ascii")
    for i, (key, value) in enumerate(pairs):
        if key == b"HTTP_X_FORWARDED_FOR":
            pairs[i] = (key, value + b", " + addr)
            break
    return encode_vars(pairs)


async def exchange(up: Upstream, client: Client, request: Request, settings: HttpSettings,
                   out: Outcome, scope: trio.CancelScope, hard_deadline: float) -> None:
    """Send ``request`` to the node and relay its answer; fills ``out``.

    ``scope`` is the connection's cancel scope: its deadline becomes the node idle
    timeout, pushed forward by every chunk moved, never past ``hard_deadline``
    (harakiri). When it fires the caller sees the scope cancelled and answers 504 if no
    byte went out yet. BadResponse means 502."""
    node = up.node
    head = request.head
    m1 = node.modifier1 if settings.modifier1 is None else settings.modifier1
    m2 = node.modifier2 if settings.modifier2 is None else settings.modifier2
    packet = (encode_header(m1, len(request.block), m2) + request.block
              + request.body.with_head(PREFIX_WITH_HEAD))
    touch = _toucher(scope, settings.timeout, hard_deadline)
    touch()
    if settings.raw_body:
        await up.send(packet)
        scope.deadline = hard_deadline  # the relay keeps its own idle timeout
        await _raw_pipe(up, client, out, end_when_node_done=True)
        return
    await up.send(packet)
    if not request.body.pending:
        if isinstance(client.sock, trio.socket.SocketType) and not await b_speaks_first(
                client.sock, up.sock, eof_is_gone=False):
            # A reset while the node works: no one reads its answer (as uWSGI, the
            # node's connection and the session go now, not when it answers).
            raise ClientGone("client reset before the answer")
        await _answer(up, client, head, settings, out, scope, hard_deadline, touch)
        return
    accepts_gzip = settings.auto_gzip and wants_gzip(head.headers)
    relay_args = dict(request=head, accepts_gzip=accepts_gzip, auto_chunked=settings.auto_chunked,
                      auto_gzip=settings.auto_gzip, touch=touch, out=out,
                      closing=not settings.keepalive or up.engine.draining)
    await _with_body(up, client, request.body, touch, relay_args, out)
    if out.upgraded:
        scope.deadline = hard_deadline
        await _raw_pipe(up, client, out, end_when_node_done=False, body=request.body)


async def answer(up: Upstream, client: Client, head: RequestHead, settings: HttpSettings,
                 out: Outcome, scope: trio.CancelScope, hard_deadline: float) -> None:
    """The second half of ``exchange`` for a request without a body that already went
    to the node (the HTTP router's fast lane hands such a request over here when the
    answer needs more than it does itself): relay the answer, then any upgrade."""
    touch = _toucher(scope, settings.timeout, hard_deadline)
    touch()
    await _answer(up, client, head, settings, out, scope, hard_deadline, touch)


async def _answer(up: Upstream, client: Client, head: RequestHead, settings: HttpSettings,
                  out: Outcome, scope: trio.CancelScope, hard_deadline: float,
                  touch: Callable[[], None]) -> None:
    await relay_response(up, client.sock, request=head,
                         accepts_gzip=settings.auto_gzip and wants_gzip(head.headers),
                         auto_chunked=settings.auto_chunked, auto_gzip=settings.auto_gzip,
                         touch=touch, out=out,
                         closing=not settings.keepalive or up.engine.draining)
    if out.upgraded:
        scope.deadline = hard_deadline
        await _raw_pipe(up, client, out, end_when_node_done=False)


def _toucher(scope: trio.CancelScope, timeout: float, hard_deadline: float
             ) -> Callable[[], None]:
    """What every chunk moved calls: push the scope's idle deadline, never past
    ``hard_deadline`` (harakiri)."""
    slack = deadline_slack(timeout)
    if hard_deadline == math.inf:
        def touch() -> None:
            push_deadline(scope, trio.current_time() + timeout, slack)
    else:
        def touch() -> None:
            target = trio.current_time() + timeout
            if target + slack < hard_deadline:
                push_deadline(scope, target, slack)
            elif scope.deadline != hard_deadline:
                scope.deadline = hard_deadline
    return touch


async def _with_body(up: Upstream, client: Client, body: BodyPlan, touch, answer: dict,
                     out: Outcome) -> None:
    """Relay the rest of the body while reading the answer. What either side raises
    comes out as itself, as from a request without a body (a nursery would wrap it in an
    ExceptionGroup that no caller's ``except`` matches): the client's first (it gone, or
    its chunked framing broken), then the answer's."""
    state: dict = {"done": False, "client": None, "answer": None}

    async def send_body() -> None:
        try:
            up.node.rx += await body.stream(client, up.sock, touch, out)
            state["done"] = True
        except OSError:
            pass  # the node stopped reading: its answer (if any) still counts
        except Exception as exc:  # ClientGone, or the client's bad chunked framing
            state["client"] = exc
            nursery.cancel_scope.cancel()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(send_body)
        try:
            await relay_response(up, client.sock, **answer)
        except Exception as exc:
            state["answer"] = exc
        if not state["done"]:
            nursery.cancel_scope.cancel()
    for failure in (state["client"], state["answer"]):
        if failure is not None:
            raise failure
    if not state["done"]:
        out.keep_alive = False  # unread body bytes: the next request cannot be found
        up.over = False  # part of the request is still owed: a reset would drop what is queued


def _owed(up: Upstream, client: Client, body: BodyPlan | None
          ) -> Callable[[Callable[[], None]], Awaitable[int]] | None:
    """What the node is owed before the client's next bytes, as ``relay``'s ``a_owed``
    (None: nothing): the rest of a spooled ``body`` a 101 cut short (the node answered
    before reading it all: up to --limit-post bytes, so not sent before the relay, which
    reads the node meanwhile), then the bytes read past the request (``client.buf``)."""
    spool = body.spool if body is not None else None
    if not client.buf and (spool is None or not spool.unsent):
        return None

    async def send(touch: Callable[[], None]) -> int:
        sent = 0
        if spool is not None and spool.unsent:
            sent += await spool.send_to(up.sock, None, touch)
        if client.buf:
            data, client.buf = client.buf, b""
            await up.send(data)
            sent += len(data)
        return sent
    return send


def raw_answer_status(first: bytes) -> int:
    """The status of a raw answer's first bytes: its first final status line (interim
    1xx heads may come before), or a lone interim one; 0 when they are no HTTP answer."""
    found = [int(code) for code in _STATUS_LINE_RE.findall(first)]
    return next((code for code in found if code >= 200), found[0] if found else 0)


async def _raw_pipe(up: Upstream, client: Client, out: Outcome, *,
                    end_when_node_done: bool, body: BodyPlan | None = None) -> None:
    """After a 101 (or with --http-raw-body): bytes both ways until done. The node gets
    what it is still owed first (``_owed``) while its own bytes already flow back."""
    out.keep_alive = False
    result = await up.relay(client.sock, end_when_node_done=end_when_node_done,
                            peek_node=0 if out.status else _STATUS_PEEK,
                            owed=_owed(up, client, body))
    if not out.status:  # --http-raw-body: the request line says what the node answered
        out.status = raw_answer_status(result.b_first)
    if result.timed_out:  # (the request line alone said nothing of the cut)
        engine = up.engine
        what = "upgraded connection" if out.upgraded else "raw body"
        engine.log_failure((client.remote_addr, client.remote_port) if client.remote_addr
                           else None,
                           f"{what} idle for {engine.settings.timeout:g}s, closed")
    out.sent += result.b_to_a
    out.complete = not result.timed_out and result.error is None

