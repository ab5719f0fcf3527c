"""The master FIFO (``--master-fifo PATH``): one-letter commands written to a named pipe.

    echo r > /run/app.fifo      graceful reload
    echo 1 > /run/app.fifo      from now on, listen on the second --master-fifo instead

How it works
------------
A ``MasterService``. The first ``--master-fifo`` (slot 0) is active. When the master
attaches the service (after the app is preloaded, before the children are forked) it
removes whatever file is at that path, creates a FIFO there (mode 0600: only the
master's user may command it) and opens it non-blocking for reading, plus one write end
of its own: with a writer always present the read end never sees end-of-file, so the
FIFO stays the same file from one ``echo`` to the next (uWSGI re-creates it after each
writer closes). Each byte read is one command, run in order (``2p`` is ``2`` then
``p``); spaces and newlines are skipped; an unknown byte is logged and ignored.

``0``-``9`` switch the active FIFO to that slot at once: the new path is created and
read, and the old FIFO is removed if it is still the one this master made (uWSGI leaves
it behind, but a FIFO nobody reads makes every later writer block forever). A master
that is stopping creates no FIFO: switches are ignored then.

Reloads re-execute the master. The FIFO is not removed for that: its identity (device,
inode, path) goes to the next incarnation in ``BROOD_MASTER_FIFO``, which keeps the same
FIFO when it is still at the slot-0 path (a writer that opened it meanwhile is then
served, not left blocked on a removed pipe) and removes it when it is elsewhere; the
active slot is 0 again, as in uWSGI. At shutdown the FIFO is removed, when still ours.

The commands are uWSGI 2.0's letters (``COMMANDS``); each calls the master through
``MasterControl``. Those of uWSGI features brood does not have (``UNSUPPORTED``: cheaper
mode, the Emperor, re-forking the master, pausing) are logged as such.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
from collections.abc import Callable
from typing import Any

from brood.config.model import Config
from brood.config.option import OptionError
from brood.log import log
from brood.plan import MasterControl, PlanBuilder, register_contributor

FIFO_ENV = "BROOD_MASTER_FIFO"
MAX_SLOTS = 10  # the slots are chosen by one digit
READ_CHUNK = 4096
MAX_READS = 16  # per wakeup: a writer flooding the FIFO cannot pin the master
_SKIP = frozenset(b" \t\r\n")

Identity = tuple[int, int, str]  # st_dev, st_ino, path


def _toggle_subscriptions(control: MasterControl) -> None:
    """``S``: block or unblock every announcer (``--subscribe-to``/``--subscribe2``)."""
    announcers = [svc for svc in control.plan.services if hasattr(svc, "set_blocked")]
    if not announcers:
        log("subscriptions toggle ignored: no --subscribe-to or --subscribe2")
        return
    blocked = not all(svc.blocked for svc in announcers)
    for svc in announcers:
        svc.set_blocked(blocked)
    log("subscriptions blocked" if blocked else "subscriptions re-enabled")


Command = Callable[[MasterControl], None]

# letter -> (what it does, how). Digits (slot switches) are handled by the FIFO itself.
COMMANDS: dict[str, tuple[str, Command]] = {
    "r": ("graceful reload", lambda c: c.reload(graceful=True)),
    "R": ("brutal reload", lambda c: c.reload(graceful=False)),
    "q": ("graceful shutdown", lambda c: c.shutdown(graceful=True)),
    "Q": ("immediate shutdown", lambda c: c.shutdown(graceful=False)),
    "w": ("graceful reload of the workers", lambda c: c.reload_workers(graceful=True)),
    "W": ("brutal reload of the workers", lambda c: c.reload_workers(graceful=False)),
    "c": ("chain reload of the workers", lambda c: c.chain_reload()),
    "l": ("reopen the log file", lambda c: c.reopen_log()),
    "L": ("rotate the log file", lambda c: c.rotate_log()),
    "P": ("rewrite the pidfile", lambda c: c.update_pidfile()),
    "s": ("log the stats", lambda c: c.log_stats()),
    "S": ("block/unblock subscriptions", _toggle_subscriptions),
}
UNSUPPORTED: dict[str, str] = {
    "+": "cheaper mode", "-": "cheaper mode", "C": "cheap mode",
    "B": "the Emperor", "E": "the Emperor", "f": "re-forking the master",
    "p": "pausing the instance",
}


def decode(data: bytes) -> list[str]:
    """The commands in bytes read from the FIFO, in order (pure)."""
    return [chr(b) for b in data if b not in _SKIP]


def _identity_of(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino) if stat.S_ISFIFO(st.st_mode) else None


def _remove_if_ours(ident: Identity | None) -> None:
    """Remove the FIFO at ``ident``'s path if it is still that very file."""
    if ident is not None and _identity_of(ident[2]) == ident[:2]:
        with contextlib.suppress(OSError):
            os.unlink(ident[2])


def _parse_identity(text: str) -> Identity | None:
    try:
        item = json.loads(text)
        return int(item["dev"]), int(item["ino"]), str(item["path"])
    except (ValueError, TypeError, KeyError):
        return None


def _open_fifo(path: str, keep: Identity | None) -> tuple[int, int, Identity]:
    """Create (or, when ``keep`` names the FIFO still there, reuse) the FIFO at ``path``
    and open it: (read fd, our own write fd, its identity). OSError when it cannot."""
    if keep is None or keep[2] != path or _identity_of(path) != keep[:2]:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        os.mkfifo(path, 0o600)
    rfd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        wfd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        st = os.fstat(rfd)
    except OSError:
        os.close(rfd)
        raise
    return rfd, wfd, (st.st_dev, st.st_ino, path)


class MasterFifo:
    """The ``--master-fifo`` service: reads the active slot, runs what it reads."""

    def __init__(self, paths: list[str], previous: Identity | None = None) -> None:
        self.paths = [os.path.abspath(p) for p in paths]
        self.previous = previous  # the FIFO the master before a re-exec left open
        self.slot = 0
        self.control: MasterControl | None = None
        self.ident: Identity | None = None
        self._r = self._w = -1
        self._reloading = False

    @property
    def path(self) -> str:
        return self.paths[self.slot]

    # -- MasterService -----------------------------------------------------------------

    def attach(self, control: MasterControl) -> None:
        self.control = control
        try:
            self._r, self._w, self.ident = _open_fifo(self.path, self.previous)
        except OSError as exc:
            raise OptionError(f"--master-fifo {self.path}: cannot create the FIFO: "
                              f"{exc.strerror}")
        if self.previous is not None and self.previous[2] != self.path:
            _remove_if_ours(self.previous)  # the previous incarnation was on another slot
        self.previous = None
        log(f"master fifo {self.path} active (slot 0 of {len(self.paths)})")

    def fileno(self) -> int | None:
        return self._r if self._r >= 0 else None

    def on_readable(self, now: float) -> None:
        data = bytearray()
        for _ in range(MAX_READS):
            try:
                chunk = os.read(self._r, READ_CHUNK)
            except (BlockingIOError, InterruptedError):
                break
            if not chunk:  # cannot happen while we hold a write end; never spin on it
                break
            data += chunk
        self.run(decode(bytes(data)))

    def tick(self, now: float) -> None:
        pass

    def on_reload(self, graceful: bool | None = None) -> None:
        """Leave the FIFO to the next incarnation (see the module docstring)."""
        self._reloading = True
        self._hand_over()

    def on_shutdown(self) -> None:
        self._close()
        _remove_if_ours(self.ident)
        os.environ.pop(FIFO_ENV, None)

    def close_in_child(self) -> None:
        self._close()

    # -- commands ----------------------------------------------------------------------

    def run(self, commands: list[str]) -> None:
        """Run decoded commands in order."""
        assert self.control is not None
        for ch in commands:
            if ch.isdigit() and ch.isascii():
                self.switch(int(ch))
            elif ch in COMMANDS:
                COMMANDS[ch][1](self.control)
            elif ch in UNSUPPORTED:
                log(f"master fifo: {ch!r} ({UNSUPPORTED[ch]}) is not supported by brood, "
                    f"ignored")
            else:
                log(f"master fifo: unknown command {ch!r}, ignored")

    def switch(self, slot: int) -> None:
        """Make ``slot`` the active FIFO: create and read it, drop the old one."""
        if slot >= len(self.paths):
            log(f"master fifo: there is no slot {slot} ({len(self.paths)} --master-fifo "
                f"given), ignored")
            return
        if slot == self.slot:
            log(f"active master fifo is already {self.path}")
            return
        if self.control is not None and self.control.stopping:
            # uWSGI re-creates FIFOs while dying and so can take a path another
            # instance just made its own (WIRE §5.1); a stopping master makes none.
            log(f"master fifo: switch to slot {slot} ignored: the master is stopping")
            return
        path = self.paths[slot]
        try:  # opened before the old fds close, so the master sees a new fd number
            rfd, wfd, ident = _open_fifo(path, None)
        except OSError as exc:
            log(f"master fifo: cannot create {path}: {exc.strerror}; staying on {self.path}")
            return
        self._close()
        _remove_if_ours(self.ident)
        self._r, self._w, self.ident, self.slot = rfd, wfd, ident, slot
        if self._reloading:
            self._hand_over()
        log(f"active master fifo is now {path}")

    # -- fds ---------------------------------------------------------------------------

    def _hand_over(self) -> None:
        if self.ident is not None:
            dev, ino, path = self.ident
            os.environ[FIFO_ENV] = json.dumps({"dev": dev, "ino": ino, "path": path})

    def _close(self) -> None:
        for fd in (self._r, self._w):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._r = self._w = -1


@register_contributor
def contribute_master_fifo(cfg: Config, b: PlanBuilder) -> None:
    """``--master-fifo``: the FIFO service. Also drops what a previous incarnation left
    when the option is gone after a reload."""
    previous = _parse_identity(os.environ.pop(FIFO_ENV, ""))
    paths: list[Any] = cfg["master-fifo"]
    if not paths:
        _remove_if_ours(previous)
        return
    if len(paths) > MAX_SLOTS:
        raise OptionError(f"--master-fifo: at most {MAX_SLOTS} (slots 0-9), got {len(paths)}")
    b.add_service(MasterFifo([str(p) for p in paths], previous))
