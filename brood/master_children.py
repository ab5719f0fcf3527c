"""The master's table of forked children: spawn, reap, respawn, harakiri, rss checks,
and reloading the workers alone (all at once, or one by one: the chain reload).

One ``_Child`` per (ChildSpec, index). Everything here is synchronous and non-blocking:
``reap`` uses ``waitpid(WNOHANG)``; a respawn that must wait (the "too fast" guard) is
scheduled with ``respawn_at`` and picked up by a later master cycle, so a crash-looping
child never stalls the master's handling of signals and stats.

Reloading a child without reloading the master (``recycle``) is a stop and the usual
respawn: the child gets its graceful signal (or SIGINT) and a deadline after which it is
SIGKILLed; when it has exited the master forks a fresh one from its own state (the
preloaded app, or a fresh load with --lazy-apps). A chain reload recycles one worker,
waits until its successor says it is accepting, then moves to the next.

Handing router processes over a graceful reload: the master waits for its workers (as
uWSGI does) but not for children whose spec says ``handoff`` (the routers): they stopped
accepting at their graceful signal and drain their open sessions while the master
re-executes. ``hand_off`` lists them with the time after which they are SIGKILLed; the
next incarnation (same pid, so they are still its children) gets that list through the
environment (``brood.master_env.DRAINING_ENV``) and keeps it as ``draining``: it reaps
them as they exit (no respawn, no "too fast" count: their slot already belongs to a
fresh process on the same listening sockets), SIGKILLs any still there at its deadline,
and stops them with everything else on a brutal reload or a shutdown. A pid is only
adopted after ``waitpid`` confirms it is an unreaped child of ours, so an exit is never
taken for another child's, and no signal ever goes to a pid the kernel reused.

Every child asks the kernel to SIGKILL it when the master dies (``die_with_master``):
children of a master killed with SIGKILL (which no handler sees) stop serving instead of
lingering under init. It fires on the death of the forking *thread*; the master forks
from its main thread only, and its ``execve`` on reload keeps that thread, so a re-exec
does not set it off.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from brood.log import log
from brood.plan import ChildSpec
from brood.scoreboard import STATUS_NAMES, WorkerSlot
from brood.signals import stops_blocked

if TYPE_CHECKING:
    from brood.logs.master import ChildPipes, LogMaster

FAST_DEATH = 1.0  # a child that dies younger than this counts as dying "too fast"
MAX_BACKOFF = 8.0  # ceiling for the respawn delay of a crash-looping child
PR_SET_PDEATHSIG = 1  # linux/prctl.h


@dataclass
class _Child:
    spec: ChildSpec
    index: int
    pid: int = 0
    started: float = 0.0
    fast_deaths: int = 0
    respawn_at: float | None = None
    harakiri_for: int = 0  # request_start of the request already punished
    stop_deadline: float | None = None  # SIGKILL after this (graceful stop of one child)
    reloading: bool = False  # asked to exit so a fresh one replaces it (not a crash)
    evil_killed: bool = False  # SIGKILLed over --evil-reload-on-rss, not reaped yet

    @property
    def name(self) -> str:
        return f"{self.spec.label.removeprefix('uWSGI ')} {self.index}"


@dataclass
class Draining:
    """A child handed over by a previous incarnation, finishing its open sessions."""

    name: str
    kill_at: float  # SIGKILL after this (time.time())
    killed: bool = False


def _prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _prctl()  # looked up in the master, not in each child after fork


def die_with_master(master_pid: int) -> None:
    """In a child right after fork: SIGKILL from the kernel when the master dies (a
    no-op off Linux); exit at once if the master already died before that was set."""
    if _PRCTL is not None:
        _PRCTL(PR_SET_PDEATHSIG, ctypes.c_ulong(signal.SIGKILL), ctypes.c_ulong(0),
               ctypes.c_ulong(0), ctypes.c_ulong(0))
    if os.getppid() != master_pid:
        os._exit(1)


def adopt_draining(entries: Iterable[tuple[int, str, float]]) -> dict[int, Draining]:
    """The handed-over children (pid, name, kill_at) still ours to wait for: ``waitpid``
    tells an unreaped child of this process from one that exited meanwhile (reaped and
    logged here) or a pid that is not our child at all (left alone)."""
    draining: dict[int, Draining] = {}
    for pid, name, kill_at in entries:
        try:
            done, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            continue
        if done:
            log(f"{name} (pid: {pid}) of the previous master exited ({describe_status(status)})")
            continue
        draining[pid] = Draining(name, kill_at)
    return draining


def describe_status(status: int) -> str:
    """"killed by signal 9" / "exit status 0" for a waitpid status."""
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"


class ChildTable:
    """All children of a plan. ``in_child(spec, index)`` runs right after fork in the
    child."""

    def __init__(self, specs: list[ChildSpec],
                 in_child: Callable[[ChildSpec, int], None],
                 draining: dict[int, Draining] | None = None) -> None:
        self.children = [_Child(s, i) for s in specs for i in range(1, s.count + 1)]
        self.in_child = in_child
        self.draining = {} if draining is None else draining  # pid -> handed over to us
        self.respawning = True  # False once a reload or shutdown began
        self.chain: list[_Child] | None = None  # workers a chain reload has yet to do
        self.chain_victim: tuple[_Child, int] | None = None  # (child, its old pid)
        # Whether a signal waits for the master's loop (its SignalPipe.pending).
        self.signalled: Callable[[], bool] = lambda: False
        # Other processes of the master's (pid -> told its wait status when reaped).
        self.others: dict[int, Callable[[int], None]] = {}
        # The log master (``brood.logs.master.LogMaster``), when there is one: each
        # child's output goes into pipes of its own that it reads.
        self.output: LogMaster | None = None

    # -- spawning --------------------------------------------------------------------

    def spawn_all(self, now: float) -> None:
        """Fork every child, or leave the rest to ``respawn_due`` when a signal came
        meanwhile (``signalled``)."""
        for child in self.children:
            child.respawn_at = now
        self.respawn_due(now)

    def spawn(self, child: _Child, now: float) -> None:
        spec = child.spec
        if spec.scoreboard is not None:
            slot = spec.scoreboard.slot(child.index)
            slot.reset()
            slot.respawn_count += 1
            slot.generation += 1
            slot.last_spawn = int(now)
        sys.stdout.flush()
        sys.stderr.flush()
        master_pid = os.getpid()
        pipes = self._pipes(child)
        with stops_blocked():  # the child releases them (brood.signals.release_stops)
            pid = os.fork()
            if pid == 0:
                self._run_child(child, master_pid, pipes)
        if pipes is not None:
            self.output.spawned(pipes, pid, child.name)
        child.pid, child.started, child.respawn_at = pid, now, None
        child.harakiri_for, child.stop_deadline, child.reloading = 0, None, False
        child.evil_killed = False
        if spec.scoreboard is not None:
            spec.scoreboard.slot(child.index).pid = pid
        log(f"spawned {spec.label} {child.index} (pid: {pid}, cores: 1)")

    def _pipes(self, child: _Child) -> ChildPipes | None:
        """The child's output pipes, when the log master runs (None: it writes where the
        master does, into the master's own pipe, when they cannot be made)."""
        if self.output is None:
            return None
        try:
            return self.output.pipes()
        except OSError as exc:
            log(f"{child.name}: no output pipe of its own ({exc.strerror or exc}): it "
                "writes through the master's")
            return None

    def _run_child(self, child: _Child, master_pid: int,
                   pipes: ChildPipes | None = None) -> None:
        """In the forked child: never returns into the master's code."""
        status = 1
        try:
            die_with_master(master_pid)
            if self.output is not None:
                if pipes is not None:
                    self.output.in_child(pipes)
                else:
                    self.output.close_in_child()
            self.in_child(child.spec, child.index)
            status = int(child.spec.target(child.index) or 0)
        except SystemExit as exc:
            status = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException:
            traceback.print_exc()
        finally:
            with contextlib.suppress(Exception):
                sys.stdout.flush()
                sys.stderr.flush()
            os._exit(status)

    # -- reaping and respawning ------------------------------------------------------

    def _by_pid(self, pid: int) -> _Child | None:
        return next((c for c in self.children if c.pid == pid), None)

    def reap(self, now: float) -> int:
        """Collect dead children, schedule respawns; returns how many died."""
        died = 0
        for _ in range(4096):  # bounded: never more than the children we forked
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            told = self.others.pop(pid, None)
            if told is not None:
                told(status)
                continue
            if self.output is not None:
                self.output.reaped(pid)
            gone = self.draining.pop(pid, None)
            if gone is not None:
                log(f"{gone.name} (pid: {pid}) of the previous master exited "
                    f"({describe_status(status)})")
                continue
            child = self._by_pid(pid)
            if child is None:
                continue
            died += 1
            child.pid = 0
            if child.spec.scoreboard is not None:
                slot = child.spec.scoreboard.slot(child.index)
                slot.accepting = 0
                slot.request_start = 0
                slot.clear_requests()
            if not self.respawning:
                log(f"{child.name} (pid: {pid}) exited ({describe_status(status)})")
                continue
            self._schedule_respawn(child, pid, status, now)
        return died

    def _schedule_respawn(self, child: _Child, pid: int, status: int, now: float) -> None:
        if child.reloading:  # asked to go: no "too fast" count, respawn at once
            log(f"{child.name} (pid: {pid}) reloaded ({describe_status(status)}), "
                f"respawning")
            child.respawn_at = now
            return
        lived = now - child.started
        child.fast_deaths = child.fast_deaths + 1 if lived < FAST_DEATH else 0
        delay = 0.0
        if child.fast_deaths >= 2:
            delay = min(MAX_BACKOFF, 2.0 ** (child.fast_deaths - 2))
        log(f"{child.name} (pid: {pid}) died ({describe_status(status)}), respawning")
        if delay:
            log(f"{child.name} respawning too fast !!! i have to sleep a bit "
                f"({delay:g} seconds)...")
        child.respawn_at = now + delay

    def respawn_due(self, now: float) -> None:
        """Fork the children whose time has come; a signal that came meanwhile
        (``signalled``) stops the round, for the master's loop to answer first (a
        SIGINT while thousands of processes start stops them at once, not after the
        last), and the rest wait for its next round."""
        if not self.respawning:
            return
        for child in self.children:
            if child.pid == 0 and child.respawn_at is not None and now >= child.respawn_at:
                if self.signalled():
                    return
                self.spawn(child, now)

    def alive(self) -> list[_Child]:
        return [c for c in self.children if c.pid]

    # -- handing over across a graceful reload ---------------------------------------

    def waiting_for(self, hand_off: bool) -> bool:
        """Whether a stop must still wait: for any live child and the handed-over ones,
        or (``hand_off``, a graceful reload) for the children that are not handed off."""
        if hand_off:
            return any(not c.spec.handoff for c in self.alive())
        return bool(self.alive() or self.draining)

    def hand_off(self, kill_at: float) -> dict[int, Draining]:
        """Before the re-exec: the children still draining (the live ones, SIGKILLed
        after ``kill_at``, with those handed to this incarnation), forgotten here."""
        for child in self.alive():
            self.draining[child.pid] = Draining(child.name, kill_at)
            child.pid = 0
        return self.draining

    def check_draining(self, now: float) -> None:
        """SIGKILL handed-over children that outlived their deadline."""
        for pid, item in self.draining.items():
            if not item.killed and now >= item.kill_at:
                log(f"{item.name} (pid: {pid}) of the previous master did not finish "
                    f"draining in time, SIGKILL")
                item.killed = True
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

    def next_drain_deadline(self) -> float | None:
        times = [d.kill_at for d in self.draining.values() if not d.killed]
        return min(times) if times else None

    # -- signalling ------------------------------------------------------------------

    def signal_all(self, signum: int | None) -> None:
        """Send ``signum`` (None: each child's graceful signal) to every live child; a
        given ``signum`` goes to the handed-over ones too (already graceful)."""
        for child in self.alive():
            self._kill(child, child.spec.graceful_signal if signum is None else signum)
        if signum is not None:
            for pid in self.draining:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signum)

    def _kill(self, child: _Child, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child.pid, signum)

    def recycle(self, kind: str, signum: int | None, now: float, mercy: float) -> int:
        """Reload every live child of ``kind`` (``signum`` None: its graceful signal):
        each exits and is respawned; SIGKILL after ``mercy`` seconds. How many."""
        victims = [c for c in self.alive() if c.spec.kind == kind]
        for child in victims:
            self._recycle(child, signum, now, mercy)
        return len(victims)

    def _recycle(self, child: _Child, signum: int | None, now: float, mercy: float) -> None:
        child.reloading = True
        deadline = now + mercy
        if child.stop_deadline is None or deadline < child.stop_deadline:
            child.stop_deadline = deadline
        self._kill(child, child.spec.graceful_signal if signum is None else signum)

    # -- chain reload ----------------------------------------------------------------

    def start_chain(self, kind: str) -> int:
        """Queue every live child of ``kind`` for a chain reload; how many (0: one is
        already under way, or there is nothing to reload)."""
        if self.chain is not None:
            return 0
        queue = [c for c in self.alive()
                 if c.spec.kind == kind and c.spec.scoreboard is not None]
        if queue:
            self.chain, self.chain_victim = queue, None
        return len(queue)

    def advance_chain(self, now: float, mercy: float) -> None:
        """Next step of a chain reload: once the current victim's successor is accepting,
        recycle the next worker. Called every master loop turn; never waits."""
        if self.chain is None or not self.respawning:
            return
        if self.chain_victim is not None:
            child, old_pid = self.chain_victim
            board = child.spec.scoreboard
            if not child.pid or child.pid == old_pid or board is None:
                return
            if not board.slot(child.index).accepting:
                return
            self.chain_victim = None
        while self.chain:
            child = self.chain.pop(0)
            if child.pid:  # one that died meanwhile is respawned the usual way
                log(f"chain next victim is {child.name}")
                self.chain_victim = (child, child.pid)
                self._recycle(child, None, now, mercy)
                return
        self.chain = None
        log("chain reloading complete")

    @property
    def chain_active(self) -> bool:
        return self.chain is not None

    def kill_remaining(self, hand_off: bool = False) -> None:
        """SIGKILL what a stop waits for (``waiting_for``)."""
        for child in self.alive():
            if hand_off and child.spec.handoff:
                continue
            log(f"{child.name} (pid: {child.pid}) did not stop in time, SIGKILL")
            self._kill(child, signal.SIGKILL)
        if not hand_off:
            self.check_draining(float("inf"))

    # -- per-cycle checks ------------------------------------------------------------

    def check_harakiri(self, now: float, seconds: int, verbose: bool = False) -> float | None:
        """SIGKILL workers stuck in one request for ``seconds``; next deadline or None.
        ``verbose`` (--harakiri-verbose): first log what each of its cores was serving
        and where the process waits in the kernel."""
        if seconds <= 0:
            return None
        now_us = int(now * 1_000_000)
        soonest: float | None = None
        for child in self.alive():
            board = child.spec.scoreboard
            if board is None:
                continue
            slot = board.slot(child.index)
            start = slot.request_start
            if not start or start == child.harakiri_for:
                continue
            deadline_us = start + seconds * 1_000_000
            if now_us >= deadline_us:
                log(f"*** HARAKIRI ON WORKER {child.index} (pid: {child.pid}, try: 1) ***")
                if verbose:
                    _harakiri_details(child, slot)
                slot.harakiri_count += 1
                child.harakiri_for = start
                self._kill(child, signal.SIGKILL)
            else:
                at = deadline_us / 1_000_000
                soonest = at if soonest is None else min(soonest, at)
        return soonest

    def check_evil_memory(self, rss_mb: int, as_mb: int) -> None:
        """SIGKILL workers whose RSS (from /proc, now) is ``rss_mb`` or more
        (--evil-reload-on-rss), or whose address space is ``as_mb`` or more
        (--evil-reload-on-as), even in the middle of a request; the usual reap respawns
        them. uWSGI checks the address space first, then the RSS."""
        if rss_mb <= 0 and as_mb <= 0:
            return
        for child in self.alive():
            if child.spec.scoreboard is None or child.evil_killed:
                continue
            vsz, rss = _proc_memory(child.pid)
            if as_mb > 0 and vsz >= as_mb * 1024 * 1024:
                log(f"*** EVIL RELOAD ON WORKER {child.index} ADDRESS SPACE: {vsz} "
                    f"(pid: {child.pid}) *** address space {vsz // (1024 * 1024)} MB is "
                    f"above evil-reload-on-as {as_mb} MB, SIGKILL")
            elif rss_mb > 0 and rss >= rss_mb * 1024 * 1024:
                log(f"*** EVIL RELOAD ON WORKER {child.index} RSS: {rss} (pid: {child.pid}) "
                    f"*** rss {rss // (1024 * 1024)} MB is above evil-reload-on-rss "
                    f"{rss_mb} MB, SIGKILL")
            else:
                continue
            child.evil_killed = True
            self._kill(child, signal.SIGKILL)

    def check_rss(self, now: float, limit_mb: int, mercy: float, min_lifetime: float = 0.0
                  ) -> None:
        """Gracefully recycle workers above ``--reload-on-rss`` (backup to the worker's own
        check) once they have run ``min_lifetime`` seconds, and SIGKILL a recycled worker
        that outlives ``mercy``."""
        for child in self.alive():
            if child.evil_killed:
                continue
            if child.stop_deadline is not None:
                if now > child.stop_deadline:
                    log(f"{child.name} (pid: {child.pid}) ignored the reload request, SIGKILL")
                    self._kill(child, signal.SIGKILL)
                    child.stop_deadline = None
                continue
            board = child.spec.scoreboard
            if board is None or limit_mb <= 0 or now - child.started < min_lifetime:
                continue
            # Now, from /proc: the slot only holds what the worker saw after its last
            # request, so it misses growth during a long request or between requests.
            rss = _proc_rss(child.pid) or board.slot(child.index).rss
            if rss > limit_mb * 1024 * 1024:
                log(f"{child.name} (pid: {child.pid}) rss {rss // (1024 * 1024)} MB is above "
                    f"reload-on-rss {limit_mb} MB, recycling it")
                self._kill(child, child.spec.graceful_signal)
                child.stop_deadline = now + mercy

    def check_lifetime(self, now: float, lifetime: int, delta: int, mercy: float) -> None:
        """Gracefully recycle workers that have run ``--max-worker-lifetime`` seconds
        (plus ``(index - 1) * delta``, so that a pool does not recycle all at once)."""
        if lifetime <= 0:
            return
        for child in self.alive():
            if (child.spec.scoreboard is None or child.reloading
                    or child.stop_deadline is not None):
                continue
            lived = now - child.started
            if lived >= lifetime + (child.index - 1) * delta:
                log(f"{child.name} lifetime reached, it was running for {lived:.0f} "
                    f"second(s)")
                self._recycle(child, None, now, mercy)

    def stats_lines(self) -> list[str]:
        """One line per child for the log (FIFO ``s``): pid, and the scoreboard's figures."""
        lines = []
        for child in self.children:
            line = f"{child.name} (pid: {child.pid or '-'})"
            board = child.spec.scoreboard
            if board is not None:
                slot = board.slot(child.index)
                status = STATUS_NAMES.get(slot.status, "idle") if child.pid else "dead"
                line += (f" {status}, requests {slot.requests}, exceptions "
                         f"{slot.exceptions}, respawns {slot.respawn_count}, harakiri "
                         f"{slot.harakiri_count}, rss {_proc_rss(child.pid) // 1024} KB")
            lines.append(line)
        for pid, item in self.draining.items():
            lines.append(f"{item.name} (pid: {pid}) of the previous master, draining")
        return lines

    def next_respawn(self) -> float | None:
        times = [c.respawn_at for c in self.children if c.pid == 0 and c.respawn_at is not None]
        return min(times) if times else None

    def all_accepting(self) -> bool:
        """True when every worker with a scoreboard slot says it is accepting."""
        for child in self.children:
            board = child.spec.scoreboard
            if board is None:
                continue
            if not child.pid or not board.slot(child.index).accepting:
                return False
        return True


_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _harakiri_details(child: _Child, slot: WorkerSlot) -> None:
    """--harakiri-verbose, as uWSGI words it: the requests the worker's cores serve
    (published by the worker), then its current system call and wait channel."""
    log(f"HARAKIRI !!! worker {child.index} status !!!")
    for core, start_us, text in slot.current_requests():
        log(f"HARAKIRI [core {core}] {text} since {start_us // 1_000_000}")
    log(f"HARAKIRI !!! end of worker {child.index} status !!!")
    for name in ("syscall", "wchan"):
        try:
            with open(f"/proc/{child.pid}/{name}", "rb") as fh:
                value = fh.read(4096).decode("ascii", "replace").strip()
        except OSError:
            continue
        if value:
            log(f"HARAKIRI: -- {name}> {value}")


def _proc_memory(pid: int) -> tuple[int, int]:
    """(address space, resident set) of ``pid`` in bytes from /proc ((0, 0) when
    unavailable)."""
    try:
        with open(f"/proc/{pid}/statm") as fh:
            fields = fh.read().split()
        return int(fields[0]) * _PAGE, int(fields[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return 0, 0


def _proc_rss(pid: int) -> int:
    """Resident set size of ``pid`` in bytes from /proc (0 when unavailable)."""
    return _proc_memory(pid)[1]
