"""The PEP 3333 environ, built from uwsgi vars by one pure function.

Both worker protocols end here: a uwsgi packet's vars, or the vars an HTTP head turns
into (brood.protocol.vars), become the dict handed to the app. Keys and values are
decoded as latin-1 ("bytes as str", PEP 3333); a key repeated in the packet keeps its
last value, as uWSGI's python plugin does.
"""

from __future__ import annotations

from typing import Any

from brood.protocol.http1 import RequestHead
from brood.protocol.vars import header_var_name, path_info

_DEFAULTS = (
    ("SCRIPT_NAME", ""),
    ("PATH_INFO", ""),
    ("QUERY_STRING", ""),
    ("REQUEST_METHOD", "GET"),
)


def url_scheme(environ: dict[str, Any]) -> str:
    """The scheme the client used, from the vars a front end can send.

    An explicit ``wsgi.url_scheme`` or ``UWSGI_SCHEME`` var wins; then, as uWSGI, an
    ``X-Forwarded-Proto`` header (http or https: a TLS-terminating balancer's word);
    then ``HTTPS`` or ``X-Forwarded-Ssl`` set to ``on`` (or ``1``) means https.
    """
    scheme = environ.get("wsgi.url_scheme") or environ.get("UWSGI_SCHEME")
    if scheme:
        return scheme
    return forwarded_scheme(environ) or "http"


def forwarded_scheme(environ: dict[str, Any]) -> str | None:
    """What ``X-Forwarded-Proto``, ``HTTPS`` or ``X-Forwarded-Ssl`` say; None: nothing."""
    proto = environ.get("HTTP_X_FORWARDED_PROTO")
    if proto:
        proto = proto.strip().lower()
        if proto in ("http", "https"):
            return proto
    for name in ("HTTPS", "HTTP_X_FORWARDED_SSL"):
        flag = environ.get(name)
        if flag and flag.lower() in ("on", "1"):
            return "https"
    return None


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
    if file_wrapper is not None:  # (None: --wsgi-disable-file-wrapper)
        environ["wsgi.file_wrapper"] = file_wrapper
    if extra:
        environ.update(extra)
    return environ


# Header name as sent -> environ key, for http_environ. Bounded like vars.py's cache.
_KEY_CACHE_MAX = 512
_key_cache: dict[bytes, str] = {}


def http_base(
    *,
    server_name: str,
    server_port: str,
    errors: Any,
    multithread: bool,
    multiprocess: bool,
    file_wrapper: Any,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The part of an --http-socket environ that is the same for every request on a
    listener; ``http_environ_on`` copies it (one C-level copy, not 15 stores)."""
    base: dict[str, Any] = {
        "SCRIPT_NAME": "",
        "SERVER_NAME": server_name,
        "SERVER_PORT": server_port,
        "wsgi.url_scheme": "http",
        "wsgi.version": (1, 0),
        "wsgi.errors": errors,
        "wsgi.multithread": multithread,
        "wsgi.multiprocess": multiprocess,
        "wsgi.run_once": False,
    }
    if file_wrapper is not None:  # (None: --wsgi-disable-file-wrapper)
        base["wsgi.file_wrapper"] = file_wrapper
    if extra:
        base.update(extra)  # server keys only: no header var can collide with them
    return base


# Methods and versions seen so far -> str: a handful of values, decoded once.
_WORD_CACHE_MAX = 64
_words: dict[bytes, str] = {}


def _word(raw: bytes) -> str:
    """A method or version as str, through the bounded cache."""
    text = raw.decode("latin-1")
    if len(_words) < _WORD_CACHE_MAX:
        _words[raw] = text
    return text


def http_environ_on(
    head: RequestHead, base: dict[str, Any], remote_addr: str, remote_port: str, wsgi_input: Any
) -> dict[str, Any]:
    """The environ of one --http-socket request: ``base`` (from ``http_base``) plus
    what the head and the peer say. This is the per-request hot path."""
    environ = base.copy()
    environ["REQUEST_METHOD"] = _words.get(head.method) or _word(head.method)
    target = head.target
    uri = environ["REQUEST_URI"] = target.decode("latin-1")
    path = head.path
    if b"%" in path or b"/." in path:  # escapes or dot segments (as the HTTP router)
        environ["PATH_INFO"] = path_info(path).decode("latin-1")
    elif path is target:  # no query: the same bytes, decoded once
        environ["PATH_INFO"] = uri
    else:
        environ["PATH_INFO"] = path.decode("latin-1")
    query = head.query
    environ["QUERY_STRING"] = query.decode("latin-1") if query else ""
    environ["SERVER_PROTOCOL"] = _words.get(head.version) or _word(head.version)
    environ["REMOTE_ADDR"] = remote_addr
    environ["REMOTE_PORT"] = remote_port
    environ["wsgi.input"] = wsgi_input
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
    if "HTTP_X_FORWARDED_PROTO" in environ or "HTTP_X_FORWARDED_SSL" in environ:
        environ["wsgi.url_scheme"] = forwarded_scheme(environ) or "http"
    return environ


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
    them together); the workers build ``http_base`` once and call ``http_environ_on``.
    """
    base = http_base(
        server_name=server_name,
        server_port=server_port,
        errors=errors,
        multithread=multithread,
        multiprocess=multiprocess,
        file_wrapper=file_wrapper,
        extra=extra,
    )
    return http_environ_on(head, base, remote_addr, remote_port, wsgi_input)
