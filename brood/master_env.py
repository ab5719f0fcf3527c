"""Process-level chores of the master: pidfiles, --reload/--stop actions, daemonizing,
dropping privileges, and the sockets kept open across the master's re-exec.

Sockets across re-exec: before ``execve`` the master clears close-on-exec on every
listener and writes ``BROOD_FDS`` = JSON ``[{"key": "socket=127.0.0.1:0", "fd": 3}]``
into the environment; the key is the option and the value as the user wrote it. The new
master's ``Binder`` adopts an inherited fd whose key matches instead of binding again,
so the port (even one chosen by ``:0``) never closes and clients only wait in the
listen queue. Inherited fds nobody claims (the option was removed) are closed.

Children across re-exec: after a graceful reload the router processes of the previous
incarnation may still be finishing their sessions (``brood.master_children``, hand-off).
The master writes them into ``BROOD_DRAINING`` = JSON ``[{"pid": 4242, "name": "http 1",
"kill_at": 1700000060.5}]`` (``kill_at``: wall-clock time of their SIGKILL), and the
new incarnation reads it back with ``take_draining``.
"""

from __future__ import annotations

import contextlib
import grp
import json
import os
import pwd
import signal
import socket
import sys
from collections.abc import Mapping
from typing import Any

from brood.config.option import OptionError, to_mode
from brood.listener import Listener
from brood.log import log, redirect_output
from brood.sockets import (
    DEFAULT_BACKLOG,
    StreamOptions,
    address_family_label,
    adopt_fd,
    bind_listener,
    make_inheritable,
    socket_name,
    unix_path,
)

FDS_ENV = "BROOD_FDS"
RELOADS_ENV = "BROOD_RELOADS"
DRAINING_ENV = "BROOD_DRAINING"


# -- pidfiles and the --reload / --stop actions ---------------------------------------

def write_pidfile(path: str, *, reload: bool = False) -> None:
    """Our pid in ``path``; OptionError when it cannot be written. After a ``reload``
    (the same pid, re-executed) the file is left alone when it says so already, and a
    failure is logged, not fatal: with --uid the master re-executes unprivileged, and
    the file root wrote at start stopped every reload (uWSGI leaves it alone too)."""
    if reload:
        with contextlib.suppress(OptionError):  # (no file, or another pid: written)
            if read_pidfile(path, "pidfile") == os.getpid():
                return
    try:
        with open(path, "w") as fh:
            fh.write(f"{os.getpid()}\n")
    except OSError as exc:
        error = OptionError(f"--pidfile {path}: cannot write: {exc.strerror}")
        if not reload:
            raise error from None
        log(f"{error} (after a reload: left as it was)")


def read_pidfile(path: str, option: str) -> int:
    """The pid in ``path``; OptionError with a clear reason when there is none."""
    try:
        with open(path) as fh:
            text = fh.read().strip()
    except FileNotFoundError:
        raise OptionError(f"--{option} {path}: pidfile not found")
    except OSError as exc:
        raise OptionError(f"--{option} {path}: cannot read pidfile: {exc.strerror}")
    if not text.isdigit() or int(text) <= 0:
        raise OptionError(f"--{option} {path}: pidfile does not hold a pid ({text[:20]!r})")
    return int(text)


def signal_pidfile(path: str, signum: int, option: str) -> None:
    """Send ``signum`` to the pid written in ``path`` (``--reload``/``--stop``)."""
    pid = read_pidfile(path, option)
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        raise OptionError(f"--{option} {path}: no process with pid {pid} (stale pidfile)")
    except PermissionError:
        raise OptionError(f"--{option} {path}: not allowed to signal pid {pid}")
    log(f"sent {signal.Signals(signum).name} to pid {pid}")


# -- daemonizing and privileges --------------------------------------------------------

def daemonize(logfile: str, truncate: bool = False) -> None:
    """Detach: fork, setsid, fork again; stdin from /dev/null, stdout/stderr to logfile
    (emptied first with ``truncate``, --log-truncate; HOST:PORT: over UDP, as uWSGI).

    The log file is opened before forking so a bad path fails in the foreground.
    """
    udp = _udp_log(logfile)
    if udp is None:
        os.close(_open_log(logfile))
    if os.fork():
        os._exit(0)
    os.setsid()
    if os.fork():
        os._exit(0)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    if udp is None:
        redirect_output(logfile, truncate)
    else:
        _redirect_to(udp)


def logto(logfile: str, truncate: bool = False) -> None:
    """--logto: the same redirection without detaching."""
    udp = _udp_log(logfile)
    if udp is not None:
        _redirect_to(udp)
        return
    os.close(_open_log(logfile))
    redirect_output(logfile, truncate)


def _udp_log(value: str) -> socket.socket | None:
    """A UDP socket connected to --logto/--daemonize's HOST:PORT (uWSGI logs there);
    None for a file; OptionError when the address does not resolve."""
    from brood.logs.spec import udp_address

    address = udp_address(value)
    if address is None:
        return None
    try:
        family, kind, proto, _, target = socket.getaddrinfo(*address, type=socket.SOCK_DGRAM)[0]
        sock = socket.socket(family, kind, proto)
        sock.connect(target)
    except OSError as exc:
        raise OptionError(f"cannot log to {value}: {exc.strerror or exc}") from None
    return sock


def _redirect_to(sock: socket.socket) -> None:
    """fds 1 and 2 to a connected datagram socket: each write one datagram."""
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(sock.fileno(), 1)
    os.dup2(sock.fileno(), 2)
    sock.close()


def _open_log(path: str) -> int:
    try:
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
    except OSError as exc:
        raise OptionError(f"cannot open log file {path}: {exc.strerror}")


def _user(value: str, flag: str = "--uid") -> tuple[int, str | None, int | None]:
    """(uid, login name, primary gid) of --uid's user; name and gid are None for a
    number no passwd entry names."""
    text = str(value).strip()
    try:
        entry = pwd.getpwuid(int(text)) if text.isdigit() else pwd.getpwnam(text)
    except KeyError:
        if text.isdigit():
            return int(text), None, None
        raise OptionError(f"{flag} {text}: no such user")
    return entry.pw_uid, entry.pw_name, entry.pw_gid


def _group_id(value: str, flag: str = "--gid") -> int:
    text = str(value).strip()
    if text.isdigit():
        return int(text)
    try:
        return grp.getgrnam(text).gr_gid
    except KeyError:
        raise OptionError(f"{flag} {text}: no such group")


def drop_privileges(uid: str | None, gid: str | None, prefix: str = "",
                    quiet: bool = False) -> None:
    """setgid, the supplementary groups, then setuid (after binding, before loading the
    app), as uWSGI does. The groups, when root: with --uid, its user's groups
    (initgroups) plus --gid, or plus the user's primary group when --gid is not given
    (the gid itself then stays as it was, as in uWSGI); with --gid alone, that group
    only. So no process keeps root's supplementary groups after dropping to a user.
    ``prefix``: whose options they are (``http-`` for --http-uid/--http-gid);
    ``quiet``: no log lines (a check, not the drop itself)."""
    say = (lambda line: None) if quiet else log
    uflag, gflag = f"--{prefix}uid", f"--{prefix}gid"
    user = _user(uid, uflag) if uid else None
    group = _group_id(gid, gflag) if gid else None
    if group is not None:
        if group != os.getgid():
            try:
                if os.getuid() == 0 and user is None:
                    os.setgroups([group])
                os.setgid(group)
            except OSError as exc:
                raise OptionError(f"{gflag} {gid}: cannot switch group: {exc.strerror}")
        say(f"setgid() to {group}")
    if user is None:
        return
    target, name, primary = user
    if target == os.getuid():
        say(f"setuid() to {target}")
        return
    if os.getuid() == 0:
        base = group if group is not None else primary
        try:
            if name is not None and base is not None:
                os.initgroups(name, base)
            else:
                os.setgroups([] if base is None else [base])
        except OSError as exc:
            raise OptionError(f"{uflag} {uid}: cannot set the groups of {name or target}: "
                              f"{exc.strerror}")
        for extra in sorted(set(os.getgroups()) - {base}):
            say(f"set additional group {extra} ({_group_name(extra)})")
    try:
        os.setuid(target)
    except OSError as exc:
        raise OptionError(f"{uflag} {uid}: cannot switch user: {exc.strerror}")
    say(f"setuid() to {target}")


def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


# -- children still draining across re-exec ------------------------------------------

def export_draining(draining: Mapping[int, Any]) -> str:
    """``BROOD_DRAINING`` for ``{pid: item}`` (items with ``name`` and ``kill_at``)."""
    return json.dumps([{"pid": pid, "name": item.name, "kill_at": item.kill_at}
                       for pid, item in draining.items()])


def take_draining() -> list[tuple[int, str, float]]:
    """(pid, name, kill_at) of each child the previous incarnation handed over, taken
    out of the environment (the app and the children must not see it); malformed
    entries are skipped."""
    raw = os.environ.pop(DRAINING_ENV, "")
    found: list[tuple[int, str, float]] = []
    with contextlib.suppress(ValueError, TypeError):
        for item in json.loads(raw or "[]"):
            with contextlib.suppress(ValueError, TypeError, KeyError):
                pid = int(item["pid"])
                if pid > 0:
                    found.append((pid, str(item["name"]), float(item["kill_at"])))
    return found


# -- binding, or adopting what the previous incarnation left us ------------------------

def socket_mode(value: str) -> int:
    """--chmod-socket's octal mode; OptionError naming it."""
    return to_mode(value, "chmod-socket", "660")


def chmod_socket(listener: Listener, mode: int) -> None:
    """Set a unix socket file's mode (who may connect: nginx's user, say); an abstract
    or TCP socket has none."""
    path = unix_path(listener)
    if path is None:
        return
    try:
        os.chmod(path, mode)
    except OSError as exc:
        raise OptionError(f"--chmod-socket: cannot chmod {path}: {exc.strerror or exc}")
    log(f"chmod() socket {path} to {mode:o}")


def socket_owner(uid: str | None, gid: str | None) -> tuple[int, int] | None:
    """(uid, gid) a unix socket file bound as root is given, -1 for "unchanged": those
    --uid/--gid name (uWSGI binds after dropping, so its socket files are the user's,
    and a web server of that user or group may connect); None when there is nothing to
    give, or no root to give it."""
    if os.geteuid() != 0 or not (uid or gid):
        return None
    return (_user(uid)[0] if uid else -1, _group_id(gid) if gid else -1)


def chown_socket(listener: Listener, owner: tuple[int, int]) -> None:
    path = unix_path(listener)
    if path is None:
        return
    try:
        os.chown(path, *owner)
    except OSError as exc:
        raise OptionError(f"--uid/--gid: cannot chown {path}: {exc.strerror or exc}")
    log(f"chown() socket {path} to {owner[0]}:{owner[1]}")


class Binder:
    """Binds sockets for the plan; adopts fds inherited across re-exec when keys match."""

    def __init__(self, backlog: int = DEFAULT_BACKLOG, reuse_port: bool = False,
                 chmod: str | None = None, owner: tuple[int, int] | None = None,
                 options: StreamOptions | None = None) -> None:
        self.backlog = backlog
        self.options = options  # --socket-sndbuf/-rcvbuf/-send-timeout (fresh binds)
        self.reuse_port = reuse_port
        self.chmod = socket_mode(chmod) if chmod is not None else None  # --chmod-socket
        self.owner = owner  # --uid/--gid: ``socket_owner``
        self.inherited: dict[str, list[int]] = {}
        self.bound: list[tuple[str, Listener]] = []
        raw = os.environ.pop(FDS_ENV, "")
        if raw:
            with contextlib.suppress(ValueError, TypeError, KeyError):
                for item in json.loads(raw):
                    self.inherited.setdefault(str(item["key"]), []).append(int(item["fd"]))

    def __call__(self, spec: str, proto: str, option: str, label: str) -> Listener:
        key = f"{option}={spec}"
        fds = self.inherited.get(key)
        if fds:
            fd = fds.pop(0)
            sock = adopt_fd(fd, spec, option)
            lst = Listener(sock, socket_name(sock), proto)
            how = "inherited"
        else:
            lst = bind_listener(spec, proto, self.backlog, self.reuse_port, option,
                                self.options)
            how = "bound to"
            if self.owner is not None:
                chown_socket(lst, self.owner)
            if self.chmod is not None:
                chmod_socket(lst, self.chmod)
        log(f"{label} {how} {address_family_label(lst.sock)} address {lst.name} "
            f"fd {lst.fileno()}")
        self.bound.append((key, lst))
        return lst

    def close_unclaimed(self) -> None:
        """Close inherited fds no option asked for any more."""
        for fds in self.inherited.values():
            for fd in fds:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.inherited.clear()

    def export(self) -> str:
        """Mark every listener inheritable and describe them for the next incarnation."""
        items = []
        for key, lst in self.bound:
            with contextlib.suppress(OSError):
                items.append({"key": key, "fd": make_inheritable(lst.sock)})
        return json.dumps(items)

    def unix_paths(self) -> list[str]:
        return [p for _, lst in self.bound if (p := unix_path(lst))]


def check_privileges(uid: str | None, gid: str | None, prefix: str = "") -> None:
    """The user and group ``drop_privileges`` would switch to exist: said once at
    start-up, not by every child that fails to start."""
    if uid:
        target = _user(uid, f"--{prefix}uid")[0]
        if target != os.getuid() and os.getuid() != 0:
            raise OptionError(f"--{prefix}uid {uid}: only root can switch user")
    if gid:
        group = _group_id(gid, f"--{prefix}gid")
        if group != os.getgid() and os.getuid() != 0:
            raise OptionError(f"--{prefix}gid {gid}: only root can switch group")


def user_id(value: str) -> int:
    """The uid an --X-uid value names (a name or a number)."""
    return _user(value)[0]


def group_id(value: str) -> int:
    """The gid an --X-gid value names (a name or a number)."""
    return _group_id(value)
