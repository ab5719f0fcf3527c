"""The ``brood`` command: options -> Config -> an action or the master.

Every user mistake (bad option, unreadable pidfile, unbindable address, missing app)
ends as one ``brood: <message>`` line on stderr and exit status 1, never a traceback.
"""

from __future__ import annotations

import os
import signal
import sys

from brood.config.option import OptionError

USAGE = """usage: brood [options]   (uWSGI-compatible option names; brood --help lists them)
  brood --http-socket 127.0.0.1:8080 --wsgi-file app.py --processes 2 --master
  brood --socket /tmp/app.sock --module myproject.wsgi --stats 127.0.0.1:9191
  brood --reload /tmp/brood.pid | --stop /tmp/brood.pid"""


def _error(message: str) -> int:
    sys.stderr.write(f"brood: {message}\n")
    sys.stderr.flush()
    return 1


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``brood`` and ``python -m brood``; returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    from brood.config.load import env_options, load_config

    if not args and not env_options(os.environ):  # (UWSGI_* variables may say it all)
        sys.stderr.write(USAGE + "\n")
        return 1
    try:
        cfg = load_config(args)
        if cfg["help"]:
            from brood.config.help import render_help

            sys.stdout.write(render_help())
            return 0
        if cfg["version"]:
            from brood import __version__

            sys.stdout.write(f"brood {__version__}\n")
            return 0
        from brood.master_env import signal_pidfile

        if cfg["reload"]:
            signal_pidfile(cfg["reload"], signal.SIGHUP, "reload")
            return 0
        if cfg["stop"]:
            signal_pidfile(cfg["stop"], signal.SIGINT, "stop")
            return 0
        if cfg["loggers-list"]:  # (uWSGI prints its list, then starts as usual)
            from brood.logs.spec import KINDS

            sys.stderr.write(
                "\n*** brood loggers ***\n"
                + "".join(f"{k}\n" for k in KINDS)
                + "--- end of loggers list ---\n\n"
            )
        from brood.master import run_master

        return run_master(cfg, args)
    except OptionError as exc:
        return _error(str(exc))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `brood --help | head`: the reader went, nothing is wrong
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # (the exit flush)
        return 0
