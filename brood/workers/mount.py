"""Several apps in one worker (--mount, --manage-script-name, --no-default-app).

uWSGI 2.0's python plugin keeps a list of apps, each under a mountpoint: the
--wsgi-file/--module app first (mountpoint ""), then each --mount MOUNTPOINT=APP in
order (a mountpoint given twice keeps its first app). A request goes to the app whose
mountpoint is exactly its SCRIPT_NAME (a front end such as nginx sends it), else to the
first app loaded (the default app), else (--no-default-app) it gets uWSGI's plain 500.
With --manage-script-name the worker first finds the longest mountpoint that is a
whole-component prefix of PATH_INFO (a trailing "/" of the mountpoint not counted) and
moves it: SCRIPT_NAME becomes the mountpoint as written, PATH_INFO what follows it; a
PATH_INFO of "/" or "" is left alone. ``select_app`` is that rule, pure; ``Mounts`` the
WSGI callable a worker runs in place of its app when --mount or --no-default-app is on
(the default worker calls its app directly, as before).

APP is a file (ending .py or .wsgi, its --callable taken) or ``module:callable``;
uWSGI mounts nothing for anything else (``pkg``, ``pkg.mod``): its requests go to the
default app, and brood says so at start (``mount_lines``). uWSGI gives each mounted app
its own sub-interpreter; brood's share the worker's one interpreter.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from brood.config.option import OptionError

# uWSGI's answer and log line for a request no app takes (--no-default-app)
NO_APP_LINE = "--- no python application found, check your startup logs for errors ---"
_NO_APP_BODY = b"Internal Server Error"


def parse_mount(raw: str) -> tuple[str, str]:
    """``MOUNTPOINT=APP`` -> (mountpoint, app); OptionError without an "=" (uWSGI stops
    there with "invalid mountpoint")."""
    mountpoint, sep, target = str(raw).partition("=")
    if not sep or not target:
        raise OptionError(f"--mount {raw}: invalid mountpoint (give MOUNTPOINT=APP)")
    return mountpoint, target


def mountable(target: str) -> bool:
    """Whether uWSGI's python plugin mounts APP: a .py/.wsgi file or module:callable."""
    return ":" in target or target.endswith((".py", ".wsgi"))


def mount_lines(raws: Iterable[str]) -> list[str]:
    """Start-up check of every --mount (OptionError on a bad one) and the lines said:
    uWSGI's "mounting APP on MOUNTPOINT", and, for an APP it does not mount, why."""
    lines = []
    for raw in raws:
        mountpoint, target = parse_mount(raw)
        lines.append(f"mounting {target} on {mountpoint or '/'}")
        if not mountable(target):
            lines.append(f"--mount {raw}: {target} is no .py/.wsgi file nor "
                         "module:callable: nothing mounted (as uWSGI), its requests go to "
                         "the default app")
    return lines


def select_app(mountpoints: Sequence[str], script_name: str, path_info: str,
               manage: bool, default: bool) -> tuple[int, str, str]:
    """(index of the app, SCRIPT_NAME, PATH_INFO) for a request; index -1: no app.

    ``mountpoints`` in load order (the first is the default app's); ``manage``:
    --manage-script-name; ``default``: not --no-default-app."""
    if manage and len(path_info) > 1:
        best = 0
        path = path_info
        for mountpoint in mountpoints:
            size = len(mountpoint) - 1 if mountpoint.endswith("/") else len(mountpoint)
            if size <= best or len(path) < size:
                continue
            if path.startswith(mountpoint[:size]) and (len(path) == size
                                                        or path[size] == "/"):
                best = size
                script_name = mountpoint
                # (a mountpoint "/a/" and a PATH_INFO "/a": uWSGI reads past the
                # path's end there; here the rest is empty)
                path_info = path[len(mountpoint):]
    for index, mountpoint in enumerate(mountpoints):
        if mountpoint == script_name:
            return index, script_name, path_info
    return (0 if default and mountpoints else -1), script_name, path_info


class Mounts:
    """The worker's WSGI callable when apps are mounted: picks the app per request."""

    def __init__(self, mounted: Sequence[tuple[str, Callable[..., Any]]], manage: bool,
                 default: bool, log: Callable[[str], None]) -> None:
        self.mountpoints = [m for m, _ in mounted]
        self.apps = [a for _, a in mounted]
        self.manage = manage
        self.default = default
        self.log = log

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        index, script_name, path_info = select_app(
            self.mountpoints, environ.get("SCRIPT_NAME", ""), environ.get("PATH_INFO", ""),
            self.manage, self.default)
        if self.manage:
            environ["SCRIPT_NAME"] = script_name
            environ["PATH_INFO"] = path_info
        if index < 0:
            self.log(NO_APP_LINE)
            start_response("500 Internal Server Error", [("Content-Type", "text/plain")])
            return [_NO_APP_BODY]
        return self.apps[index](environ, start_response)
