#!/usr/bin/env python3
"""HTTP routers in front of the same 2 real uWSGI workers: brood vs uWSGI vs haproxy.

    client (wrk -t2 -c64, keep-alive) -> router -> 2 uWSGI workers (hello.py)

* brood HTTP router, 1 and 2 router processes, to the workers' uwsgi socket;
* uWSGI's HTTP router with --http-keepalive, to the same uwsgi socket (the anchor);
* haproxy mode http (default threads: one per core), to the same workers' --http-socket.

Small (11 bytes) and 64 KiB answers to GETs, and the small answer to a POST of 2 KiB.
Interleaved, median of --rounds.  About 75 s a round.

brood's router runs with --disable-logging: uWSGI's router, the anchor, writes no
request lines, and neither does haproxy here. ``--request-log`` leaves brood's request
lines on (to its log file in the bench's temp dir), to measure what they cost.

    python bench/http_router.py [--duration 5] [--rounds 1] [--request-log] [-v]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    HOST,
    PY,
    Bench,
    BenchError,
    Load,
    Matrix,
    Target,
    arg_parser,
    main_wrapper,
    need,
    start_haproxy,
    start_retrying,
    start_uwsgi_workers,
    wait_http,
    with_baseline,
    write_json,
)


def run(args) -> int:
    missing = need("wrk", "uwsgi")
    if missing:
        raise BenchError(f"missing tools: {', '.join(missing)}")
    loads = [
        Load("hello, keep-alive", "/", keepalive=True, size=11),
        Load("64 KiB, keep-alive", "/big", keepalive=True, size=65536),
        Load("POST 2 KiB, keep-alive", "/", keepalive=True, size=11, post=2048),
    ]
    quiet = [] if args.request_log else ["--disable-logging"]
    with Bench(args.keep_logs) as bench:
        _, ports = start_uwsgi_workers(bench, uwsgi=True, http=True)
        node = f"{HOST}:{ports['uwsgi']}"
        routers = [
            ("brood http, 1 process", "brood",
             lambda p: [PY, "-m", "brood", "--master", "--http", f"{HOST}:{p}", "--http-to", node,
                        "--http-processes", "1", "--http-keepalive", *quiet]),
            ("brood http, 2 processes", "brood",
             lambda p: [PY, "-m", "brood", "--master", "--http", f"{HOST}:{p}", "--http-to", node,
                        "--http-processes", "2", "--http-keepalive", *quiet]),
            ("uWSGI http router", "anchor",
             lambda p: ["uwsgi", "--plugins", "http", "--master", "--http", f"{HOST}:{p}",
                        "--http-to", node, "--http-keepalive"]),
        ]
        targets = []
        for name, role, make_argv, cwd in with_baseline(routers, args):
            t = Target(name, role)
            try:
                srv, t.port = start_retrying(
                    bench, name, make_argv, lambda srv, port: wait_http(srv, port, "/"),
                    cwd=cwd,
                )
                t.rss_roots = [srv.pid]
            except BenchError as exc:
                t.error = str(exc)
            targets.append(t)
        t = Target("haproxy http", "anchor")
        if need("haproxy"):
            t.error = "haproxy is not installed (apt-get install -y haproxy)"
        else:
            try:
                srv, (t.port,) = start_haproxy(bench, "http", [ports["http"]], "haproxy-http")
                wait_http(srv, t.port, "/")
                t.rss_roots = [srv.pid]
            except BenchError as exc:
                t.error = str(exc)
        targets.append(t)
        m = Matrix("HTTP routers -> 2 uWSGI workers", targets, loads, args)
        m.run()
    rows = m.print()
    write_json(args.json, rows)
    return 1 if any("failed" in r for r in rows) else 0


def parser():
    p = arg_parser(__doc__.split("\n")[0])
    p.add_argument("--request-log", action="store_true",
                   help="leave brood's request lines on (default: --disable-logging, as "
                        "uWSGI's router logs no request)")
    return p


if __name__ == "__main__":
    main_wrapper(run, parser())
