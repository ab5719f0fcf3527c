"""The PEP 3333 environ, built from uwsgi vars by one pure function.

Both worker protocols end here: a uwsgi packet's vars, or the vars an HTTP head turns
into (brood.protocol.vars), become the dict handed to the app. Keys and values are
decoded as latin-1 ("bytes as str", PEP 3333); a key repeated in the packet keeps its
last value, as uWSGI's python plugin does.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote_to_bytes

from brood.protocol.http1 import RequestHead
from brood.protocol.vars import header_var_name

_DEFAULTS = (
    ("SCRIPT_NAME", ""),
    ("PATH_INFO", ""),
    ("QUERY_STRING", ""),
    ("REQUEST_METHOD", "GET"),
)


def url_scheme(environ: dict[str, Any]) -> str:
    """The scheme the client used, from the vars a front end can send.

    An explicit ``wsgi.url_scheme`` or ``UWSGI_SCHEME`` var wins; otherwise ``HTTPS``
    set to ``on`` (or ``1``, as some fronts send) means https.
    """
    scheme = environ.get("wsgi.url_scheme") or environ.get("UWSGI_SCHEME")
    if scheme:
        return scheme
    https = environ.get("HTTPS")
    if https and https.lower() in ("on", "1"):
        return "https"
    return "http"


def build_environ(
    pairs: list[tuple[bytes, bytes]],
    *,
    wsgi_input: Any,
    errors: Any,
    multithread: bool,
    multiprocess: bool,
    file_wrapper: Any,
    run_once: bool = False,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Turn uwsgi vars into a WSGI environ.

    ``extra`` adds server-specific keys (``wsgi.input_terminated``, ``uwsgi.core``...)
    after the standard ones.
    """
    environ: dict[str, Any] = {k.decode("latin-1"): v.decode("latin-1") for k, v in pairs}
    for key, value in _DEFAULTS:
        if key not in environ:
            environ[key] = value
    environ["wsgi.url_scheme"] = url_scheme(environ)
    environ["wsgi.version"] = (1, 0)
    environ["wsgi.input"] = wsgi_input
    environ["wsgi.errors"] = errors
    environ["wsgi.multithread"] = multithread
    environ["wsgi.multiprocess"] = multiprocess
    environ["wsgi.run_once"] = run_once
    environ["wsgi.file_wrapper"] = file_wrapper
    if extra:
        environ.update(extra)
    return environ


# Header name as sent -> environ key, for http_environ. Bounded like vars.py's cache.
_KEY_CACHE_MAX = 512
_key_cache: dict[bytes, str] = {}


def http_environ(
    head: RequestHead,
    *,
    remote_addr: str,
    remote_port: str,
    server_name: str,
    server_port: str,
    wsgi_input: Any,
    errors: Any,
    multithread: bool,
    multiprocess: bool,
    file_wrapper: Any,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The environ of an --http-socket request, straight from the parsed head.

    Equal to ``build_environ(request_vars(head, ..., router=None))`` (a test holds
    them together) but built in one dict literal: this is the per-request hot path.
    """
    path = head.path
    if b"%" in path:
        path = unquote_to_bytes(path)
    environ: dict[str, Any] = {
        "REQUEST_METHOD": head.method.decode("latin-1"),
        "REQUEST_URI": head.target.decode("latin-1"),
        "PATH_INFO": path.decode("latin-1"),
        "QUERY_STRING": head.query.decode("latin-1"),
        "SERVER_PROTOCOL": head.version.decode("latin-1"),
        "SCRIPT_NAME": "",
        "SERVER_NAME": server_name,
        "SERVER_PORT": server_port,
        "REMOTE_ADDR": remote_addr,
        "REMOTE_PORT": remote_port,
        "wsgi.url_scheme": "http",
        "wsgi.version": (1, 0),
        "wsgi.input": wsgi_input,
        "wsgi.errors": errors,
        "wsgi.multithread": multithread,
        "wsgi.multiprocess": multiprocess,
        "wsgi.run_once": False,
        "wsgi.file_wrapper": file_wrapper,
    }
    cache = _key_cache
    for name, value in head.headers:
        key = cache.get(name)
        if key is None:
            key = header_var_name(name).decode("latin-1")
            if len(cache) < _KEY_CACHE_MAX:
                cache[name] = key
        if key == "CONTENT_LENGTH":
            environ[key] = str(head.content_length)
        elif key in environ:
            environ[key] += ", " + value.decode("latin-1")
        else:
            environ[key] = value.decode("latin-1")
    if extra:
        environ.update(extra)
    return environ
