"""Shared harness for brood's load scenarios (stdlib only).

What lives here:

* ``Server``: one process we start (in its own session, so its whole tree has one process
  group), with its log in a temp dir, stopped the way that server wants to be stopped
  (SIGINT for uWSGI and brood, ``nginx -s stop``, SIGUSR1 for haproxy), then the group is
  killed if anything of it is left.  Every ``Server`` is registered in a ``Bench`` (an
  ExitStack) so it is stopped on errors, Ctrl-C and SIGTERM too.
* readiness by polling: HTTP 200 (``wait_http``), a uwsgi-protocol answer (``wait_uwsgi``),
  a plain TCP connect (``wait_tcp``), a log line (``wait_log``); never fixed sleeps.
* ``RssSampler``: peak RSS of a process tree (sum over the tree, from /proc) during a run.
* ``wrk``: run wrk ``--latency`` and parse req/s, p50, p99, non-2xx and socket errors;
  also the CPU the server's process tree used per request (``cpu_seconds`` before and
  after: a figure the machine's speed swings move much less than req/s).
* ``Matrix``: the interleaved rounds (each load, every target in turn, the order rotated
  each round), the median of ``--rounds``, and the table with the brood / anchor ratios.

Figures are whole-machine figures: wrk, the servers and this harness share the cores.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable
HOST = "127.0.0.1"
PAGE = os.sysconf("SC_PAGE_SIZE")
CLK_TCK = os.sysconf("SC_CLK_TCK")


class BenchError(Exception):
    """A scenario step failed; the message says which command and why."""


# ---------------------------------------------------------------------------- ports


def free_port() -> int:
    """A loopback port the OS just handed out (ask right before starting the server)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------- /proc


def _stat_fields(pid: int | str) -> list[bytes] | None:
    """The fields of /proc/PID/stat after the command name (state, ppid, pgrp, ...), or
    None when the process is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    # the command name may hold spaces and parens: fields start after the last ')'
    return data[data.rindex(b")") + 2 :].split()


def _processes() -> Iterable[tuple[int, list[bytes]]]:
    """(pid, stat fields) of every process alive now."""
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            rest = _stat_fields(entry)
            if rest is not None:
                yield int(entry), rest


def _children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for pid, rest in _processes():
        kids.setdefault(int(rest[1]), []).append(pid)
    return kids


def process_tree(roots: Iterable[int]) -> list[int]:
    """The roots and all their descendants that are alive now."""
    kids = _children_map()
    out: list[int] = []
    todo = [r for r in roots if os.path.exists(f"/proc/{r}")]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(kids.get(pid, ()))
    return out


def cpu_seconds(pids: Iterable[int]) -> float:
    """User + system CPU seconds used so far by the processes (0 for one that is gone)."""
    total = 0
    for pid in pids:
        rest = _stat_fields(pid)
        if rest is not None:
            total += int(rest[11]) + int(rest[12])  # utime, stime
    return total / CLK_TCK


def rss_each(pids: Iterable[int]) -> list[int]:
    """RSS in bytes of each process, in order (0 for one that is gone)."""
    out = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/statm", "rb") as f:
                out.append(int(f.read().split()[1]) * PAGE)
        except (OSError, IndexError, ValueError):
            out.append(0)
    return out


def rss_bytes(pids: Iterable[int]) -> int:
    return sum(rss_each(pids))


def group_members(pgid: int) -> list[int]:
    return [pid for pid, rest in _processes() if rest[0] != b"Z" and int(rest[2]) == pgid]


class RssSampler:
    """Peak of the summed RSS of the trees under ``roots`` (``peak``) and the peak of the
    largest child process in them (``peak_proc``: a router process or worker, the master
    left out; the root itself when it has no children, e.g. haproxy), sampled in a thread.

    The tree is re-walked once a second (cheap: /proc/*/stat), RSS read every 0.2 s from
    /proc/PID/statm, so the sampler costs well under 1% of one core.
    """

    def __init__(self, roots: list[int], interval: float = 0.2) -> None:
        self.roots = roots
        self.interval = interval
        self.peak = 0
        self.peak_proc = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        pids: list[int] = []
        walked = 0.0
        while True:
            now = time.monotonic()
            if now - walked >= 1.0:
                pids = process_tree(self.roots)
                walked = now
            each = dict(zip(pids, rss_each(pids), strict=False))
            if each:
                self.peak = max(self.peak, sum(each.values()))
                kids = [v for pid, v in each.items() if pid not in self.roots]
                self.peak_proc = max(self.peak_proc, max(kids or each.values()))
            if self._stop.wait(self.interval):
                return

    def __enter__(self) -> RssSampler:
        if self.roots:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()


# ---------------------------------------------------------------------------- servers


def _sig(name: str) -> signal.Signals:
    return getattr(signal, name)


class Server:
    """A server process in its own process group, logging to ``logdir/NAME.log``.

    ``stop`` is "SIGINT" (uWSGI, brood), "SIGTERM", "SIGUSR1" (haproxy soft stop) or a
    list of argv to run (``nginx -s stop``).  After it, the leader gets ``grace`` seconds,
    then whatever is left of the group is SIGKILLed.
    """

    def __init__(
        self,
        name: str,
        argv: list[str],
        logdir: Path,
        *,
        stop: str | list[str] = "SIGINT",
        grace: float = 10.0,
        env: dict[str, str] | None = None,
        cwd: Path = REPO,
    ) -> None:
        self.name = name
        self.argv = argv
        self.stop_how = stop
        self.grace = grace
        self.log_path = logdir / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}.log"
        self.env = env
        self.cwd = cwd
        self.proc: subprocess.Popen | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def command(self) -> str:
        return shlex.join(self.argv)

    def start(self) -> Server:
        env = dict(os.environ)
        env.setdefault("PYTHONUNBUFFERED", "1")
        if self.env:
            env.update(self.env)
        # the child keeps its own copy of the log fd; ours is closed once it started
        with open(self.log_path, "ab") as log:
            try:
                self.proc = subprocess.Popen(
                    self.argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=self.cwd,
                    env=env,
                    start_new_session=True,
                )
            except OSError as exc:
                raise BenchError(f"{self.name}: cannot start `{self.command}`: {exc}") from None
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join("    | " + line for line in text[-lines:]) or "    | (empty log)"

    def fail(self, why: str) -> BenchError:
        state = "" if self.alive() else f" (exited with status {self.proc.returncode})"
        return BenchError(
            f"{self.name}: {why}{state}\n    command: {self.command}\n"
            f"    log {self.log_path}:\n{self.log_tail()}"
        )

    def stop(self) -> None:
        if self.proc is None:
            return
        pgid = self.proc.pid
        if self.proc.poll() is None:
            try:
                if isinstance(self.stop_how, list):
                    subprocess.run(
                        self.stop_how,
                        cwd=self.cwd,
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                        timeout=self.grace,
                    )
                else:
                    self.proc.send_signal(_sig(self.stop_how))
                self.proc.wait(timeout=self.grace)
            except (subprocess.TimeoutExpired, OSError):
                pass
        left = group_members(pgid)
        if left:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)
            sys.stderr.write(
                f"bench: {self.name}: {len(left)} process(es) left after stop, killed\n"
            )
        if self.proc.poll() is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=5)


class Bench(contextlib.ExitStack):
    """Temp dir for configs and logs + every server started, all stopped on exit."""

    def __init__(self, keep_logs: bool = False) -> None:
        super().__init__()
        # (mkdtemp: a TemporaryDirectory removes itself at exit, --keep-logs or not)
        self.dir = Path(tempfile.mkdtemp(prefix="brood-bench-"))
        self.keep = keep_logs
        self.servers: list[Server] = []

    def __enter__(self) -> Bench:
        super().__enter__()
        self.callback(self._cleanup_dir)
        return self

    def _cleanup_dir(self) -> None:
        if self.keep:
            sys.stderr.write(f"bench: logs kept in {self.dir}\n")
        else:
            shutil.rmtree(self.dir, ignore_errors=True)

    def start(self, name: str, argv: list[str], **kw: object) -> Server:
        srv = Server(name, argv, self.dir, **kw)  # type: ignore[arg-type]
        self.servers.append(srv)
        self.callback(srv.stop)
        return srv.start()

    def write(self, name: str, text: str) -> Path:
        path = self.dir / name
        path.write_text(text)
        return path


def start_retrying(
    bench: Bench,
    name: str,
    make_argv: Callable[[int], list[str]],
    ready: Callable[[Server, int], None],
    tries: int = 3,
    **kw: object,
) -> tuple[Server, int]:
    """Start with a fresh free port; if the port was taken meanwhile, retry with another."""
    last: BenchError | None = None
    for _ in range(tries):
        port = free_port()
        srv = bench.start(name, make_argv(port), **kw)
        try:
            ready(srv, port)
            return srv, port
        except BenchError as exc:
            last = exc
            if "in use" not in srv.log_tail(40).lower():
                raise
            srv.stop()
    assert last is not None
    raise last


# ---------------------------------------------------------------------------- readiness


def _poll(srv: Server | None, what: str, check: Callable[[], str | None], timeout: float) -> None:
    """Call ``check`` until it returns None (ready); give up on exit or after ``timeout``."""
    deadline = time.monotonic() + timeout
    why = "never answered"
    while True:
        if srv is not None and not srv.alive():
            raise srv.fail(f"exited before {what} was ready (last probe: {why})")
        why = check() or ""
        if not why:
            return
        if time.monotonic() > deadline:
            if srv is not None:
                raise srv.fail(f"{what} not ready after {timeout:.0f} s (last probe: {why})")
            raise BenchError(f"{what} not ready after {timeout:.0f} s (last probe: {why})")
        time.sleep(0.05)  # poll interval


def http_get(
    port: int, path: str, timeout: float = 2.0, keepalive: bool = False
) -> tuple[int, bytes]:
    status, body, _ = http_get_framed(port, path, timeout, keepalive)
    return status, body


def http_get_framed(
    port: int, path: str, timeout: float = 2.0, keepalive: bool = False
) -> tuple[int, bytes, str]:
    """(status, body, framing): framing is "length", "chunked" or "close" (EOF-delimited)."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request("GET", path, headers={} if keepalive else {"Connection": "close"})
        resp = conn.getresponse()
        framing = "chunked" if resp.chunked else "length" if resp.length is not None else "close"
        if resp.getheader("Connection", "").lower() == "close" and keepalive:
            framing += ", Connection: close"
        return resp.status, resp.read(), framing
    finally:
        conn.close()


def wait_http(
    srv: Server | None, port: int, path: str = "/", timeout: float = 20.0, what: str = ""
) -> None:
    """Poll until GET ``path`` answers 200."""

    def check() -> str | None:
        try:
            status, _ = http_get(port, path, timeout=1.0)
        except (OSError, http.client.HTTPException) as exc:
            return f"{type(exc).__name__}: {exc}"
        return None if status == 200 else f"HTTP {status}"

    _poll(srv, what or f"http://{HOST}:{port}{path}", check, timeout)


def uwsgi_packet(path: str, host: str = "bench") -> bytes:
    env = {
        "REQUEST_METHOD": "GET",
        "REQUEST_URI": path,
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "SERVER_NAME": host,
        "SERVER_PORT": "80",
        "HTTP_HOST": host,
        "REMOTE_ADDR": HOST,
    }
    body = b"".join(
        len(k).to_bytes(2, "little") + k.encode() + len(v).to_bytes(2, "little") + v.encode()
        for k, v in env.items()
    )
    return bytes([0]) + len(body).to_bytes(2, "little") + bytes([0]) + body


def uwsgi_get(port: int, path: str, timeout: float = 2.0) -> bytes:
    with socket.create_connection((HOST, port), timeout=timeout) as s:
        s.sendall(uwsgi_packet(path))
        chunks = []
        while True:
            data = s.recv(65536)
            if not data:
                break
            chunks.append(data)
    return b"".join(chunks)


def wait_uwsgi(srv: Server | None, port: int, path: str = "/", timeout: float = 20.0) -> None:
    """Poll until a uwsgi-protocol request gets an HTTP 200 answer."""

    def check() -> str | None:
        try:
            data = uwsgi_get(port, path, timeout=1.0)
        except OSError as exc:
            return f"{type(exc).__name__}: {exc}"
        line = data.split(b"\r\n", 1)[0]
        return None if b" 200 " in line + b" " else f"answer {line[:60]!r}"

    _poll(srv, f"uwsgi://{HOST}:{port}{path}", check, timeout)


def wait_tcp(srv: Server | None, port: int, timeout: float = 20.0) -> None:
    def check() -> str | None:
        try:
            socket.create_connection((HOST, port), timeout=1.0).close()
        except OSError as exc:
            return f"{type(exc).__name__}: {exc}"
        return None

    _poll(srv, f"tcp://{HOST}:{port}", check, timeout)


def wait_log(srv: Server, needle: str, timeout: float = 20.0) -> None:
    def check() -> str | None:
        try:
            text = srv.log_path.read_text(errors="replace")
        except OSError:
            text = ""
        return None if needle in text else f"no {needle!r} in the log yet"

    _poll(srv, f"{srv.name} ({needle!r})", check, timeout)


def check_body(
    port: int, path: str, size: int | None, name: str, keepalive: bool = False
) -> str:
    """One GET through the whole path: status 200 and (if given) the exact body size.

    Returns a note when a keep-alive load cannot keep the connection (EOF-delimited answer
    or ``Connection: close``): wrk then reconnects per request and counts a read error.
    """
    try:
        status, body, framing = http_get_framed(port, path, timeout=5.0, keepalive=keepalive)
    except (OSError, http.client.HTTPException) as exc:
        raise BenchError(f"{name}: GET {path} failed: {type(exc).__name__}: {exc}") from None
    if status != 200:
        raise BenchError(f"{name}: GET {path} answered HTTP {status}")
    if size is not None and len(body) != size:
        raise BenchError(f"{name}: GET {path} returned {len(body)} bytes, expected {size}")
    if framing.startswith("close"):
        return (
            f"{name}: GET {path} is answered without Content-Length (EOF-delimited): wrk "
            f"counts each answer as a request AND a 'read' error"
            + (", and keep-alive is impossible (a new connection per request)" if keepalive else "")
        )
    if keepalive and "Connection: close" in framing:
        return f"{name}: GET {path} with keep-alive is answered Connection: close"
    return ""


# ---------------------------------------------------------------------------- wrk

_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0, "h": 3600000.0}


def _to_ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text.strip())
    if not m:
        raise ValueError(text)
    return float(m.group(1)) * _UNIT_MS[m.group(2)]


@dataclass
class WrkResult:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    non2xx: int
    socket_errors: int
    kinds: dict[str, int] = field(default_factory=dict)  # non-2xx, connect, read, ...
    rss: int = 0  # peak of the process tree's summed RSS
    rss_proc: int = 0  # peak RSS of its largest child process (a router)
    cpu_us: float = 0.0  # CPU (user + system) of the process tree per request, in µs
    idle_before: float = 100.0  # machine idle % just before the run (with --wait-idle)

    @property
    def errors(self) -> int:
        return self.non2xx + self.socket_errors


def parse_wrk(out: str) -> WrkResult:
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", out, re.M)
    reqs = re.search(r"^\s+(\d+) requests in", out, re.M)
    if not rps or not reqs:
        raise ValueError("no Requests/sec line")
    lat = dict(re.findall(r"^\s+(50|99)%\s+(\S+)", out, re.M))
    sock = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out
    )
    non2 = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    kinds = (dict(zip(("connect", "read", "write", "timeout"), map(int, sock.groups()), strict=True))
             if sock else {})
    if non2:
        kinds["non-2xx"] = int(non2.group(1))
    return WrkResult(
        kinds={k: v for k, v in kinds.items() if v},
        rps=float(rps.group(1)),
        p50_ms=_to_ms(lat["50"]) if "50" in lat else float("nan"),
        p99_ms=_to_ms(lat["99"]) if "99" in lat else float("nan"),
        requests=int(reqs.group(1)),
        non2xx=int(non2.group(1)) if non2 else 0,
        socket_errors=sum(int(x) for x in sock.groups()) if sock else 0,
    )


def wrk(
    url: str,
    duration: float,
    *,
    keepalive: bool = True,
    connections: int = 64,
    threads: int = 2,
    rss_roots: list[int] | None = None,
    post: int = 0,
) -> WrkResult:
    argv = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(duration))}s", "--latency"]
    if not keepalive:
        argv += ["-H", "Connection: close"]
    if post:
        argv += ["-s", str(_post_script(post))]
    argv.append(url)
    tree = process_tree(rss_roots or [])
    cpu_before = cpu_seconds(tree)
    with RssSampler(rss_roots or []) as sampler:
        try:
            proc = subprocess.run(
                argv, capture_output=True, text=True, timeout=duration + 30, cwd=REPO
            )
        except subprocess.TimeoutExpired:
            raise BenchError(f"`{shlex.join(argv)}` did not finish in {duration + 30:.0f} s")
    cpu_used = cpu_seconds(tree) - cpu_before
    try:
        res = parse_wrk(proc.stdout)
    except (ValueError, KeyError):
        raise BenchError(
            f"`{shlex.join(argv)}` exited {proc.returncode}: {(proc.stdout + proc.stderr).strip()[-400:]}"
        ) from None
    if res.requests == 0:
        raise BenchError(f"`{shlex.join(argv)}`: no request completed")
    res.rss = sampler.peak
    res.rss_proc = sampler.peak_proc
    res.cpu_us = cpu_used / res.requests * 1e6
    return res


def _post_script(size: int) -> Path:
    """A wrk script that POSTs ``size`` bytes per request (written once per size)."""
    path = Path(tempfile.gettempdir()) / f"brood-bench-post-{size}.lua"
    if not path.exists():
        path.write_text(f'wrk.method = "POST"\nwrk.body = string.rep("x", {size})\n'
                        'wrk.headers["Content-Type"] = "application/octet-stream"\n')
    return path


# ---------------------------------------------------------------------------- matrix


@dataclass
class Target:
    """One thing under load: a URL base, the process roots to sum RSS over, and its role.

    ``role`` is "brood", "anchor" (what brood is compared with), "baseline" (brood run
    from another tree, ``--baseline``: before/after in one interleaved run) or "ref"
    (context only, e.g. the backend hit directly).  ``error`` set means it could not be started: its rows
    print the reason instead of figures.
    """

    name: str
    role: str
    port: int = 0
    rss_roots: list[int] = field(default_factory=list)
    error: str | None = None
    scheme_url: Callable[[str], str] | None = None

    def url(self, path: str) -> str:
        if self.scheme_url:
            return self.scheme_url(path)
        return f"http://{HOST}:{self.port}{path}"


@dataclass
class Load:
    label: str
    path: str
    keepalive: bool
    size: int | None = None  # expected body size, checked once before the runs
    connections: int = 64
    post: int = 0  # POST a body of this many bytes instead of a GET


def median_run(runs: list[WrkResult]) -> WrkResult:
    ordered = sorted(runs, key=lambda r: r.rps)
    return ordered[(len(ordered) - 1) // 2]


def _sum_kinds(runs: list[WrkResult]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in runs:
        for k, v in r.kinds.items():
            out[k] = out.get(k, 0) + v
    return out


def fmt_errors(total: int, kinds: dict[str, int]) -> str:
    if not total:
        return "0"
    return f"{total} (" + ", ".join(f"{k} {v}" for k, v in kinds.items()) + ")"


def fmt_rss(n: int, proc: int = 0) -> str:
    """Tree RSS, and the largest child process's (a router) when the tree has several."""
    if not n:
        return "-"
    text = f"{n / 1048576:.0f} MiB"
    if proc and proc < n:
        text += f" ({proc / 1048576:.0f}/child)"
    return text


def fmt_ms(x: float) -> str:
    if x != x:
        return "-"
    return f"{x * 1000:.0f}us" if x < 1 else f"{x:.2f}ms" if x < 100 else f"{x:.0f}ms"


def print_table(table: list[tuple[str, ...]]) -> None:
    """A Markdown table; the first row is the head."""
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for i, row in enumerate(table):
        print("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |")
        if i == 0:
            print("|" + "|".join("-" * (w + 2) for w in widths) + "|")


class Matrix:
    """Runs every load against every target, interleaved, and prints one table per load."""

    def __init__(self, title: str, targets: list[Target], loads: list[Load], args) -> None:
        self.title = title
        self.targets = targets
        self.loads = loads
        self.args = args
        self.results: dict[tuple[str, str], list[WrkResult]] = {}
        self.errors: dict[tuple[str, str], str] = {}
        self.notes: list[str] = []

    def check_targets(self) -> None:
        for t in self.targets:
            if t.error or t.scheme_url:
                continue
            for load in self.loads:
                if (t.name, load.label) in self.errors:
                    continue
                try:
                    note = check_body(t.port, load.path, load.size, t.name, load.keepalive)
                    if note:
                        self.notes.append(note)
                except BenchError as exc:
                    self.errors[(t.name, load.label)] = str(exc)

    def run(self) -> None:
        self.check_targets()
        a = self.args
        live = [t for t in self.targets if not t.error]
        if a.warmup > 0:
            for t in live:
                with contextlib.suppress(BenchError):
                    wrk(t.url(self.loads[0].path), a.warmup, keepalive=True)
        for rnd in range(a.rounds):
            for load in self.loads:
                shift = rnd % max(1, len(live))
                order = live[shift:] + live[:shift]
                for t in order:
                    key = (t.name, load.label)
                    if key in self.errors:
                        continue
                    idle = wait_for_idle(a.wait_idle) if a.wait_idle > 0 else 100.0
                    try:
                        res = wrk(
                            t.url(load.path),
                            a.duration,
                            keepalive=load.keepalive,
                            connections=load.connections,
                            rss_roots=t.rss_roots,
                            post=load.post,
                        )
                    except BenchError as exc:
                        self.errors[key] = str(exc)
                        continue
                    res.idle_before = idle
                    self.results.setdefault(key, []).append(res)
                    if a.verbose:
                        print(
                            f"  round {rnd + 1} {load.label:<28} {t.name:<28} "
                            f"{res.rps:>9.0f} req/s  p99 {fmt_ms(res.p99_ms)}  err {res.errors}",
                            flush=True,
                        )

    def rows(self) -> list[dict]:
        out = []
        for load in self.loads:
            anchors = {}
            for t in self.targets:
                runs = self.results.get((t.name, load.label))
                if t.role == "anchor" and runs:
                    anchors[t.name] = median_run(runs).rps
            for t in self.targets:
                key = (t.name, load.label)
                row = {"scenario": load.label, "server": t.name, "role": t.role}
                runs = self.results.get(key)
                err = t.error or self.errors.get(key)
                if runs:
                    med = median_run(runs)
                    row.update(
                        rps=med.rps,
                        p50_ms=med.p50_ms,
                        p99_ms=med.p99_ms,
                        errors=sum(r.errors for r in runs),
                        error_kinds=_sum_kinds(runs),
                        rss=med.rss,
                        rss_proc=med.rss_proc,
                        cpu_us=med.cpu_us,
                        rounds=[r.rps for r in runs],
                        busy_runs=sum(r.idle_before < IDLE_OK for r in runs),
                    )
                    if t.role in ("brood", "baseline"):
                        row["ratios"] = {n: med.rps / v for n, v in anchors.items() if v}
                if err:
                    row["failed"] = err
                out.append(row)
        return out

    def print(self) -> list[dict]:
        rows = self.rows()
        a = self.args
        print(
            f"\n## {self.title}  (wrk -t2 -c{self.loads[0].connections}, {a.duration:g} s runs, "
            f"median of {a.rounds} round(s); errors summed over rounds; RSS = peak sum of the "
            f"process tree, in parentheses of its largest child: a router process, not the master; "
            f"CPU/req = user + system CPU of the server's process tree per request, the load "
            f"generator and the backend not included)"
        )
        head = ("scenario", "server", "req/s", "p50", "p99", "errors", "peak RSS", "CPU/req",
                "brood / anchor")
        table = [head]
        for r in rows:
            if "rps" in r:
                ratio = ", ".join(f"{v:.2f} vs {k}" for k, v in r.get("ratios", {}).items())
                table.append(
                    (
                        r["scenario"],
                        r["server"],
                        f"{r['rps']:.0f}" + ("*" if r["busy_runs"] else ""),
                        fmt_ms(r["p50_ms"]),
                        fmt_ms(r["p99_ms"]),
                        fmt_errors(r["errors"], r["error_kinds"]),
                        fmt_rss(r["rss"], r["rss_proc"]),
                        f"{r['cpu_us']:.0f} µs" if r["cpu_us"] else "-",
                        ratio or ("(anchor)" if r["role"] == "anchor" else "(ref)"
                                  if r["role"] == "ref" else "-"),
                    )
                )
            else:
                table.append((r["scenario"], r["server"], "FAILED", "", "", "", "", "",
                              "see below"))
        print_table(table)
        failures = {}
        for r in rows:
            if "failed" in r:
                failures.setdefault(r["failed"], []).append(f"{r['server']} / {r['scenario']}")
        if any(r.get("busy_runs") for r in rows):
            print("* at least one run of this row started while the machine was busy "
                  f"(< {IDLE_OK:.0f}% idle after --wait-idle {a.wait_idle:g} s)")
        for note in self.notes:
            print(f"NOTE: {note}")
        for why, where in failures.items():
            print(f"\nFAILED ({'; '.join(where)}):\n  {why}")
        sys.stdout.flush()
        return rows


# ---------------------------------------------------------------------------- CLI


def arg_parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run (default 5)")
    p.add_argument("--rounds", type=int, default=1, help="interleaved rounds, median reported")
    p.add_argument("--warmup", type=float, default=1.0, help="seconds of warm-up per target (0: none)")
    p.add_argument("--wait-idle", type=float, default=0.0, metavar="S",
                   help=f"before each run wait up to S seconds for the machine to be >= "
                        f"{IDLE_OK:.0f}%% idle (shared machines; default 0: don't wait)")
    p.add_argument("--json", metavar="FILE", help="also write the rows as JSON to FILE")
    p.add_argument("--keep-logs", action="store_true", help="keep the temp dir with server logs")
    p.add_argument("-v", "--verbose", action="store_true", help="print every run as it ends")
    p.add_argument("--baseline", metavar="DIR", type=Path,
                   help="also run brood from the source tree DIR (e.g. `git archive HEAD | "
                        "tar -x -C DIR`), rows marked [baseline]: before/after in one "
                        "interleaved run")
    return p


def with_baseline(routers: list[tuple], args: argparse.Namespace) -> list[tuple]:
    """``(name, role, make_argv, cwd)`` rows: every brood row once more from --baseline.

    ``python -m brood`` imports brood from its working directory first, so running the
    same command in DIR runs DIR's brood (an editable install only fills in after it)."""
    rows = [(name, role, argv, REPO) for name, role, argv in routers]
    base = getattr(args, "baseline", None)
    if base is None:
        return rows
    if not (base / "brood" / "__init__.py").is_file():
        raise BenchError(f"--baseline {base}: no brood/__init__.py there")
    return rows + [(f"{name} [baseline]", "baseline", argv, base.resolve())
                   for name, role, argv in routers if role == "brood"]


def install_sigterm() -> None:
    """SIGTERM/SIGHUP to the harness unwind like Ctrl-C, so every server is stopped."""

    def handler(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGHUP, handler)
    # started as a background job, we may have inherited SIGINT ignored; catching it again
    # gives us Ctrl-C and lets every child start with SIGINT at its default (exec resets
    # caught signals, but keeps ignored ones), so SIGINT stops the servers as intended
    signal.signal(signal.SIGINT, signal.default_int_handler)


def need(*tools: str) -> list[str]:
    """Names of the missing executables among ``tools``."""
    from shutil import which

    return [t for t in tools if which(t) is None]


def write_json(path: str | None, data: object) -> None:
    if path:
        Path(path).write_text(json.dumps(data, indent=2, default=str) + "\n")


def _cpu_times() -> tuple[int, int]:
    with open("/proc/stat") as f:
        vals = [int(x) for x in f.readline().split()[1:]]
    return sum(vals), vals[3] + vals[4]  # total, idle + iowait


def cpu_idle(window: float = 0.5) -> float:
    """Idle share of all cores (percent) over ``window`` seconds."""
    t0, i0 = _cpu_times()
    time.sleep(window)  # a measurement window, not a readiness wait
    t1, i1 = _cpu_times()
    return 100.0 * (i1 - i0) / max(1, t1 - t0)


IDLE_OK = 80.0


def wait_for_idle(max_wait: float) -> float:
    """Poll (0.5 s windows) until the machine is >= IDLE_OK % idle or ``max_wait`` passed.

    Returns the last idle share.  Other people's load on a shared machine skews req/s far
    more than anything measured here, so runs can wait for a quiet moment (--wait-idle).
    """
    deadline = time.monotonic() + max_wait
    while True:
        idle = cpu_idle()
        if idle >= IDLE_OK or time.monotonic() >= deadline:
            return idle


def machine_note(sample: float = 1.0) -> str:
    """Date, cores, and how idle the machine is before we start (others' load skews us)."""
    idle = cpu_idle(sample)
    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    note = (
        f"bench: {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} cores, "
        f"idle {idle:.0f}% before start, loadavg {load}"
    )
    if idle < 85:
        note += "\nbench: WARNING: the machine is busy with something else; figures will be low and noisy"
    return note


def main_wrapper(run: Callable[[argparse.Namespace], int], parser: argparse.ArgumentParser) -> None:
    args = parser.parse_args()
    install_sigterm()
    t0 = time.monotonic()
    try:
        print(machine_note(), flush=True)
        code = run(args)
    except KeyboardInterrupt:
        sys.stderr.write("bench: interrupted, servers stopped\n")
        code = 130
    except BenchError as exc:
        sys.stderr.write(f"bench: {exc}\n")
        code = 1
    sys.stderr.write(f"bench: {Path(sys.argv[0]).name} took {time.monotonic() - t0:.0f} s\n")
    sys.exit(code)


# ---------------------------------------------------------------------------- shared setups


# The backend app of the router scenarios: 11 bytes at every path, 64 KiB at /big, both
# with Content-Length. (brood/demo/hello.py answers "/" without one, so every router has
# to close after it and a "keep-alive" load would measure a new connection per request.)
BENCH_APP = """\
HELLO = b"Hello World"
BIG = b"x" * 65536


def application(environ, start_response):
    body = BIG if environ.get("PATH_INFO") == "/big" else HELLO
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
"""


def start_uwsgi_workers(
    bench: Bench, *, uwsgi: bool = True, http: bool = False, processes: int = 2
) -> tuple[Server, dict[str, int]]:
    """Real uWSGI prefork workers serving ``BENCH_APP``: {'uwsgi': port, 'http': port}.

    This is the common backend of the router scenarios: every router under test is put in
    front of these same processes.
    """
    ports: dict[str, int] = {}
    app = bench.write("bench_app.py", BENCH_APP)

    def argv(port: int) -> list[str]:
        ports.clear()
        cmd = ["uwsgi", "--plugins", "python3", "--wsgi-file", str(app),
               "--master", "--processes", str(processes), "--disable-logging"]
        if uwsgi:
            ports["uwsgi"] = port
            cmd += ["--socket", f"{HOST}:{port}"]
        if http:
            ports["http"] = free_port() if uwsgi else port
            cmd += ["--http-socket", f"{HOST}:{ports['http']}"]
        return cmd

    def ready(srv: Server, port: int) -> None:
        if "uwsgi" in ports:
            wait_uwsgi(srv, ports["uwsgi"])
        if "http" in ports:
            wait_http(srv, ports["http"])

    srv, _ = start_retrying(bench, "uWSGI backend workers", argv, ready)
    return srv, dict(ports)


def haproxy_config(mode: str, routes: list[tuple[int, int]], dirpath: Path) -> str:
    """haproxy config: one frontend per (listen port, backend port), in ``mode`` (http/tcp)."""
    parts = [
        "global",
        "    maxconn 8000",
        "defaults",
        f"    mode {mode}",
        "    timeout connect 5s",
        "    timeout client 60s",
        "    timeout server 60s",
    ]
    for i, (listen, backend) in enumerate(routes):
        parts += [
            f"frontend fe{i}",
            f"    bind {HOST}:{listen}",
            f"    default_backend be{i}",
            f"backend be{i}",
            f"    server s{i} {HOST}:{backend}",
        ]
    return "\n".join(parts) + "\n"


def start_haproxy(bench: Bench, mode: str, backends: list[int], name: str) -> tuple[Server, list[int]]:
    """haproxy in the foreground (-db) with one frontend per backend port; SIGUSR1 stops it."""
    for _ in range(3):
        listens = [free_port() for _ in backends]
        conf = bench.write(f"{name}.cfg", haproxy_config(mode, list(zip(listens, backends, strict=True)), bench.dir))
        srv = bench.start(name, ["haproxy", "-f", str(conf), "-db"], stop="SIGUSR1")
        try:
            for p in listens:
                wait_tcp(srv, p)
            return srv, listens
        except BenchError:
            if "in use" not in srv.log_tail(40).lower() and "cannot bind" not in srv.log_tail(40).lower():
                raise
            srv.stop()
    raise BenchError(f"{name}: could not bind after 3 tries")
