#!/usr/bin/env python3
"""TCP relays: brood's rawrouter vs haproxy mode tcp vs uWSGI's rawrouter vs direct.

1. Bulk: one connection carries --bulk-mib (default 1024) MiB from a source to a sink
   (bench/_bulk.py: sendfile from a memfd in, splice to /dev/null out, so "direct" is
   the kernel's loopback speed, not Python's); MB/s = 10^6 bytes/s until the sink's count
   comes back.  --rounds bulk runs per relay, interleaved, median.
2. Small-connection rate: wrk -t2 -c64 with ``Connection: close`` (one TCP connection per
   request) through each relay to 2 real uWSGI workers' --http-socket (hello world).

haproxy uses its defaults (one thread per core, no splice option).  About 45 s.

    python bench/rawrouter.py [--duration 5] [--rounds 1] [--bulk-mib 1024] [-v]
"""

from __future__ import annotations

import json
import re
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    HOST,
    IDLE_OK,
    PY,
    REPO,
    Bench,
    BenchError,
    Load,
    Matrix,
    RssSampler,
    Server,
    Target,
    arg_parser,
    fmt_rss,
    main_wrapper,
    need,
    print_table,
    start_haproxy,
    start_retrying,
    start_uwsgi_workers,
    wait_for_idle,
    wait_http,
    wait_log,
    with_baseline,
    write_json,
)

BULK = str(Path(__file__).resolve().parent / "_bulk.py")


def bulk_once(port: int, nbytes: int, roots: list[int], timeout: float = 120.0) -> dict:
    argv = [PY, BULK, "source", str(port), str(nbytes)]
    with RssSampler(roots) as sampler:
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd=REPO)
        except subprocess.TimeoutExpired:
            raise BenchError(f"bulk source through port {port}: no end after {timeout:.0f} s")
    try:
        out = json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise BenchError(
            f"bulk source through port {port} failed (exit {proc.returncode}): "
            f"{(proc.stdout + proc.stderr).strip()[-300:]}"
        ) from None
    if out["acked"] != nbytes:
        raise BenchError(f"bulk through port {port}: sent {nbytes} bytes, sink counted {out['acked']}")
    out["rss"] = sampler.peak
    out["rss_proc"] = sampler.peak_proc
    out["mbps"] = nbytes / out["seconds"] / 1e6
    return out


def start_relay(bench: Bench, name: str, make_argv, ready,
                cwd: Path = REPO) -> tuple[Server | None, int, str | None]:
    try:
        srv, port = start_retrying(bench, name, make_argv, ready, cwd=cwd)
        return srv, port, None
    except BenchError as exc:
        return None, 0, str(exc)


def relays(to: int) -> list[tuple[str, str, object]]:
    node = f"{HOST}:{to}"
    return [
        ("brood rawrouter, 1 process", "brood",
         lambda p: [PY, "-m", "brood", "--master", "--rawrouter", f"{HOST}:{p}",
                    "--rawrouter-to", node, "--rawrouter-processes", "1"]),
        ("brood rawrouter, 2 processes", "brood",
         lambda p: [PY, "-m", "brood", "--master", "--rawrouter", f"{HOST}:{p}",
                    "--rawrouter-to", node, "--rawrouter-processes", "2"]),
        ("uWSGI rawrouter", "anchor",
         lambda p: ["uwsgi", "--plugins", "rawrouter", "--master", "--rawrouter", f"{HOST}:{p}",
                    "--rawrouter-to", node]),
    ]


def bulk_phase(args, bench: Bench) -> list[dict]:
    nbytes = args.bulk_mib << 20
    sink = bench.start("bulk sink", [PY, BULK, "sink"])
    wait_log(sink, "listening on")
    sink_port = int(re.search(r"listening on [\d.]+:(\d+)", sink.log_path.read_text()).group(1))
    targets = [Target("direct", "ref", sink_port, [])]
    probe = lambda srv, port: bulk_once(port, 1 << 20, [], timeout=20)  # noqa: E731
    for name, role, make_argv, cwd in with_baseline(relays(sink_port), args):
        if "2 processes" in name:
            continue  # one connection is served by one process
        srv, port, err = start_relay(bench, name + " (bulk)", make_argv, _ready_bulk(probe), cwd)
        targets.append(Target(name, role, port, [srv.pid] if srv else [], err))
    t = Target("haproxy tcp", "anchor")
    if need("haproxy"):
        t.error = "haproxy is not installed (apt-get install -y haproxy)"
    else:
        try:
            srv, (t.port,) = start_haproxy(bench, "tcp", [sink_port], "haproxy-tcp-bulk")
            _ready_bulk(probe)(srv, t.port)
            t.rss_roots = [srv.pid]
        except BenchError as exc:
            t.error = str(exc)
    targets.insert(1, t)

    runs: dict[str, list[dict]] = {}
    errors: dict[str, str] = {t.name: t.error for t in targets if t.error}
    live = [t for t in targets if not t.error]
    for rnd in range(args.rounds):
        shift = rnd % len(live)
        for t in live[shift:] + live[:shift]:
            if t.name in errors:
                continue
            idle = wait_for_idle(args.wait_idle) if args.wait_idle > 0 else 100.0
            try:
                r = bulk_once(t.port, nbytes, t.rss_roots)
            except BenchError as exc:
                errors[t.name] = str(exc)
                continue
            r["idle_before"] = idle
            runs.setdefault(t.name, []).append(r)
            if args.verbose:
                print(f"  round {rnd + 1} bulk {t.name:<30} {r['mbps']:>8.0f} MB/s", flush=True)

    rows = []
    med = {n: statistics.median(x["mbps"] for x in rs) for n, rs in runs.items()}
    anchors = {t.name: med[t.name] for t in targets if t.role == "anchor" and t.name in med}
    table = [("scenario", "server", "MB/s", "seconds", "errors", "peak RSS", "brood / anchor")]
    for t in targets:
        row = {"scenario": f"bulk {args.bulk_mib} MiB", "server": t.name, "role": t.role}
        if t.name in runs:
            rs = sorted(runs[t.name], key=lambda x: x["mbps"])
            m = rs[(len(rs) - 1) // 2]
            ratios = ({a: m["mbps"] / v for a, v in anchors.items()}
                      if t.role in ("brood", "baseline") else {})
            row.update(mbps=m["mbps"], seconds=m["seconds"], rss=m["rss"], rss_proc=m["rss_proc"],
                       rounds=[x["mbps"] for x in runs[t.name]], ratios=ratios)
            row["busy_runs"] = sum(x["idle_before"] < IDLE_OK for x in runs[t.name])
            table.append((row["scenario"], t.name,
                          f"{m['mbps']:.0f}" + ("*" if row["busy_runs"] else ""), f"{m['seconds']:.2f}",
                          "0", fmt_rss(m["rss"], m["rss_proc"]),
                          ", ".join(f"{v:.2f} vs {k}" for k, v in ratios.items())
                          or f"({t.role})"))
        if t.name in errors:
            row["failed"] = errors[t.name]
            if t.name not in runs:
                table.append((row["scenario"], t.name, "FAILED", "", "", "", "see below"))
        rows.append(row)
    print(f"\n## bulk TCP relay: {args.bulk_mib} MiB on one connection (median of "
          f"{args.rounds}; RSS = peak sum of the relay's process tree, in parentheses of "
          f"its largest child: the router process, not the master)")
    print_table(table)
    if any(r.get("busy_runs") for r in rows):
        print(f"* at least one run of this row started while the machine was busy "
              f"(< {IDLE_OK:.0f}% idle after --wait-idle {args.wait_idle:g} s)")
    for r in rows:
        if "failed" in r:
            print(f"\nFAILED ({r['server']} / bulk):\n  {r['failed']}")
    return rows


def _ready_bulk(probe):
    def ready(srv: Server, port: int) -> None:
        from common import _poll

        def check() -> str | None:
            try:
                probe(srv, port)
            except BenchError as exc:
                return str(exc)
            return None

        _poll(srv, f"{srv.name} relay", check, 20.0)

    return ready


def conn_phase(args, bench: Bench) -> list[dict]:
    _, ports = start_uwsgi_workers(bench, uwsgi=False, http=True)
    targets = [Target("direct to workers", "ref", ports["http"], [])]
    for name, role, make_argv, cwd in with_baseline(relays(ports["http"]), args):
        srv, port, err = start_relay(
            bench, name, make_argv, lambda srv, port: wait_http(srv, port, "/"), cwd
        )
        targets.append(Target(name, role, port, [srv.pid] if srv else [], err))
    t = Target("haproxy tcp", "anchor")
    if need("haproxy"):
        t.error = "haproxy is not installed (apt-get install -y haproxy)"
    else:
        try:
            srv, (t.port,) = start_haproxy(bench, "tcp", [ports["http"]], "haproxy-tcp-conn")
            wait_http(srv, t.port, "/")
            t.rss_roots = [srv.pid]
        except BenchError as exc:
            t.error = str(exc)
    targets.insert(1, t)
    loads = [Load("hello, new conn/request", "/", keepalive=False, size=11)]
    m = Matrix("TCP relays: new connection per request -> 2 uWSGI workers (--http-socket)",
               targets, loads, args)
    m.notes.append("uWSGI's --http-socket closes after every answer without a "
                   "`Connection: close` header, so wrk counts about one 'read' error per "
                   "request on every row here, the direct one too: expected, not a failure")
    m.run()
    return m.print()


def run(args) -> int:
    missing = need("wrk", "uwsgi")
    if missing:
        raise BenchError(f"missing tools: {', '.join(missing)}")
    rows = []
    with Bench(args.keep_logs) as bench:
        rows += bulk_phase(args, bench)
    with Bench(args.keep_logs) as bench:
        rows += conn_phase(args, bench)
    write_json(args.json, rows)
    return 1 if any("failed" in r for r in rows) else 0


if __name__ == "__main__":
    p = arg_parser(__doc__.split("\n")[0])
    p.add_argument("--bulk-mib", type=int, default=1024, help="MiB per bulk run (default 1024)")
    main_wrapper(run, p)
