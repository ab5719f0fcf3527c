"""--mount, --manage-script-name, --pyargv, --pyimport, --py-sys-executable and
--wsgi-disable-file-wrapper through real uWSGI 2.0.21 and brood: the same requests reach
the same apps, which see the same SCRIPT_NAME, PATH_INFO, sys.argv, sys.executable,
imported modules and environ."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _interop import http, need_uwsgi

pytestmark = pytest.mark.interop

APP = """\
import json, sys
TAG = {tag!r}
def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps({{
        "tag": TAG, "sn": environ.get("SCRIPT_NAME"), "pi": environ["PATH_INFO"],
        "argv": sys.argv, "exe": sys.executable, "fw": "wsgi.file_wrapper" in environ,
        "pre": "mnt_pre" in sys.modules}}).encode()]
"""
# "/" left out: with --manage-script-name uWSGI gives it no SCRIPT_NAME at all, brood ""
PATHS = ["/x", "/second", "/second/", "/second/y", "/secondy", "/second/deep/z",
         "/second/deepz", "/SECOND", "//second/y", "/pkg/a"]


def _args(run_dir: Path) -> list[str]:
    (run_dir / "mnt_main.py").write_text(APP.format(tag="main"))
    (run_dir / "mnt_second.py").write_text(APP.format(tag="second"))
    (run_dir / "mnt_deep.py").write_text(APP.format(tag="deep").replace("application", "app"))
    (run_dir / "mnt_pre.py").write_text("")
    return ["--chdir", str(run_dir), "--wsgi-file", "mnt_main.py",
            "--mount", "/second/deep=mnt_deep:app", "--mount", "/second=mnt_second.py",
            "--mount", "/pkg=mnt_deep",  # uWSGI mounts nothing for a bare module name
            "--manage-script-name", "--pyargv", " a  b\tc", "--pyimport", "mnt_pre",
            "--py-sys-executable", "/opt/py", "--wsgi-disable-file-wrapper"]


def _seen(address: str) -> dict[str, tuple]:
    seen = {}
    for path in PATHS:
        status, _, body = http(address, "GET", path)
        assert status == 200, (path, body)
        got = json.loads(body)
        seen[path] = (got["tag"], got["sn"], got["pi"])
        if path == "/x":
            seen["main"] = (got["argv"], got["exe"], got["fw"], got["pre"])
    return seen


def _ready(address: str) -> bool:
    return http(address, "GET", "/second/", timeout=2)[0] == 200


WANT = {
    "/x": ("main", "", "/x"),
    "/second": ("second", "/second", ""),
    "/second/": ("second", "/second", "/"),
    "/second/y": ("second", "/second", "/y"),
    "/secondy": ("main", "", "/secondy"),
    "/second/deep/z": ("deep", "/second/deep", "/z"),
    "/second/deepz": ("second", "/second", "/deepz"),
    "/SECOND": ("main", "", "/SECOND"),
    "//second/y": ("main", "", "//second/y"),
    "/pkg/a": ("main", "", "/pkg/a"),
    "main": (["uwsgi", "a", "b", "c"], "/opt/py", False, True),
}


def test_brood_mounts_as_uwsgi_does(start_uwsgi, start_brood, run_dir) -> None:
    need_uwsgi("python3")
    args = _args(run_dir)
    proc = start_uwsgi(lambda port: ["--plugin", "python3", "--http-socket",
                                     f"127.0.0.1:{port}", *args],
                       probe=lambda port: _ready(f"127.0.0.1:{port}"))
    assert _seen(f"127.0.0.1:{proc.port}") == WANT
    b = start_brood("--http-socket", "127.0.0.1:0", *args)
    assert _seen(b.address_of("uwsgi socket 0")) == WANT
