"""The open-file limit: router processes raise their soft limit to the hard one (a
router holds two descriptors a session), workers keep theirs, --max-fd sets both for
every process as uWSGI does, and one it cannot set stops the start naming it."""

from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path

from _broodkit import worker_pids

# Runs brood with a low soft limit (the hard one unchanged), as a shell's ulimit -Sn.
LOW_SOFT = [sys.executable, "-c",
            "import os, resource, sys; "
            "resource.setrlimit(resource.RLIMIT_NOFILE, "
            "(256, resource.getrlimit(resource.RLIMIT_NOFILE)[1])); "
            "os.execv(sys.argv[1], sys.argv[1:])"]


def open_files(pid: int) -> tuple[int, int]:
    """(soft, hard) open-file limit of process ``pid``."""
    return resource.prlimit(pid, resource.RLIMIT_NOFILE)


def test_routers_raise_their_soft_limit_and_workers_keep_theirs(start_brood, hello_app):
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    b = start_brood("--http", "127.0.0.1:0", "--wsgi-file", hello_app, "-p", "1",
                    "--stats", "127.0.0.1:0", prefix=LOW_SOFT)
    [router] = b.wait_for_log(r"spawned uWSGI http 1 \(pid: (\d+)")
    b.wait_for_log(r"http 1: open file limit raised from 256 to \d+ \(the hard limit\)")
    assert "detected max file descriptor number: 256" in b.log()
    assert open_files(int(router[1]))[0] == min(hard, 1 << 20) > 256
    assert open_files(b.pid) == (256, hard)
    assert open_files(worker_pids(b.stats())[0]) == (256, hard)


def test_max_fd_sets_every_process(start_brood, hello_app):
    b = start_brood("--http", "127.0.0.1:0", "--wsgi-file", hello_app, "-p", "1",
                    "--stats", "127.0.0.1:0", "--max-fd", "300", prefix=LOW_SOFT)
    [router] = b.wait_for_log(r"spawned uWSGI http 1 \(pid: (\d+)")
    assert "detected max file descriptor number: 300" in b.log()
    for pid in (b.pid, int(router[1]), worker_pids(b.stats())[0]):
        assert open_files(pid) == (300, 300)


def test_a_max_fd_that_cannot_be_set_stops_the_start(tmp_path):
    """Past fs.nr_open, which not even root may pass."""
    nr_open = int(Path("/proc/sys/fs/nr_open").read_text())
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    done = subprocess.run(
        [sys.executable, "-m", "brood", "--http", "127.0.0.1:0", "--http-to", "127.0.0.1:1",
         "--max-fd", str(nr_open + 1)],
        capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL, cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    last = done.stderr.splitlines()[-1]
    assert last.startswith(f"brood: --max-fd {nr_open + 1}: cannot set the open file limit (")
    assert last.endswith(f"; the hard limit is {hard}: only root may raise it, and to "
                         "fs.nr_open at most)")
    assert "Traceback" not in done.stderr
