"""Start-up glue of uWSGI 2.0's core: commands run at a phase (--exec-*), waits for a
file or socket (--wait-for-*), --umask and the pidfiles written after the privileges
are dropped (--pidfile2) or atomically (--safe-pidfile, --safe-pidfile2).

The phases, in uWSGI 2.0.21's order (each runs again in every incarnation: a reload
re-executes the master, as uWSGI does):

1. ``exec-asap``: first of all, before the log is set up.
2. started as root only (uWSGI runs them in its root-only section, silently skipped
   otherwise; brood says so): ``wait-for-fs``/``-file``/``-dir``/``-mountpoint``, then
   ``exec-as-root``; the sockets are bound after them.
3. after the privileges are dropped (as root only too): ``exec-as-user``; then the
   pidfiles of that phase.
4. ``wait-for-socket``, then ``exec-pre-app``, the app import, ``exec-post-app``.
5. ``exec-as-user-atexit``: after the goodbye, and before each reload's re-exec.

A command is ``/bin/sh -c COMMAND``, waited for; one that fails stops the start with
uWSGI's line (exit status 1), except at exit, where it is only said. A wait polls
(every 0.1 s where uWSGI polls every second) up to its timeout, 60 s unless
``--wait-for-fs-timeout``/``--wait-for-socket-timeout``; past it the start stops with
uWSGI's line. uWSGI 2.0.21 takes anything that exists for ``wait-for-file`` and
``wait-for-dir`` alike (a directory satisfies --wait-for-file): brood does the same.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable
from typing import Any

from brood.config.option import OptionError, to_mode
from brood.log import log

DEFAULT_WAIT = 60  # seconds: uWSGI's default for every --wait-for-*-timeout
POLL = 0.1  # seconds between two looks


class HookFailed(OptionError):
    """A command of a phase failed or a wait timed out: the start stops (one line)."""


def run_commands(commands: Iterable[str], label: str, fatal: bool = True) -> None:
    """Run each ``/bin/sh -c`` command and wait for it, said as uWSGI says it
    (``label``: what follows the command, ``(asap)...``)."""
    for command in commands:
        log(f"running \"{command}\" {label}")
        try:
            code = subprocess.run(["/bin/sh", "-c", str(command)], close_fds=True,
                                  check=False).returncode
        except OSError as exc:
            code = 127
            log(f"cannot run \"{command}\": {exc.strerror or exc}")
        if code != 0:
            message = f"command \"{command}\" exited with non-zero code: {code}"
            if fatal:
                raise HookFailed(message)
            log(message)


def user_label() -> str:
    return f"(as uid: {os.getuid()} gid: {os.getgid()}) ..."


def fs_ready(path: str, kind: str) -> bool:
    """Whether a --wait-for-{kind} is satisfied (pure but for the file system)."""
    if kind == "mountpoint":
        return os.path.ismount(path)
    return os.path.exists(path)


def socket_ready(address: str) -> bool:
    """Whether something accepts on ``address`` (HOST:PORT or a unix path)."""
    host, sep, port = address.rpartition(":")
    try:
        if sep and port.isdigit() and "/" not in address:
            with socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), 1):
                return True
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(1)
            sock.connect(address)
            return True
    except OSError:
        return False


def wait_for(what: str, ready: Callable[[], bool], timeout: int,
             clock: Callable[[], float] = time.monotonic,
             sleep: Callable[[float], None] = time.sleep) -> None:
    """Poll ``ready`` up to ``timeout`` seconds; HookFailed (uWSGI's line) past it."""
    log(f"waiting for {what} (max {timeout} seconds) ...")
    start = clock()
    while not ready():
        waited = clock() - start
        if waited > timeout:
            raise HookFailed(f"{what} unavailable after {int(waited)} seconds")
        sleep(POLL)
    log(f"{what} found")


def _timeout(cfg: Any, option: str) -> int:
    value = cfg[option]
    return int(value) if value else DEFAULT_WAIT


def as_root(cfg: Any) -> bool:
    """Phase 2 (before binding): the waits for the file system, then exec-as-root;
    only when started as root, as uWSGI. Returns whether it ran (phase 3 follows it)."""
    if os.geteuid() != 0:
        skipped = [name for name in ("wait-for-fs", "wait-for-file", "wait-for-dir",
                                     "wait-for-mountpoint", "exec-as-root", "exec-as-user")
                   if cfg[name]]
        if skipped:
            log(f"--{', --'.join(skipped)} ignored: uWSGI runs them only when started "
                "as root")
        return False
    timeout = _timeout(cfg, "wait-for-fs-timeout")
    for option, kind in (("wait-for-fs", "fs"), ("wait-for-file", "file"),
                         ("wait-for-dir", "dir"), ("wait-for-mountpoint", "mountpoint")):
        for path in cfg[option] or ():
            wait_for(str(path), lambda p=str(path), k=kind: fs_ready(p, k), timeout)
    run_commands(cfg["exec-as-root"] or (), "(as root)...")
    return True


def as_user(cfg: Any, was_root: bool) -> None:
    """Phase 3: exec-as-user once the privileges are dropped, then its pidfiles."""
    if was_root:
        run_commands(cfg["exec-as-user"] or (), user_label())
    for option in ("pidfile2", "safe-pidfile2"):
        if cfg[option]:
            write_pid(str(cfg[option]), option, safe=option.startswith("safe"))


def before_app(cfg: Any) -> None:
    """Phase 4, before the app is imported: wait-for-socket, exec-pre-app."""
    timeout = _timeout(cfg, "wait-for-socket-timeout")
    for address in cfg["wait-for-socket"] or ():
        wait_for(str(address), lambda a=str(address): socket_ready(a), timeout)
    run_commands(cfg["exec-pre-app"] or (), "(pre app)...")


def after_app(cfg: Any) -> None:
    run_commands(cfg["exec-post-app"] or (), "(post app)...")


def at_exit(cfg: Any) -> None:
    """Phase 5: exec-as-user-atexit, at the goodbye and before a reload's re-exec."""
    run_commands(cfg["exec-as-user-atexit"] or (), user_label(), fatal=False)


def write_pid(path: str, option: str, safe: bool) -> None:
    """Our pid in ``path``; ``safe``: written to a temporary file in the same directory
    and renamed over it, so a reader never sees it half written. OptionError naming
    the option when it cannot be written."""
    log(f"writing pidfile to {path}")
    data = f"{os.getpid()}\n"
    try:
        if not safe:
            with open(path, "w") as fh:
                fh.write(data)
            return
        fd, tmp = tempfile.mkstemp(prefix=".pidfile-", dir=os.path.dirname(path) or ".")
        try:
            os.fchmod(fd, 0o666 & ~_current_umask())
            os.write(fd, data.encode())
            os.close(fd)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    except OSError as exc:
        raise OptionError(f"--{option} {path}: cannot write: {exc.strerror or exc}") from None


def pidfiles_before_drop(cfg: Any) -> None:
    if cfg["safe-pidfile"]:
        write_pid(str(cfg["safe-pidfile"]), "safe-pidfile", safe=True)


def pidfile_paths(cfg: Any) -> list[str]:
    """Every pidfile of these options (--vacuum removes them)."""
    return [str(cfg[o]) for o in ("pidfile2", "safe-pidfile", "safe-pidfile2") if cfg[o]]


def parse_umask(raw: Any) -> int:
    """--umask's octal value (OptionError naming it)."""
    return to_mode(str(raw), "umask", "022")


def apply_umask(cfg: Any) -> None:
    if cfg["umask"] is not None and str(cfg["umask"]).strip():
        os.umask(parse_umask(cfg["umask"]))


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
