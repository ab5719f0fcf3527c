"""``--X-harakiri``, as uWSGI's gateways have it: a router process whose event loop stops
turning for that many seconds is killed, and the master respawns it.

A Python router can get stuck where a C one would not: a ``--X-use-code-string``
function that blocks, a pathological input in pure-Python code. Every connection of the
process then waits with it. uWSGI's master compares a timestamp each gateway refreshes
on every loop cycle; here the process watches itself, so the master needs nothing new:
a trio task refreshes ``beat`` (every second, or a quarter of the limit when that is
shorter), and a plain thread (which runs while
the trio thread is stuck in Python code: the interpreter switches threads every few
milliseconds) kills the process with SIGKILL once ``beat`` is older than the limit.
The master logs the death and forks a fresh process.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable

import trio

from brood.log import log

# How often the loop says it is alive, and how often the thread looks.
BEAT_EVERY = 1.0


class Watchdog:
    """The loop's heartbeat (``run``, a trio task) and the thread that checks it."""

    def __init__(self, name: str, limit: float, *,
                 kill: Callable[[], None] | None = None) -> None:
        self.name = name  # "http 1": the process as the master's log names it
        self.limit = limit
        self.every = min(BEAT_EVERY, limit / 4)
        self.beat = time.monotonic()
        self.kill = kill or _kill_self
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Refresh the heartbeat until cancelled, with the thread watching it."""
        self.beat = time.monotonic()
        self._thread = threading.Thread(target=self._watch, name=f"harakiri {self.name}",
                                        daemon=True)
        self._thread.start()
        task_status.started()
        try:
            while True:
                self.beat = time.monotonic()
                await trio.sleep(self.every)
        finally:
            self._stop.set()

    def _watch(self) -> None:
        while not self._stop.wait(self.every):
            stuck = time.monotonic() - self.beat
            if stuck > self.limit:
                log(f"*** HARAKIRI ON GATEWAY {self.name} (pid: {os.getpid()}): "
                    f"its loop stuck for {stuck:.0f}s ***")
                self.kill()
                return


def _kill_self() -> None:
    os.kill(os.getpid(), signal.SIGKILL)
