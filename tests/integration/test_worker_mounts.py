"""A real brood running uWSGI's python-plugin options: --mount with
--manage-script-name, --no-default-app, --pyargv, --pyimport / --shared-import with
--lazy-apps, --py-call-osafterfork, --wsgi-disable-file-wrapper, --need-plugin."""

from __future__ import annotations

import json
import os
from pathlib import Path

from _broodkit import http_get

APP = """\
import json, os, sys
TAG = {tag!r}
def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps({{
        "tag": TAG, "sn": environ["SCRIPT_NAME"], "pi": environ["PATH_INFO"],
        "argv": sys.argv, "exe": sys.executable,
        "fw": "wsgi.file_wrapper" in environ,
        "pre": [m for m in ("pre_worker", "pre_master") if m in sys.modules],
        "master_pid": getattr(sys.modules.get("pre_master"), "PID", None),
        "worker_pid": getattr(sys.modules.get("pre_worker"), "PID", None),
        "after_fork": getattr(sys.modules.get("pre_master"), "CHILD", None),
        "pid": os.getpid(),
    }}).encode()]
"""


def _tree(tmp_path: Path) -> None:
    (tmp_path / "main.py").write_text(APP.format(tag="main"))
    (tmp_path / "second.py").write_text(APP.format(tag="second"))
    pkg = tmp_path / "mpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "deep.py").write_text(APP.format(tag="deep").replace("application", "app"))
    (tmp_path / "pre_worker.py").write_text("import os\nPID = os.getpid()\n")
    # imported in the master before the fork: its after-fork hook runs in each worker
    (tmp_path / "pre_master.py").write_text(
        "import os\nPID = os.getpid()\nCHILD = None\n"
        "def _child():\n    global CHILD\n    CHILD = os.getpid()\n"
        "os.register_at_fork(after_in_child=_child)\n")


def _get(addr: str, path: str) -> tuple[int, dict | bytes]:
    status, body = http_get(addr, path)
    return status, (json.loads(body) if status == 200 else body)


def test_mounts_and_the_process_the_apps_see(start_brood, tmp_path) -> None:
    _tree(tmp_path)
    b = start_brood("--http-socket", "127.0.0.1:0", "--chdir", tmp_path,
                    "--wsgi-file", "main.py", "--mount", "/second=second.py",
                    "--mount", "/second/deep=mpkg.deep:app", "--manage-script-name",
                    "--pyargv", "one  two\tthree", "--py-sys-executable", "/opt/py",
                    "--pyimport", "pre_worker", "--shared-import", "pre_master",
                    "--lazy-apps", "--py-call-osafterfork", "--need-plugin", "python3,http",
                    "--wsgi-disable-file-wrapper")
    addr = b.address_of("uwsgi socket 0")
    seen = {path: _get(addr, path)[1] for path in
            ("/x", "/second", "/second/y", "/secondy", "/second/deep/z")}
    assert {p: (v["tag"], v["sn"], v["pi"]) for p, v in seen.items()} == {
        "/x": ("main", "", "/x"),
        "/second": ("second", "/second", ""),
        "/second/y": ("second", "/second", "/y"),
        "/secondy": ("main", "", "/secondy"),
        "/second/deep/z": ("deep", "/second/deep", "/z"),
    }
    one = seen["/x"]
    assert one["argv"] == ["uwsgi", "one", "two", "three"]
    assert one["exe"] == "/opt/py"
    assert one["fw"] is False
    assert one["pre"] == ["pre_worker", "pre_master"]
    # --lazy-apps: --pyimport in the worker, --shared-import in the master
    assert one["worker_pid"] == one["pid"] != one["master_pid"] == b.pid
    assert one["after_fork"] == one["pid"]  # os.register_at_fork ran in the worker
    assert "mounting second.py on /second" in b.log()


def test_no_default_app(start_brood, tmp_path) -> None:
    _tree(tmp_path)
    b = start_brood("--http-socket", "127.0.0.1:0", "--chdir", tmp_path,
                    "--mount", "/second=second.py", "--manage-script-name",
                    "--no-default-app")
    addr = b.address_of("uwsgi socket 0")
    assert _get(addr, "/second/a")[1]["pi"] == "/a"
    assert _get(addr, "/other") == (500, b"Internal Server Error")
    b.wait_for_log("no python application found")


def test_user_mistakes_are_one_line(start_brood, tmp_path) -> None:
    for args, line in ((("--need-plugin", "python3,php"), "--need-plugin php: a uWSGI "
                        "plugin brood does not have"),
                       (("--mount", "/nothing"), "--mount /nothing: invalid mountpoint")):
        b = start_brood("--http-socket", "127.0.0.1:0", "--wsgi-file",
                        os.devnull, *args, wait=False)
        assert b.wait_exit() != 0
        assert line in b.log()
        assert "Traceback" not in b.log()
