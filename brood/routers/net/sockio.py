"""Socket calls for the per-request path: try the syscall first, wait only when it would block.

How it works. A trio socket method is a checkpoint every time: a recv that finds data
still goes through the scheduler once before it returns, and ``connect`` always waits
for writability. That is the right default, but a router pays it several times per
request (PERF.md: per-request overhead decides a Python router). These functions work on
the kernel socket under a trio socket:

* ``try_recv``: what already arrived, or None; never waits.
* ``recv`` / ``send_all``: one syscall; ``trio.lowlevel.wait_readable`` /
  ``wait_writable`` (a checkpoint, so cancellable) only on EAGAIN.
* ``close``: for a socket no task waits on, without trio's wake-up of waiters.
* ``reset_on_close``: a node connection whose exchange is over closes with a reset.
* ``open_tcp``: a non-blocking connect to a numeric address. On loopback the handshake
  has usually completed inside the first ``connect``; a second ``connect`` says so
  (EISCONN) without a trip through the event loop. Only a connect still in progress
  waits, bounded by ``trio.fail_after`` like ``backend.open_node``.

The price: a call that does not block does not yield. Code that loops over these calls
must yield itself (``trio.lowlevel.checkpoint``) once per round unless something in the
round is known to wait; each caller says where it does.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import struct
import termios
import time
from collections.abc import Callable
from typing import Any

import trio
from trio.lowlevel import wait_readable, wait_writable

from brood.routers.node import Node

_NODELAY_FAMILIES = (socket.AF_INET, socket.AF_INET6)
# SO_LINGER on, 0 seconds: close(2) resets the connection (``reset_on_close``).
_LINGER_RESET = struct.pack("ii", 1, 0)
_LINGER_LEN = len(_LINGER_RESET)
# Node addresses parsed once: (family, sockaddr), or None when the address needs a
# name lookup (host names) or is bad. Bounded: names come from the
# configuration and the subscription table, which a client cannot grow at will, but a
# churning table should not leave garbage behind forever.
_ADDRESSES: dict[str, tuple[int, Any] | None] = {}
_ADDRESSES_MAX = 4096
# Host-name nodes (a node announcing "localhost:3031", say) are looked up by the general
# path, and the answer kept this long: the fast lanes never wait for a lookup, and a
# lookup per connect would send every request to the general path.
RESOLVED_TTL = 30.0
_RESOLVED: dict[str, tuple[float, tuple[int, Any]]] = {}
_IN_PROGRESS = (errno.EINPROGRESS, errno.EALREADY)
# A connect's error when the node accepted and then closed (or reset) at once: a served
# connection that ended, not a refusal (no grace mark, no retry), as on the fast lanes.
RESET_AFTER_ACCEPT = frozenset((errno.ECONNRESET, errno.EPIPE))


def raw(sock: trio.socket.SocketType) -> socket.socket:
    """The stdlib socket a trio socket wraps (trio's ``_sock``; the functions below read
    it inline, a call less per syscall)."""
    return sock._sock  # type: ignore[attr-defined]


# How a peer that hung up stands (``peer_gone``).
EOF, RESET = 1, 2


def peer_gone(sock: socket.socket) -> int:
    """How a peer that hung up stands: ``EOF`` (nothing left to read), ``RESET``, or 0
    (bytes still to read: a request sent ahead of its close, say)."""
    try:
        return 0 if sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) else EOF
    except BlockingIOError:
        return 0
    except OSError:
        return RESET


def try_recv(sock: trio.socket.SocketType, max_bytes: int) -> bytes | None:
    """Up to ``max_bytes`` if any arrived (b"" at EOF), None when nothing is there yet."""
    try:
        return sock._sock.recv(max_bytes)  # type: ignore[attr-defined]
    except BlockingIOError:
        return None


async def recv(sock: trio.socket.SocketType, max_bytes: int) -> bytes:
    """Up to ``max_bytes`` (b"" at EOF); waits (a checkpoint) only when nothing is there."""
    s = sock._sock  # type: ignore[attr-defined]
    try:
        return s.recv(max_bytes)
    except BlockingIOError:
        pass
    while True:
        await wait_readable(s)
        try:
            return s.recv(max_bytes)
        except BlockingIOError:
            pass


async def send_all(sock: trio.socket.SocketType, data: bytes | bytearray | memoryview,
                   owed: list | None = None) -> None:  # fmt: skip
    """Every byte of ``data``; waits (a checkpoint) only while the kernel buffer is full.
    ``owed``: its first item is kept to what is not sent yet while waiting (a caller
    cancelled there knows what the peer never got)."""
    s = sock._sock  # type: ignore[attr-defined]
    try:
        sent = s.send(data)
    except BlockingIOError:
        sent = 0
    if sent == len(data):
        return
    view = memoryview(data)[sent:]
    while view:
        if owed is not None:
            owed[0] = view
        await wait_writable(s)
        try:
            sent = s.send(view)
        except BlockingIOError:
            continue
        view = view[sent:]


_OUTQ = struct.Struct("i")
_OUTQ_BUF = bytes(_OUTQ.size)


def send_queue(fd: int) -> int:
    """Bytes in a socket's send queue not yet taken by its peer (SIOCOUTQ); -1 when it
    cannot say. A slow reader drains a large send buffer without a writability edge for a
    long time: a queue that moved tells it from a stalled one."""
    try:
        return _OUTQ.unpack(fcntl.ioctl(fd, termios.TIOCOUTQ, _OUTQ_BUF))[0]
    except OSError:
        return -1


def unread(fd: int) -> int:
    """Bytes the peer sent that were not read yet (FIONREAD); 0 when it cannot say.
    A close with any is a reset, which throws away the answer still in the send queue."""
    try:
        return _OUTQ.unpack(fcntl.ioctl(fd, termios.FIONREAD, _OUTQ_BUF))[0]
    except OSError:
        return 0


def close(sock: trio.socket.SocketType) -> None:
    """Close a socket that no task is waiting on, without ``trio.lowlevel.notify_closing``:
    that wakes waiters (there are none) at the price of an epoll_ctl per close. The
    kernel drops a closed fd from the epoll set by itself, and trio keeps no record of an
    fd nobody waits on."""
    sock._sock.close()  # type: ignore[attr-defined]


def reset_on_close(sock: Any) -> None:
    """Make the next close of a TCP node connection a reset (SO_LINGER 0); a unix
    socket is left as it is.

    Only once the node gave its whole answer and had the whole request, so that nothing
    either way is still owed: a reset drops bytes still queued. Then it is the cheaper
    close: no FIN exchange (on loopback it runs inside the closing syscall), and no
    TIME_WAIT left on the node's side, one per request otherwise."""
    if sock.family != socket.AF_UNIX:
        if _setsockopt is not None:
            # Its result unread: a failure leaves a clean close, which must happen anyway.
            _setsockopt(sock.fileno(), socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_ARG,
                        _LINGER_LEN)
            return
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
        except OSError:
            pass  # a clean close then: the close that follows must happen anyway


def _libc_setsockopt() -> tuple[Callable[..., int] | None, Any]:
    """libc's setsockopt(2) and the SO_LINGER value as a C buffer, by ctypes; (None,
    None) where there is none. Why: ``socket.setsockopt`` tries two argument formats
    (int, then None and a length) before it takes a buffer, and each failure formats a
    TypeError; this call costs half as much (about 1.3 µs less per request). The
    arguments are a socket's fd, three small ints and a buffer: ctypes' default
    conversions (C int, char *) are the right ones."""
    try:
        import ctypes

        call = ctypes.CDLL(None).setsockopt
        return call, ctypes.create_string_buffer(_LINGER_RESET, _LINGER_LEN)
    except (ImportError, OSError, AttributeError):
        return None, None


_setsockopt, _LINGER_ARG = _libc_setsockopt()


def _direct_address(name: str) -> tuple[int, Any] | None:
    from brood.routers.resolve import parse_node_address

    try:
        family, addr = parse_node_address(name)
        if family != socket.AF_UNIX:
            socket.inet_pton(family, addr[0])  # a host name: the general path resolves it
    except (OSError, ValueError):
        return None
    return family, addr


def node_address(name: str) -> tuple[int, Any] | None:
    """``(family, sockaddr)`` of a node that can be connected without a name lookup
    (numeric TCP, unix, or a host name the general path resolved less than
    ``RESOLVED_TTL`` ago), cached; None for other host names and bad names."""
    try:
        target = _ADDRESSES[name]
    except KeyError:
        if len(_ADDRESSES) >= _ADDRESSES_MAX:
            _ADDRESSES.clear()
        target = _ADDRESSES[name] = _direct_address(name)
    if target is None:
        resolved = _RESOLVED.get(name)
        if resolved is not None and resolved[0] > time.monotonic():
            return resolved[1]
    return target


def remember_resolved(name: str, target: tuple[int, Any]) -> None:
    """The general path resolved host-name node ``name`` to ``target``: for
    ``RESOLVED_TTL`` seconds, connects (the fast lanes' too) use it without a lookup."""
    if len(_RESOLVED) >= _ADDRESSES_MAX:
        _RESOLVED.clear()
    _RESOLVED[name] = (time.monotonic() + RESOLVED_TTL, target)


async def open_tcp(node: Node, connect_timeout: float, fallback: Any,
                   before_wait: Callable[[], None] | None = None) -> trio.socket.SocketType:
    """A connected TCP socket (TCP_NODELAY) to ``node``; ``fallback(node, timeout)`` opens
    anything that is not a numeric TCP address. OSError or trio.TooSlowError on failure.
    ``before_wait()``, when given, runs before anything that may wait (the fallback, a
    handshake still in progress)."""
    target = node_address(node.name)
    if target is None or target[0] not in _NODELAY_FAMILIES:
        if before_wait is not None:
            before_wait()
        return await fallback(node, connect_timeout)
    family, addr = target
    s = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock = trio.socket.from_stdlib_socket(s)  # makes it non-blocking
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        err = s.connect_ex(addr)
        if err in _IN_PROGRESS:
            err = s.connect_ex(addr)  # EISCONN: the handshake is already done
            if err in _IN_PROGRESS:
                if before_wait is not None:
                    before_wait()
                with trio.fail_after(connect_timeout):
                    await wait_writable(s)
                err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err and err != errno.EISCONN and err not in RESET_AFTER_ACCEPT:
            raise OSError(err, os.strerror(err))
        return sock  # (after a reset, its first read or write says so)
    except BaseException:
        s.close()
        raise
