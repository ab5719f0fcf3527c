"""Find and load the WSGI app the options name (--wsgi-file, --module, --callable,
--mount: brood.workers.mount).

Runs in the master before forking (shared app) or in each worker after the fork
(--lazy-apps). The process environment the app sees is prepared first, in uWSGI's
order: env vars, chdir, the virtualenv's site-packages, then --pythonpath entries,
--pyargv and --py-sys-executable; then the --pyimport modules, then the apps.
Every failure is an AppLoadError with a one-line message; the original exception,
when there was one, is chained so a caller can print its traceback.
"""

from __future__ import annotations

import glob
import importlib
import importlib.machinery
import importlib.util
import os
import re
import site
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import brood.config.options  # noqa: F401  (fills the option registry read by lookup)
from brood.config.option import lookup
from brood.workers.mount import Mounts, mountable, parse_mount

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class AppLoadError(Exception):
    """No app could be loaded; the message is one line for the log."""


def option(cfg: Mapping[str, Any], name: str, default: Any = None) -> Any:
    """``cfg[name]``, or ``default`` when this build declares no such option."""
    if lookup(name) is None:
        return default
    value = cfg[name]
    return default if value is None else value


# The config prepare_process last ran for: a --shared-import runs it in the master, and
# a --lazy-apps worker forked from it must not run it again (a relative --chdir twice).
_prepared: list[Any] = []


def prepare_process(cfg: Mapping[str, Any]) -> None:
    """Apply env, chdir, home/virtualenv and pythonpath before importing the app; the
    working directory is on sys.path, as uWSGI puts it there. Once per config."""
    if _prepared and _prepared[0] is cfg:
        return
    _prepared[:] = [cfg]
    for item in _as_list(option(cfg, "env", [])):
        key, _, value = str(item).partition("=")
        if key:
            os.environ[key] = value
    chdir = option(cfg, "chdir")
    if chdir:
        try:
            os.chdir(chdir)
        except OSError as exc:
            raise AppLoadError(f"chdir() to {chdir}: {exc.strerror}") from exc
    home = option(cfg, "home") or option(cfg, "virtualenv")
    if home:
        add_virtualenv(home)
    if "." not in sys.path:  # as uWSGI: a --module beside the --chdir directory imports
        sys.path.insert(0, ".")
    for entry in reversed(_as_list(option(cfg, "pythonpath", []))):
        for path in sorted(glob.glob(entry)) or [entry]:
            if path not in sys.path:
                sys.path.insert(0, path)
    pyargv = option(cfg, "pyargv")
    if pyargv is not None:
        sys.argv = pyargv_list(str(pyargv))
    executable = option(cfg, "py-sys-executable")
    if executable:
        sys.executable = str(executable)


def pyargv_list(text: str) -> list[str]:
    """The app's sys.argv for --pyargv TEXT: as uWSGI, "uwsgi" then TEXT's words
    (split at spaces and tabs only)."""
    return ["uwsgi", *(word for word in re.split(r"[ \t]+", text) if word)]


def pyimport_name(path: str) -> str:
    """The module name uWSGI gives a file --pyimport names: dots and slashes become
    underscores, the .py dropped (./pre.py -> __pre)."""
    name = path.replace(".", "_").replace("/", "_")
    return name[:-3] if name.endswith("_py") else name


def import_modules(names: Iterable[str], log: Callable[[str], None]) -> None:
    """--pyimport (and --shared-import): import each module (or .py file, by path)
    before the app; one that fails is said, and the start goes on, as in uWSGI."""
    for name in names:
        name = str(name)
        try:
            if "/" in name or name.endswith(".py"):
                _exec_file(name, pyimport_name(name), "file")
            else:
                importlib.import_module(name)
        except AppLoadError as exc:
            log(f"--pyimport {name}: {exc} (not imported)")
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt):
                raise
            log(f"--pyimport {name}: {_one_line(exc)} (not imported)")


def add_virtualenv(home: str) -> None:
    """Put a virtualenv's site-packages on sys.path (processing its .pth files)."""
    if not os.path.isdir(home):
        raise AppLoadError(f"virtualenv {home} is not a directory")
    ver = f"python{sys.version_info.major}.{sys.version_info.minor}"
    found = False
    for lib in ("lib", "lib64"):
        path = os.path.join(home, lib, ver, "site-packages")
        if os.path.isdir(path):
            site.addsitedir(path)
            found = True
    if not found:
        raise AppLoadError(f"virtualenv {home} has no lib/{ver}/site-packages")


def load_app(cfg: Mapping[str, Any], log: Callable[[str], None] | None = None) -> WSGIApp:
    """Prepare the process, import the --pyimport modules and return the app callable
    the options name (a ``Mounts`` over them with --mount or --no-default-app)."""
    log = log or _log
    prepare_process(cfg)
    import_modules(_as_list(option(cfg, "pyimport", [])), log)
    callable_name = option(cfg, "callable") or "application"
    wsgi_file = option(cfg, "wsgi-file")
    module = option(cfg, "module")
    mounts = _as_list(option(cfg, "mount", []))
    mounted: list[tuple[str, WSGIApp]] = []
    if wsgi_file:
        mounted.append(("", from_file(wsgi_file, callable_name)))
    elif module:
        if module.endswith(".py") and ":" not in module:
            mounted.append(("", from_file(module, callable_name)))
        else:
            mounted.append(("", from_module(module, callable_name)))
    for raw in mounts:
        mountpoint, target = parse_mount(raw)
        if not mountable(target) or any(m == mountpoint for m, _ in mounted):
            continue  # (said at start: brood.workers.mount.mount_lines)
        if ":" in target and not target.endswith((".py", ".wsgi")):
            mounted.append((mountpoint, from_module(target, callable_name)))
        else:
            mounted.append((mountpoint, from_file(target, callable_name)))
    no_default = bool(option(cfg, "no-default-app", False))
    if not mounted:
        raise AppLoadError("no app configured: give --wsgi-file, --module or --mount")
    if len(mounted) == 1 and not mounts and not no_default:
        return mounted[0][1]
    return Mounts(mounted, bool(option(cfg, "manage-script-name", False)), not no_default,
                  log)


def from_file(path: str, callable_name: str = "application") -> WSGIApp:
    """Execute a Python file as a fresh module and take its callable."""
    full = os.path.abspath(path)
    if not os.path.isfile(full):
        raise AppLoadError(f"wsgi-file {path} not found")
    name = "uwsgi_file_" + "".join(c if c.isalnum() else "_" for c in full)
    mod = _exec_file(path, name)
    return _resolve(mod, callable_name, f"wsgi-file {path}")


def _exec_file(path: str, name: str, what: str = "wsgi-file") -> Any:
    """Run a Python file as the module ``name``; AppLoadError when it fails."""
    full = os.path.abspath(path)
    if not os.path.isfile(full):
        raise AppLoadError(f"{what} {path} not found")
    # Read as Python source whatever its name ends with: app.wsgi (mod_wsgi's naming,
    # in the uWSGI manual's examples) has no suffix importlib would know.
    loader = importlib.machinery.SourceFileLoader(name, full)
    spec = importlib.util.spec_from_file_location(name, full, loader=loader)
    if spec is None or spec.loader is None:
        raise AppLoadError(f"{what} {path} cannot be loaded as Python")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    folder = os.path.dirname(full)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    try:
        spec.loader.exec_module(mod)
    except BaseException as exc:
        sys.modules.pop(name, None)
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise AppLoadError(f"{what} {path} failed: {_one_line(exc)}") from exc
    return mod


def from_module(spec: str, callable_name: str = "application") -> WSGIApp:
    """Import ``pkg.mod`` / ``pkg.mod:callable`` / ``pkg.mod:attr.attr``."""
    modname, _, attr = spec.partition(":")
    modname = modname.strip()
    if not modname:
        raise AppLoadError(f"module {spec!r}: no module name")
    try:
        mod = importlib.import_module(modname)
    except ModuleNotFoundError as exc:
        if exc.name and (modname == exc.name or modname.startswith(exc.name + ".")):
            raise AppLoadError(f"module {modname} not found") from exc
        raise AppLoadError(f"module {modname} failed: {_one_line(exc)}") from exc
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise AppLoadError(f"module {modname} failed: {_one_line(exc)}") from exc
    return _resolve(mod, attr.strip() or callable_name, f"module {modname}")


def _resolve(obj: Any, dotted: str, where: str) -> WSGIApp:
    target = obj
    for part in dotted.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise AppLoadError(f"{where} has no callable {dotted!r}") from None
    if not callable(target):
        raise AppLoadError(f"{where}: {dotted!r} is not callable")
    return target


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, list | tuple):
        return list(value)
    return [value]


def _log(message: str) -> None:
    """One line on fd 2, in one write (the worker's way)."""
    try:
        os.write(2, (message + "\n").encode("utf-8", "replace"))
    except OSError:
        pass


def _one_line(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return " ".join(text.split())
