#!/usr/bin/env python3
"""nginx uwsgi_pass -> fastrouter -> 2 uWSGI workers: brood's fastrouter vs uWSGI's.

    wrk (keep-alive, -t2 -c64) -> nginx (1 worker) -uwsgi-> fastrouter -uwsgi-> workers

One nginx (worker_processes 1, config/pid/logs in a temp dir) with one server block per
path: brood fastrouter with 1 and 2 processes, uWSGI's fastrouter (the anchor), and nginx
straight to the workers (reference: what the extra hop costs).  RSS is the fastrouter's
process tree (nginx not counted; the reference row shows nginx's).  About 50 s.

    python bench/fastrouter.py [--duration 5] [--rounds 1] [-v]
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
    free_port,
    main_wrapper,
    need,
    start_retrying,
    start_uwsgi_workers,
    wait_http,
    wait_uwsgi,
    with_baseline,
    write_json,
)

UWSGI_PARAMS = """
            uwsgi_param QUERY_STRING $query_string;
            uwsgi_param REQUEST_METHOD $request_method;
            uwsgi_param CONTENT_TYPE $content_type;
            uwsgi_param CONTENT_LENGTH $content_length;
            uwsgi_param REQUEST_URI $request_uri;
            uwsgi_param PATH_INFO $document_uri;
            uwsgi_param DOCUMENT_ROOT $document_root;
            uwsgi_param SERVER_PROTOCOL $server_protocol;
            uwsgi_param REQUEST_SCHEME $scheme;
            uwsgi_param REMOTE_ADDR $remote_addr;
            uwsgi_param REMOTE_PORT $remote_port;
            uwsgi_param SERVER_PORT $server_port;
            uwsgi_param SERVER_NAME $server_name;
            uwsgi_param HTTP_HOST $host;"""


def nginx_config(d: Path, routes: list[tuple[int, int]]) -> str:
    """worker_processes 1; one server {listen A; uwsgi_pass B;} per route; all files in d.

    uwsgi_buffers are raised so a 64 KiB answer stays in memory (default 8 x 4k would
    spill to a temp file); every path gets the same settings.
    """
    servers = "".join(
        f"""
    server {{
        listen {HOST}:{listen};
        location / {{{UWSGI_PARAMS}
            uwsgi_pass {HOST}:{upstream};
        }}
    }}"""
        for listen, upstream in routes
    )
    return f"""worker_processes 1;
daemon off;
pid {d}/nginx.pid;
error_log {d}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log {d}/nginx-access.log combined buffer=256k flush=2s;
    client_body_temp_path {d}/tmp-body;
    uwsgi_temp_path {d}/tmp-uwsgi;
    proxy_temp_path {d}/tmp-proxy;
    fastcgi_temp_path {d}/tmp-fastcgi;
    scgi_temp_path {d}/tmp-scgi;
    keepalive_requests 100000;
    uwsgi_buffer_size 16k;
    uwsgi_buffers 16 16k;
{servers}
}}
"""


def run(args) -> int:
    missing = need("wrk", "uwsgi", "nginx")
    if missing:
        raise BenchError(f"missing tools: {', '.join(missing)}")
    loads = [
        Load("hello, keep-alive", "/", keepalive=True, size=11),
        Load("64 KiB, keep-alive", "/big", keepalive=True, size=65536),
    ]
    with Bench(args.keep_logs) as bench:
        _, ports = start_uwsgi_workers(bench, uwsgi=True)
        node = f"{HOST}:{ports['uwsgi']}"
        routers = [
            ("nginx -> brood fastrouter, 1 process", "brood",
             lambda p: [PY, "-m", "brood", "--master", "--fastrouter", f"{HOST}:{p}",
                        "--fastrouter-to", node, "--fastrouter-processes", "1"]),
            ("nginx -> brood fastrouter, 2 processes", "brood",
             lambda p: [PY, "-m", "brood", "--master", "--fastrouter", f"{HOST}:{p}",
                        "--fastrouter-to", node, "--fastrouter-processes", "2"]),
            ("nginx -> uWSGI fastrouter", "anchor",
             lambda p: ["uwsgi", "--plugins", "fastrouter", "--master", "--fastrouter",
                        f"{HOST}:{p}", "--fastrouter-to", node]),
        ]
        targets: list[Target] = []
        upstreams: list[int] = []
        for name, role, make_argv, cwd in with_baseline(routers, args):
            t = Target(name, role)
            try:
                srv, port = start_retrying(
                    bench, name.split("-> ")[1], make_argv,
                    lambda srv, port: wait_uwsgi(srv, port, "/"), cwd=cwd,
                )
                t.rss_roots = [srv.pid]
                upstreams.append(port)
            except BenchError as exc:
                t.error = str(exc)
                upstreams.append(0)
            targets.append(t)
        direct = Target("nginx -> workers (uwsgi_pass)", "ref")
        targets.append(direct)
        upstreams.append(ports["uwsgi"])

        live = [(t, up) for t, up in zip(targets, upstreams, strict=True) if up]
        listens = [free_port() for _ in live]
        conf = bench.write("nginx.conf", nginx_config(bench.dir, [(lp, up) for lp, (_, up) in zip(listens, live, strict=True)]))
        base = ["nginx", "-c", str(conf), "-p", str(bench.dir), "-e", str(bench.dir / "nginx-error.log")]
        nginx = bench.start("nginx", base, stop=base + ["-s", "stop"])
        for lp, (t, _) in zip(listens, live, strict=True):
            t.port = lp
            try:
                wait_http(nginx, lp, "/", what=f"nginx -> {t.name}")
            except BenchError as exc:
                t.error = str(exc)
        direct.rss_roots = [nginx.pid]
        m = Matrix("nginx -> fastrouter -> 2 uWSGI workers", targets, loads, args)
        m.run()
    rows = m.print()
    write_json(args.json, rows)
    return 1 if any("failed" in r for r in rows) else 0


if __name__ == "__main__":
    main_wrapper(run, arg_parser(__doc__.split("\n")[0]))
