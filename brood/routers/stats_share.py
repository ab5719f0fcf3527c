"""Router stats across processes: the shell around ``stats_merge``.

With ``--X-processes N`` and ``--X-stats``, the master makes one directory for the
instance (``SnapshotDir``: under /dev/shm when it can, else the temp dir; created after
privileges are dropped, removed on reload and shutdown) and hands every router process a
``StatsShare`` through ``ROUTER_EXTRAS``. Each process then:

* publishes its snapshot as ``<dir>/<kind>.<index>.json`` once per ``PUBLISH_EVERY``
  while stats are wanted (a client asked any process of the kind within
  ``WANTED_FOR``: ``<dir>/<kind>.wanted``'s time), once at start, and right before it
  answers a stats client, atomically (a temp file, then ``os.replace``: a reader sees
  a whole old or a whole new file, never half of one). With no one asking, a table of
  tens of thousands of nodes is not written out every second for nobody;
* answering, merges its live figures with the siblings' files, leaving out a file whose
  process is gone or that is older than ``STALE_AFTER`` (a process that stopped
  publishing; a respawned process at the same index overwrites it). The first answer
  after a quiet spell marks stats wanted and waits for the siblings' next snapshots
  (``FIRST_WAIT`` at most).

Why files and not a live query of the siblings: a stats answer never waits on another
process (a busy or dying sibling cannot stall it), and the figures are at most one
publishing period old, the period stats pollers such as uwsgitop refresh at. Why files
and not shared memory: a snapshot has no size bound (a subscription table can hold
thousands of nodes), and ``os.replace`` gives whole-file reads without a lock.

A process serving stats alone (one process, or ``serve_router`` in a test) gets a
``StatsShare`` with no directory: its document is its own figures.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import trio

from brood.config.model import Config
from brood.log import log as master_log
from brood.master_env import group_id, user_id
from brood.routers.stats_merge import BadSnapshot, dumps, loads, merge, render, snapshot

if TYPE_CHECKING:
    from brood.plan import PlanBuilder

log = logging.getLogger("brood.routers")

PUBLISH_EVERY = 1.0  # seconds between two snapshots of one process
# The siblings publish while a stats client asked within this long.
WANTED_FOR = 60.0
# The first answer after a quiet spell waits this long at most for the siblings' fresh
# snapshots (they look at the mark once per PUBLISH_EVERY; a large table takes a moment).
FIRST_WAIT = 3.0
_FIRST_POLL = 0.05
# A snapshot older than this is left out: its process stopped publishing (hung, or
# gone and its pid reused). A few publishing periods, so a busy loop is not mistaken.
STALE_AFTER = 5.0
SHM = "/dev/shm"
_FILE = re.compile(r"(?P<kind>[a-z]+)\.(?P<index>\d+)\.json")
PREFIX = "brood-routerstats-"  # + master pid + "-" + random: one directory per instance
_DIR = re.compile(re.escape(PREFIX) + r"(?P<pid>\d+)-\w+")


class SnapshotDir:
    """Master service: the directory the router processes of this instance share.

    ``create`` runs as a plan ``prepare`` hook (after ``--uid``/``--gid`` are dropped, so
    the router processes can write in it); the path is read by each process at fork.
    It first sweeps what a killed master of the same user left behind."""

    def __init__(self, base: str | None = None,
                 owner: tuple[str | None, str | None] = (None, None)) -> None:
        self.base = base
        self.path: str | None = None
        # (--X-uid, --X-gid) of the routers that write in it: theirs once made.
        self.owner = owner

    def create(self) -> None:
        base = self.base or (SHM if os.access(SHM, os.W_OK | os.X_OK) else None)
        base = base or tempfile.gettempdir()
        _sweep(base)
        try:
            self.path = tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-", dir=base)
            uid, gid = self.owner
            if uid or gid:  # routers that drop to another user write in it
                os.chown(self.path, user_id(uid) if uid else -1, group_id(gid) if gid else -1)
        except OSError as exc:
            master_log(f"router stats: cannot create the snapshot directory ({exc}); "
                       f"each router process will show its own figures only")

    def remove(self) -> None:
        if self.path is not None:
            shutil.rmtree(self.path, ignore_errors=True)
            self.path = None

    # MasterService
    def fileno(self) -> int | None:
        return None

    def on_readable(self, now: float) -> None:
        pass

    def tick(self, now: float) -> None:
        pass

    def on_reload(self, graceful: bool | None = None) -> None:
        self.remove()  # the next incarnation makes its own

    def on_shutdown(self) -> None:
        self.remove()

    def close_in_child(self) -> None:
        pass  # the children use the directory; only the master removes it


def _sweep(base: str) -> None:
    """Remove the directories a master of ours left when it was killed (no shutdown ran):
    ours by owner (root's: any, as it gives them to --X-uid users), and no process has
    the pid in their name any more."""
    try:
        entries = list(os.scandir(base))
    except OSError:
        return
    for entry in entries:
        m = _DIR.fullmatch(entry.name)
        with contextlib.suppress(OSError):
            if (m and entry.is_dir(follow_symlinks=False)
                    and os.geteuid() in (0, entry.stat(follow_symlinks=False).st_uid)
                    and not _alive(int(m["pid"]))):
                shutil.rmtree(entry.path, ignore_errors=True)


class StatsShare:
    """One router process's end: publish its snapshot, build the merged document."""

    def __init__(self, kind: str, index: int = 1, directory: str | None = None) -> None:
        self.kind = kind
        self.index = index
        self.directory = directory
        self.pid = os.getpid()
        self._failed = False
        self.minified = False  # --stats-minified: the document on one line
        # The build under way (``document_off_loop``): stats clients that come
        # meanwhile share it; one at a time.
        self._building: trio.Event | None = None
        self._built = b""

    @property
    def shared(self) -> bool:
        return self.directory is not None

    def _own_path(self) -> str:
        assert self.directory is not None
        return os.path.join(self.directory, f"{self.kind}.{self.index}.json")

    def snapshot(self, engine: Any, now: float) -> dict[str, Any]:
        return snapshot(index=self.index, pid=self.pid, now=now,
                        connections=engine.spread.open,
                        active_sessions=engine.active_sessions,
                        sessions_total=engine.sessions_total,
                        static_nodes=engine.static_nodes(),
                        subscriptions=engine.subscriptions())

    def publish(self, snap: dict[str, Any]) -> None:
        """Replace this process's file with ``snap`` (no-op without a directory)."""
        if self.directory is None:
            return
        path = self._own_path()
        tmp = f"{os.path.dirname(path)}/.{os.path.basename(path)}.{self.pid}.tmp"
        try:
            with open(tmp, "wb") as fh:
                fh.write(dumps(snap))
            os.replace(tmp, path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            if not self._failed:  # once: the directory goes away at shutdown, say
                self._failed = True
                log.warning("%s stats: cannot publish to %s: %s", self.kind, path, exc)
        else:
            self._failed = False

    def _wanted_path(self) -> str:
        assert self.directory is not None
        return os.path.join(self.directory, f"{self.kind}.wanted")

    def wanted_since(self) -> float:
        """When stats were last asked of any process of the kind (Unix time; 0: never)."""
        try:
            return os.stat(self._wanted_path()).st_mtime
        except OSError:
            return 0.0

    def mark_wanted(self) -> bool:
        """Say that stats are wanted; whether they already were (the siblings publish)."""
        was = time.time() - self.wanted_since() < WANTED_FOR
        try:
            with open(self._wanted_path(), "ab"):
                pass
            os.utime(self._wanted_path())
        except OSError:
            pass
        return was

    def _siblings_caught_up(self, since: float) -> bool:
        """Every sibling's snapshot was written at ``since`` or later."""
        try:
            names = os.listdir(self.directory)  # type: ignore[arg-type]
        except OSError:
            return True
        for name in names:
            m = _FILE.fullmatch(name)
            if m is None or m["kind"] != self.kind or int(m["index"]) == self.index:
                continue
            try:
                if os.stat(os.path.join(self.directory, name)).st_mtime < since:  # type: ignore[arg-type]
                    return False
            except OSError:
                continue
        return True

    def withdraw(self) -> None:
        """Remove this process's file (it stops serving)."""
        if self.directory is not None:
            with contextlib.suppress(OSError):
                os.unlink(self._own_path())

    def collect(self, now: float) -> list[dict[str, Any]]:
        """The siblings' snapshots that are fresh and whose process is alive."""
        if self.directory is None:
            return []
        try:
            names = os.listdir(self.directory)
        except OSError:
            return []
        found = []
        for name in sorted(names):
            m = _FILE.fullmatch(name)
            if m is None or m["kind"] != self.kind or int(m["index"]) == self.index:
                continue
            try:
                with open(os.path.join(self.directory, name), "rb") as fh:
                    snap = loads(fh.read())
            except (OSError, BadSnapshot):
                continue  # gone meanwhile, or not ours to read
            if now - snap["time"] <= STALE_AFTER and _alive(snap["pid"]):
                found.append(snap)
        return found

    def document(self, engine: Any, socket_names: Sequence[str]) -> bytes:
        """The stats document: this process live, merged with its siblings' snapshots.
        Publishes first, so the sibling answering next has these figures too."""
        now = engine.clock()
        own = self.snapshot(engine, now)
        self.publish(own)
        merged = merge(own, self.collect(now), now)
        return render(self.kind, merged, pid=os.getpid(), uid=os.getuid(), gid=os.getgid(),
                      cwd=os.getcwd(), socket_names=list(socket_names), cheap=engine.cheap,
                      now=now, minified=self.minified)

    async def document_off_loop(self, engine: Any, socket_names: Sequence[str]) -> bytes:
        """``document`` in a worker thread: with a table of thousands of nodes it takes
        half a second or more, which the event loop would otherwise spend away from
        routing. Clients that ask while one is being built get that one: forty at once
        made forty threads that held the GIL against the loop for half a minute."""
        if self._building is not None:
            await self._building.wait()
            return self._built
        self._building = done = trio.Event()
        try:
            if self.directory is not None and not self.mark_wanted():
                since = time.time()
                with trio.move_on_after(FIRST_WAIT):
                    while not self._siblings_caught_up(since):
                        await trio.sleep(_FIRST_POLL)
            self._built = await _off_loop(self.document, engine, socket_names)
        finally:
            self._building = None
            done.set()
        return self._built

    async def publish_periodically(self, engine: Any) -> None:
        """Publish every ``PUBLISH_EVERY`` seconds until cancelled, then withdraw."""
        if self.directory is None:
            return
        try:
            first = True
            while True:
                if first or time.time() - self.wanted_since() < WANTED_FOR:
                    await _off_loop(lambda: self.publish(self.snapshot(engine, engine.clock())))
                first = False
                await trio.sleep(PUBLISH_EVERY)
        finally:
            self.withdraw()


# How often a snapshot taken off the loop is tried again when the loop changed a table
# under it ("dictionary changed size during iteration"); then it is taken on the loop.
_OFF_LOOP_TRIES = 3


async def _off_loop(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` in a worker thread: it reads the live tables while the loop goes on
    routing (node counters are read as they are, as uWSGI's stats thread reads them)."""
    for _ in range(_OFF_LOOP_TRIES):
        try:
            return await trio.to_thread.run_sync(fn, *args)
        except RuntimeError:  # a dict or set the loop resized meanwhile: again
            continue
    return fn(*args)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


def _none(index: int) -> dict[str, Any]:
    return {}


def stats_share_extras(cfg: Config, b: PlanBuilder, kind: str,
                       count: int) -> Callable[[int], dict[str, Any]]:
    """A ``brood.routers.plan.ROUTER_EXTRAS`` factory: ``stats_share=`` for each process
    of a kind with ``--X-stats`` and more than one process (one directory per instance)."""
    if count < 2 or not cfg.get(f"{kind}-stats"):
        return _none
    owner = (cfg.get(f"{kind}-uid"), cfg.get(f"{kind}-gid"))  # one per router user
    snapdir = next((s for s in b.plan.services
                    if isinstance(s, SnapshotDir) and s.owner == owner), None)
    if snapdir is None:
        snapdir = SnapshotDir(owner=owner)
        b.add_service(snapdir)
        b.add_prepare(snapdir.create)

    def per_index(index: int) -> dict[str, Any]:
        return {"stats_share": StatsShare(kind, index, snapdir.path)}

    return per_index


__all__ = ["PUBLISH_EVERY", "STALE_AFTER", "SnapshotDir", "StatsShare", "stats_share_extras"]
