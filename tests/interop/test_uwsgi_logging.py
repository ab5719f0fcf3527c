"""The same logging ini through real uWSGI 2.0.21 and brood: rotated files get the same
names (PATH.EPOCH, or --log-backupname), end with the same notice, and a reopen leaves
the same two lines, whether asked by size, by the master FIFO (L, l) or a touch file.
Lines are compared by shape: dates, epochs, sizes and pids differ from run to run."""

from __future__ import annotations

import re
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from _broodkit import BroodProcess, wait_until, write_fifo
from _interop import HELLO_APP, UWSGI, ExtProcess, need_uwsgi

pytestmark = pytest.mark.interop

INI = f"""[uwsgi]
plugins = python3
master = true
socket = app.sock
wsgi-file = {HELLO_APP}
logto = main.log
master-fifo = master.fifo
touch-logreopen = reopen.touch
"""


def shape(line: str) -> str:
    """A line with what changes between runs (numbers, the date) made constant."""
    line = re.sub(r"^\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4}", "DATE", line)
    return re.sub(r"\d+", "N", line)


def _start(runner: str, cwd: Path, ini: str = INI) -> Callable[[], None]:
    """Start ``runner`` with ``ini`` in ``cwd``; the function that stops it."""
    (cwd / "app.ini").write_text(ini)
    if runner == "uwsgi":
        proc: ExtProcess | BroodProcess = ExtProcess(
            [UWSGI or "uwsgi", "--ini", "app.ini"], cwd / "out.log", signal.SIGINT,
            cwd=str(cwd))
    else:
        proc = BroodProcess(["app.ini"], cwd / "out.log", cwd=str(cwd))
    wait_until(lambda: any("spawned uWSGI worker 1" in _text(p) for p in cwd.glob("*.log*")),
               what=f"{runner} started")

    def stop() -> None:
        proc.stop()
    return stop


def _text(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def _rotated(cwd: Path, count: int) -> list[Path]:
    return wait_until(lambda: len(found := sorted(cwd.glob("main.log.*"))) >= count and found,
                      what=f"{count} rotated file(s) in {cwd}")


def _exercise(runner: str, cwd: Path) -> dict[str, object]:
    """FIFO L, then a reopen by FIFO l and one by the touch file, each after the log
    file was moved away (logrotate's way)."""
    stop = _start(runner, cwd)
    try:
        write_fifo(cwd / "master.fifo", b"L")
        [rotated] = _rotated(cwd, 1)
        wait_until(lambda: "triggering rotation" in _text(rotated), what="the notice")
        (cwd / "main.log").rename(cwd / "moved.log")
        write_fifo(cwd / "master.fifo", b"l")
        wait_until(lambda: "reopened." in _text(cwd / "main.log"), what="FIFO l")
        (cwd / "main.log").rename(cwd / "moved2.log")
        time.sleep(1.1)  # (mtimes: a touch within the second of the start may not show)
        (cwd / "reopen.touch").touch()
        wait_until(lambda: "reopened." in _text(cwd / "main.log"), timeout=10,
                   what="touch-logreopen")
    finally:
        stop()
    return {
        "rotated name": shape(rotated.name),
        "rotation notice": shape(_text(rotated).splitlines()[-1]),
        "notice names the file": _text(rotated).splitlines()[-1].endswith(
            f"to {rotated.name}..."),
        "reopen, old file": shape(_text(cwd / "moved.log").splitlines()[-1]),
        "reopen, new file": shape(_text(cwd / "moved2.log").splitlines()[0]),
        "touch reopen, new file": shape(_text(cwd / "main.log").splitlines()[0]),
    }


def test_fifo_and_touch_rotate_and_reopen_as_uwsgi_does(tmp_path: Path) -> None:
    need_uwsgi("python3")
    (tmp_path / "uwsgi").mkdir()
    (tmp_path / "brood").mkdir()
    theirs = _exercise("uwsgi", tmp_path / "uwsgi")
    ours = _exercise("brood", tmp_path / "brood")
    assert ours == theirs
    assert theirs["rotated name"] == "main.log.N"
    assert theirs["reopen, new file"] == "[N] main.log reopened."


def test_rotation_by_size_with_a_backup_name_as_uwsgi_does(tmp_path: Path) -> None:
    """--log-maxsize rotates to --log-backupname, the same name each time."""
    need_uwsgi("python3")
    results = []
    for runner in ("uwsgi", "brood"):
        cwd = tmp_path / runner
        cwd.mkdir()
        stop = _start(runner, cwd, INI + "log-maxsize = 600\nlog-backupname = old.log\n")
        try:
            wait_until(lambda c=cwd: "triggering rotation" in _text(c / "old.log"),
                       what=f"{runner}: a rotation by size")
        finally:
            stop()
        notice = _text(cwd / "old.log").splitlines()[-1]
        results.append((shape(notice), notice.endswith("to old.log..."),
                        sorted(p.name for p in cwd.glob("*.log*"))))
    assert results[0] == results[1]
    assert results[0][0] == "DATE - logsize: N, triggering rotation to old.log..."
