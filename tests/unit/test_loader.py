"""Loading the app named by --wsgi-file / --module / --callable, and the process setup."""

from __future__ import annotations

import os
import sys

import pytest

from brood.config.model import Config
from brood.workers.loader import AppLoadError, from_file, from_module, load_app


@pytest.fixture(autouse=True)
def _restore(monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.chdir(os.getcwd())
    for key in ("BROOD_T1", "BROOD_T2"):
        monkeypatch.delenv(key, raising=False)


def write(path, text):
    path.write_text(text)
    return str(path)


APP = "def application(e, s):\n    return [b'x']\n\ndef other(e, s):\n    return [b'o']\n"


def test_wsgi_file_default_callable(tmp_path):
    app = load_app(Config.from_dict({"wsgi-file": write(tmp_path / "a.py", APP)}))
    assert app({}, None) == [b"x"]


@pytest.mark.parametrize("name", ["app.wsgi", "application", "app.py3"])
def test_wsgi_file_of_any_name_is_python(tmp_path, name):
    """As uWSGI: mod_wsgi's app.wsgi, the uWSGI manual's examples, loads."""
    app = load_app(Config.from_dict({"wsgi-file": write(tmp_path / name, APP)}))
    assert app.__name__ == "application"


def test_wsgi_file_named_callable(tmp_path):
    cfg = Config.from_dict({"wsgi-file": write(tmp_path / "a.py", APP), "callable": "other"})
    assert load_app(cfg)({}, None) == [b"o"]


def test_module_forms(tmp_path):
    pkg = tmp_path / "bpkg_forms"
    pkg.mkdir()
    write(pkg / "__init__.py", "")
    write(
        pkg / "web.py", APP + "class Holder:\n    class inner:\n        app = staticmethod(other)\n"
    )
    sys.path.insert(0, str(tmp_path))
    assert from_module("bpkg_forms.web")({}, None) == [b"x"]
    assert from_module("bpkg_forms.web:other")({}, None) == [b"o"]
    assert from_module("bpkg_forms.web:Holder.inner.app")({}, None) == [b"o"]
    assert load_app(Config.from_dict({"module": "bpkg_forms.web", "callable": "other"}))(
        {}, None
    ) == [b"o"]


def test_missing_file():
    with pytest.raises(AppLoadError, match="nope.py not found"):
        from_file("/nonexistent/nope.py")


def test_missing_module():
    with pytest.raises(AppLoadError, match="module no_such_mod_xyz not found"):
        from_module("no_such_mod_xyz")


def test_missing_callable(tmp_path):
    with pytest.raises(AppLoadError, match="no callable 'missing'"):
        from_file(write(tmp_path / "a.py", APP), "missing")


def test_not_callable(tmp_path):
    with pytest.raises(AppLoadError, match="not callable"):
        from_file(write(tmp_path / "a.py", "application = 3\n"))


def test_error_inside_app_is_one_line_and_chained(tmp_path):
    path = write(tmp_path / "bad.py", "import no_such_dependency_xyz\n")
    with pytest.raises(AppLoadError) as info:
        from_file(path)
    assert "\n" not in str(info.value)
    assert "ModuleNotFoundError" in str(info.value)
    assert isinstance(info.value.__cause__, ModuleNotFoundError)
    sys.path.insert(0, str(tmp_path))
    with pytest.raises(AppLoadError, match="module bad failed"):
        from_module("bad")


def test_nothing_configured():
    with pytest.raises(AppLoadError, match="no app configured"):
        load_app(Config.from_dict({}))


def test_chdir_env_pythonpath(tmp_path):
    lib = tmp_path / "lib"
    lib.mkdir()
    write(lib / "blib_helper.py", "VALUE = b'from pythonpath'\n")
    write(tmp_path / "app.py", "import os, blib_helper\n"
          "def application(e, s):\n    return [blib_helper.VALUE, os.environ['BROOD_T1'].encode()]\n")  # fmt: skip
    cfg = Config.from_dict({"chdir": str(tmp_path), "wsgi-file": "app.py",
                            "pythonpath": [str(lib)], "env": ["BROOD_T1=one", "BROOD_T2=a=b"]})  # fmt: skip
    app = load_app(cfg)
    assert os.getcwd() == str(tmp_path)
    assert app({}, None) == [b"from pythonpath", b"one"]
    assert os.environ["BROOD_T2"] == "a=b"


def test_chdir_then_module_imports_from_there(tmp_path, monkeypatch):
    """The Django shape (chdir = /srv/site, module = site.wsgi): the working directory
    is on sys.path, as uWSGI puts it; brood said 'module not found'."""
    write(tmp_path / "brood_chdir_site.py", "def app(e, s):\n    return [b'from chdir']\n")
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", ".")])
    cfg = Config.from_dict({"chdir": str(tmp_path), "module": "brood_chdir_site",
                            "callable": "app"})
    assert load_app(cfg)({}, None) == [b"from chdir"]


def test_bad_chdir():
    with pytest.raises(AppLoadError, match="chdir"):
        load_app(Config.from_dict({"chdir": "/nonexistent/dir", "module": "x"}))


def test_home_adds_site_packages(tmp_path):
    ver = f"python{sys.version_info.major}.{sys.version_info.minor}"
    site = tmp_path / "venv" / "lib" / ver / "site-packages"
    site.mkdir(parents=True)
    write(site / "bvenv_mod.py", APP)
    app = load_app(Config.from_dict({"home": str(tmp_path / "venv"), "module": "bvenv_mod"}))
    assert app({}, None) == [b"x"]


def test_home_without_site_packages(tmp_path):
    with pytest.raises(AppLoadError, match="site-packages"):
        load_app(Config.from_dict({"home": str(tmp_path), "module": "x"}))
