"""The master's side of the log master: starting it, giving each child its pipes,
asking for rotations, handing it to the next master across a reload, stopping it.

How it works
------------
``LogMaster.start`` keeps a copy of what fd 2 is (the plain log: the terminal, or the
--logto/--daemonize file), forks the log master process (``brood.logs.process``) and
points the master's own fds 1 and 2 at a pipe the log master reads. Each child gets a
pipe of its own the same way (``pipes`` before the fork, ``in_child`` and ``spawned``
after it): its fds 1 and 2 are the write end, and with --req-logger a second pipe
carries its request lines (``brood.log.REQUEST_FD``). The read ends go to the log
master over the control socket; the master keeps a copy of each until the child is
reaped, so a log master that dies is respawned on the same pipes and no writer ever
meets a pipe without a reader (EPIPE, or SIGPIPE for a child's subprocess).

Blocking, not dropping, between the processes and the log master: a pipe holds
``PIPE_SIZE`` bytes (1 MiB where the kernel allows it) and the log master only ever
waits on its sinks, so a writer waits only when a sink itself stalls (a file on a
stuck disk); the datagram sinks drop and count instead (``brood.logs.sinks``).

Across a reload the log master goes on: it is not the master, so nothing stops reading
while the master re-executes, loads the app again and forks. ``hand_over`` writes
``BROOD_LOG_MASTER`` (its pid, the control socket, the plain log, the read-end copies
by child pid, the plan's signature) and clears close-on-exec on those fds; the next
master's ``take_over`` adopts it when its own options ask for the same plan. When they
ask for another (the ini file changed), the old one is told to ``retire`` (it reads on
until the children it serves, the routers still draining, have ended) and a new one
starts; when they ask for none, the master's fds 1 and 2 go back to the plain log.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass

from brood import log as brood_log
from brood.config.model import Config
from brood.config.option import OptionError
from brood.log import log
from brood.logs import control
from brood.logs.spec import LogPlan
from brood.master_env import daemonize, logto
from brood.signals import stops_blocked

ENV = "BROOD_LOG_MASTER"
PIPE_SIZE = 1 << 20  # the default Linux ceiling for an unprivileged F_SETPIPE_SZ
REQUEST_FD_MIN = 64  # the request channel's fd in a child: away from the low numbers
STOP_WAIT = 5.0  # seconds the log master gets to write out what the pipes hold
RESPAWN_YOUNG = 1.0  # a log master dead this soon is respawned at the next cycle
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)


@dataclass
class ChildPipes:
    """A child's pipes, (read end, write end): its output, and its request lines."""

    out: tuple[int, int]
    req: tuple[int, int] | None = None


def _pipe() -> tuple[int, int]:
    r, w = os.pipe2(os.O_CLOEXEC)
    with contextlib.suppress(OSError):  # (past the user's pipe quota: the default size)
        fcntl.fcntl(w, F_SETPIPE_SZ, PIPE_SIZE)
    return r, w


def _close(*fds: int) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


class LogMaster:
    """The running log master process, as the master sees it."""

    def __init__(self, plan: LogPlan, raw_fd: int, own_read: int,
                 owner: tuple[int, int] | None = None, title: str | None = None) -> None:
        self.plan = plan
        self.title = title  # its process title (--procname*), None: left alone
        self.raw_fd = raw_fd  # the plain log, where fds 1 and 2 go back at the end
        self.own_read = own_read  # (copy) the read end of the master's own pipe
        self.owner = owner  # --logfile-chown
        self.cwd = os.getcwd()  # relative log paths mean the same to a respawned one
        self.pid = 0
        self.ctl: socket.socket | None = None
        self.alive = False
        self.started = 0.0  # (monotonic) when it was forked
        self.stopping = False
        self.kept: dict[int, list[tuple[int, str, bool]]] = {}  # pid -> (fd, name, req)
        self.pending: list[tuple[dict, list[int]]] = []
        self.notes: list[str] = []  # for the master's log, once its banner is out
        self.on_pid: Callable[[int, Callable[[int], None]], None] | None = None

    # -- start ---------------------------------------------------------------------------

    @classmethod
    def start(cls, plan: LogPlan, uid: str | None = None, gid: str | None = None,
              owner: tuple[int, int] | None = None, title: str | None = None) -> LogMaster:
        """Fork the log master and point this process's fds 1 and 2 at it."""
        raw_fd = fcntl.fcntl(2, fcntl.F_DUPFD_CLOEXEC, 3)
        own_r, own_w = _pipe()
        lm = cls(plan, raw_fd, own_r, owner, title)
        lm._spawn(uid, gid)
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(own_w, 1)
        os.dup2(own_w, 2)
        os.close(own_w)
        return lm

    def _sources(self) -> list[tuple[int, str, bool]]:
        return [(self.own_read, "master", False),
                *(item for items in self.kept.values() for item in items)]

    def _spawn(self, uid: str | None = None, gid: str | None = None) -> None:
        from brood.logs.process import LogProcess, Source

        ours, theirs = control.pair()
        sys.stdout.flush()
        sys.stderr.flush()
        with stops_blocked():  # (until its own handlers are in: LogProcess.run)
            pid = os.fork()
        if pid == 0:  # the log master: never returns
            status = 1
            try:
                ours.close()
                os.chdir(self.cwd)
                if self.title is not None:
                    from brood.proctitle import title_setter

                    title_setter()(self.title)
                os.dup2(self.raw_fd, 1)
                os.dup2(self.raw_fd, 2)
                sources = [Source(fd, name, req) for fd, name, req in self._sources()]
                keep = {0, 1, 2, self.raw_fd, theirs.fileno(), *(s.fd for s in sources),
                        *(lg.fd for lg in self.plan.loggers + self.plan.req_loggers)}
                _close_all_but(keep)
                process = LogProcess(self.plan, self.raw_fd, theirs, sources, self.owner)
                if uid or gid:
                    from brood.master_env import drop_privileges

                    drop_privileges(uid, gid, quiet=True)
                status = process.run()
            except BaseException:
                traceback.print_exc()
            finally:
                os._exit(status)
        theirs.close()
        ours.setblocking(False)
        self.pid, self.ctl, self.alive = pid, ours, True
        self.started = time.monotonic()
        self.notes.append(f"log master started (pid: {pid})")
        if self.on_pid is not None:
            self.on_pid(pid, self.exited)

    def watch(self, on_pid: Callable[[int, Callable[[int], None]], None]) -> None:
        """``on_pid(pid, exited)``: how the master's reaping tells us our process ended."""
        self.on_pid = on_pid
        if self.alive:
            on_pid(self.pid, self.exited)

    def exited(self, status: int) -> None:
        """Our process ended (reaped by the master): respawned at once, before the
        master writes anything more into a pipe nobody reads; one that died young waits
        for the next master cycle (no fork loop)."""
        self.alive = False
        if not self.stopping:
            from brood.master_children import describe_status

            self.notes.append(f"log master (pid: {self.pid}) died "
                              f"({describe_status(status)}), respawning")
            if time.monotonic() - self.started >= RESPAWN_YOUNG:
                self.tick()

    def tick(self) -> None:
        """Once per master cycle: respawn a dead log master, send what waited, say what
        there is to say."""
        if not self.alive and not self.stopping:
            if self.ctl is not None:
                self.ctl.close()
                self.ctl = None
            self.pending.clear()  # (the new one is given every read end at its fork)
            try:
                self._spawn()
            except OSError as exc:  # (fork failed: the next cycle tries again)
                self.notes.append(f"log master: cannot fork ({exc.strerror or exc})")
        self._flush_pending()
        self.say()

    def say(self) -> None:
        """The notes so far, into the master's log."""
        notes, self.notes = self.notes, []
        for note in notes:
            log(note)

    # -- children ------------------------------------------------------------------------

    def pipes(self) -> ChildPipes:
        """Before forking a child."""
        return ChildPipes(_pipe(), _pipe() if self.plan.split_requests else None)

    def in_child(self, pipes: ChildPipes) -> None:
        """In the child right after the fork: its output into its pipes."""
        out_r, out_w = pipes.out
        os.dup2(out_w, 1)
        os.dup2(out_w, 2)
        _close(out_r, out_w)
        if pipes.req is not None:
            req_r, req_w = pipes.req
            brood_log.REQUEST_FD = fcntl.fcntl(req_w, fcntl.F_DUPFD_CLOEXEC, REQUEST_FD_MIN)
            _close(req_r, req_w)
        self.close_in_child()

    def close_in_child(self) -> None:
        """Drop the master's fds of the log master (in any forked child)."""
        if self.ctl is not None:
            self.ctl.close()
        _close(self.own_read, *(fd for items in self.kept.values() for fd, _, _ in items))
        self.kept = {}

    def spawned(self, pipes: ChildPipes, pid: int, name: str) -> None:
        """In the master after the fork: the read ends to the log master."""
        items = [(pipes.out[0], name, False)]
        _close(pipes.out[1])
        if pipes.req is not None:
            items.append((pipes.req[0], name, True))
            _close(pipes.req[1])
        self.kept[pid] = items
        self._send({"op": "add", "sources": [{"name": n, "req": r} for _, n, r in items]},
                   [fd for fd, _, _ in items])

    def reaped(self, pid: int) -> None:
        """A child is gone: the log master keeps reading its pipe to the end on its own."""
        _close(*(fd for fd, _, _ in self.kept.pop(pid, ())))

    # -- commands ------------------------------------------------------------------------

    def rotate(self) -> None:
        self._send({"op": "rotate"})

    def reopen(self) -> None:
        self._send({"op": "reopen"})

    def reloaded(self, logfile: bool) -> None:
        """After the re-exec: the file loggers follow their paths (--logto's too with
        ``logfile``, --log-reopen)."""
        self._send({"op": "reload", "logfile": logfile})

    def _send(self, message: dict, fds: list[int] = ()) -> None:
        if self.pending:
            self._flush_pending()
        if self.pending or self.ctl is None:
            self.pending.append((message, list(fds)))
            return
        try:
            control.send(self.ctl, message, list(fds))
        except BlockingIOError:
            self.pending.append((message, list(fds)))
        except OSError:
            pass  # the log master is gone: its successor gets every read end at fork

    def _flush_pending(self) -> None:
        while self.pending and self.ctl is not None:
            message, fds = self.pending[0]
            try:
                control.send(self.ctl, message, fds)
            except BlockingIOError:
                return
            except OSError:
                self.pending.clear()
                return
            self.pending.pop(0)

    # -- the end, and reloads ------------------------------------------------------------

    def stop(self, wait: float = STOP_WAIT) -> None:
        """At exit: fds 1 and 2 back to the plain log, then the log master writes out
        what the pipes hold and exits (SIGKILL after ``wait`` seconds)."""
        self._let_go("stop", wait)
        if self.alive:
            _wait_for(self.pid, wait)
            self.alive = False
        _close(self.own_read, *(fd for items in self.kept.values() for fd, _, _ in items))
        self.kept = {}

    def retire(self) -> None:
        """This master will not use it (its options changed): it reads on until the
        processes it serves have ended, then exits by itself."""
        self._let_go("retire", STOP_WAIT)
        _close(self.raw_fd, self.own_read,
               *(fd for items in self.kept.values() for fd, _, _ in items))
        self.kept = {}

    def _let_go(self, op: str, wait: float) -> None:
        """fds 1 and 2 back to the plain log, then the last word to the log master."""
        self.stopping = True
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(self.raw_fd, 1)
        os.dup2(self.raw_fd, 2)
        if self.ctl is not None:
            self._send_all({"op": op}, wait)
            self.ctl.close()
            self.ctl = None

    def _send_all(self, last: dict | None, wait: float) -> None:
        """What waited to be sent, then ``last``, waiting up to ``wait`` seconds for room
        (the process is about to end or to re-execute: nothing may stay behind)."""
        if self.ctl is None:
            return
        with contextlib.suppress(OSError):
            self.ctl.settimeout(wait)
            for message, fds in self.pending:
                control.send(self.ctl, message, fds)
            self.pending.clear()
            if last is not None:
                control.send(self.ctl, last)
        with contextlib.suppress(OSError):
            self.ctl.setblocking(False)

    def hand_over(self, env: dict[str, str]) -> None:
        """Before the re-exec: what the next master needs to adopt it, in ``env``."""
        self._send_all(None, STOP_WAIT)
        fds = [self.raw_fd, self.own_read,
               *(fd for items in self.kept.values() for fd, _, _ in items)]
        if self.ctl is not None:
            fds.append(self.ctl.fileno())
        for fd in fds:
            with contextlib.suppress(OSError):
                os.set_inheritable(fd, True)
        env[ENV] = json.dumps({
            "pid": self.pid if self.alive else 0,
            "ctl": self.ctl.fileno() if self.ctl is not None else -1,
            "raw": self.raw_fd, "own": self.own_read,
            "kept": {str(pid): items for pid, items in self.kept.items()},
            "plan": self.plan.signature(),
            "owner": self.owner, "cwd": self.cwd,
        })

    @classmethod
    def from_env(cls, plan: LogPlan) -> tuple[LogMaster | None, bool]:
        """The log master the previous master handed over (taken out of the
        environment), and whether it runs the same plan as ``plan``."""
        raw = os.environ.pop(ENV, "")
        if not raw:
            return None, False
        try:
            data = json.loads(raw)
            lm = cls(plan, int(data["raw"]), int(data["own"]),
                     tuple(data["owner"]) if data.get("owner") else None)
            lm.cwd = str(data.get("cwd") or lm.cwd)
            lm.kept = {int(pid): [(int(fd), str(name), bool(req)) for fd, name, req in items]
                       for pid, items in data["kept"].items()}
            ctl, pid = int(data["ctl"]), int(data["pid"])
            same = data["plan"] == plan.signature()
        except (ValueError, TypeError, KeyError):
            return None, False
        for fd in [lm.raw_fd, lm.own_read, *(fd for items in lm.kept.values()
                                                 for fd, _, _ in items)]:
            with contextlib.suppress(OSError):
                os.set_inheritable(fd, False)
        if ctl >= 0:
            with contextlib.suppress(OSError):
                lm.ctl = socket.socket(fileno=ctl)
                lm.ctl.set_inheritable(False)
                lm.ctl.setblocking(False)
        lm.pid, lm.alive = pid, pid > 0 and _our_child(pid)
        return lm, same


def _our_child(pid: int) -> bool:
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return False
    return done == 0


def _wait_for(pid: int, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return
        if done:
            return
        if time.monotonic() >= deadline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
            return
        time.sleep(0.01)


def _close_all_but(keep: set[int]) -> None:
    """Close every fd of this process not in ``keep`` (listening sockets above all)."""
    try:
        fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:
        fds = list(range(3, 1024))
    for fd in fds:
        if fd not in keep:
            _close(fd)


# -- where this incarnation's output goes ------------------------------------------------

def setup_logging(cfg: Config, first_start: bool, title: str | None = None
                  ) -> LogMaster | None:
    """At each start of the master (the first, and after each re-exec): --log-date,
    --logto/--daemonize (first start; again on a reload with --log-reopen), and the log
    master when an option needs it: adopted from the previous incarnation when it runs
    the same plan, else started (a previous one that does not fit retires)."""
    plan = LogPlan.from_config(cfg)
    brood_log.set_date(_date_option(cfg))
    previous, same = (None, False)
    if first_start:
        os.environ.pop(ENV, None)  # (not ours: an app's brood, say)
    else:
        previous, same = LogMaster.from_env(plan)
    if previous is not None and same and plan.needs_master:
        previous.title = title
        if previous.alive:
            previous.notes.append(f"log master (pid: {previous.pid}) carries on")
        previous.tick()  # (respawned now if it died meanwhile: the pipes fill otherwise)
        previous.reloaded(bool(cfg["log-reopen"]))
        return previous
    notes = []
    if previous is not None:
        previous.retire()
        notes.append(f"log master (pid: {previous.pid}) retires: the logging options "
                     "changed")
    owner = _owner(cfg)
    path = cfg["daemonize"] or cfg["logto"]
    truncate = bool(cfg["log-truncate"])
    if first_start and cfg["daemonize"]:
        daemonize(path, truncate)
    elif first_start and cfg["logto"]:
        logto(path, truncate)
    elif path and cfg["log-reopen"]:
        logto(path)
    if path and (first_start or cfg["log-reopen"]):
        _chmod_chown(1, plan.chmod, owner)
    if not plan.needs_master:
        return None
    probe(plan)
    lm = LogMaster.start(plan, cfg["uid"], cfg["gid"], owner, title)
    lm.notes[:0] = notes
    lm.notes.extend(plan.notes())  # (encoders that will not do what they seem to)
    return lm


def _date_option(cfg: Config) -> str | None:
    """The last of --log-date/--log-prefix given (they set the same thing in uWSGI)."""
    value = None
    for name, given in cfg.ordered():
        if name in ("log-date", "log-prefix"):
            value = given
    return value


def _owner(cfg: Config) -> tuple[int, int] | None:
    """--logfile-chown: --uid/--gid's (-1: unchanged), when root can give files away."""
    if not cfg["logfile-chown"] or os.geteuid() != 0 or not (cfg["uid"] or cfg["gid"]):
        return None
    from brood.master_env import group_id, user_id

    return (user_id(cfg["uid"]) if cfg["uid"] else -1,
            group_id(cfg["gid"]) if cfg["gid"] else -1)


def _chmod_chown(fd: int, mode: int | None, owner: tuple[int, int] | None) -> None:
    with contextlib.suppress(OSError):
        if mode is not None:
            os.fchmod(fd, mode)
        if owner is not None:
            os.fchown(fd, *owner)


def probe(plan: LogPlan) -> None:
    """Each file logger opens and each fd logger is open, or the start (or a reload,
    beforehand) stops here, naming it (the log master opens them again, after the
    fork)."""
    for spec in plan.loggers + plan.req_loggers:
        if spec.kind == "file":
            try:
                os.close(os.open(spec.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND,
                                 0o640 if plan.chmod is None else plan.chmod))
            except OSError as exc:
                raise OptionError(f"--logger {spec.text}: cannot open {spec.path}: "
                                  f"{exc.strerror or exc}") from None
        elif spec.kind == "fd":
            try:
                os.fstat(spec.fd)
            except OSError as exc:
                raise OptionError(f"--logger {spec.text}: fd {spec.fd} is not open "
                                  f"({exc.strerror or exc})") from None
