"""Dropping privileges (--uid/--gid) after binding, and recycling workers over
--reload-on-rss (after the request) or --evil-reload-on-rss (SIGKILL, at once)."""

from __future__ import annotations

import grp
import json
import os
import pwd
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from _broodkit import http_get, read_stats, wait_until, worker_pids

# Answers "uid gid euid egid groups pid" of the worker that served the request.
WHOAMI_APP = """\
import os

def application(environ, start_response):
    groups = ",".join(str(g) for g in sorted(os.getgroups()))
    body = (f"{os.getuid()} {os.getgid()} {os.geteuid()} {os.getegid()} {groups} "
            f"{os.getpid()}").encode()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]
"""

# /grow?MB keeps MB more megabytes alive in the worker (every page written, so they
# count in its RSS); /hold?MB&PATH does the same, then waits until PATH exists before
# answering. Every answer is the worker's pid.
GROW_APP = """\
import os
import time

HOARD = []

def application(environ, start_response):
    path, query = environ["PATH_INFO"], environ.get("QUERY_STRING", "")
    if path in ("/grow", "/hold"):
        megabytes, _, release = query.partition("&")
        HOARD.append(b"\\x01" * (int(megabytes) * 1024 * 1024))
        deadline = time.monotonic() + 30
        while path == "/hold" and not os.path.exists(release) and time.monotonic() < deadline:
            time.sleep(0.01)
    body = str(os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]
"""

NOBODY = 65534
RSS_LIMIT_MB = 64  # a fresh worker is well below this (about 25 MB)
GROWTH_MB = 96  # one request's worth: takes any worker over the limit


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A directory every user may read (pytest's tmp_path is root-only), for the app a
    worker running as nobody must load; removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="brood-privileges-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _ids(pid: int) -> dict[str, list[int]]:
    """Uid, Gid (real, effective, saved, fs) and Groups of ``pid`` from /proc."""
    found = {}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            name, _, value = line.partition(":")
            if name in ("Uid", "Gid", "Groups"):
                found[name] = [int(v) for v in value.split()]
    return found


def _numeric(uid: str, gid: str) -> tuple[int, int] | None:
    """(uid, gid) the options name, or None when a name does not exist here."""
    try:
        return (int(uid) if uid.isdigit() else pwd.getpwnam(uid).pw_uid,
                int(gid) if gid.isdigit() else grp.getgrnam(gid).gr_gid)
    except KeyError:
        return None


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges needs root")
@pytest.mark.parametrize("uid, gid", [("nobody", "nogroup"), (str(NOBODY), str(NOBODY))])
def test_workers_run_as_uid_gid_on_a_socket_bound_before(open_dir, start_brood,
                                                         uid, gid) -> None:
    # (open_dir first: it outlives the instance, which start_brood stops at teardown)
    ids = _numeric(uid, gid)
    if ids is None:
        pytest.skip(f"no user {uid} or group {gid} here")
    user, group = ids
    app = open_dir / "whoami.py"
    app.write_text(WHOAMI_APP)
    app.chmod(0o644)
    run = open_dir / "run"  # only root may create files here: nobody could not bind
    run.mkdir(mode=0o755)
    sock = run / "app.sock"
    b = start_brood("--http-socket", str(sock), "--wsgi-file", str(app), "--processes", "2",
                    "--uid", uid, "--gid", gid, "--stats", "127.0.0.1:0", cwd=str(open_dir))
    # bound by the master while still root, then given to the user, as uWSGI's (which
    # binds after dropping) are: a web server of that user or group may connect
    assert (sock.stat().st_uid, sock.stat().st_gid) == (user, group)
    status, body = http_get(str(sock))
    assert status == 200
    ruid, rgid, euid, egid, groups, _ = body.decode().split()
    assert (ruid, rgid, euid, egid, groups) == (str(user), str(group), str(user),
                                                str(group), str(group))
    stats = b.stats()
    assert (stats["uid"], stats["gid"]) == (user, group)  # the master dropped too
    for pid in [b.pid, *worker_pids(stats)]:
        assert _ids(pid) == {"Uid": [user] * 4, "Gid": [group] * 4, "Groups": [group]}
    assert f"setgid() to {group}" in b.log() and f"setuid() to {user}" in b.log()


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges needs root")
def test_uid_without_gid_drops_roots_groups_for_the_users(open_dir, start_brood) -> None:
    """--uid alone: the gid stays (as in uWSGI), but the supplementary groups become the
    user's own (initgroups), so no worker keeps root's."""
    try:
        entry = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user nobody here")
    app = open_dir / "whoami.py"
    app.write_text(WHOAMI_APP)
    app.chmod(0o644)
    b = start_brood("--http-socket", "127.0.0.1:0", "--wsgi-file", str(app), "--uid", "nobody",
                    "--stats", "127.0.0.1:0", cwd=str(open_dir))
    status, body = http_get(b.address_of("uwsgi socket 0"))
    assert status == 200
    expected = sorted(set(os.getgrouplist("nobody", entry.pw_gid)))
    assert 0 not in expected
    ruid, rgid, euid, egid, groups, pid = body.decode().split()
    assert (ruid, euid) == (str(entry.pw_uid), str(entry.pw_uid))
    assert (rgid, egid) == (str(os.getgid()), str(os.getegid()))
    assert [int(g) for g in groups.split(",")] == expected
    for proc in (b.pid, int(pid)):
        assert _ids(proc)["Groups"] == expected
    assert f"setuid() to {entry.pw_uid}" in b.log() and "setgid()" not in b.log()


def _grow_app(tmp_path: Path) -> Path:
    app = tmp_path / "grow.py"
    app.write_text(GROW_APP)
    return app


def _single_worker(b) -> int:
    """The pid of the one worker once the stats show it started."""
    return wait_until(lambda: (pids := worker_pids(b.stats())) and pids[0], what="a worker")


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges needs root")
def test_router_processes_run_as_their_uid_gid(start_brood) -> None:
    """--http-uid/--http-gid and --rawrouter-uid: the router processes drop to them
    (they ran as root), the master stays root as uWSGI's does."""
    ids = _numeric("nobody", "nogroup")
    if ids is None:
        pytest.skip("no user nobody or group nogroup here")
    user, group = ids
    b = start_brood("--master", "--http", "127.0.0.1:0", "--http-to", "127.0.0.1:9",
                    "--http-uid", "nobody", "--http-gid", "nogroup",
                    "--http-processes", "2", "--http-stats", "127.0.0.1:0",
                    "--rawrouter", "127.0.0.1:0", "--rawrouter-to", "127.0.0.1:9",
                    "--rawrouter-uid", "nobody")
    pids = {kind: int(pid) for kind, pid in
            re.findall(r"spawned uWSGI (http|rawrouter) 1 \(pid: (\d+)", b.log())}
    wait_until(lambda: _ids(pids["http"])["Uid"] == [user] * 4, what="http router as nobody")
    assert _ids(pids["http"]) == {"Uid": [user] * 4, "Gid": [group] * 4, "Groups": [group]}
    wait_until(lambda: _ids(pids["rawrouter"])["Uid"] == [user] * 4, what="rawrouter as nobody")
    assert _ids(b.pid)["Uid"] == [0] * 4
    # Both http processes, as nobody, share their figures (the master made the
    # snapshot directory theirs).
    wait_until(lambda: len(json.loads(read_stats(b.address_of("http stats server")))
                           ["processes"]) == 2, what="both processes in the stats")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
def test_a_router_uid_other_than_the_masters_uid_stops_the_start() -> None:
    """The master drops to --uid before forking: a router's own --http-uid could never
    be switched to (it respawned forever)."""
    if _numeric("nobody", "nogroup") is None:
        pytest.skip("no user nobody here")
    out = subprocess.run([sys.executable, "-m", "brood", "--http", "127.0.0.1:0",
                          "--http-to", "127.0.0.1:9", "--uid", "nobody", "--http-uid", "root"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 1
    assert "--http-uid root: the master runs as --uid nobody by then" in out.stderr


def test_a_router_uid_that_does_not_exist_stops_the_start(tmp_path) -> None:
    out = subprocess.run([sys.executable, "-m", "brood", "--http", "127.0.0.1:0",
                          "--http-to", "127.0.0.1:9", "--http-uid", "no-such-user-here"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 1
    assert "--http-uid no-such-user-here: no such user" in out.stderr
    assert "Traceback" not in out.stderr


def test_reload_on_rss_recycles_the_worker_after_its_request(start_brood, tmp_path) -> None:
    b = start_brood("--http-socket", "127.0.0.1:0", "--wsgi-file", _grow_app(tmp_path),
                    "--reload-on-rss", RSS_LIMIT_MB, "--min-worker-lifetime", "0",
                    "--stats", "127.0.0.1:0")
    address = b.address_of("uwsgi socket 0")
    first = _single_worker(b)
    assert http_get(address) == (200, str(first).encode())
    assert http_get(address, f"/grow?{GROWTH_MB}") == (200, str(first).encode())
    # The worker stops after that answer; the next request waits in the listen queue for
    # its replacement rather than failing.
    status, body = http_get(address)
    assert status == 200 and int(body) != first
    assert worker_pids(b.stats()) == [int(body)]
    assert "over reload-on-rss" in b.log()
    assert http_get(address) == (200, body)  # the new worker stays: it is small again


def test_master_recycles_a_worker_that_grew_mid_request(start_brood, tmp_path) -> None:
    """The master's once-a-cycle check reads the worker's current RSS: a worker that
    grows during a long request gets the graceful signal, finishes that request, then
    is replaced."""
    b = start_brood("--http-socket", "127.0.0.1:0", "--wsgi-file", _grow_app(tmp_path),
                    "--reload-on-rss", RSS_LIMIT_MB, "--min-worker-lifetime", "0",
                    "--stats", "127.0.0.1:0")
    address = b.address_of("uwsgi socket 0")
    host, port = address.rsplit(":", 1)
    first = _single_worker(b)
    assert http_get(address) == (200, str(first).encode())  # the worker reported its RSS
    release = tmp_path / "release"
    with socket.create_connection((host, int(port)), timeout=30) as held:
        held.sendall(f"GET /hold?{GROWTH_MB}&{release} HTTP/1.0\r\n\r\n".encode())
        b.wait_for_log(rf"\(pid: {first}\) rss \d+ MB is above reload-on-rss", timeout=20)
        release.touch()
        answer = b"".join(iter(lambda: held.recv(65536), b""))
    assert answer.startswith(b"HTTP/1.0 200 ") and answer.endswith(str(first).encode())
    status, body = http_get(address)
    assert status == 200 and int(body) != first
    assert "ignored the reload request" not in b.log()


@pytest.mark.parametrize("option, said", [
    ("--evil-reload-on-rss", r"RSS: \d+ \(pid: {pid}\) \*\*\* rss \d+ MB is above "
                             r"evil-reload-on-rss {mb} MB"),
    ("--evil-reload-on-as", r"ADDRESS SPACE: \d+ \(pid: {pid}\) \*\*\* address space \d+ "
                            r"MB is above evil-reload-on-as {mb} MB"),
])
def test_evil_reload_kills_the_worker_mid_request(start_brood, tmp_path, option,
                                                  said) -> None:
    """The master SIGKILLs a worker whose RSS (or address space: a fresh worker's is
    about 40 MB) reaches the limit while it still serves a request (that client gets no
    answer), logs why, and respawns it."""
    b = start_brood("--http-socket", "127.0.0.1:0", "--wsgi-file", _grow_app(tmp_path),
                    option, RSS_LIMIT_MB, "--stats", "127.0.0.1:0")
    address = b.address_of("uwsgi socket 0")
    host, port = address.rsplit(":", 1)
    first = _single_worker(b)
    assert http_get(address) == (200, str(first).encode())  # small: left alone
    never = tmp_path / "never-created"
    with socket.create_connection((host, int(port)), timeout=30) as held:
        held.sendall(f"GET /hold?{GROWTH_MB}&{never} HTTP/1.0\r\n\r\n".encode())
        b.wait_for_log(r"\*\*\* EVIL RELOAD ON WORKER 1 "
                       + said.format(pid=first, mb=RSS_LIMIT_MB), timeout=20)
        try:
            answer = b"".join(iter(lambda: held.recv(65536), b""))
        except ConnectionResetError:
            answer = b""
    assert answer == b""  # killed mid-request
    b.wait_for_log(rf"worker 1 \(pid: {first}\) died \(killed by signal 9\), respawning")
    status, body = http_get(address)
    assert status == 200 and int(body) != first
    assert "over reload-on-rss" not in b.log() and "recycling it" not in b.log()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
def test_a_spool_dir_the_fastrouter_user_cannot_write_stops_the_start(tmp_path) -> None:
    """Checked as the fastrouter's user: every buffered body was a 500 otherwise."""
    if _numeric("nobody", "nogroup") is None:
        pytest.skip("no user nobody here")
    spool = tmp_path / "spool"
    spool.mkdir(mode=0o700)  # root's alone
    out = subprocess.run([sys.executable, "-m", "brood", "--fastrouter", "127.0.0.1:0",
                          "--fastrouter-to", "127.0.0.1:9", "--fastrouter-uid", "nobody",
                          "--fastrouter-post-buffering", "100",
                          "--fastrouter-post-buffering-dir", str(spool)],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 1
    assert "is not writable by the fastrouter's user" in out.stderr
