"""Two-way byte relay between a client and a node, with half-close and an idle timeout.

How it works: the two directions run in one nursery (a->b in a child task, b->a in the
body). Each copies until its source reaches EOF, then half-closes its destination
(``shutdown(SHUT_WR)`` or ``send_eof``) so the peer sees the end too. One cancel scope
wraps both; every chunk moved in either direction pushes its deadline forward, so the
relay only times out when the whole session is idle. A reset or broken pipe on either
side ends both directions, but for one: b failing a write from a (a node that answered
early, a 413 say, and closed without reading the rest of the body) leaves b->a to run
until b's end, so that what b sent before reaches a (Linux keeps received bytes readable
after a reset).

Between two plain kernel sockets (TCP or unix, no TLS) the bytes never enter Python:
``os.splice`` moves them socket -> pipe -> socket, through a pipe taken from a per-process
pool for each chunk and given back drained (no pipe2/fcntl/close per session, and an
idle session holds no pipe). Otherwise chunks are copied through ``recv``/``send`` (raw
sockets, ``sockio``) or ``receive_some``/``send_all`` (trio streams, e.g. TLS).

``relay_answer`` is the one-way case (a request fully sent, only the answer to come back)
and ``splice_exactly`` moves a framed body of known length.

``Endpoint`` is either a raw ``trio.socket`` socket or a ``trio.abc.Stream``.
"""

from __future__ import annotations

import fcntl
import math
import os
import socket
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Union

import trio

from brood.routers.net import sockio

Endpoint = Union[trio.socket.SocketType, trio.abc.Stream]  # noqa: UP007

# Bytes per recv in the copying path: large enough that a 64 KiB response is one call.
COPY_CHUNK = 65536
# Pipe capacity asked for the splice path; Linux caps unprivileged pipes at
# /proc/sys/fs/pipe-max-size (1 MiB by default). Bigger pipes mean fewer syscalls:
# measured here with 1 GiB through one connection, 1 MiB moves about 0.7 MB per splice
# pair; 256 KiB was no faster and 64 KiB half as fast. Larger SO_RCVBUF/SO_SNDBUF than
# loopback's autotuning gave nothing; SPLICE_F_MORE is not used because it may hold back
# the last bytes of an answer.
PIPE_SIZE = 1 << 20
# A fast lane splices a pipeful from a node at a time, but no more than the client's
# send buffer has room for (``client_room``), and never less than this: bytes the client
# cannot take are read out of the pipe and wait in Python, so this bounds what a stalled
# client holds there (about 64 KiB, not a pipeful).
SLOW_TAKE = 1 << 16
HAS_SPLICE = hasattr(os, "splice")
SPLICE_FLAGS = (getattr(os, "SPLICE_F_MOVE", 1) | getattr(os, "SPLICE_F_NONBLOCK", 2))
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
    failed: Endpoint | None = None  # the end whose read or write raised ``error``
    # A write to b failed: b stopped reading (closed, or reset) with a's bytes still
    # coming. A read error from b after that is the same close seen from the other side.
    b_stopped_reading: bool = False
    a_left: bool = False  # a hung up before b's first byte (``relay_answer(watch_a=True)``)
    b_first: bytes = b""  # b's first bytes, when asked (``relay(peek_b=N)``)


class EndFailed(Exception):
    """``error`` raised by a read from or a write to ``end`` (an endpoint, or an fd for
    ``splice_pipeful``): who broke off (a client gone is not a node's failure)."""

    def __init__(self, end: Endpoint | int, error: BaseException) -> None:
        super().__init__(end, error)
        self.end = end
        self.error = error


def deadline_slack(timeout: float) -> float:
    """How far past an idle timeout its deadline may land: an eighth of it, at most 1 s.

    Moving a cancel scope's deadline costs trio a heap push; an idle deadline pushed
    forward on every chunk moved is therefore moved only when it is off by more than this
    (``push_deadline``), about once a second per connection under load. uWSGI checks its
    timeouts once a second too."""
    return min(1.0, timeout / 8)


def push_deadline(scope: trio.CancelScope, deadline: float, slack: float) -> None:
    """Make ``scope`` fire within [deadline, deadline + slack]; a no-op (no heap push in
    trio) when its deadline already lies there."""
    current = scope.deadline
    if current < deadline or current > deadline + slack:
        scope.deadline = deadline + slack


def can_splice(a: Endpoint, b: Endpoint) -> bool:
    """True when both ends are plain kernel stream sockets, so splice(2) applies."""
    return (
        HAS_SPLICE
        and isinstance(a, trio.socket.SocketType)
        and isinstance(b, trio.socket.SocketType)
        and a.family in _SPLICE_FAMILIES
        and b.family in _SPLICE_FAMILIES
    )


async def send_all(end: Endpoint, data: bytes | bytearray | memoryview,
                   owed: list | None = None) -> None:  # fmt: skip
    """Write every byte of ``data`` to a raw socket or a stream. On a raw socket this is
    a checkpoint only when it has to wait (``sockio``): loops must yield themselves, and
    ``owed[0]`` follows what is left to send (a caller cancelled midway knows it)."""
    if isinstance(end, trio.socket.SocketType):
        await sockio.send_all(end, data, owed)
    else:
        await end.send_all(data)


async def receive_some(end: Endpoint, max_bytes: int = COPY_CHUNK) -> bytes:
    """Up to ``max_bytes`` from a raw socket or a stream; b"" at EOF. On a raw socket
    this is a checkpoint only when it has to wait (``sockio``): loops must yield."""
    if isinstance(end, trio.socket.SocketType):
        return await sockio.recv(end, max_bytes)
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


# After an answer that leaves part of a client's request unread: read and drop what the
# client still sends for this long (and at most this much) before closing, so that the
# close, with unread bytes, does not reset the connection and destroy the answer in flight.
LINGER_TIME = 1.0
LINGER_BYTES = 1 << 20
# A peer that keeps sending within ``idle`` is dropped from no later than this (nginx's
# lingering_time): a trickle must not hold the connection for ever.
LINGER_MAX = 30.0
# The most of a request body read and dropped after an answer that came before it.
DROP_MAX = 64 << 20


async def linger(sock: Endpoint, max_bytes: int = LINGER_BYTES,
                 idle: float | None = None) -> None:
    """Half-close, then drop what the peer still sends: up to ``max_bytes``, for a moment
    (``LINGER_TIME``) or, given ``idle``, for as long as each read comes within it (a
    body the peer is known to be sending), up to ``LINGER_MAX`` in all."""
    if isinstance(sock, trio.socket.SocketType):
        try:
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            return
    dropped = 0
    end = trio.current_time() + LINGER_MAX
    with trio.move_on_after(LINGER_TIME if idle is None else math.inf) as overall:
        try:
            while dropped < max_bytes:
                if idle is not None:
                    overall.deadline = min(trio.current_time() + idle, end)
                data = await receive_some(sock, 65536)
                if not data:
                    return
                dropped += len(data)
                await trio.lowlevel.checkpoint()  # the recv yields only when it waits
        except _GONE:
            return


def set_nodelay(sock: trio.socket.SocketType | socket.socket) -> None:
    """Disable Nagle on TCP sockets (a 40 ms stall per response otherwise, see PERF.md)."""
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass  # the peer already reset the connection; the first I/O will tell


def listener_nodelay(sock: trio.socket.SocketType | socket.socket) -> bool:
    """Whether connections accepted from a listening socket come with TCP_NODELAY: Linux
    gives a connection its listener's when its handshake completes, so one set before
    ``listen`` (``sockets.bind_listener``) saves a setsockopt per connection. True also
    when they are not TCP. False for a listener made elsewhere without it (``fd://``):
    it gets it now, but connections queued before keep Nagle, so each accepted one still
    needs ``set_nodelay``."""
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return True
    try:
        if sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY):
            return True
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:
        pass
    return False


async def relay(
    a: Endpoint,
    b: Endpoint,
    *,
    idle_timeout: float,
    end_when_b_done: bool = False,
    splice: bool | None = None,
    result: RelayResult | None = None,
    a_left_if_first: bool = False,
    peek_b: int = 0,
    a_owed: Callable[[Callable[[], None]], Awaitable[int]] | None = None,
) -> RelayResult:
    """Copy a->b and b->a until both directions hit EOF (or b->a does, when
    ``end_when_b_done``: a uwsgi node closing its answer ends the session).
    ``a_left_if_first``: a's end of stream before b's first byte ends it (``a_left``):
    a client gone, where a half-close has no meaning (a uwsgi request). ``peek_b``: up
    to that many of b's first bytes are kept in ``b_first`` (a raw socket's, looked at
    in place before they are moved: what an answer's status line says). ``a_owed``:
    what b is owed of a's stream before a's next bytes (``await a_owed(touch)`` writes
    it to b and says how many bytes), sent in the a->b direction while b->a already
    flows: b may not read it all before its own output is read.

    ``splice`` None means "whenever possible". The caller owns and closes both ends.
    A ``result`` passed in holds the byte counts even if the relay is cancelled.
    """
    use_splice = can_splice(a, b) if splice is None else (splice and can_splice(a, b))
    result = result if result is not None else RelayResult()
    result.spliced = use_splice
    scope = trio.CancelScope(deadline=trio.current_time() + idle_timeout)
    counts = [0, 0]
    for end in (a, b):
        _urgent_inline(end)

    def touch() -> None:
        scope.deadline = trio.current_time() + idle_timeout

    ended = [False, False]  # each direction's source reached its end

    async def one_way(src: Endpoint, dst: Endpoint, slot: int, nursery: trio.Nursery,
                      last: bool) -> None:
        try:
            if slot and peek_b and isinstance(src, trio.socket.SocketType):
                result.b_first = await _peek(src, peek_b)
            if not slot and a_owed is not None:
                try:
                    counts[0] += await a_owed(touch)
                except _GONE as exc:
                    raise EndFailed(b, exc) from exc
            await _copy_one_way(src, dst, counts, slot, touch, use_splice)
        except EndFailed as exc:
            result.error, result.failed = exc.error, exc.end
            if exc.end is b and dst is b:  # b's answer may still be on its way: b->a ends
                result.b_stopped_reading = ended[slot] = True
                return
            nursery.cancel_scope.cancel()
            return
        except _GONE as exc:  # neither read nor write (a wait on a closed socket)
            result.error = exc
            nursery.cancel_scope.cancel()
            return
        if a_left_if_first and src is a and not counts[1]:
            result.a_left = True
            nursery.cancel_scope.cancel()
            return
        await send_eof(dst)
        ended[slot] = True
        if last or all(ended):  # done: what the kernel still holds goes out after close
            nursery.cancel_scope.cancel()
        elif isinstance(dst, trio.socket.SocketType):
            # The other way goes on: a slow reader still draining this way's kernel
            # queue keeps the session from being idle meanwhile.
            await while_taken(dst, touch)

    try:
        with scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(one_way, a, b, 0, nursery, False)
                await one_way(b, a, 1, nursery, end_when_b_done)  # a task spawn saved
    finally:
        result.a_to_b, result.b_to_a = counts
    result.timed_out = scope.cancelled_caught
    return result


async def relay_answer(
    a: Endpoint,
    b: Endpoint,
    *,
    idle_timeout: float,
    splice: bool | None = None,
    result: RelayResult | None = None,
    watch_a: bool = False,
) -> RelayResult:
    """Copy b->a until b's EOF, reading nothing from a: the answer to a request that has
    nothing left to send (a uwsgi request without body). The same result as ``relay``
    with ``end_when_b_done`` and a silent a, without its nursery and second task; a is
    not half-closed at the end (the caller closes it right away). ``watch_a``: until
    b's first byte, a's end of stream or reset ends it (``a_left``): a client gone, no
    one to read the answer."""
    use_splice = can_splice(a, b) if splice is None else (splice and can_splice(a, b))
    result = result if result is not None else RelayResult()
    result.spliced = use_splice
    scope = trio.CancelScope(deadline=trio.current_time() + idle_timeout)
    counts = [0, 0]

    def touch() -> None:
        scope.deadline = trio.current_time() + idle_timeout

    try:
        with scope:
            try:
                if watch_a and not await b_speaks_first(a, b):
                    result.a_left = True
                    return result
                await _copy_one_way(b, a, counts, 1, touch, use_splice)
            except EndFailed as exc:
                result.error, result.failed = exc.error, exc.end
            except _GONE as exc:
                result.error = exc
    finally:
        result.b_to_a = counts[1]
    result.timed_out = scope.cancelled_caught
    return result


async def _peek(sock: trio.socket.SocketType, size: int) -> bytes:
    """Up to ``size`` of the first bytes ``sock`` has, left in place (b"" at its end or
    on an error, which the copy that follows meets and reports)."""
    await trio.lowlevel.wait_readable(sock)
    try:
        return sockio.raw(sock).recv(size, socket.MSG_PEEK)
    except OSError:
        return b""


async def b_speaks_first(a: Endpoint, b: Endpoint, *, eof_is_gone: bool = True) -> bool:
    """Wait for b's first bytes (or its end); False when a hung up before: its reset, or
    its end of stream too when ``eof_is_gone`` (not for an HTTP client, whose half-close
    still waits for its answer). Bytes from a stop the watch: a is still there."""
    a_sock = sockio.raw(a)  # type: ignore[arg-type]
    left = False
    async with trio.open_nursery() as nursery:
        async def watch_a() -> None:
            nonlocal left
            await trio.lowlevel.wait_readable(a)
            gone = sockio.peer_gone(a_sock)
            if gone == sockio.RESET or (gone == sockio.EOF and eof_is_gone):
                left = True
                nursery.cancel_scope.cancel()

        nursery.start_soon(watch_a)
        await trio.lowlevel.wait_readable(b)
        nursery.cancel_scope.cancel()
    return not left


async def _copy_one_way(src: Endpoint, dst: Endpoint, counts: list[int], slot: int, touch,
                        use_splice: bool) -> None:
    """src -> dst until src's EOF, by splice when both ends allow it."""
    if use_splice:
        await _splice_copy(src, dst, counts, slot, touch)  # type: ignore[arg-type]
    else:
        await _copy(src, dst, counts, slot, touch)


async def _copy(src: Endpoint, dst: Endpoint, counts: list[int], slot: int, touch) -> None:
    while await _copy_chunk(src, dst, counts, slot, touch):
        # Neither call in it yields when it need not wait: a fast pair yields here.
        await trio.lowlevel.checkpoint()


async def _copy_chunk(src: Endpoint, dst: Endpoint, counts: list[int], slot: int,
                      touch) -> bool:
    """One chunk src -> dst by recv and send; False at src's EOF."""
    try:
        data = await receive_some(src, COPY_CHUNK)
    except _GONE as exc:
        raise EndFailed(src, exc) from exc
    if not data:
        return False
    try:
        if isinstance(dst, trio.socket.SocketType):
            await send_patiently(dst, data, lambda sock: writable_or_moving(sock, touch))
        else:
            await dst.send_all(data)
    except _GONE as exc:
        raise EndFailed(dst, exc) from exc
    counts[slot] += len(data)
    touch()
    return True


async def send_patiently(sock: trio.socket.SocketType, data: bytes | memoryview,
                         wait: Callable[[trio.socket.SocketType], Awaitable[None]]) -> None:
    """``send_all`` on a raw socket, ``await wait(sock)`` while it is full (a wait that
    lets a slow reader keep the idle deadline away: ``writable_or_moving``)."""
    raw, view = sockio.raw(sock), memoryview(data)
    while view:
        try:
            view = view[raw.send(view):]
        except BlockingIOError:
            await wait(sock)


# Empty pipes kept for the next chunk of any session of this process: a session takes a
# pipe only while a chunk is in flight and gives it back drained, so idle sessions hold no
# pipe and a short one costs no pipe2/fcntl/close at all.
_PIPES: list[tuple[int, int]] = []
_PIPES_KEPT = 32


def _drop_pipes() -> None:
    while _PIPES:
        for fd in _PIPES.pop():
            os.close(fd)


# A forked child must not share pipes with its parent (the master forks router processes).
os.register_at_fork(after_in_child=_drop_pipes)


def _open_pipe() -> tuple[int, int]:
    r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
    except OSError:
        pass  # a smaller pipe still works, with more syscalls
    return r, w


def splice_pipeful(src_fd: int, dst_fd: int, want: int) -> tuple[int, int, bytes]:
    """Up to ``want`` bytes src -> dst by splice(2) through a pooled pipe, without
    waiting: (bytes taken from src, bytes dst took, the rest, read out of the pipe so that
    it goes back to the pool empty). (0, 0, b"") is src's EOF. BlockingIOError: src has
    nothing now; EndFailed (``end``: the fd) when either side fails.

    A short take does not say src is drained (a pipe may hold less than asked:
    F_SETPIPE_SZ can fail): the next call's BlockingIOError does. With no fd left for a
    pipe, the chunk is copied instead (at most ``COPY_CHUNK`` bytes)."""
    pipe = _pipe_or_none()
    if pipe is None:
        return _copy_once(src_fd, dst_fd, min(want, COPY_CHUNK))
    try:
        moved = os.splice(src_fd, pipe[1], want, flags=SPLICE_FLAGS)
    except OSError as exc:
        give_pipe(pipe, True)
        if isinstance(exc, BlockingIOError):
            raise
        raise EndFailed(src_fd, exc) from exc
    if not moved:
        give_pipe(pipe, True)
        return 0, 0, b""
    try:
        out = os.splice(pipe[0], dst_fd, moved, flags=SPLICE_FLAGS)
    except BlockingIOError:
        out = 0
    except OSError as exc:
        give_pipe(pipe, False)
        raise EndFailed(dst_fd, exc) from exc
    rest = os.read(pipe[0], moved - out) if out < moved else b""
    give_pipe(pipe, True)
    return moved, out, rest


def _copy_once(src_fd: int, dst_fd: int, want: int) -> tuple[int, int, bytes]:
    """``splice_pipeful`` by read and write, for a process out of fds for a pipe."""
    try:
        data = os.read(src_fd, want)
    except BlockingIOError:
        raise
    except OSError as exc:
        raise EndFailed(src_fd, exc) from exc
    if not data:
        return 0, 0, b""
    try:
        out = os.write(dst_fd, data)
    except BlockingIOError:
        out = 0
    except OSError as exc:
        raise EndFailed(dst_fd, exc) from exc
    return len(data), out, data[out:]


# How long before the idle deadline a blocked send looks whether its peer took bytes,
# and how many it must have taken since the last look to count as reading: a peer that
# reads nothing still lets a few KiB through as its kernel compacts its full buffer.
_LOOK_AHEAD = 0.05
_MIN_PROGRESS = 16384


async def writable_or_moving(sock: trio.socket.SocketType, touch) -> None:
    """Until ``sock`` can take more. Just before the idle deadline, a peer whose send
    queue moved since the last look is reading, however slowly (the kernel wakes a
    blocked sender only once a third of a large buffer is free): ``touch()`` pushes the
    deadline and the wait goes on. A peer that took (next to) nothing lets the deadline
    fire."""
    fd = sock.fileno()
    queued = sockio.send_queue(fd)
    while True:
        deadline = trio.current_effective_deadline()
        ahead = min(_LOOK_AHEAD, (deadline - trio.current_time()) / 2)
        with trio.move_on_at(deadline - ahead):
            await trio.lowlevel.wait_writable(sock)
            return
        now = sockio.send_queue(fd)
        if now < 0 or queued - now < _MIN_PROGRESS:  # it took (next to) nothing
            await trio.lowlevel.wait_writable(sock)  # the idle deadline decides
            return
        queued = now
        touch()
        if trio.current_effective_deadline() <= deadline:  # a hard deadline: not pushed
            await trio.lowlevel.wait_writable(sock)
            return


async def while_taken(sock: trio.socket.SocketType, touch) -> None:
    """After the last byte went to ``sock``: while its peer still takes bytes from the
    kernel's send queue, however slowly, push the idle deadline (``touch``), looking just
    before it as ``writable_or_moving`` does. Returns once the queue is empty, or stalled
    (the deadline then decides)."""
    fd = sock.fileno()
    queued = sockio.send_queue(fd)
    while queued > 0:
        deadline = trio.current_effective_deadline()
        await trio.sleep_until(deadline - min(_LOOK_AHEAD, (deadline - trio.current_time()) / 2))
        if trio.current_effective_deadline() > deadline:
            continue  # the other direction moved bytes meanwhile: look again later
        now = sockio.send_queue(fd)
        if now < 0 or (now and queued - now < _MIN_PROGRESS):  # it took (next to) nothing
            return
        touch()
        if trio.current_effective_deadline() <= deadline:  # a hard deadline: not pushed
            return
        queued = now


def client_room(sock: socket.socket, want: int) -> int:
    """``want``, cut to what ``sock``'s send buffer has room for, at least ``SLOW_TAKE``:
    how much a lane splices at once toward a client. The room is half of SO_SNDBUF less
    the queue (SIOCOUTQ): the buffer counts the kernel's overhead too, and a queue of
    spliced pages fills it at about 70% payload here."""
    if want <= SLOW_TAKE:
        return want
    try:
        room = sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) // 2 - sockio.send_queue(
            sock.fileno())
    except OSError:
        return want
    return want if room >= want else max(room, SLOW_TAKE)


def _pipe_or_none() -> tuple[int, int] | None:
    """``take_pipe``, or None when this process has no fd (or memory) left for a pipe:
    the caller copies that chunk instead of failing the session for a local limit."""
    try:
        return take_pipe()
    except OSError:
        return None


def take_pipe() -> tuple[int, int]:
    """An empty pipe (read end, write end) from the pool; give it back with ``give_pipe``."""
    return _PIPES.pop() if _PIPES else _open_pipe()


def give_pipe(pipe: tuple[int, int], empty: bool) -> None:
    """Back to the pool when ``empty``; closed otherwise (or when the pool is full)."""
    if empty and len(_PIPES) < _PIPES_KEPT:
        _PIPES.append(pipe)
    else:
        os.close(pipe[0])
        os.close(pipe[1])


async def _splice_copy(
    src: trio.socket.SocketType, dst: trio.socket.SocketType, counts: list[int], slot: int,
    touch,
) -> None:
    """socket -> pipe -> socket with splice(2); the pipe is drained after every fill, so
    EAGAIN on the fill always means "source empty" and on the drain "destination full".
    The pipe comes from the pool for each chunk and goes back before waiting for more."""
    src_fd, dst_fd = src.fileno(), dst.fileno()
    pipe = None
    moved = 0  # bytes in the pipe
    waited = False  # readable, said the last wait
    try:
        while True:
            if pipe is None:
                pipe = _pipe_or_none()
                if pipe is None:  # out of fds: this chunk is copied
                    if not await _copy_chunk(src, dst, counts, slot, touch):
                        return
                    await trio.lowlevel.checkpoint()  # the copy yields only when it waits
                    continue
            try:
                moved = os.splice(src_fd, pipe[1], PIPE_SIZE, flags=SPLICE_FLAGS)
            except BlockingIOError:
                give_pipe(pipe, True)
                pipe = None
                if waited and at_urgent_mark(src_fd):
                    # Urgent data: splice never crosses its mark; a read does (the byte
                    # stays in the stream, SO_OOBINLINE), then splicing goes on.
                    waited = False
                    if not await _copy_past_mark(src, dst, counts, slot, touch):
                        return
                    continue
                await trio.lowlevel.wait_readable(src)
                waited = True
                continue
            except OSError as exc:
                raise EndFailed(src, exc) from exc
            waited = False
            if moved == 0:
                give_pipe(pipe, True)
                pipe = None
                if at_urgent_mark(src_fd):  # 0 at a mark with the EOF queued behind it
                    if not await _copy_past_mark(src, dst, counts, slot, touch):
                        return
                    continue
                return
            while moved:
                try:
                    out = os.splice(pipe[0], dst_fd, moved, flags=SPLICE_FLAGS)
                except BlockingIOError:
                    await writable_or_moving(dst, touch)
                    continue
                except OSError as exc:
                    raise EndFailed(dst, exc) from exc
                moved -= out
                counts[slot] += out
                touch()  # each part the destination took: a slow reader is no idle one
            # Yield between chunks so a fast pair cannot starve the other sessions; the
            # empty pipe goes back first (kept across the yield, a thousand websockets
            # echoing at once held two fds each: new clients met EMFILE).
            give_pipe(pipe, True)
            pipe = None
            await trio.lowlevel.checkpoint()
    finally:
        if pipe is not None:
            give_pipe(pipe, moved == 0)


def _urgent_inline(end: Endpoint) -> None:
    """Urgent data (MSG_OOB: telnet's interrupt, FTP's ABOR) is relayed as a plain byte
    of the stream, not dropped."""
    if isinstance(end, trio.socket.SocketType):
        try:
            end.setsockopt(socket.SOL_SOCKET, socket.SO_OOBINLINE, 1)
        except OSError:
            pass  # reset already: the relay's first call says so


_SIOCATMARK = 0x8905  # linux/sockios.h
_INT = struct.Struct("i")


def at_urgent_mark(fd: int) -> bool:
    """Whether a socket's next byte is urgent data (sockatmark)."""
    try:
        return bool(_INT.unpack(fcntl.ioctl(fd, _SIOCATMARK, bytes(_INT.size)))[0])
    except OSError:
        return False


async def _copy_past_mark(src: trio.socket.SocketType, dst: trio.socket.SocketType,
                          counts: list[int], slot: int, touch) -> bool:
    """One read across an urgent mark, copied on; False at EOF."""
    try:
        src.setsockopt(socket.SOL_SOCKET, socket.SO_OOBINLINE, 1)
        data = await sockio.recv(src, COPY_CHUNK)
    except OSError as exc:
        raise EndFailed(src, exc) from exc
    if not data:
        return False
    try:
        await sockio.send_all(dst, data)
    except _GONE as exc:
        raise EndFailed(dst, exc) from exc
    counts[slot] += len(data)
    touch()
    return True


async def splice_exactly(src: trio.socket.SocketType, dst: trio.socket.SocketType,
                         nbytes: int, touch, wait_dst=None) -> int:
    """Move ``nbytes`` from ``src`` to ``dst`` through a pooled pipe (a framed body whose
    length is known: nothing past it is read). Returns the bytes moved, fewer only when
    ``src`` reached EOF; OSError when ``src`` fails, EndFailed when ``dst`` does.
    ``touch()`` after every chunk; ``await wait_dst(dst)`` while ``dst`` is full (by
    default ``writable_or_moving``)."""
    if wait_dst is None:
        async def wait_dst(sock: trio.socket.SocketType) -> None:
            await writable_or_moving(sock, touch)
    src_fd, dst_fd = src.fileno(), dst.fileno()
    pipe = _pipe_or_none()
    if pipe is None:  # out of fds for a pipe: copied instead
        return await _copy_exactly(src, dst, nbytes, touch, wait_dst)
    left = nbytes
    moved = 0  # bytes in the pipe
    try:
        while left:
            try:
                moved = os.splice(src_fd, pipe[1], min(left, PIPE_SIZE), flags=SPLICE_FLAGS)
            except BlockingIOError:
                await trio.lowlevel.wait_readable(src)
                continue
            if moved == 0:
                break
            left -= moved
            while moved:
                try:
                    moved -= os.splice(pipe[0], dst_fd, moved, flags=SPLICE_FLAGS)
                except BlockingIOError:
                    await wait_dst(dst)
                except OSError as exc:
                    raise EndFailed(dst, exc) from exc
            touch()
            if left:
                await trio.lowlevel.checkpoint()  # the splices yield only when they wait
    finally:
        give_pipe(pipe, moved == 0)
    return nbytes - left


async def _copy_exactly(src: trio.socket.SocketType, dst: trio.socket.SocketType,
                        nbytes: int, touch, wait_dst) -> int:
    """``splice_exactly`` by recv and send."""
    left = nbytes
    while left:
        data = await sockio.recv(src, min(left, COPY_CHUNK))
        if not data:
            break
        try:
            await send_patiently(dst, data, wait_dst)
        except OSError as exc:
            raise EndFailed(dst, exc) from exc
        left -= len(data)
        touch()
        await trio.lowlevel.checkpoint()  # the socket calls yield only when they wait
    return nbytes - left
