"""Two-way byte relay between a client and a node, with half-close and an idle timeout.

How it works: the two directions are sibling tasks in one nursery. Each copies until its
source reaches EOF, then half-closes its destination (``shutdown(SHUT_WR)`` or
``send_eof``) so the peer sees the end too. One cancel scope wraps both; every chunk moved
in either direction pushes its deadline forward, so the relay only times out when the
whole session is idle. A reset or broken pipe on either side ends both directions.

Between two plain kernel sockets (TCP or unix, no TLS) the bytes never enter Python:
``os.splice`` moves them socket -> pipe -> socket. Otherwise chunks are copied through
``recv``/``send`` (raw sockets) or ``receive_some``/``send_all`` (trio streams, e.g. TLS).

``Endpoint`` is either a raw ``trio.socket`` socket or a ``trio.abc.Stream``.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
from dataclasses import dataclass
from typing import Union

import trio

Endpoint = Union[trio.socket.SocketType, trio.abc.Stream]  # noqa: UP007

# Bytes per recv in the copying path: large enough that a 64 KiB response is one call.
COPY_CHUNK = 65536
# Pipe capacity asked for the splice path; Linux caps unprivileged pipes at
# /proc/sys/fs/pipe-max-size (1 MiB by default). Bigger pipes mean fewer syscalls.
PIPE_SIZE = 1 << 20
HAS_SPLICE = hasattr(os, "splice")
_SPLICE_FLAGS = (getattr(os, "SPLICE_F_MOVE", 1) | getattr(os, "SPLICE_F_NONBLOCK", 2))
_SPLICE_FAMILIES = (socket.AF_INET, socket.AF_INET6, socket.AF_UNIX)
# Errors that mean "the peer went away": they end the session, they are not bugs.
_GONE = (OSError, trio.BrokenResourceError, trio.ClosedResourceError)


@dataclass
class RelayResult:
    """What one relay moved: ``a_to_b``/``b_to_a`` byte counts, and how it ended."""

    a_to_b: int = 0
    b_to_a: int = 0
    timed_out: bool = False
    spliced: bool = False
    error: BaseException | None = None


def can_splice(a: Endpoint, b: Endpoint) -> bool:
    """True when both ends are plain kernel stream sockets, so splice(2) applies."""
    return (
        HAS_SPLICE
        and isinstance(a, trio.socket.SocketType)
        and isinstance(b, trio.socket.SocketType)
        and a.family in _SPLICE_FAMILIES
        and b.family in _SPLICE_FAMILIES
    )


async def send_all(end: Endpoint, data: bytes | bytearray | memoryview) -> None:
    """Write every byte of ``data`` to a raw socket or a stream."""
    if isinstance(end, trio.socket.SocketType):
        view = memoryview(data)
        while view:
            sent = await end.send(view)
            view = view[sent:]
    else:
        await end.send_all(data)


async def receive_some(end: Endpoint, max_bytes: int = COPY_CHUNK) -> bytes:
    """Up to ``max_bytes`` from a raw socket or a stream; b"" at EOF."""
    if isinstance(end, trio.socket.SocketType):
        return await end.recv(max_bytes)
    return await end.receive_some(max_bytes)


async def send_eof(end: Endpoint) -> None:
    """Half-close the sending side, when the endpoint can; otherwise do nothing."""
    if isinstance(end, trio.socket.SocketType):
        try:
            end.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # already closed or reset: nothing left to signal
        return
    eof = getattr(end, "send_eof", None)
    if eof is not None:
        try:
            await eof()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass


def set_nodelay(sock: trio.socket.SocketType | socket.socket) -> None:
    """Disable Nagle on TCP sockets (a 40 ms stall per response otherwise, see PERF.md)."""
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass  # the peer already reset the connection; the first I/O will tell


async def relay(
    a: Endpoint,
    b: Endpoint,
    *,
    idle_timeout: float,
    end_when_b_done: bool = False,
    splice: bool | None = None,
    result: RelayResult | None = None,
) -> RelayResult:
    """Copy a->b and b->a until both directions hit EOF (or b->a does, when
    ``end_when_b_done``: a uwsgi node closing its answer ends the session).

    ``splice`` None means "whenever possible". The caller owns and closes both ends.
    A ``result`` passed in holds the byte counts even if the relay is cancelled.
    """
    use_splice = can_splice(a, b) if splice is None else (splice and can_splice(a, b))
    result = result if result is not None else RelayResult()
    result.spliced = use_splice
    scope = trio.CancelScope(deadline=trio.current_time() + idle_timeout)
    counts = [0, 0]

    def touch() -> None:
        scope.deadline = trio.current_time() + idle_timeout

    async def one_way(src: Endpoint, dst: Endpoint, slot: int, nursery: trio.Nursery,
                      last: bool) -> None:
        try:
            if use_splice:
                await _splice_copy(src, dst, counts, slot, touch)  # type: ignore[arg-type]
            else:
                await _copy(src, dst, counts, slot, touch)
        except _GONE as exc:
            result.error = exc
            nursery.cancel_scope.cancel()
            return
        await send_eof(dst)
        if last:
            nursery.cancel_scope.cancel()

    try:
        with scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(one_way, a, b, 0, nursery, False)
                nursery.start_soon(one_way, b, a, 1, nursery, end_when_b_done)
    finally:
        result.a_to_b, result.b_to_a = counts
    result.timed_out = scope.cancelled_caught
    return result


async def _copy(src: Endpoint, dst: Endpoint, counts: list[int], slot: int, touch) -> None:
    while True:
        data = await receive_some(src, COPY_CHUNK)
        if not data:
            return
        await send_all(dst, data)
        counts[slot] += len(data)
        touch()


def _open_pipe() -> tuple[int, int]:
    r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
    except OSError:
        pass  # a smaller pipe still works, with more syscalls
    return r, w


async def _splice_copy(
    src: trio.socket.SocketType, dst: trio.socket.SocketType, counts: list[int], slot: int,
    touch,
) -> None:
    """socket -> pipe -> socket with splice(2); the pipe is drained after every fill, so
    EAGAIN on the fill always means "source empty" and on the drain "destination full"."""
    r, w = _open_pipe()
    src_fd, dst_fd = src.fileno(), dst.fileno()
    try:
        while True:
            try:
                moved = os.splice(src_fd, w, PIPE_SIZE, flags=_SPLICE_FLAGS)
            except BlockingIOError:
                await trio.lowlevel.wait_readable(src)
                continue
            except OSError as exc:
                if exc.errno == errno.EINTR:
                    continue
                raise
            if moved == 0:
                return
            while moved:
                try:
                    out = os.splice(r, dst_fd, moved, flags=_SPLICE_FLAGS)
                except BlockingIOError:
                    await trio.lowlevel.wait_writable(dst)
                    continue
                moved -= out
                counts[slot] += out
            touch()
            # Yield between chunks so a fast pair cannot starve the other sessions.
            await trio.lowlevel.checkpoint()
    finally:
        os.close(r)
        os.close(w)
