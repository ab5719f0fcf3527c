"""uWSGI's python-plugin options: --mount's app choice (a pure function, as uWSGI 2.0.21
answers), loading several apps, --pyargv, --pyimport, --py-sys-executable,
--need-plugin, --wsgi-disable-file-wrapper."""

from __future__ import annotations

import os
import sys

import pytest

from brood.config.load import load_config
from brood.config.logic import missing_plugins
from brood.config.model import Config
from brood.config.option import OptionError
from brood.workers.environ import build_environ, http_base
from brood.workers.loader import load_app, pyargv_list, pyimport_name
from brood.workers.mount import Mounts, mount_lines, parse_mount, select_app


@pytest.fixture(autouse=True)
def _restore(monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setattr(sys, "argv", list(sys.argv))
    monkeypatch.setattr(sys, "executable", sys.executable)
    monkeypatch.chdir(os.getcwd())


MPS = ["", "/app2", "/app2/sub", "/slash/"]


# What uWSGI 2.0.21 gave (--http-socket, --manage-script-name): PATH_INFO -> (app,
# SCRIPT_NAME, PATH_INFO). A prefix counts only up to a "/" (or the end); the longest
# wins; case matters; nothing matched: the default app, SCRIPT_NAME untouched.
@pytest.mark.parametrize(("path", "want"), [
    ("/", (0, "", "/")),
    ("/x", (0, "", "/x")),
    ("/app2", (1, "/app2", "")),
    ("/app2/", (1, "/app2", "/")),
    ("/app2/y", (1, "/app2", "/y")),
    ("/app2y", (0, "", "/app2y")),
    ("/app2/sub/z", (2, "/app2/sub", "/z")),
    ("/app2/subx", (1, "/app2", "/subx")),
    ("/APP2", (0, "", "/APP2")),
    ("//app2/y", (0, "", "//app2/y")),
    # a mountpoint ending in "/" matches without it, and is SCRIPT_NAME as written
    ("/slash/y", (3, "/slash/", "y")),
    ("/slash/", (3, "/slash/", "")),
    ("/slash", (3, "/slash/", "")),  # (uWSGI reads past the path's end here)
])
def test_manage_script_name_picks_longest_whole_prefix(path, want):
    assert select_app(MPS, "", path, manage=True, default=True) == want


def test_without_manage_script_name_script_name_must_match_exactly():
    assert select_app(MPS, "", "/app2/y", manage=False, default=True) == (0, "", "/app2/y")
    assert select_app(MPS, "/app2", "/y", manage=False, default=True) == (1, "/app2", "/y")
    assert select_app(MPS, "/app2/", "/y", manage=False, default=True)[0] == 0
    assert select_app(MPS, "/nope", "/y", manage=False, default=True)[0] == 0


def test_no_default_app():
    mounts_only = ["/app2", "/app2/sub"]
    assert select_app(mounts_only, "", "/x", manage=True, default=False) == (-1, "", "/x")
    assert select_app(mounts_only, "", "/x", manage=True, default=True) == (0, "", "/x")
    assert select_app(mounts_only, "", "/app2/q", True, False) == (0, "/app2", "/q")
    # the --wsgi-file app's mountpoint is "": an empty SCRIPT_NAME is its own
    assert select_app(MPS, "", "/x", manage=False, default=False)[0] == 0
    assert select_app(MPS, "/other", "/x", manage=False, default=False)[0] == -1


def test_first_of_a_mountpoint_given_twice_wins():
    assert select_app(["/a", "/a"], "", "/a/b", True, True) == (0, "/a", "/b")


def test_parse_and_lines():
    assert parse_mount("/a=pkg.mod:app") == ("/a", "pkg.mod:app")
    assert parse_mount("/a=b=c.py") == ("/a", "b=c.py")
    with pytest.raises(OptionError, match="--mount /a: invalid mountpoint"):
        parse_mount("/a")
    lines = mount_lines(["/a=app.py", "=x.wsgi", "/p=pkg"])
    assert lines[:3] == ["mounting app.py on /a", "mounting x.wsgi on /", "mounting pkg on /p"]
    assert "nothing mounted" in lines[3]


APP = "TAG = {tag!r}\ndef application(e, s):\n    return [TAG.encode(), e['PATH_INFO'].encode()]\n"


def _app(tmp_path, name, tag):
    path = tmp_path / name
    path.write_text(APP.format(tag=tag))
    return str(path)


def test_load_app_mounts(tmp_path):
    pkg = tmp_path / "mntpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "mod.py").write_text(APP.format(tag="pkgmod").replace("application", "app"))
    sys.path.insert(0, str(tmp_path))
    cfg = Config.from_dict({
        "wsgi-file": _app(tmp_path, "main.py", "main"),
        "mount": [f"/w={_app(tmp_path, 'w.wsgi', 'w')}", "/m=mntpkg.mod:app",
                  "/skip=mntpkg.mod", f"/m={_app(tmp_path, 'dup.py', 'dup')}"],
        "manage-script-name": True,
    })
    app = load_app(cfg)
    assert isinstance(app, Mounts)
    assert app.mountpoints == ["", "/w", "/m"]

    def call(path):
        env = {"SCRIPT_NAME": "", "PATH_INFO": path}
        return app(env, lambda *a: None)

    assert call("/w/a") == [b"w", b"/a"]
    assert call("/m/b") == [b"pkgmod", b"/b"]
    assert call("/skip/c") == [b"main", b"/skip/c"]


def test_no_default_app_answers_500(tmp_path):
    logged = []
    app = load_app(Config.from_dict({"mount": [f"/a={_app(tmp_path, 'a.py', 'a')}"],
                                     "manage-script-name": True,
                                     "no-default-app": True}), logged.append)
    seen = []
    body = app({"SCRIPT_NAME": "", "PATH_INFO": "/b"}, lambda *a: seen.append(a))
    assert body == [b"Internal Server Error"]
    assert seen == [("500 Internal Server Error", [("Content-Type", "text/plain")])]
    assert logged == ["--- no python application found, check your startup logs for errors ---"]


def test_plain_app_stays_unwrapped(tmp_path):
    app = load_app(Config.from_dict({"wsgi-file": _app(tmp_path, "p.py", "p"),
                                     "manage-script-name": True}))
    assert not isinstance(app, Mounts)


def test_pyargv_and_executable(tmp_path):
    assert pyargv_list("  a  b\tc ") == ["uwsgi", "a", "b", "c"]
    assert pyargv_list("") == ["uwsgi"]
    load_app(Config.from_dict({"wsgi-file": _app(tmp_path, "e.py", "e"),
                               "pyargv": "x y", "py-sys-executable": "/x/py"}))
    assert sys.argv == ["uwsgi", "x", "y"]
    assert sys.executable == "/x/py"


def test_pyimport_before_the_app(tmp_path, monkeypatch):
    (tmp_path / "pre_mod_a.py").write_text("import builtins\nbuiltins._brood_pre = 1\n")
    (tmp_path / "pre_b.py").write_text("X = 2\n")
    monkeypatch.chdir(tmp_path)
    sys.path.insert(0, str(tmp_path))
    monkeypatch.delitem(sys.modules, "pre_mod_a", raising=False)
    app_file = tmp_path / "uses.py"
    app_file.write_text("import builtins\nSEEN = builtins._brood_pre\n"
                        "def application(e, s):\n    return []\n")
    logged = []
    load_app(Config.from_dict({"wsgi-file": str(app_file),
                               "pyimport": ["pre_mod_a", "./pre_b.py", "no_such_mod_x"]}),
             logged.append)
    assert sys.modules["__pre_b"].X == 2  # uWSGI's name for a file: ./pre_b.py
    assert logged == ["--pyimport no_such_mod_x: ModuleNotFoundError: No module named "
                      "'no_such_mod_x' (not imported)"]
    assert pyimport_name("/tmp/ux/pre1.py") == "_tmp_ux_pre1"


def test_option_names_are_accepted():
    cfg = load_config([
        "--py-import", "a", "--python-import", "b", "--import", "c",
        "--shared-pyimport", "d", "--py-executable", "/e", "--need-plugin", "python3,http",
        "--wsgi-env-behavior", "holy", "--py-call-osafterfork", "--py-call-uwsgi-fork-hooks",
        "--wsgi-disable-file-wrapper", "--no-default-app", "--mount", "/a=b.py"])
    assert cfg["pyimport"] == ["a", "b", "c"]
    assert cfg["shared-import"] == ["d"]
    assert cfg["py-sys-executable"] == "/e"
    with pytest.raises(OptionError, match="wsgi-env-behaviour"):
        load_config(["--wsgi-env-behaviour", "foo"])


def test_need_plugin_names():
    assert missing_plugins(["python3,http", "python", "python311", " cache "]) == []
    assert missing_plugins(["python3,sslrouter", "php"]) == ["sslrouter", "php"]


def test_file_wrapper_can_be_left_out():
    assert "wsgi.file_wrapper" not in build_environ(
        [], wsgi_input=None, errors=None, multithread=False, multiprocess=False,
        file_wrapper=None)
    assert "wsgi.file_wrapper" not in http_base(
        server_name="h", server_port="1", errors=None, multithread=False,
        multiprocess=False, file_wrapper=None)
    assert "wsgi.file_wrapper" in http_base(
        server_name="h", server_port="1", errors=None, multithread=False,
        multiprocess=False, file_wrapper=object())
