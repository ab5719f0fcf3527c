"""One ini with an attached daemon through real uWSGI 2.0.21 and brood: the daemon starts
once the sockets are bound, is started again (throttled) when killed, is stopped with
the instance, with the same log lines, and no process is left behind."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
from pathlib import Path

import pytest
from _broodkit import wait_until
from _interop import need_uwsgi

import brood.demo.hello

pytestmark = pytest.mark.interop


def _pids(path: Path) -> list[int]:
    try:
        return [int(x) for x in path.read_text().split()]
    except FileNotFoundError:
        return []


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    with contextlib.suppress(OSError), open(f"/proc/{pid}/stat") as fh:
        return fh.read().rsplit(")", 1)[1].split()[0] == "Z"
    return False


def _listening(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
        return True
    return False


def _scenario(proc, pids: Path, log, name: str) -> list[str]:
    """Kill the daemon once, stop the instance: its daemon lines, pids and numbers out."""
    first = wait_until(lambda: _pids(pids), timeout=5, what="daemon started")[0]
    os.kill(first, signal.SIGKILL)
    second = wait_until(lambda: _pids(pids)[1:], timeout=5, what="respawned")[0]
    wait_until(lambda: "stopping daemon" not in log() and "respawning" in log(), timeout=5)
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=10)
    assert _gone(first) and _gone(second)
    lines = [re.sub(r"\d+", "N", line[line.index("[uwsgi-daemons]"):].replace(f"/{name}/", "/X/"))
             for line in log().splitlines() if "[uwsgi-daemons]" in line]
    return lines


def test_one_ini_same_attached_daemon(start_uwsgi, start_brood, run_dir) -> None:
    need_uwsgi("python3")
    seen = {}
    for name in ("uwsgi", "brood"):
        (run_dir / name).mkdir(exist_ok=True)
        pids, ini = run_dir / name / "daemon.pids", run_dir / name / "daemon.ini"
        ini.write_text(f"[uwsgi]\nmaster = true\n"
                       f"attach-daemon = echo $$ >> {pids}; exec sleep 1000\n")
        if name == "uwsgi":
            ext = start_uwsgi(lambda port, ini=ini: ["--plugin", "python3", "--ini", str(ini),
                                                     "--socket", f"127.0.0.1:{port}"],
                              _listening)
            seen[name] = _scenario(ext.proc, pids, ext.log, name)
        else:
            b = start_brood("--ini", str(ini), "--http-socket", "127.0.0.1:0",
                            "--wsgi-file", brood.demo.hello.__file__)
            seen[name] = _scenario(b.proc, pids, b.log, name)
    cmd = "echo $$ >> "
    expected = ['[uwsgi-daemons] spawning "', '[uwsgi-daemons] throttling "',
                '[uwsgi-daemons] respawning "', "[uwsgi-daemons] stopping daemon (pid: N): "]
    for name, lines in seen.items():
        assert [line[:len(e)] for line, e in zip(lines, expected, strict=True)] == expected, \
            (name, lines)
        assert all(cmd in line for line in lines), (name, lines)
    assert seen["uwsgi"] == seen["brood"]
