"""Attached daemons (--attach-daemon and kin): external commands the master runs
beside its workers, as uWSGI 2.0 runs them (core/daemons.c).

Three kinds, as there:

- dumb daemons (``--attach-daemon``, ``--attach-control-daemon``, ``--attach-daemon2``
  without a pidfile): the command stays in the foreground; the master reaps it and
  starts it again when it ends. A control daemon that ends shuts the whole instance
  down gracefully instead.
- smart daemons (``--smart-attach-daemon PIDFILE CMD``): the command daemonizes and
  writes PIDFILE; once a cycle the master reads the pidfile and starts the command again
  when the pid in it is gone (after ``freq`` cycles, 10 unless ``PIDFILE,FREQ``, while
  it has not yet been seen running).
- ``--smart-attach-daemon2``: the same, but the master daemonizes the command and
  writes the pidfile for it.

How it works: each command runs as ``/bin/sh -c CMD`` in a session of its own, stdin
on /dev/null (unless ``--daemons-honour-stdin`` or ``stdin=1``), with the master's
stdout/stderr and no other fd; a dumb daemon gets SIGKILL from the kernel if the master
dies. A dumb daemon respawned within 3 s of its last start is throttled by uWSGI's rule:
it sleeps (in the child, before exec: the master never waits) the number of its
respawns minus the seconds since, at least 1, at most ``max_throttle`` (300 without).
The master reaps daemons with its one ``waitpid(-1)`` (``ChildTable.others``).

Stopping (a shutdown, and every reload: brood re-executes itself like uWSGI): each dumb
daemon gets its stop signal (SIGTERM unless ``stopsignal``; ``reloadsignal`` on a
reload when given) on its process group, then SIGKILL when still there after
--reload-mercy (3 s without); the next incarnation starts them again. Smart daemons are
left running (the next incarnation finds them through their pidfile), and are only
signalled with ``notifypid``. The pure parts (option values, the throttle) are the
functions at the top.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from brood.config.kvlist import split_kvlist
from brood.config.option import OptionError
from brood.log import log
from brood.signals import stops_blocked
from brood.touch import TouchWatch

DEFAULT_FREQ = 10  # pidfile checks a smart daemon gets to show up (uWSGI's)
THROTTLE_WINDOW = 3  # seconds: a respawn closer than this to the last one is throttled
MAX_THROTTLE = 300  # seconds: uWSGI's cap when max_throttle is not given
STOP_MERCY = 3.0  # seconds a daemon gets to stop without --reload-mercy (uWSGI's)

# attach-daemon2 keys brood builds, by uWSGI's names (aliases to the first)
_KEYS = {
    "command": "command", "cmd": "command", "exec": "command",
    "freq": "freq", "pidfile": "pidfile", "control": "control",
    "daemonize": "daemonize", "daemon": "daemonize", "touch": "touch",
    "stopsignal": "stopsignal", "stop_signal": "stopsignal",
    "reloadsignal": "reloadsignal", "reload_signal": "reloadsignal",
    "stdin": "stdin", "uid": "uid", "gid": "gid", "chdir": "chdir",
    "max_throttle": "max_throttle", "notifypid": "notifypid",
}
# uWSGI 2.0.21 keys brood does not have: refused, never silently left out
_REFUSED_KEYS = {"ns_pid": "a new pid namespace per daemon"}


@dataclass(frozen=True)
class DaemonSpec:
    """One attached daemon, as its option described it."""

    command: str
    pidfile: str | None = None
    daemonize: bool = False  # (smart-attach-daemon2) the master daemonizes it
    control: bool = False
    freq: int = DEFAULT_FREQ
    stop_signal: int = signal.SIGTERM
    reload_signal: int = 0
    touch: tuple[str, ...] = ()
    uid: int = 0
    gid: int = 0
    chdir: str | None = None
    max_throttle: int = 0
    honour_stdin: bool = False
    notify_pid: bool = False
    ignored: tuple[str, ...] = field(default=(), compare=False)  # unknown keys


def parse_daemon(option: str, value: str) -> DaemonSpec:
    """--attach-daemon/--attach-control-daemon CMD, --smart-attach-daemon(2) PIDFILE[,FREQ]
    CMD (pure); OptionError naming the option."""
    value = str(value)
    if option in ("smart-attach-daemon", "smart-attach-daemon2"):
        pidfile, space, command = value.partition(" ")
        if not space:
            raise OptionError(f"--{option} {value}: expected PIDFILE COMMAND")
        freq = DEFAULT_FREQ
        if "," in pidfile:
            pidfile, _, raw = pidfile.partition(",")
            freq = _atoi(raw)
        return DaemonSpec(command=command, pidfile=pidfile, freq=freq,
                          daemonize=option == "smart-attach-daemon2")
    if not value.strip():
        raise OptionError(f"--{option}: expected a command")
    return DaemonSpec(command=value, control=option == "attach-control-daemon")


def split_keyvals(value: str) -> list[tuple[str, str]]:
    """``k=v,k=v`` as uWSGI's kvlist reads it (``brood.config.kvlist``); an item without
    ``=`` is an error (ValueError)."""
    return split_kvlist(value)


def parse_daemon2(value: str, option: str = "attach-daemon2") -> DaemonSpec:
    """--attach-daemon2 key=value,... (pure); OptionError naming the option and key.
    Keys uWSGI does not know are ignored there: kept in ``ignored`` to be said."""
    try:
        pairs = split_keyvals(str(value))
    except ValueError:
        raise OptionError(f"--{option} {value}: invalid key=value syntax") from None
    found: dict[str, str] = {}
    ignored: list[str] = []
    for key, val in pairs:
        if key in _REFUSED_KEYS:
            raise OptionError(f"--{option}: key {key!r} ({_REFUSED_KEYS[key]}) is a "
                              "uWSGI feature brood does not have")
        name = _KEYS.get(key)
        if name is None:
            ignored.append(key)
        else:
            found[name] = val
    if not found.get("command"):
        raise OptionError(f"--{option}: you need to specify a 'command' key")

    def number(key: str, default: int) -> int:
        return _atoi(found[key]) if key in found else default

    def sig(key: str, default: int) -> int:
        if key not in found:
            return default
        signum = _atoi(found[key])
        if signum and signum not in signal.valid_signals():
            raise OptionError(f"--{option}: {key}={found[key]} is no signal number")
        return signum

    for key in ("uid", "gid"):
        if key in found and not found[key].strip().isdigit():
            raise OptionError(f"--{option}: {key}={found[key]}: uWSGI takes a number "
                              "here (a name would run it as root)")
    return DaemonSpec(
        command=found["command"], pidfile=found.get("pidfile") or None,
        daemonize="daemonize" in found, control="control" in found,
        freq=number("freq", DEFAULT_FREQ),
        stop_signal=sig("stopsignal", signal.SIGTERM) or signal.SIGTERM,
        reload_signal=sig("reloadsignal", 0),
        touch=tuple(p for p in found.get("touch", "").split(";") if p),
        uid=number("uid", 0), gid=number("gid", 0), chdir=found.get("chdir") or None,
        max_throttle=number("max_throttle", 0), honour_stdin="stdin" in found,
        notify_pid="notifypid" in found, ignored=tuple(ignored))


def _atoi(raw: str) -> int:
    """A number as C's atoi reads it: leading digits, 0 without."""
    text = raw.strip()
    digits = ""
    for char in text.lstrip("+"):
        if not char.isdigit():
            break
        digits += char
    return int(digits) if digits else 0


def daemon_specs(cfg: object) -> list[DaemonSpec]:
    """Every daemon the config attaches, in option order of kinds (OptionError)."""
    get = cfg.__getitem__  # type: ignore[attr-defined]
    specs = []
    for option in ("attach-daemon", "attach-control-daemon", "smart-attach-daemon",
                   "smart-attach-daemon2"):
        specs.extend(parse_daemon(option, value) for value in get(option) or ())
    specs.extend(parse_daemon2(value) for value in get("attach-daemon2") or ())
    return specs


def throttle_seconds(now: int, last_spawn: int, respawns: int, max_throttle: int) -> int:
    """How long a daemon started again at ``now`` sleeps first (uWSGI's rule, pure)."""
    if now - last_spawn > THROTTLE_WINDOW:
        return 0
    seconds = max(1, respawns - (now - last_spawn))
    return min(seconds, max_throttle if max_throttle > 0 else MAX_THROTTLE)


def pidfile_pid(path: str) -> int:
    """The live pid in ``path``, or -1 (no file, no number, or no such process)."""
    try:
        with open(path, "rb") as fh:
            text = fh.read(64)
    except OSError:
        return -1
    pid = _atoi(text.decode("ascii", "replace"))
    if pid <= 0:
        return -1
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return -1
    except PermissionError:
        pass  # alive, another user's
    return pid


class _Daemon:
    """One daemon's state in the master (status as uWSGI's: 0 never started, 1 just
    started, 2 seen running through its pidfile)."""

    def __init__(self, spec: DaemonSpec) -> None:
        self.spec = spec
        self.pid = 0
        self.status = 0
        self.respawns = 0
        self.last_spawn = 0
        self.pidfile_checks = 0
        self.has_daemonized = False
        self.touches = TouchWatch(spec.touch)


class Daemons:
    """The master's attached daemons. ``others`` is the child table's pid -> callback
    map (the master's one reaper); ``shutdown`` asks the master for a graceful shutdown
    (a control daemon ended)."""

    def __init__(self, specs: Iterable[DaemonSpec], others: dict[int, Callable[[int], None]],
                 shutdown: Callable[[], None], honour_stdin: bool = False) -> None:
        self.daemons = [_Daemon(spec) for spec in specs]
        self.others = others
        self.shutdown = shutdown
        self.honour_stdin = honour_stdin
        self.stopping = False

    def spawn_all(self, now: float) -> None:
        for daemon in self.daemons:
            for key in daemon.spec.ignored:
                log(f"[uwsgi-daemons] {daemon.spec.command!r}: unknown key {key!r} "
                    "ignored (as uWSGI does)")
            if daemon.spec.pidfile:
                pid = pidfile_pid(daemon.spec.pidfile)
                if pid > 0:
                    daemon.pid = pid
                    log(f"[uwsgi-daemons] found valid/active pidfile for "
                        f"\"{daemon.spec.command}\" (pid: {pid})")
                    continue
            self._spawn(daemon, now)

    def _spawn(self, daemon: _Daemon, now: float) -> None:
        if self.stopping:
            return
        spec = daemon.spec
        throttle = throttle_seconds(int(now), daemon.last_spawn, daemon.respawns,
                                    spec.max_throttle)
        sys.stdout.flush()
        sys.stderr.flush()
        master_pid = os.getpid()
        with stops_blocked():
            try:
                pid = os.fork()
            except OSError as exc:
                log(f"[uwsgi-daemons] cannot fork for \"{spec.command}\": "
                    f"{exc.strerror or exc}")
                return
            if pid == 0:
                _run_daemon(spec, master_pid, throttle, daemon.respawns > 0,
                            self.honour_stdin or spec.honour_stdin)
        daemon.pid, daemon.status, daemon.pidfile_checks = pid, 1, 0
        daemon.has_daemonized = False
        daemon.respawns += 1
        daemon.last_spawn = int(now)
        self.others[pid] = lambda status, d=daemon, p=pid: self._ended(d, p, status)

    def _ended(self, daemon: _Daemon, pid: int, status: int) -> None:
        """Reaped: a dumb daemon starts again (a control daemon shuts the instance
        down); a smart daemon's first process ends once it has daemonized."""
        if daemon.spec.pidfile:
            daemon.has_daemonized = True
            return
        if daemon.pid != pid:
            return
        daemon.pid = 0
        if self.stopping:
            log(f"daemon \"{daemon.spec.command}\" (pid: {pid}) annihilated")
            return
        if daemon.spec.control:
            log(f"control daemon \"{daemon.spec.command}\" (pid: {pid}) ended: "
                "graceful shutdown")
            self.shutdown()
            return
        self._spawn(daemon, time.time())

    def tick(self, now: float) -> None:
        """Once a master cycle: the smart daemons' pidfiles, the ``touch`` files."""
        if self.stopping:
            return
        for daemon in self.daemons:
            if daemon.spec.pidfile:
                self._check_pidfile(daemon, now)
            if daemon.pid > 0 and (path := daemon.touches.touched()) is not None:
                log(f"*** {path} has been touched... reloading daemon "
                    f"\"{daemon.spec.command}\" (pid: {daemon.pid}) !!! ***")
                _signal_group(daemon.pid, daemon.spec.stop_signal)

    def _check_pidfile(self, daemon: _Daemon, now: float) -> None:
        spec = daemon.spec
        assert spec.pidfile is not None
        pid = pidfile_pid(spec.pidfile)
        if pid <= 0:
            if daemon.status == 2:  # it was running: gone
                self._spawn(daemon, now)
                return
            daemon.pidfile_checks += 1
            if daemon.pidfile_checks >= spec.freq:
                if not daemon.has_daemonized and daemon.pid in self.others:
                    log(f"[uwsgi-daemons] \"{spec.command}\" (pid: {daemon.pid}) did not "
                        "daemonize !!!")
                    daemon.pidfile_checks = 0
                else:
                    log(f"[uwsgi-daemons] found changed pidfile for \"{spec.command}\" "
                        f"(old_pid: {daemon.pid} new_pid: {pid})")
                    self._spawn(daemon, now)
        elif pid != daemon.pid:
            log(f"[uwsgi-daemons] found changed pid for \"{spec.command}\" "
                f"(old_pid: {daemon.pid} new_pid: {pid})")
            daemon.pid = pid
        else:
            daemon.status = 2

    def begin_stop(self, reload: bool) -> list[int]:
        """Signal every dumb daemon (and notify the smart ones that ask for it); the
        pids to wait for. No daemon starts again from here on."""
        self.stopping = True
        waiting = []
        for daemon in self.daemons:
            spec = daemon.spec
            if daemon.pid <= 0:
                continue
            if not spec.pidfile:
                log(f"[uwsgi-daemons] stopping daemon (pid: {daemon.pid}): {spec.command}")
                signum = spec.reload_signal if reload and spec.reload_signal > 0 \
                    else spec.stop_signal
                _signal_group(daemon.pid, signum)
                waiting.append(daemon.pid)
            elif spec.notify_pid:
                _signal_group(daemon.pid, (spec.reload_signal or signal.SIGHUP) if reload
                              else spec.stop_signal)
        return waiting

    def stop(self, reload: bool, mercy: float, reap: Callable[[float], object],
             wait: Callable[[float], None]) -> None:
        """Stop the dumb daemons: their stop (or reload) signal, SIGKILL after
        ``mercy``. ``reap`` is the master's reaper (it tells us through ``others``),
        ``wait(seconds)`` serves the master meanwhile."""
        if not self.begin_stop(reload):
            return
        deadline = time.time() + mercy
        killed = False
        while True:
            now = time.time()
            reap(now)
            if not self.alive():
                return
            if now >= deadline:
                if killed:
                    return
                self.kill_remaining()
                killed, deadline = True, now + 5.0
            wait(min(0.1, max(0.0, deadline - now)))

    def alive(self) -> list[int]:
        """Dumb daemons not reaped yet."""
        return [d.pid for d in self.daemons if d.pid > 0 and not d.spec.pidfile]

    def kill_remaining(self) -> None:
        for daemon in self.daemons:
            if daemon.pid > 0 and not daemon.spec.pidfile:
                log(f"[uwsgi-daemons] daemon did not die in time, killing "
                    f"(pid: {daemon.pid}): {daemon.spec.command}")
                _signal_group(daemon.pid, signal.SIGKILL)


def _signal_group(pid: int, signum: int) -> None:
    """Signal the daemon's process group, or the process when it has none yet."""
    try:
        os.killpg(pid, signum)
    except OSError:
        with contextlib.suppress(OSError):
            os.kill(pid, signum)


def _run_daemon(spec: DaemonSpec, master_pid: int, throttle: int, again: bool,
                honour_stdin: bool) -> None:
    """In the forked child: never returns into the master's code."""
    from brood.master_children import die_with_master

    try:
        signal.set_wakeup_fd(-1)  # (the master's pipe: a signal here is not the master's)
        for signum in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT, signal.SIGQUIT,
                       signal.SIGCHLD, signal.SIGPIPE, signal.SIGXFSZ):
            signal.signal(signum, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, ())
        os.closerange(3, os.sysconf("SC_OPEN_MAX"))
        if spec.chdir:
            os.chdir(spec.chdir)
        if spec.gid:
            os.setgid(spec.gid)
        if spec.uid:
            os.setuid(spec.uid)
        if spec.daemonize:
            if os.fork():
                os._exit(0)
            with open(spec.pidfile or "", "w") as fh:
                fh.write(f"{os.getpid()}\n")
        if not honour_stdin:
            null = os.open(os.devnull, os.O_RDONLY)
            os.dup2(null, 0)
            if null != 0:
                os.close(null)
        os.setsid()
        if not spec.pidfile:
            die_with_master(master_pid)
        if throttle:
            log(f"[uwsgi-daemons] throttling \"{spec.command}\" for {throttle} seconds")
            time.sleep(throttle)
        log(f"[uwsgi-daemons] {'re' if again else ''}spawning \"{spec.command}\" "
            f"(uid: {os.getuid()} gid: {os.getgid()})")
        os.execv("/bin/sh", ["/bin/sh", "-c", spec.command])
    except BaseException as exc:  # noqa: BLE001 - said, then the child exits
        with contextlib.suppress(Exception):
            log(f"[uwsgi-daemons] unable to spawn \"{spec.command}\": {exc}")
    finally:
        os._exit(1)
