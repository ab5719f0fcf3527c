#!/usr/bin/env python3
"""brood's prefork WSGI workers vs uWSGI's workers vs gunicorn sync, plain HTTP on loopback.

Same app (brood/demo/hello.py: 11 bytes at /, 64 KiB at /big), 2 worker processes each,
wrk -t2 -c64: first a new connection per request (``Connection: close``, PERF.md's anchor
pattern), then keep-alive.  Interleaved, median of --rounds.  Default run: about 70 s.

    python bench/workers.py [--duration 5] [--rounds 1] [-v]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    PY,
    Bench,
    BenchError,
    Load,
    Matrix,
    Target,
    arg_parser,
    main_wrapper,
    need,
    start_retrying,
    wait_http,
    wait_log,
    write_json,
)

HELLO, BIG = 11, 65536


def servers() -> list[tuple[str, str, callable, str | None]]:
    """(name, role, argv for a port, log line that means ready)."""
    return [
        (
            "brood workers",
            "brood",
            lambda p: [PY, "-m", "brood", "--http-socket", f"127.0.0.1:{p}",
                       "--module", "brood.demo.hello", "--processes", "2",
                       "--disable-logging", "--master"],
            "brood: ready",
        ),
        (
            "uWSGI workers",
            "anchor",
            lambda p: ["uwsgi", "--plugins", "python3", "--http-socket", f"127.0.0.1:{p}",
                       "--wsgi-file", "brood/demo/hello.py", "--master", "--processes", "2",
                       "--disable-logging"],
            None,
        ),
        (
            "gunicorn sync",
            "anchor",
            lambda p: [PY, "-m", "gunicorn", "-w", "2", "-b", f"127.0.0.1:{p}",
                       "brood.demo.hello:application"],
            None,
        ),
    ]


def run(args) -> int:
    missing = need("wrk", "uwsgi")
    if missing:
        raise BenchError(f"missing tools: {', '.join(missing)}")
    loads = [
        Load("hello, new conn/request", "/", keepalive=False, size=HELLO),
        Load("64 KiB, new conn/request", "/big", keepalive=False, size=BIG),
        Load("hello, keep-alive", "/", keepalive=True, size=HELLO),
        Load("64 KiB, keep-alive", "/big", keepalive=True, size=BIG),
    ]
    with Bench(args.keep_logs) as bench:
        targets = []
        for name, role, make_argv, ready_line in servers():
            t = Target(name, role)

            def ready(srv, port, ready_line=ready_line):
                if ready_line:
                    wait_log(srv, ready_line)
                wait_http(srv, port, "/")

            try:
                srv, t.port = start_retrying(bench, name, make_argv, ready)
                t.rss_roots = [srv.pid]
            except BenchError as exc:
                t.error = str(exc)
            targets.append(t)
        m = Matrix("workers: 2 processes, plain HTTP on loopback", targets, loads, args)
        m.run()
    rows = m.print()
    write_json(args.json, rows)
    return 1 if any("failed" in r for r in rows) else 0


if __name__ == "__main__":
    main_wrapper(run, arg_parser(__doc__.split("\n")[0]))
