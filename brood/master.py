"""The master: a synchronous supervisor that binds, forks and keeps its children alive.

How it works
------------
Start-up (``run_master``): detach or redirect the log (``--daemonize``/``--logto``; not
again after a re-exec), apply ``--env``/``--chdir``, catch signals into a self-pipe,
build the plan (binding each socket, or adopting the fd the previous incarnation left
open across exec), write ``--pidfile``, drop ``--gid``/``--uid``, run the plan's prepare
hooks (preloading the app unless ``--lazy-apps``), fork every child. There is no trio
here: children start their own event loops after the fork, so forking is always safe.

The loop: ``select`` over the signal pipe and the services' fds with a timeout of at
most one master cycle (1 s), shorter when a harakiri deadline or a delayed respawn is
due. Each turn: handle signals and what services asked for, serve readable services,
reap with ``WNOHANG`` and respawn (delayed when a child keeps dying young), harakiri,
the next step of a chain reload, then once per cycle the service ticks, the touch
files' mtimes (``--touch-reload``, then ``--touch-workers-reload``,
``--touch-chain-reload`` and ``--touch-exec``, in uWSGI's order),
``--evil-reload-on-rss``/``-as`` (SIGKILL, even mid-request) and the ``--reload-on-rss``
backup check. ``brood: ready`` is logged once every worker says it
is accepting.

Signals, as uWSGI 2.0: SIGHUP graceful reload (children get their graceful signal and
``--worker-reload-mercy`` seconds to finish in-flight work, then the master re-executes
itself with the same argv, keeping the listening sockets open across exec); SIGTERM
brutal reload (children interrupted, then the same re-exec), or a graceful shutdown
with ``--die-on-term``; SIGINT/SIGQUIT immediate shutdown (children SIGINT, SIGKILL
after a short mercy); SIGCHLD only wakes the loop. Before any of them stops the
children, the services hear it (``before_stop``): the announcer unsubscribes first, so
routers move traffic away while the workers still serve. An immediate shutdown asked
for while a reload is stopping the children (SIGINT, SIGQUIT, FIFO ``q``/``Q``) makes it
end in exit instead of the re-exec.

A graceful reload does not wait for the router processes (``ChildSpec.handoff``): they
stop accepting at their graceful signal, and as soon as the workers are done the master
re-executes and its next incarnation forks new routers on the same listening sockets, so
new connections wait about the time of a re-exec, not for the longest open session
(uWSGI cuts those; brood lets them finish). The old routers stay children of the same
pid: the new incarnation reaps them as they end, without respawning them, and SIGKILLs
any still there ``--reload-mercy`` (60 s) plus ``HANDOFF_SLACK`` after they were
signalled (each cuts its own sessions at the mercy first). They are detached from
everything per-incarnation: their subscription feed, stats snapshots and spread table
stop with their accept loops (``brood.routers.process``), and the next incarnation
makes fresh ones. A brutal reload and the shutdowns wait for them like for any child.

Services act on the master through ``MasterControl`` (the methods under "control"):
the master FIFO's commands land there. Reloads and shutdowns are recorded and picked up
by the loop like a signal; a worker reload (all at once, or the chain) only signals the
workers, and the usual reap and respawn do the rest.

brood always runs this supervisor, with or without ``--master``: a single worker still
gets respawn, harakiri and reloads (uWSGI without a master has none of these; there is
no behaviour a user could want from losing them).
"""

from __future__ import annotations

import contextlib
import errno
import os
import selectors
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from brood import fdlimit
from brood import master_hooks as hooks
from brood.config.load import load_config
from brood.config.model import Config, refuse_unavailable
from brood.config.option import OptionError
from brood.log import log, plain, redirect_output
from brood.logs.master import LogMaster, probe, setup_logging
from brood.logs.sinks import backup_name, rotation_notice
from brood.logs.spec import LogPlan
from brood.master_appcheck import APP_CHECK_TIMEOUT, AppCheck
from brood.master_children import ChildTable, Draining, adopt_draining
from brood.master_daemons import STOP_MERCY, Daemons, daemon_specs
from brood.master_env import (
    DRAINING_ENV,
    FDS_ENV,
    RELOADS_ENV,
    Binder,
    check_privileges,
    drop_privileges,
    export_draining,
    socket_owner,
    take_draining,
    write_pidfile,
)
from brood.plan import ChildSpec, Plan, build_plan
from brood.proctitle import Titles, title_setter
from brood.signals import STOPS, SignalPipe, release_stops
from brood.sockets import StreamOptions
from brood.touch import TouchWatch, exec_touches, spawn_command
from brood.workers.loader import AppLoadError

CYCLE = 1.0  # seconds per master cycle, as uWSGI's
IMMEDIATE_MERCY = 3.0  # seconds children get after SIGINT before SIGKILL
MAX_STOP_LINGER = 2.0  # a service may hold a graceful stop this long (before_stop)
DEFAULT_WORKER_MERCY = 60.0  # uWSGI's --worker-reload-mercy default
DEFAULT_RELOAD_MERCY = 60.0  # --reload-mercy: how long a router drains its sessions
HANDOFF_SLACK = 5.0  # a handed-over router's own cut at the mercy comes first
_CAUGHT = (signal.SIGHUP, signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGCHLD)

# What a signal asks for: (how children are stopped, then re-exec or exit).
GRACEFUL_RELOAD = ("graceful", "reload")
BRUTAL_RELOAD = ("brutal", "reload")
GRACEFUL_SHUTDOWN = ("graceful", "exit")
IMMEDIATE_SHUTDOWN = ("brutal", "exit")


class StartupError(Exception):
    """The app could not be loaded or the process set up; message already one line."""


class Master:
    """One incarnation of the master process (a reload re-execs into a new one)."""

    def __init__(self, cfg: Config, argv: list[str], start_cwd: str) -> None:
        self.cfg = cfg
        self.argv = argv
        self.start_cwd = start_cwd
        self.reloads = int(os.environ.pop(RELOADS_ENV, "0") or 0)
        self.handed_over = take_draining()  # routers the previous incarnation left us
        self.draining: dict[int, Draining] = {}
        self.stop_signalled = 0.0  # when stop_children signalled the children
        self.binder = Binder(int(cfg["listen"] or 100), bool(cfg["reuse-port"]),
                             cfg["chmod-socket"], socket_owner(cfg["uid"], cfg["gid"]),
                             StreamOptions(int(cfg["socket-sndbuf"] or 0),
                                           int(cfg["socket-rcvbuf"] or 0),
                                           int(cfg["socket-send-timeout"] or 0)))
        self.sigpipe: SignalPipe | None = None
        self.selector: selectors.BaseSelector | None = None
        self.plan: Plan | None = None
        self.children: ChildTable | None = None
        self.ready = False
        self.touch_reload = TouchWatch(())
        self.touch_workers = TouchWatch(())
        self.touch_chain = TouchWatch(())
        self.touch_exec = TouchWatch(())
        self.touch_commands: dict[str, list[str]] = {}  # --touch-exec: file -> commands
        self.touch_logrotate = TouchWatch(())
        self.touch_logreopen = TouchWatch(())
        self.logs: LogMaster | None = None  # the log master, when an option needs it
        self.daemons: Daemons | None = None  # --attach-daemon and kin
        self.next_cycle = 0.0
        self.requested: tuple[str, str] | None = None  # by a service, picked up by loop()
        self.stopping = False  # a reload or shutdown is stopping the children
        self.exit_asked = False  # an exit was asked for while stopping: no re-exec
        self.app_check: AppCheck | None = None  # a reload waits for it (_checked)
        self.checked_reload: tuple[str, str] | None = None  # the reload it holds
        self.reasked: tuple[str, str] | None = None  # a reload asked while it runs
        self.titles = Titles.from_config(cfg)
        self.set_title: Callable[[str], None] | None = None
        self._watched: dict[int, int] = {}  # id(service) -> the fd the selector watches

    # -- start-up ----------------------------------------------------------------------

    def start(self) -> None:
        cfg = self.cfg
        self.sigpipe = SignalPipe(_CAUGHT)
        release_stops()  # those that came during a re-exec are acted on now
        plain(f"*** Starting brood {_version()} (uWSGI-compatible master) ***")
        if self.titles is not None:
            self.set_title = title_setter()
            self.set_title(self.titles.master())
        log(f"current working directory: {os.getcwd()}")
        for line in cfg.ignored:  # ini keys that are no option (an ini file for uWSGI)
            log(line)
        log(f"master pid: {os.getpid()} (reloads: {self.reloads})")
        if self.logs is not None:
            self.logs.say()
        log(f"detected max file descriptor number: {fdlimit.soft_limit()}")
        self._adopt_draining()
        daemons = daemon_specs(cfg)  # (a mistake in them stops the start before any fork)
        was_root = hooks.as_root(cfg)
        self.plan = plan = build_plan(cfg, self.binder)
        self.binder.close_unclaimed()
        self.selector = selectors.DefaultSelector()  # created after binding: sockets get fd 3...
        self.selector.register(self.sigpipe.fileno(), selectors.EVENT_READ, None)
        if not plan.children and not plan.services:
            raise OptionError("nothing to do: give --socket, --http-socket or a router option")
        if cfg["pidfile"]:
            write_pidfile(cfg["pidfile"], reload=bool(self.reloads))
        hooks.pidfiles_before_drop(cfg)
        drop_privileges(cfg["uid"], cfg["gid"])
        hooks.as_user(cfg, was_root)
        hooks.before_app(cfg)
        for hook in plan.prepare:
            hook()
        hooks.after_app(cfg)
        for svc in plan.services:
            attach = getattr(svc, "attach", None)
            if attach is not None:
                attach(self)
            self._watch(svc)
        self.touch_reload = TouchWatch(cfg["touch-reload"])
        self.touch_workers = TouchWatch(cfg["touch-workers-reload"])
        self.touch_chain = TouchWatch(cfg["touch-chain-reload"])
        self.touch_commands = exec_touches(cfg["touch-exec"])
        self.touch_exec = TouchWatch(self.touch_commands)
        self.touch_logrotate = TouchWatch(cfg["touch-logrotate"])
        self.touch_logreopen = TouchWatch(cfg["touch-logreopen"])
        self.children = ChildTable(plan.children, self._in_child, self.draining)
        if self.logs is not None:
            self.children.output = self.logs
            self.logs.watch(self.children.others.__setitem__)
        log(f"spawned uWSGI master process (pid: {os.getpid()})")
        self.children.signalled = self.sigpipe.pending
        self.children.spawn_all(time.time())
        self.daemons = Daemons(daemons, self.children.others,
                               lambda: self.shutdown(graceful=True),
                               bool(cfg["daemons-honour-stdin"]))
        self.daemons.spawn_all(time.time())

    def _adopt_draining(self) -> None:
        """The previous incarnation's routers still finishing their sessions: ours to
        reap (not respawn) and to SIGKILL at their deadline."""
        self.draining.update(adopt_draining(self.handed_over))
        now = time.time()
        for pid, item in self.draining.items():
            log(f"{item.name} (pid: {pid}) of the previous master is finishing its "
                f"sessions (SIGKILL in {max(0.0, item.kill_at - now):.0f} s)")

    def _in_child(self, spec: ChildSpec, index: int) -> None:
        """Right after fork, in the child: its title; drop what belongs to the master."""
        if self.set_title is not None and self.titles is not None:
            self.set_title(self.titles.child(spec.label, index))
        if self.sigpipe is not None:
            self.sigpipe.close()
        if self.selector is not None:
            self.selector.close()
        for svc in self.plan.services if self.plan else ():
            with contextlib.suppress(Exception):
                svc.close_in_child()

    # -- the loop ----------------------------------------------------------------------

    def loop(self) -> tuple[str, str]:
        """Run until a signal or a touched file asks for a reload or shutdown."""
        assert self.children is not None and self.sigpipe is not None and self.selector
        harakiri = int(self.cfg["harakiri"] or 0)
        verbose = bool(self.cfg["harakiri-verbose"])
        while True:
            now = time.time()
            timeout = self._timeout(now, self.children.check_harakiri(now, harakiri, verbose))
            for key, _ in self.selector.select(timeout):
                if key.data is not None:
                    self._serve(key.data)
            action = self._signals(self.sigpipe.drain())
            if self.requested is not None:
                action = _stronger(action, self.requested)
                self.requested = None
            action = self._checked(action)
            now = time.time()
            if action:  # children that ended meanwhile (signalled with the master) stay so
                self.children.respawning = False
            self.children.reap(now)
            self.children.check_draining(now)
            if action:
                return action
            self.children.respawn_due(now)
            self.children.advance_chain(now, self._worker_mercy())
            if now >= self.next_cycle:
                self.next_cycle = now + CYCLE
                action = self._checked(self._cycle(now))
                if action:
                    self.children.respawning = False
                    return action
            if not self.ready and self.children.all_accepting():
                self.ready = True
                plain(f"brood: ready (pid: {os.getpid()})")

    def _checked(self, action: tuple[str, str] | None) -> tuple[str, str] | None:
        """A reload whose config no longer loads, or whose app no longer imports, is
        refused (None): said, and the master serves on. The app is imported by a
        separate check (``AppCheck``) the loop keeps serving around: its reload comes
        back from here once the check has passed. A shutdown drops a pending check."""
        if action is not None and action[1] != "reload":
            self._drop_app_check()
            return action
        if self.app_check is not None:
            if action is not None:  # (the code may have changed again since it started)
                self.reasked = _stronger_reload(self.reasked, action)
                log("reload asked again while the app check runs: "
                    "the app is checked again once it ends")
            return self._app_check_outcome()
        if action is None:
            return None
        cfg = self._config_loads()
        if cfg is None:
            return None
        if (cfg["wsgi-file"] or cfg["module"]) and not cfg["no-reload-app-check"]:
            try:
                self.app_check = AppCheck(list(self.argv), self.start_cwd,
                                          reloads=self.reloads + 1)
            except OSError as exc:
                if exc.errno in (errno.EACCES, errno.ENOENT, errno.EPERM):
                    # the re-exec would fail the same way, with nothing left serving
                    log(f"reload refused: cannot run {sys.executable} "
                        f"({exc.strerror or exc}; with --uid, that user must be able to "
                        "run it and read brood): the running code serves on")
                    return None
                log(f"reload: cannot run the app check ({exc.strerror or exc}): "
                    "reloading without it")
            else:
                assert self.children is not None
                self.children.others[self.app_check.pid] = self.app_check.exited
                self.checked_reload = action
                self._watch(self.app_check)
                log(f"reload asked: checking that the app still loads "
                    f"(pid: {self.app_check.pid})")
                return None
        log(_ASKED[action])
        return action

    def _app_check_outcome(self) -> tuple[str, str] | None:
        """The held reload once its check has passed (or given no answer in time);
        None while it runs, or when it failed (said with the check's last lines)."""
        check, action, reasked = self.app_check, self.checked_reload, self.reasked
        assert check is not None and action is not None
        action = _stronger_reload(action, reasked)
        if check.timed_out(time.monotonic()):
            log(f"reload: the app check gave no answer in {APP_CHECK_TIMEOUT:.0f} s: "
                "reloading without it")
        elif not check.done:
            return None
        elif (why := check.inconclusive()) is not None:
            log(f"reload: the app check cannot tell: {why}; reloading without it "
                "(--no-reload-app-check skips the check)")
        else:
            failed = check.failure()
            if failed is not None:
                reason, lines = failed
                for line in lines:
                    log(f"app check: {line}")
                self._drop_app_check()
                if reasked is not None:  # the reload asked since checks the code as it is now
                    log(f"the app check failed ({reason}): checking again "
                        "for the reload asked since")
                    return self._checked(action)
                log(f"reload refused, the app no longer loads: {reason}")
                return None
            if reasked is not None:
                self._drop_app_check()
                log("the app check passed: checking again for the reload asked since")
                return self._checked(action)
        self._drop_app_check()
        log(_ASKED[action])
        return action

    def _drop_app_check(self) -> None:
        check, self.app_check = self.app_check, None
        self.checked_reload = self.reasked = None
        if check is not None:
            check.kill()
            self._watch(check)  # (its fd is gone: unwatched)

    def _config_loads(self) -> Config | None:
        """A reload re-executes the same command line: its config must still load (an
        ini file edited since with a mistake would take the service down: the next
        incarnation would stop at once). Read as at start, from the start directory;
        the master's own directory is left as it was, even one deleted since."""
        here = None
        try:
            here = os.open(".", os.O_RDONLY | os.O_DIRECTORY)
            os.chdir(self.start_cwd)
            # (read as the re-executed master will read it: if-reload is true there)
            cfg = load_config(list(self.argv),
                              {**os.environ, RELOADS_ENV: str(self.reloads + 1)})
            refuse_unavailable(cfg)
            if cfg["chdir"] and not os.path.isdir(cfg["chdir"]):
                raise OptionError(f"--chdir {cfg['chdir']}: no such directory")
            check_start_options(cfg)
        except OptionError as exc:
            log(f"reload refused, the config no longer loads: {exc}")
            return None
        except OSError as exc:  # the start directory gone or closed to us: no re-exec
            log(f"reload refused: cannot read the config from {self.start_cwd}: "
                f"{exc.strerror or exc}")
            return None
        finally:
            if here is not None:
                with contextlib.suppress(OSError):
                    os.fchdir(here)
                os.close(here)
        return cfg

    def _timeout(self, now: float, harakiri_at: float | None) -> float:
        due = [self.next_cycle]
        if harakiri_at is not None:
            due.append(harakiri_at)
        for at in (self.children.next_respawn(), self.children.next_drain_deadline()) \
                if self.children else ():
            if at is not None:
                due.append(at)
        timeout = max(0.0, min(due) - now)
        if self.app_check is not None:  # (its deadline is on the monotonic clock)
            timeout = min(timeout, self.app_check.seconds_left(time.monotonic()))
        if not self.ready or (self.children and self.children.chain_active):
            timeout = min(timeout, 0.05)  # notice new workers accepting promptly
        return min(timeout, CYCLE)

    def _signals(self, signums: list[int]) -> tuple[str, str] | None:
        action = None
        for signum in signums:
            if signum == signal.SIGHUP:  # (reloads are said once checked: _checked)
                action = action or GRACEFUL_RELOAD
            elif signum == signal.SIGTERM:
                if self.cfg["die-on-term"]:
                    log("SIGTERM received: graceful shutdown (--die-on-term)")
                    action = action or GRACEFUL_SHUTDOWN
                else:
                    action = action or BRUTAL_RELOAD
            elif signum in (signal.SIGINT, signal.SIGQUIT):
                log(f"{signal.Signals(signum).name} received...killing workers...")
                action = IMMEDIATE_SHUTDOWN  # wins over any reload asked before
        return action

    def _cycle(self, now: float) -> tuple[str, str] | None:
        assert self.plan is not None and self.children is not None
        for svc in self.plan.services:
            self._service_call(svc.tick, now)
        if self.logs is not None:
            self.logs.tick()
        if self.daemons is not None:
            self.daemons.tick(now)
        if (path := self.touch_logrotate.touched()) is not None:
            log(f"*** {path} has been touched... rotating the log ***")
            self.rotate_log()
        elif (path := self.touch_logreopen.touched()) is not None:
            log(f"*** {path} has been touched... reopening the log ***")
            self.reopen_log()
        if (path := self.touch_reload.touched()) is not None:
            log(f"*** {path} has been touched... grace them all !!! ***")
            return GRACEFUL_RELOAD  # (a refused reload waits for the next touch)
        self._worker_touches()
        self.children.check_evil_memory(int(self.cfg["evil-reload-on-rss"] or 0),
                                        int(self.cfg["evil-reload-on-as"] or 0))
        self.children.check_rss(now, int(self.cfg["reload-on-rss"] or 0), self._worker_mercy(),
                                int(self.cfg["min-worker-lifetime"] or 0))
        self.children.check_lifetime(now, int(self.cfg["max-worker-lifetime"] or 0),
                                     int(self.cfg["max-worker-lifetime-delta"] or 0),
                                     self._worker_mercy())
        return None

    def _worker_touches(self) -> None:
        """--touch-workers-reload, --touch-chain-reload, --touch-exec, in uWSGI's order:
        a reload of the workers leaves the later ones to the next cycle, as there."""
        assert self.children is not None
        if (path := self.touch_workers.touched()) is not None:
            log(f"*** {path} has been touched... workers reload !!! ***")
            self.reload_workers(graceful=True)
            return
        if (path := self.touch_chain.touched()) is not None:
            if self.children.chain_active:
                log(f"*** {path} has been touched... but chain reload is already running ***")
            else:
                log(f"*** {path} has been touched... chain reload !!! ***")
                self.chain_reload()
        if (path := self.touch_exec.touched()) is not None:
            for command in self.touch_commands.get(path, ()):
                self._run_touch_command(command)

    def _run_touch_command(self, command: str) -> None:
        """Start a --touch-exec command; the reap says how it ended."""
        assert self.children is not None
        try:
            pid = spawn_command(command)
        except OSError as exc:
            log(f"[uwsgi-touch-exec] cannot run {command}: {exc.strerror or exc}")
            return
        self.children.others[pid] = lambda status: log(
            f"subprocess {pid} {_ended(status)}")
        log(f"[uwsgi-touch-exec] running {command}")

    def _serve(self, svc: Any) -> None:
        self._service_call(svc.on_readable, time.time())
        self._watch(svc)

    def _watch(self, svc: Any) -> None:
        """Keep the selector on the fd ``svc`` reports now (it may switch fds)."""
        assert self.selector is not None
        fd, old = svc.fileno(), self._watched.get(id(svc))
        if fd == old:
            return
        if old is not None:
            with contextlib.suppress(KeyError, ValueError, OSError):
                self.selector.unregister(old)
            del self._watched[id(svc)]
        if fd is not None:
            self.selector.register(fd, selectors.EVENT_READ, svc)
            self._watched[id(svc)] = fd

    def _service_call(self, fn: Any, now: float) -> None:
        """Services must not take the master down; a failure is logged, not hidden."""
        try:
            fn(now)
        except Exception as exc:  # noqa: BLE001 - logged with its type, loop continues
            log(f"master service error in {getattr(fn, '__qualname__', fn)}: "
                f"{type(exc).__name__}: {exc}")

    # -- stopping ----------------------------------------------------------------------

    def _worker_mercy(self) -> float:
        value = self.cfg["worker-reload-mercy"]
        return float(DEFAULT_WORKER_MERCY if value is None else value)

    def _reload_mercy(self) -> float:
        value = self.cfg["reload-mercy"] if self.cfg.is_set("reload-mercy") else None
        return float(DEFAULT_RELOAD_MERCY if value is None else value)

    def stop_children(self, how: str, then: str = "exit") -> None:
        """Graceful: each child's graceful signal and the worker mercy; brutal: SIGINT and
        a short mercy. SIGKILL whatever is left. Signals keep being served meanwhile.
        A graceful reload (``then`` "reload") does not wait for the children it hands
        over to the next incarnation (``reexec``), unless an exit is asked meanwhile."""
        assert self.children is not None
        table = self.children
        table.respawning = False
        table.chain = None
        self.stopping = True
        mercy = self.cfg["reload-mercy"] if self.cfg.is_set("reload-mercy") else None
        self.stop_signalled = time.time()
        if how == "graceful":
            table.signal_all(None)
            deadline = time.time() + self._worker_mercy()
        else:
            table.signal_all(signal.SIGINT)
            deadline = time.time() + (IMMEDIATE_MERCY if mercy is None else float(mercy))
        killed = False
        for _ in range(1_000_000):  # bounded by the deadline below as well
            now = time.time()
            table.reap(now)
            table.check_draining(now)
            hand_off = how == "graceful" and then == "reload" and not self.exit_asked
            if not table.waiting_for(hand_off):
                return
            if now >= deadline:
                if killed:
                    return
                table.kill_remaining(hand_off)
                killed = True
                deadline = now + 5.0
            self._serve_while_stopping(min(0.1, max(0.0, deadline - now)))
            if self.requested == IMMEDIATE_SHUTDOWN and how == "graceful":
                how = "brutal"
                table.signal_all(signal.SIGINT)
                deadline = min(deadline, time.time() + IMMEDIATE_MERCY)

    def stop_daemons(self, reload: bool) -> None:
        """The attached daemons first, as uWSGI stops them (``Daemons.stop``)."""
        if self.daemons is not None and self.children is not None:
            mercy = self.cfg["reload-mercy"] if self.cfg.is_set("reload-mercy") else None
            self.daemons.stop(reload, float(mercy) if mercy else STOP_MERCY,
                              self.children.reap, self._serve_while_stopping)

    def _serve_while_stopping(self, timeout: float) -> None:
        """Wait up to ``timeout`` serving services and noting SIGINT/SIGQUIT (the
        selector is missing when start-up failed before it existed: just wait)."""
        if self.selector is None:
            time.sleep(timeout)
        else:
            for key, _ in self.selector.select(timeout):
                if key.data is not None:
                    self._serve(key.data)
        for signum in self.sigpipe.drain() if self.sigpipe is not None else ():
            if signum in (signal.SIGINT, signal.SIGQUIT):
                log(f"{signal.Signals(signum).name} received...killing workers...")
                self.exit_asked = True
                self.requested = IMMEDIATE_SHUTDOWN

    def finish(self) -> None:
        """Services down, --vacuum, goodbye."""
        if self.plan is not None:
            self.plan.shut_down_services()
        if self.cfg["vacuum"]:
            self.vacuum()
        log("goodbye to uWSGI.")
        hooks.at_exit(self.cfg)

    def vacuum(self) -> None:
        paths = self.binder.unix_paths()
        if self.cfg["pidfile"]:
            paths.append(self.cfg["pidfile"])
        paths.extend(hooks.pidfile_paths(self.cfg))
        for path in paths:
            with contextlib.suppress(OSError):
                os.unlink(path)
                log(f"VACUUM: removed {path}")

    def before_stop(self, graceful: bool, reload: bool) -> None:
        """Tell the services the children are about to stop, so routers move traffic
        away first: ``on_reload(graceful=)`` before a reload, the optional
        ``before_shutdown(graceful=)`` before a shutdown (the announcer unsubscribes in
        both, on a graceful reload only with --unsubscribe-on-graceful-reload). On a
        graceful stop a hook may return seconds to keep the children serving meanwhile
        (routers apply an unsubscribe within milliseconds; a request they sent before
        must not land in a listen queue that closes): the longest wins, bounded by
        MAX_STOP_LINGER. Signals wait in the pipe; ``stop_children`` serves them."""
        linger = 0.0
        for svc in self.plan.services if self.plan else ():
            hook = svc.on_reload if reload else getattr(svc, "before_shutdown", None)
            if hook is None:
                continue
            try:
                asked = hook(graceful=graceful)
            except Exception as exc:  # a service must not stop the reload or shutdown
                log(f"{'reload' if reload else 'shutdown'}: {type(svc).__name__} "
                    f"failed: {exc}")
                continue
            if graceful and isinstance(asked, (int, float)):
                linger = max(linger, float(asked))
        if linger > 0:
            time.sleep(min(linger, MAX_STOP_LINGER))

    # -- control: what services may ask of the master (MasterControl) ------------------

    def reload(self, graceful: bool) -> None:
        self._ask(GRACEFUL_RELOAD if graceful else BRUTAL_RELOAD)

    def shutdown(self, graceful: bool) -> None:
        self._ask(GRACEFUL_SHUTDOWN if graceful else IMMEDIATE_SHUTDOWN)

    def _ask(self, action: tuple[str, str]) -> None:
        if self.stopping:
            if action[1] != "exit":
                log("reload ignored: the master is already stopping")
                return
            self.exit_asked = True  # a reload under way ends in exit instead
            if action == IMMEDIATE_SHUTDOWN:
                log("...killing workers...")
                self.requested = action
            return
        if action[1] != "reload":  # (a reload is said once checked: _checked)
            log(_ASKED[action])
        self.requested = _stronger(self.requested, action)

    def _busy(self, what: str) -> bool:
        if self.stopping or self.requested is not None or self.children is None:
            log(f"{what} ignored: the master is reloading or stopping")
            return True
        return False

    def reload_workers(self, graceful: bool) -> None:
        """Recycle every worker (graceful: its graceful signal and the worker mercy)."""
        if self._busy("worker reload"):
            return
        assert self.children is not None
        signum, mercy = (None, self._worker_mercy()) if graceful else \
            (signal.SIGINT, IMMEDIATE_MERCY)
        count = self.children.recycle("worker", signum, time.time(), mercy)
        how = "gracefully" if graceful else "brutally"
        log(f"...{how} reloading {count} workers..." if count else "no workers to reload")

    def chain_reload(self) -> None:
        """Recycle the workers one at a time, each after the previous one's successor
        accepts (``ChildTable.advance_chain``)."""
        if self._busy("chain reload"):
            return
        assert self.children is not None
        if self.children.chain_active:
            log("chain reload ignored: one is already under way")
        elif self.children.start_chain("worker"):
            log("chain reload starting...")
        else:
            log("no workers to chain-reload")

    def reopen_log(self) -> None:
        """Reopen the log files after logrotate moved them: with the log master every
        file it writes, for every process; without it the master's stdout/stderr only
        get a fresh open of --daemonize/--logto's file, as in uWSGI (children keep the
        file they inherited until they are respawned: follow with ``w`` or ``r``)."""
        if self.logs is not None:
            self.logs.reopen()
            log("log master: reopening the log files")
            return
        path = self._log_file()
        if not path:
            log("log reopen ignored: no --logto or --daemonize file")
            return
        try:
            redirect_output(path)
        except OSError as exc:
            log(f"cannot reopen log file {path}: {exc.strerror}")
            return
        log(f"log file {path} reopened by the master (pid: {os.getpid()})")

    def rotate_log(self) -> None:
        """Rotate the log files (FIFO ``L``, --touch-logrotate): renamed to
        --log-backupname or NAME.EPOCH, a fresh file opened at each path. With the log
        master, every file it writes; without it --logto's file, for the master's own
        output (children keep theirs until respawned), as in uWSGI."""
        if self.logs is not None:
            self.logs.rotate()
            log("log master: rotating the log files")
            return
        path = self._log_file()
        if not path:
            log("log rotation ignored: no --logto or --daemonize file")
            return
        now = time.time()
        target = backup_name(path, self.cfg["log-backupname"], now)
        if not self.cfg["log-backupname"] and os.path.lexists(target):
            log(f"log rotation: {target} exists already, try again in a second")
            return
        try:
            size = os.lseek(2, 0, os.SEEK_END)
        except OSError:
            size = 0
        with contextlib.suppress(OSError):
            os.write(2, rotation_notice(size, target, now))
        try:
            os.rename(path, target)
            redirect_output(path, truncate=True)
        except OSError as exc:
            log(f"cannot rotate log file {path} to {target}: {exc.strerror}")

    def _log_file(self) -> str | None:
        """--daemonize/--logto's file (None: none, or a HOST:PORT it sends to)."""
        return LogPlan.from_config(self.cfg).logfile

    def update_pidfile(self) -> None:
        path = self.cfg["pidfile"]
        if not path:
            log("pidfile update ignored: no --pidfile")
            return
        try:
            write_pidfile(path)
        except OptionError as exc:
            log(str(exc))
            return
        log(f"pidfile {path} updated (pid: {os.getpid()})")

    def log_stats(self) -> None:
        log(f"stats: master (pid: {os.getpid()}, reloads: {self.reloads})")
        for line in self.children.stats_lines() if self.children else ():
            log(f"stats: {line}")

    # -- re-exec -----------------------------------------------------------------------

    def reexec(self) -> None:
        """Become a fresh master with the same argv, listening sockets kept open."""
        env = dict(os.environ)
        env[FDS_ENV] = self.binder.export()
        env[RELOADS_ENV] = str(self.reloads + 1)
        if self.logs is not None:
            self.logs.hand_over(env)
        if self.children is not None:
            kill_at = self.stop_signalled + self._reload_mercy() + HANDOFF_SLACK
            draining = self.children.hand_off(kill_at)
            if draining:
                env[DRAINING_ENV] = export_draining(draining)
        # Stop signals stay blocked across the exec, pending if they come: the next
        # incarnation takes them once its handlers are in (``start``). Left at their
        # default action in between, a second SIGHUP killed the master (and, through
        # PR_SET_PDEATHSIG, the routers still draining).
        signal.pthread_sigmask(signal.SIG_BLOCK, STOPS)
        if self.sigpipe is not None:
            self.sigpipe.close()
        hooks.at_exit(self.cfg)
        os.chdir(self.start_cwd)
        log("binary reloading brood...")
        sys.stdout.flush()
        sys.stderr.flush()
        args = [sys.executable, "-m", "brood", *self.argv]
        try:
            os.execve(sys.executable, args, env)
        except OSError as exc:  # (only when the exec failed)
            raise OptionError(f"reload: cannot re-execute {sys.executable}: "
                              f"{exc.strerror or exc}") from None
        finally:
            release_stops()


_ASKED = {
    GRACEFUL_RELOAD: "...gracefully killing workers...",
    BRUTAL_RELOAD: "...brutally killing workers...",
    GRACEFUL_SHUTDOWN: "graceful shutdown triggered...",
    IMMEDIATE_SHUTDOWN: "...killing workers...",
}


def _ended(status: int) -> str:
    """How a subprocess ended, in uWSGI's words."""
    if os.WIFSIGNALED(status):
        return f"exited by signal {os.WTERMSIG(status)}"
    return f"exited with code {os.waitstatus_to_exitcode(status)}"


def _stronger(first: tuple[str, str] | None,
              second: tuple[str, str] | None) -> tuple[str, str] | None:
    """Two asked-for actions: an immediate shutdown wins, otherwise the first asked."""
    if IMMEDIATE_SHUTDOWN in (first, second):
        return IMMEDIATE_SHUTDOWN
    return first or second


def _stronger_reload(first: tuple[str, str] | None,
                     second: tuple[str, str] | None) -> tuple[str, str] | None:
    """Two reloads asked for: a brutal one wins (asked for explicitly, with SIGTERM)."""
    if BRUTAL_RELOAD in (first, second):
        return BRUTAL_RELOAD
    return first or second


def check_start_options(cfg: Config) -> None:
    """What a fresh start refuses beyond loading the config (--log-format, static files
    and headers, mounts, plugins, users and groups, daemons, each router's options):
    checked before a reload re-executes into it."""
    from brood.config.logic import check_plugins
    from brood.routers.plan import check_routers
    from brood.workers.mount import mount_lines
    from brood.workers.static import check_options as check_static

    if cfg["log-format"]:
        from brood.workers.reqlog import compile_format

        compile_format(str(cfg["log-format"]))
    check_static(cfg)
    mount_lines(cfg["mount"] or ())
    check_plugins(cfg["need-plugins"] or ())
    check_privileges(cfg["uid"], cfg["gid"])
    daemon_specs(cfg)
    if cfg["umask"]:
        hooks.parse_umask(cfg["umask"])
    check_routers(cfg)
    probe(LogPlan.from_config(cfg))


def _version() -> str:
    from brood import __version__

    return __version__


def _process_setup(cfg: Config, first_start: bool) -> tuple[Config, LogMaster | None]:
    """Log redirection (and the log master) and the process environment; returns cfg
    with --chdir absolute (the app loader applies --chdir again and must land in the
    same place)."""
    titles = Titles.from_config(cfg)
    logs = setup_logging(cfg, first_start,
                         None if titles is None else titles.child("uWSGI log master", 1))
    if cfg["max-fd"]:
        fdlimit.apply_max_fd(cfg["max-fd"])
    for item in cfg["env"]:
        key, _, value = str(item).partition("=")
        if key:
            os.environ[key] = value
    if cfg["chdir"]:
        target = os.path.abspath(cfg["chdir"])
        try:
            os.chdir(target)
        except OSError as exc:
            raise OptionError(f"--chdir {cfg['chdir']}: {exc.strerror}")
        log(f"chdir() to {target}")
        cfg = cfg.with_values(chdir=target)
    return cfg, logs


def run_master(cfg: Config, argv: list[str]) -> int:
    """Run the master until shutdown (re-execs in place on reload). User errors raise
    OptionError; an app that does not load is logged and gives exit status 1."""
    refuse_unavailable(cfg)  # before anything is bound, forked or detached
    hooks.apply_umask(cfg)
    hooks.run_commands(cfg["exec-asap"], "(asap)...")
    start_cwd = os.getcwd()
    first_start = not os.environ.get(RELOADS_ENV)
    logs: LogMaster | None = None
    try:
        cfg, logs = _process_setup(cfg, first_start)
        if cfg["show-config"]:  # on the log (as uWSGI), before the start
            from brood.config.assemble import show_config

            plain(show_config(list(cfg.assembled))[:-1])
        status = _run(Master(cfg, argv, start_cwd), logs)
    finally:
        if logs is not None:  # (what the pipes hold gets out first)
            logs.stop()
    return _past_app_threads(status)


def _run(master: Master, logs: LogMaster | None) -> int:
    """Start, serve, stop: the exit status (a reload re-executes from here)."""
    master.logs = logs
    try:
        master.start()
    except OptionError:
        _abort(master)
        raise
    except AppLoadError as exc:
        log(f"{exc}")
        log("no app could be loaded: giving up")
        _abort(master)
        return 1
    how, then = master.loop()
    master.before_stop(graceful=how == "graceful", reload=then == "reload")
    master.stop_daemons(reload=then == "reload")
    master.stop_children(how, then)
    if then == "reload" and not master.exit_asked:
        try:
            master.reexec()
        except OptionError as exc:  # (the app check said so beforehand when it could)
            log(f"{exc}: brood stops")
            master.finish()
            return 1
    master.finish()
    return 0


def _past_app_threads(status: int) -> int:
    """The exit status, or the exit itself when threads the app started at import (in
    the master, before the fork) would keep the process alive after its goodbye: once
    shut down, nothing of brood's is left to wait for."""
    if any(t is not threading.main_thread() and t.is_alive() and not t.daemon
           for t in threading.enumerate()):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    return status


def _abort(master: Master) -> None:
    """Start-up failed: stop anything already forked or handed over, vacuum, keep the
    error visible."""
    if master.children is None and master.draining:
        master.children = ChildTable([], master._in_child, master.draining)
    if master.children is not None:
        master.stop_children("brutal")
    if master.plan is not None:
        master.plan.shut_down_services()
    if master.cfg["vacuum"]:
        master.vacuum()
