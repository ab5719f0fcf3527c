"""Before a reload, import the app in a fresh interpreter: a broken deploy is refused.

A reload re-executes the master, which imports the app again before it forks workers.
When the new code does not import (a syntax error, a missing module), the new master
cannot start: the routers and the pool go down with it (uWSGI 2.0 serves errors instead).
So the master first runs ``python -m brood.master_appcheck ARGV`` from its start
directory, as the re-exec would run, and waits for it without blocking its loop: exit
status 0 and the reload goes ahead; anything else and the reload is refused, said with
the check's last lines, and the old code keeps serving.

The master reaps every child with ``waitpid(-1)``, so the check's exit status reaches
it through the master's reap (``exited``), not through ``subprocess``.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time

from brood.master_env import DRAINING_ENV, FDS_ENV, RELOADS_ENV

# Longer than this and the reload goes ahead unchecked: an app whose import takes this
# long must still be reloadable.
APP_CHECK_TIMEOUT = 120.0
# What of the check's output is kept, for the log when it fails.
TAIL_BYTES = 8192
TAIL_LINES = 20
# The last line the check writes when the app does not load.
VERDICT = "brood app check: "
# The check's exit status when its answer says nothing of the new code: the app binds an
# address at import, which the running app holds (the reload releases it).
INCONCLUSIVE = 3
# Deaths by these come from outside (a kill, a session's hangup), not from the app.
OUTSIDE_SIGNALS = frozenset({signal.SIGKILL, signal.SIGTERM, signal.SIGHUP, signal.SIGINT})


class AppCheck:
    """One running check, watched by the master loop (``fileno``/``on_readable``)."""

    def __init__(self, argv: list[str], cwd: str, timeout: float = APP_CHECK_TIMEOUT,
                 reloads: int = 1) -> None:
        env = {k: v for k, v in os.environ.items()
               if k not in (FDS_ENV, RELOADS_ENV, DRAINING_ENV)}
        # As the re-executed master will read the config: ``reloads`` (its count) makes
        # if-reload true there, so the app under if-reload is the one checked.
        env[RELOADS_ENV] = str(reloads)
        self.proc = subprocess.Popen(  # (its own session: a hangup of the master's is not its)
            [sys.executable, "-m", "brood.master_appcheck", *argv], cwd=cwd, env=env,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            close_fds=True, start_new_session=True)
        assert self.proc.stdout is not None
        self.out = self.proc.stdout
        os.set_blocking(self.out.fileno(), False)
        self.pid = self.proc.pid
        self.deadline = time.monotonic() + timeout
        self.tail = bytearray()
        self.status: int | None = None  # exit status (waitstatus_to_exitcode), once reaped
        self.eof = False

    # -- watched by the master ---------------------------------------------------------
    def fileno(self) -> int | None:
        return None if self.eof else self.out.fileno()

    def on_readable(self, now: float) -> None:
        """Keep the last TAIL_BYTES of what the check writes (it must never block on a
        full pipe: an app may print a lot while it imports)."""
        while not self.eof:
            try:
                chunk = os.read(self.out.fileno(), 65536)
            except (BlockingIOError, InterruptedError):
                return
            if not chunk:
                self.eof = True
                self.out.close()
                return
            self.tail += chunk
            del self.tail[:-TAIL_BYTES]

    def exited(self, status: int) -> None:
        """The master reaped the check (raw wait status)."""
        self.status = os.waitstatus_to_exitcode(status)
        self.proc.returncode = self.status  # subprocess must not wait for it again
        self.on_readable(time.monotonic())

    # -- the outcome ---------------------------------------------------------------------
    @property
    def done(self) -> bool:
        return self.status is not None

    def timed_out(self, now: float) -> bool:
        return self.status is None and now >= self.deadline

    def inconclusive(self) -> str | None:
        """Why the check's answer says nothing of the new code, when it does not: the
        reload then goes ahead as if unchecked."""
        if self.status == INCONCLUSIVE:
            return "the app binds an address at import that the running app holds"
        if self.status is not None and -self.status in OUTSIDE_SIGNALS:
            return f"the check was killed by signal {-self.status}"
        return None

    def failure(self) -> tuple[str, list[str]] | None:
        """None when the app loaded; else (reason, the output's last lines before it)."""
        if self.status == 0:
            return None
        lines = self.tail.decode("utf-8", "replace").splitlines()
        reason = ""
        if lines and lines[-1].startswith(VERDICT):
            reason = lines.pop().removeprefix(VERDICT)
        elif self.status is not None and self.status < 0:
            reason = f"the check was killed by signal {-self.status}"
        else:
            reason = f"the check exited with status {self.status}"
        return reason, [line for line in lines if line.strip()][-TAIL_LINES:]

    def seconds_left(self, now: float) -> float:
        return max(0.0, self.deadline - now)

    def kill(self) -> None:
        """Stop a check that no longer matters; the master's reap collects it."""
        if self.status is None:
            try:
                os.kill(self.pid, 9)
            except ProcessLookupError:
                pass
        if not self.eof:
            self.eof = True
            self.out.close()


def _ours(filename: str) -> bool:
    return filename.startswith(("<frozen ", os.path.dirname(__file__) + os.sep))


def main(argv: list[str]) -> int:
    """The check itself: load the config and import the app, as a fresh master would."""
    from brood.config.load import load_config
    from brood.config.option import OptionError
    from brood.workers.loader import AppLoadError, load_app

    try:
        load_app(load_config(argv))
    except AppLoadError as exc:
        if _address_in_use(exc):
            os._exit(INCONCLUSIVE)
        _say_failed(exc)
    except OptionError as exc:
        _say_failed(exc)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # at once: threads the app started at import must not hold the check


def _address_in_use(exc: BaseException) -> bool:
    """The app failed binding an address (the running app holds it, as it should)."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, OSError) and cause.errno == errno.EADDRINUSE:
            return True
        cause = cause.__cause__ or cause.__context__
    return False


def _say_failed(exc: Exception) -> None:
    """The app's traceback and the verdict line, then exit 1."""
    import traceback

    if exc.__cause__ is not None:  # the app's own frames: brood's and importlib's are noise
        shown = traceback.TracebackException.from_exception(exc.__cause__)
        shown.stack = traceback.StackSummary.from_list(
            [f for f in shown.stack if not _ours(f.filename)])
        sys.stderr.write("".join(shown.format()))
    sys.stdout.flush()
    sys.stderr.write(f"{VERDICT}{exc}\n")
    sys.stderr.flush()
    os._exit(1)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
