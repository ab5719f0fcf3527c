#!/usr/bin/env python3
"""brood's prefork WSGI workers vs uWSGI's workers vs gunicorn sync, plain HTTP on loopback.

Same app (brood/demo/hello.py: 11 bytes at /, 64 KiB at /big), 2 worker processes each,
wrk -t2 -c64: first a new connection per request (``Connection: close``, PERF.md's anchor
pattern), then keep-alive.  Interleaved, median of --rounds.  Default run: about 70 s.

Request lines are off by default (``--disable-logging``). ``--request-log logto`` writes
them to a file in each server's own way (``--logto``; gunicorn ``--access-logfile``),
``--request-log log-master`` the same through brood's and uWSGI's log master
(``--log-master``; gunicorn has none): what a line costs, and what the log master adds.

    python bench/workers.py [--duration 5] [--rounds 1] [--request-log off|logto|log-master] [-v]
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


def servers(request_log: str, logdir: Path) -> list[tuple[str, str, callable, str | None]]:
    """(name, role, argv for a port, log line that means ready)."""
    def lines(name: str) -> list[str]:
        if request_log == "off":
            return ["--disable-logging"]
        out = ["--logto", str(logdir / f"{name}-requests.log")]
        return out + (["--log-master"] if request_log == "log-master" else [])

    gunicorn_log = ([] if request_log == "off"
                    else ["--access-logfile", str(logdir / "gunicorn-requests.log")])
    return [
        (
            "brood workers",
            "brood",
            lambda p: [PY, "-m", "brood", "--http-socket", f"127.0.0.1:{p}",
                       "--module", "brood.demo.hello", "--processes", "2", "--master",
                       *lines("brood")],
            "brood: ready" if request_log == "off" else None,  # (else in the --logto file)
        ),
        (
            "uWSGI workers",
            "anchor",
            lambda p: ["uwsgi", "--plugins", "python3", "--http-socket", f"127.0.0.1:{p}",
                       "--wsgi-file", "brood/demo/hello.py", "--master", "--processes", "2",
                       *lines("uwsgi")],
            None,
        ),
        (
            "gunicorn sync",
            "anchor",
            lambda p: [PY, "-m", "gunicorn", "-w", "2", "-b", f"127.0.0.1:{p}",
                       *gunicorn_log, "brood.demo.hello:application"],
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
        for name, role, make_argv, ready_line in servers(args.request_log, bench.dir):
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
        title = "workers: 2 processes, plain HTTP on loopback"
        if args.request_log != "off":
            title += f", request lines: {args.request_log}"
        m = Matrix(title, targets, loads, args)
        m.run()
    rows = m.print()
    write_json(args.json, rows)
    return 1 if any("failed" in r for r in rows) else 0


def parser():
    p = arg_parser(__doc__.split("\n")[0])
    p.add_argument("--request-log", choices=("off", "logto", "log-master"), default="off",
                   help="request lines: off (--disable-logging, the default), to a file "
                        "(--logto), or to a file through the log master (--log-master)")
    return p


if __name__ == "__main__":
    main_wrapper(run, parser())
