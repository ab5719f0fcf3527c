"""The log master's destinations: files (rotated and reopened), file descriptors, and
datagram loggers (syslog, a remote syslog server, any UDP or unix datagram socket).

Each sink takes whole lines (``write(chunk, now)``, a chunk of one or more lines), or
the messages log encoders made of them (``write_messages``: any bytes, one datagram
each), and never raises: a line it cannot deliver is counted in ``dropped`` with the
reason, and the log master reports the count (``brood.logs.process``). Files block
like any file write; datagram sockets are non-blocking, so a stuck or absent syslog
daemon or a full socket buffer costs lines, counted, never the log master's time (and
so never the pipes of the processes writing into it). Datagram loggers send one
datagram per line (per message).

Rotation, as uWSGI 2.0.21 does it: the file's last line says ``logsize: N, triggering
rotation to NAME...``, the file is renamed to NAME (--log-backupname, or the file's
name plus ``.`` and the epoch second) and a fresh, empty one is opened at its path.
Unlike uWSGI, an epoch name that exists already (a second rotation within one second)
is never overwritten: the rotation waits for the next second (``rotate`` says False).
Reopening (after logrotate moved the file away) writes ``[EPOCH] logsize: N, triggering
log-reopen...`` to the old file and ``[EPOCH] PATH reopened.`` to the new one.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import stat
import time

from brood.log import stamp
from brood.logs.lines import split_lines
from brood.logs.spec import LoggerSpec

MAX_DATAGRAM = 65000  # a longer line is cut to this in a datagram (UDP's ceiling is 65507)
RECONNECT_EVERY = 1.0  # seconds between attempts to reach an absent unix socket
DEFAULT_MODE = 0o640  # new log files, as --logto's


class Sink:
    """What every destination offers; the base class drops nothing and does nothing."""

    label = "?"

    def __init__(self) -> None:
        self.dropped = 0
        self.reason = ""

    def write(self, chunk: bytes, now: float) -> None:
        raise NotImplementedError

    def write_messages(self, messages: list[bytes], now: float) -> None:
        """Encoded lines, written one after the other (a message lost counts as one
        line, whatever newlines an encoder left in it)."""
        before = self.dropped
        self.write(b"".join(messages), now)
        if self.dropped != before:
            self.dropped = before + len(messages)

    def lost(self, chunk: bytes, reason: str) -> None:
        self.dropped += max(1, chunk.count(b"\n"))
        self.reason = reason

    def rotate(self, now: float) -> bool:
        """Rotate if this is a file (True: done or nothing to do; False: try later)."""
        return True

    def reopen(self, now: float) -> None:
        pass

    def follow(self) -> None:
        pass

    def due(self) -> bool:
        """Whether a rotation by size is waiting."""
        return False

    def close(self) -> None:
        pass


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class FdSink(Sink):
    """A file descriptor the log master was given (the terminal, ``fd:N``)."""

    def __init__(self, fd: int, label: str) -> None:
        super().__init__()
        self.fd = fd
        self.label = label

    def write(self, chunk: bytes, now: float) -> None:
        try:
            _write_all(self.fd, chunk)
        except OSError as exc:
            self.lost(chunk, exc.strerror or str(exc))


class FileSink(Sink):
    """A log file by path: --logto/--daemonize (given already open as ``fd``) or
    ``file:PATH``. ``maxsize`` (bytes, 0: never) rotates it by size after a write."""

    def __init__(self, path: str, *, fd: int | None = None, maxsize: int = 0,
                 backupname: str | None = None, mode: int | None = None,
                 owner: tuple[int, int] | None = None, label: str = "") -> None:
        super().__init__()
        self.path = path
        self.maxsize = maxsize
        self.backupname = backupname
        self.mode = mode
        self.owner = owner
        self.label = label or path
        self.fd = fd if fd is not None else self._open(truncate=False)
        self.regular = _is_regular(self.fd)
        self.rotate_waiting = False

    def _open(self, truncate: bool) -> int:
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | (os.O_TRUNC if truncate else 0)
        fd = os.open(self.path, flags | os.O_CLOEXEC, DEFAULT_MODE if self.mode is None
                     else self.mode)
        if self.mode is not None:
            with contextlib.suppress(OSError):
                os.fchmod(fd, self.mode)
        if self.owner is not None:
            with contextlib.suppress(OSError):
                os.fchown(fd, *self.owner)
        return fd

    def size(self) -> int:
        try:
            return os.lseek(self.fd, 0, os.SEEK_END)
        except OSError:
            return 0

    def write(self, chunk: bytes, now: float) -> None:
        try:
            _write_all(self.fd, chunk)
        except OSError as exc:
            self.lost(chunk, exc.strerror or str(exc))
            return
        if self.maxsize and self.regular and self.size() > self.maxsize:
            self.rotate_waiting = not self.rotate(now)

    def due(self) -> bool:
        return self.rotate_waiting

    def backup_name(self, now: float) -> str:
        return backup_name(self.path, self.backupname, now)

    def rotate(self, now: float) -> bool:
        if not self.regular:
            return True
        target = self.backup_name(now)
        if self.backupname is None and os.path.lexists(target):
            return False  # an epoch name taken this second: next second, never over it
        with contextlib.suppress(OSError):
            _write_all(self.fd, rotation_notice(self.size(), target, now))
        try:
            os.rename(self.path, target)
            fd = self._open(truncate=True)
        except OSError as exc:
            self.reason = f"cannot rotate {self.path} to {target}: {exc.strerror or exc}"
            with contextlib.suppress(OSError):
                _write_all(self.fd, f"{stamp(now)} - {self.reason}\n".encode())
            return True  # (said in the file; the size check tries again after a write)
        self._replace(fd)
        self.rotate_waiting = False
        return True

    def reopen(self, now: float) -> None:
        with contextlib.suppress(OSError):
            _write_all(self.fd, f"[{int(now)}] logsize: {self.size()}, triggering "
                                f"log-reopen...\n".encode())
        try:
            fd = self._open(truncate=False)
        except OSError as exc:
            with contextlib.suppress(OSError):
                _write_all(self.fd, f"{stamp(now)} - cannot reopen {self.path}: "
                                    f"{exc.strerror or exc}\n".encode())
            return
        self._replace(fd)
        with contextlib.suppress(OSError):
            _write_all(self.fd, f"[{int(now)}] {self.path} reopened.\n".encode())

    def follow(self) -> None:
        """Open the path again, without a word, when it no longer names our file (a
        reload: uWSGI's new master opens its loggers afresh)."""
        try:
            path, ours = os.stat(self.path), os.fstat(self.fd)
            same = (path.st_dev, path.st_ino) == (ours.st_dev, ours.st_ino)
        except OSError:
            same = False
        if not same:
            with contextlib.suppress(OSError):
                self._replace(self._open(truncate=False))

    def _replace(self, fd: int) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)
        self.fd = fd
        self.regular = _is_regular(fd)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)


def backup_name(path: str, backupname: str | None, now: float) -> str:
    """The rotated file's name: --log-backupname, or uWSGI's ``PATH.EPOCH``."""
    return backupname if backupname else f"{path}.{int(now)}"


def rotation_notice(size: int, target: str, now: float) -> bytes:
    """The last line of a rotated file, as uWSGI writes it."""
    return f"{stamp(now)} - logsize: {size}, triggering rotation to {target}...\n".encode()


def _is_regular(fd: int) -> bool:
    try:
        return stat.S_ISREG(os.fstat(fd).st_mode)
    except OSError:
        return False


class DatagramSink(Sink):
    """One datagram per line to ``address`` ((host, port): UDP; a path, or ``@name`` for
    an abstract one: unix; None: ``sock`` is connected already, as --logto HOST:PORT's).
    ``packet(line, now)`` frames each line."""

    def __init__(self, address: tuple[str, int] | str | None, label: str,
                 sock: socket.socket | None = None) -> None:
        super().__init__()
        self.label = label
        self.address: tuple[str, int] | str | None = None
        if sock is not None:
            family = sock.family
        elif isinstance(address, tuple):
            family, self.address = _inet(address)
        else:
            assert address is not None
            family = socket.AF_UNIX
            self.address = "\0" + address[1:] if address.startswith("@") else address
        self.sock = sock if sock is not None else socket.socket(family, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        self.unix = family == socket.AF_UNIX
        self.retry_at = 0.0

    @classmethod
    def connected(cls, fd: int, label: str) -> DatagramSink | None:
        """A sink over a copy of ``fd`` when it is a datagram socket, else None."""
        try:
            sock = socket.socket(fileno=os.dup(fd))
        except OSError:
            return None
        if sock.type != socket.SOCK_DGRAM:
            sock.close()
            return None
        return cls(None, label, sock)

    def packet(self, line: bytes, now: float) -> bytes:
        return line

    def write(self, chunk: bytes, now: float) -> None:
        self.write_messages(split_lines(chunk), now)

    def write_messages(self, messages: list[bytes], now: float) -> None:
        """One datagram per message (a line, or what encoders made of one); each one
        lost counts as one line."""
        for message in messages:
            if now < self.retry_at:
                self._lost_one(self.reason)
                continue
            packet = self.packet(message, now)[:MAX_DATAGRAM]
            try:
                if self.address is None:
                    self.sock.send(packet)
                else:
                    self.sock.sendto(packet, self.address)
            except (FileNotFoundError, ConnectionRefusedError) as exc:
                if self.unix:  # nobody listens there (yet); (UDP: an ICMP said it once)
                    self.retry_at = now + RECONNECT_EVERY
                self._lost_one(exc.strerror or str(exc))
            except OSError as exc:  # EAGAIN/ENOBUFS: the receiver is behind
                reason = "socket buffer full" if exc.errno in (errno.EAGAIN, errno.ENOBUFS) \
                    else (exc.strerror or str(exc))
                self._lost_one(reason)

    def _lost_one(self, reason: str) -> None:
        self.dropped += 1
        self.reason = reason

    def close(self) -> None:
        self.sock.close()


def _inet(address: tuple[str, int]) -> tuple[int, tuple[str, int]]:
    host, port = address
    try:
        info = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
    except socket.gaierror:
        return socket.AF_INET, address  # (sendto says why, and the lines are counted)
    return info[0], info[4][:2]


class SocketSink(DatagramSink):
    """uWSGI's ``socket:ADDR[,PREFIX]``: the line as written, after PREFIX."""

    def __init__(self, address: tuple[str, int] | str, prefix: str, label: str) -> None:
        super().__init__(address, label)
        self.prefix = prefix.encode()

    def packet(self, line: bytes, now: float) -> bytes:
        return self.prefix + line if self.prefix else line


SYSLOG_PATH = "/dev/log"
INFO, NOTICE = 6, 5


def _syslog_time(now: float) -> bytes:
    return time.strftime("%b %e %H:%M:%S", time.localtime(now)).encode()


class SyslogSink(DatagramSink):
    """The local syslog daemon (``syslog[:IDENT[,FACILITY]]``), in the format glibc's
    syslog(3) sends to /dev/log (``<PRI>Mmm dd hh:mm:ss IDENT: line``), priority info."""

    def __init__(self, ident: str, facility: int, label: str,
                 path: str = SYSLOG_PATH) -> None:
        super().__init__(path, label)
        self.head = b"<%d>" % (facility * 8 + INFO)
        self.ident = ident.encode()

    def packet(self, line: bytes, now: float) -> bytes:
        return b"%s%s %s: %s" % (self.head, _syslog_time(now), self.ident, line)


class RsyslogSink(DatagramSink):
    """A syslog server over UDP (``rsyslog:HOST[:PORT][,IDENT]``), framed as uWSGI's
    rsyslog logger frames it: daemon.notice, the line without its newline."""

    def __init__(self, address: tuple[str, int], ident: str, label: str) -> None:
        super().__init__(address, label)
        self.ident = ident.encode()

    def packet(self, line: bytes, now: float) -> bytes:
        return b"<%d>%s %s: %s" % (3 * 8 + NOTICE, _syslog_time(now), self.ident,
                                   line.rstrip(b"\n"))


def open_sink(spec: LoggerSpec, raw: Sink, mode: int | None = None,
              owner: tuple[int, int] | None = None) -> Sink:
    """The sink for one --logger/--req-logger (``stdio`` is the plain log itself).
    OSError when a file cannot be opened."""
    label = spec.text
    if spec.kind == "stdio":
        return raw
    if spec.kind == "file":
        return FileSink(spec.path, maxsize=spec.maxsize, backupname=spec.backupname,
                        mode=mode, owner=owner, label=label)
    if spec.kind == "fd":
        return FdSink(spec.fd, label)
    if spec.kind == "syslog":
        return SyslogSink(spec.ident, spec.facility, label)
    if spec.kind == "rsyslog":
        assert isinstance(spec.address, tuple)
        return RsyslogSink(spec.address, spec.ident, label)
    assert spec.address is not None
    return SocketSink(spec.address, spec.prefix, label)
