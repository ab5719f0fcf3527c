"""uWSGI's log encoders through real uWSGI 2.0.21 and brood, one ini: format (strftime,
unix, msg), json bound to a named logger (escaping a quote, a backslash, a tab and
UTF-8), nl, gzip and compress bound to loggers of their own, and --log-req-encoder on a
--req-logger. Each file holds the same records once times and pids are masked, and the
gzip and zlib bytes uWSGI wrote are the ones brood makes of the same line."""

from __future__ import annotations

import json
import re
import signal
import time
import zlib
from pathlib import Path

import pytest
from _broodkit import BroodProcess, uwsgi_request, wait_until
from _interop import UWSGI, ExtProcess, need_uwsgi

from brood.logs.encoders import gzip_member

pytestmark = pytest.mark.interop

APP = r"""
import os

SAY = {
    "/plain": b"APP plain\n",
    "/quote": 'APP q"uote \\back\ttab caf\u00e9\n'.encode(),
    "/main": b"MAIN hello\n",
    "/gz": b"GZ zipped line\n",
    "/cz": b"CZ compressed line\n",
}

def application(environ, start_response):
    os.write(2, SAY.get(environ["PATH_INFO"], b"OTHER\n"))  # (one write: one message)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]
"""

INI = """[uwsgi]
plugins = python3,logfile
master = true
socket = app.sock
wsgi-file = say.py
logto = main.log
logger = js file:js.log
logger = gz file:gz.log
logger = cz file:cz.log
log-route = js ^APP
log-route = gz ^GZ
log-route = cz ^CZ
log-encoder = format [${strftime:%%Y}] ${msg} <${unix}>
log-encoder = json:js {"m":"${msg}","ms":${millis},"u":"${unix}"}
log-encoder = nl
log-encoder = gzip:gz
log-encoder = compress:cz
req-logger = file:req.log
log-req-encoder = json {"line":"${msg}","micros":${micros}}
log-req-encoder = nl
"""
PATHS = ["/plain", "/quote", "/main", "/gz", "/cz"]


def mask(text: str) -> str:
    """What changes between runs (times, pids, sizes) made constant."""
    text = re.sub(r"\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4}", "DATE", text)
    return re.sub(r"\d+", "N", text)


def members(data: bytes, wbits: int) -> list[tuple[bytes, bytes]]:
    """(the stream's bytes, what it holds) for each gzip/zlib stream written one after
    the other."""
    found = []
    while data:
        inflate = zlib.decompressobj(wbits)
        plain = inflate.decompress(data)
        assert inflate.eof, data
        size = len(data) - len(inflate.unused_data)
        found.append((data[:size], plain))
        data = inflate.unused_data
    return found


def _run(runner: str, cwd: Path) -> dict[str, object]:
    (cwd / "say.py").write_text(APP)
    (cwd / "app.ini").write_text(INI)
    if runner == "uwsgi":
        proc: ExtProcess | BroodProcess = ExtProcess(
            [UWSGI or "uwsgi", "--ini", "app.ini"], cwd / "out.log", signal.SIGINT, cwd=str(cwd)
        )
    else:
        proc = BroodProcess(["app.ini"], cwd / "out.log", cwd=str(cwd))
    try:
        wait_until(
            lambda: "spawned uWSGI worker 1" in _text(cwd / "main.log") or proc.proc.poll(),
            what=f"{runner} started",
        )
        assert proc.proc.poll() is None, _text(cwd / "out.log")
        for path in PATHS:
            assert uwsgi_request(str(cwd / "app.sock"), path)[0] == 200
        wait_until(
            lambda: (
                _text(cwd / "req.log").count("\n") >= len(PATHS)
                and _text(cwd / "js.log").count("\n") >= 2
                and "MAIN hello" in _text(cwd / "main.log")
                and (cwd / "gz.log").exists()
                and (cwd / "cz.log").exists()
            ),
            what=f"{runner}: every line",
        )
    finally:
        proc.stop()
    js = [json.loads(line) for line in (cwd / "js.log").read_bytes().splitlines()]
    gz = members((cwd / "gz.log").read_bytes(), 31)
    cz = members((cwd / "cz.log").read_bytes(), 15)
    req = [json.loads(line) for line in (cwd / "req.log").read_bytes().splitlines()]
    main = [line for line in _text(cwd / "main.log").splitlines() if "MAIN" in line]
    return {
        "js": [mask(r["m"]) for r in js],
        "js times": [abs(r["ms"] // 1000 - int(r["u"])) <= 1 for r in js],
        "js bytes": re.sub(rb"\d+", b"N", (cwd / "js.log").read_bytes()),
        "gz": [mask(plain.decode()) for _, plain in gz],
        "gz bytes are gzip_member's": [raw == gzip_member(plain) for raw, plain in gz],
        "cz": [mask(plain.decode()) for _, plain in cz],
        "cz bytes are zlib's": [raw == zlib.compress(plain) for raw, plain in cz],
        "req": [mask(r["line"]) for r in req if "GET /" in r["line"]],
        "req keys": sorted({tuple(r) for r in req}),
        "req micros are the epoch's": [abs(r["micros"] / 1e6 - time.time()) < 120 for r in req],
        "main": [mask(line) for line in main],
    }


def _text(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


def test_the_same_ini_encodes_the_same_lines(tmp_path: Path) -> None:
    need_uwsgi("python3", "logfile")
    found = {}
    for runner in ("uwsgi", "brood"):
        (tmp_path / runner).mkdir()
        found[runner] = _run(runner, tmp_path / runner)
    theirs, ours = found["uwsgi"], found["brood"]
    assert theirs["js"] == ["[N] APP plain <N>", '[N] APP q"uote \\back\ttab café <N>']
    assert (
        theirs["js bytes"].splitlines()[1]
        == b'{"m":"[N] APP q\\"uote \\\\back\\ttab caf\xc3\xa9 <N>","ms":N,"u":"N"}'
    )
    assert theirs["gz"] == ["[N] GZ zipped line <N>\n"]
    assert theirs["cz"] == ["[N] CZ compressed line <N>\n"]
    assert theirs["main"] == ["[N] MAIN hello <N>"]
    assert all(theirs["gz bytes are gzip_member's"] + theirs["cz bytes are zlib's"])
    assert theirs["req keys"] == [("line", "micros")]
    assert len(theirs["req"]) == len(PATHS) and all(theirs["req micros are the epoch's"])
    assert ours == theirs
