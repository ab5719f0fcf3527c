"""Socket addresses as uWSGI writes them, and binding/inheriting the sockets behind them.

Address forms (``parse_address``):

* ``host:port`` TCP (IPv4 or a name), ``:port`` every IPv4 interface, ``[::1]:port`` IPv6;
* ``/path/app.sock`` or any value without ``:``: a unix socket path;
* ``@name``: a Linux abstract unix socket;
* ``=N``: shared socket N (resolved by the plan, never bound here);
* ``fd://N``: an already open socket inherited as file descriptor N.

A bad address is a user's mistake: ``OptionError`` whose message names the option.
Sockets are created close-on-exec; the master clears that flag only right before it
re-executes itself (``make_inheritable``).

A socket's name (``socket_name``) is the address as written, as uWSGI names it: ``:3031``
stays ``:3031`` (not ``0.0.0.0:3031``), ``localhost:3031`` stays ``localhost:3031``;
only a ``:0`` port becomes the real one. It is the rawrouter's routing key, what stats
list, logs print and subscriptions announce, so it must match what users configure.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
import struct
import weakref
from dataclasses import dataclass

from brood.config.option import OptionError
from brood.listener import Listener

DEFAULT_BACKLOG = 100  # uWSGI's --listen default; stats report it as max_queue

# The names of sockets bound or adopted from a written address: the kernel's address
# ("0.0.0.0", "127.0.0.1") is not what the user wrote. Weak: a closed socket drops out.
_WRITTEN_NAMES: weakref.WeakKeyDictionary[socket.socket, str] = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class Address:
    """A parsed address. ``kind``: "tcp", "unix", "abstract", "shared" or "fd"."""

    kind: str
    host: str = ""
    port: int = 0
    path: str = ""
    number: int = -1  # N of "=N" or "fd://N"
    ipv6: bool = False

    @property
    def is_reference(self) -> bool:
        """True for ``=N``: names a shared socket instead of an address to bind."""
        return self.kind == "shared"


def parse_address(spec: str, option: str = "socket") -> Address:
    """Parse ``spec`` the way uWSGI reads a socket option value."""
    text = spec.strip()
    if not text:
        raise OptionError(f"--{option}: empty address")
    if text.startswith("="):
        return Address("shared", number=_small_int(text[1:], spec, option, "shared socket number"))
    if text.startswith("fd://"):
        return Address("fd", number=_small_int(text[5:], spec, option, "file descriptor"))
    if text.startswith("@"):
        if len(text) == 1:
            raise OptionError(f"--{option} {spec}: abstract socket needs a name after @")
        return Address("abstract", path=text[1:])
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or not rest.startswith(":") or not host:
            raise OptionError(f"--{option} {spec}: expected [ipv6-address]:port")
        return Address("tcp", host=host, port=_port(rest[1:], spec, option), ipv6=True)
    if ":" in text:
        host, _, port = text.rpartition(":")
        if ":" in host:
            raise OptionError(f"--{option} {spec}: write IPv6 addresses as [addr]:port")
        return Address("tcp", host=host or "0.0.0.0", port=_port(port, spec, option))
    return Address("unix", path=text)


def _port(raw: str, spec: str, option: str) -> int:
    if not raw.isdigit() or int(raw) > 65535:
        raise OptionError(f"--{option} {spec}: port must be a number from 0 to 65535")
    return int(raw)


def _small_int(raw: str, spec: str, option: str, what: str) -> int:
    if not raw.isdigit():
        raise OptionError(f"--{option} {spec}: expected a {what} after the prefix")
    return int(raw)


def socket_name(sock: socket.socket) -> str:
    """The name uWSGI prints and announces: the address as written when this module bound
    or adopted ``sock`` from one (see ``written_name``), else the kernel's address."""
    return _WRITTEN_NAMES.get(sock) or kernel_name(sock)


def kernel_name(sock: socket.socket) -> str:
    """``sock``'s address as the kernel reports it: ``fd://N`` sockets have no other."""
    addr = sock.getsockname()
    if sock.family == socket.AF_INET:
        return f"{addr[0]}:{addr[1]}"
    if sock.family == socket.AF_INET6:
        return f"[{addr[0]}]:{addr[1]}"
    if isinstance(addr, bytes):
        addr = addr.decode("utf-8", "replace")
    if addr.startswith("\0"):
        return "@" + addr[1:].rstrip("\0")
    return addr


def written_name(spec: str, addr: Address, sock: socket.socket) -> str:
    """uWSGI's name for ``sock`` bound from ``spec``: the host as written (empty for
    ``:PORT``), with the real port after ``:0`` (uWSGI's "port auto-assigned")."""
    if addr.kind != "tcp":
        return kernel_name(sock)  # the path or @name as written, already
    host, _, port = spec.strip().rpartition(":")
    if addr.port == 0:
        port = str(sock.getsockname()[1])
    return f"{host}:{port}"


def _remember_name(spec: str, addr: Address, sock: socket.socket) -> str:
    """Name ``sock`` after ``spec`` for every later ``socket_name`` (logs, announces)."""
    name = written_name(spec, addr, sock)
    _WRITTEN_NAMES[sock] = name
    return name


def address_family_label(sock: socket.socket) -> str:
    """"TCP", "TCP6" or "UNIX", the word uWSGI's bind log lines use."""
    if sock.family == socket.AF_UNIX:
        return "UNIX"
    return "TCP6" if sock.family == socket.AF_INET6 else "TCP"


def _resolve(addr: Address, socktype: int, spec: str, option: str) -> tuple[int, tuple]:
    """(family, sockaddr) for a tcp Address; names resolved once at bind time."""
    if addr.ipv6:
        return socket.AF_INET6, (addr.host, addr.port, 0, 0)
    try:
        socket.inet_aton(addr.host)
        return socket.AF_INET, (addr.host, addr.port)
    except OSError:
        pass
    try:
        infos = socket.getaddrinfo(addr.host, addr.port, socket.AF_UNSPEC, socktype, 0,
                                   socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise OptionError(f"--{option} {spec}: cannot resolve {addr.host!r}: {exc.strerror}")
    family, _, _, _, sockaddr = infos[0]
    return family, sockaddr


def _unlink_stale(path: str, spec: str, option: str) -> None:
    """Remove a unix socket file nobody listens on; refuse a live one or a regular file."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise OptionError(f"--{option} {spec}: {path} exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(0.5)
        probe.connect(path)
    except OSError:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        return
    finally:
        probe.close()
    raise OptionError(f"--{option} {spec}: address already in use (a process listens there)")


def _unlink_socket_file(path: str, spec: str, option: str) -> None:
    """Remove a unix socket file left at ``path``; refuse anything else found there (a
    subscription server's path typed over a file deleted the file)."""
    try:
        if not stat.S_ISSOCK(os.lstat(path).st_mode):
            raise OptionError(f"--{option} {spec}: {path} exists and is not a socket")
        os.unlink(path)
    except FileNotFoundError:
        pass


def _new_socket(addr: Address, socktype: int, spec: str, option: str) -> tuple[socket.socket, object]:
    if addr.kind == "tcp":
        family, sockaddr = _resolve(addr, socktype, spec, option)
        sock = socket.socket(family, socktype)
        if family == socket.AF_INET6:
            # [::] takes IPv4 clients too, as uWSGI's does (a socket = [::]:3031 behind
            # an IPv4 nginx); any other IPv6 address is that address only.
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY,
                                0 if sockaddr[0] == "::" else 1)
        return sock, sockaddr
    if addr.kind == "unix":
        if socktype == socket.SOCK_STREAM:
            _unlink_stale(addr.path, spec, option)
        else:  # (the last incarnation's, rebound at each reload: a socket file goes)
            _unlink_socket_file(addr.path, spec, option)
        return socket.socket(socket.AF_UNIX, socktype), addr.path
    if addr.kind == "abstract":
        return socket.socket(socket.AF_UNIX, socktype), "\0" + addr.path
    raise OptionError(f"--{option} {spec}: cannot bind this kind of address")


@dataclass(frozen=True)
class StreamOptions:
    """--socket-sndbuf, --socket-rcvbuf (every stream socket) and --socket-send-timeout
    (TCP ones): set before bind, as uWSGI sets them, so that the connections accepted
    inherit them (and SO_RCVBUF is in place before the window scale is chosen)."""

    sndbuf: int = 0
    rcvbuf: int = 0
    send_timeout: int = 0  # seconds

    def apply(self, sock: socket.socket, tcp: bool) -> None:
        """OptionError naming the option the kernel refused."""
        for option, level, value in (
                ("socket-sndbuf", socket.SO_SNDBUF, self.sndbuf),
                ("socket-rcvbuf", socket.SO_RCVBUF, self.rcvbuf),
                ("socket-send-timeout", socket.SO_SNDTIMEO, self.send_timeout if tcp else 0)):
            if not value:
                continue
            raw = struct.pack("ll", value, 0) if level == socket.SO_SNDTIMEO else value
            try:
                sock.setsockopt(socket.SOL_SOCKET, level, raw)
            except OSError as exc:
                raise OptionError(f"--{option} {value}: {exc.strerror or exc}") from None


def bind_listener(spec: str, proto: str, backlog: int = DEFAULT_BACKLOG,
                  reuse_port: bool = False, option: str = "socket",
                  options: StreamOptions | None = None) -> Listener:
    """Bind and listen on ``spec`` (or adopt ``fd://N``, left as it is); the Listener
    names the real address.

    ``=N`` is not bindable: the plan resolves it to shared socket N.
    """
    addr = parse_address(spec, option)
    if addr.kind == "shared":
        raise OptionError(f"--{option} {spec}: shared socket references are resolved by the plan")
    if addr.kind == "fd":
        sock = adopt_fd(addr.number, spec, option)
        return Listener(sock, socket_name(sock), proto)
    sock, sockaddr = _new_socket(addr, socket.SOCK_STREAM, spec, option)
    try:
        if addr.kind == "tcp":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port and hasattr(socket, "SO_REUSEPORT"):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            # Before listen(): every connection it queues gets it (no Nagle wait on
            # answers), and whoever accepts them need not set it one by one.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if options is not None:
            options.apply(sock, addr.kind == "tcp")
        sock.bind(sockaddr)
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise OptionError(f"--{option} {spec}: cannot bind: {exc.strerror or exc}")
    return Listener(sock, _remember_name(spec, addr, sock), proto)


def defer_accept(sock: socket.socket, seconds: int) -> None:
    """Have a TCP listener hand over a connection only once its client has sent something
    (or ``seconds`` passed; 0: at once again): a connection that never says a word takes no fd and no turn
    in the accepting process, and a burst of connects spends less of the listen queue
    (uWSGI sets it on its worker, HTTP router and fastrouter sockets)."""
    if sock.family in (socket.AF_INET, socket.AF_INET6) and hasattr(socket, "TCP_DEFER_ACCEPT"):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, seconds)


def adopt_fd(fd: int, spec: str = "", option: str = "socket") -> socket.socket:
    """Wrap an inherited listening fd (``fd://N``, or one kept across re-exec).

    Kept across re-exec, ``spec`` is the address it was bound from: the socket keeps
    the name written there (a reload must not turn ``:3031`` into ``0.0.0.0:3031``).
    """
    try:
        sock = socket.socket(fileno=fd)
    except OSError as exc:
        raise OptionError(f"--{option} {spec or fd}: fd {fd} is not a usable socket: "
                          f"{exc.strerror or exc}")
    sock.set_inheritable(False)
    addr = _written_address(spec)
    if addr is not None and _family_fits(addr, sock):
        _remember_name(spec, addr, sock)
    return sock


def _written_address(spec: str) -> Address | None:
    """The bindable address ``spec`` writes, or None (empty, ``fd://N``, ``=N``, bad)."""
    if not spec.strip():
        return None
    try:
        addr = parse_address(spec)
    except OptionError:
        return None
    return addr if addr.kind in ("tcp", "unix", "abstract") else None


def _family_fits(addr: Address, sock: socket.socket) -> bool:
    """True if ``sock`` can be what ``addr`` was bound to (an inherited fd may not be)."""
    if addr.kind == "tcp":
        return sock.family in (socket.AF_INET, socket.AF_INET6)
    return sock.family == socket.AF_UNIX


def bind_datagram(spec: str, option: str = "socket") -> socket.socket:
    """A bound datagram socket: UDP for ``host:port``, unix datagram for paths and ``@name``."""
    addr = parse_address(spec, option)
    if addr.kind == "fd":
        return adopt_fd(addr.number, spec, option)
    sock, sockaddr = _new_socket(addr, socket.SOCK_DGRAM, spec, option)
    try:
        if addr.kind == "tcp":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(sockaddr)
    except OSError as exc:
        sock.close()
        raise OptionError(f"--{option} {spec}: cannot bind: {exc.strerror or exc}")
    _remember_name(spec, addr, sock)
    return sock


def unix_path(listener: Listener) -> str | None:
    """The filesystem path of a unix listener (for --vacuum), else None."""
    if listener.sock.family != socket.AF_UNIX or listener.name.startswith("@"):
        return None
    return listener.name or None


def make_inheritable(sock: socket.socket) -> int:
    """Clear close-on-exec so the fd survives the master's re-exec; returns the fd."""
    sock.set_inheritable(True)
    return sock.fileno()
