"""HTTP request head -> uwsgi vars, in the exact order of uWSGI's HTTP router.

WIRE.md §1.6 gives the order: REQUEST_METHOD; PATH_INFO/REQUEST_URI/
QUERY_STRING (PATH_INFO first only when the target has a query);
SERVER_PROTOCOL; SCRIPT_NAME; SERVER_NAME; SERVER_PORT; UWSGI_ROUTER; HTTPS;
REMOTE_ADDR; REMOTE_PORT; then one var per client header in arrival order
(repeated names merged as "v1, v2" into the first slot; Content-Length and
Content-Type bare); then ``--http-var`` extras. The fixtures under
shared/fixtures/requests/ are reproduced byte for byte by the tests.

Only the real ``Content-Length`` / ``Content-Type`` headers become bare
CONTENT_LENGTH / CONTENT_TYPE; ``Content_Length`` becomes
HTTP_CONTENT_LENGTH, so no header can forge the var that frames the body.
CONTENT_LENGTH carries the length the parser validated, not the raw text.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from urllib.parse import unquote_to_bytes

from .http1 import RequestHead

# Header names seen so far -> var names. Bounded so a client cycling through
# random names cannot grow it without limit; real traffic uses a few dozen.
_NAME_CACHE_MAX = 512
_name_cache: dict[bytes, bytes] = {}

# WIRE §7.1: the fastrouter ignores key values longer than this.
MAX_KEY_SIZE = 255

_BARE = {b"content-length": b"CONTENT_LENGTH", b"content-type": b"CONTENT_TYPE"}


def header_var_name(name: bytes) -> bytes:
    """``x-lower_under`` -> ``HTTP_X_LOWER_UNDER``; Content-Length/-Type stay bare."""
    var = _name_cache.get(name)
    if var is None:
        var = _BARE.get(name.lower()) or b"HTTP_" + name.upper().replace(b"-", b"_")
        if len(_name_cache) < _NAME_CACHE_MAX:
            _name_cache[name] = var
    return var


def request_vars(
    head: RequestHead,
    *,
    remote_addr: str,
    remote_port: int,
    server_name: bytes,
    server_port: bytes,
    https: bool = False,
    extra: Sequence[tuple[bytes, bytes]] = (),
    server_name_as_http_host: bool = False,
    router: bytes | None = b"http",
    content_length: int | None = None,
) -> list[tuple[bytes, bytes]]:
    """The vars uWSGI's HTTP router would send for ``head``.

    ``content_length`` overrides the request's (the router de-chunked the
    body): CONTENT_LENGTH then takes the Transfer-Encoding header's slot and
    HTTP_TRANSFER_ENCODING is dropped. ``router=None`` omits UWSGI_ROUTER
    (workers serving ``--http-socket``).
    """
    path = head.path
    if b"%" in path:
        path = unquote_to_bytes(path)
    out: list[tuple[bytes, bytes]] = [(b"REQUEST_METHOD", head.method)]
    if b"?" in head.target:
        out += ((b"PATH_INFO", path), (b"REQUEST_URI", head.target), (b"QUERY_STRING", head.query))
    else:
        out += ((b"REQUEST_URI", head.target), (b"PATH_INFO", path), (b"QUERY_STRING", b""))
    out.append((b"SERVER_PROTOCOL", head.version))
    out.append((b"SCRIPT_NAME", b""))
    name_from_host = server_name_as_http_host and head.host is not None
    if not name_from_host:
        out.append((b"SERVER_NAME", server_name))
    out.append((b"SERVER_PORT", server_port))
    if router is not None:
        out.append((b"UWSGI_ROUTER", router))
    if https:
        out.append((b"HTTPS", b"on"))
    out.append((b"REMOTE_ADDR", remote_addr.encode("ascii")))
    out.append((b"REMOTE_PORT", b"%d" % remote_port))

    dechunked = content_length is not None
    length = content_length if dechunked else head.content_length
    length_value = b"%d" % length if length is not None else b""
    length_done = False
    slots: dict[bytes, int] = {}
    for name, value in head.headers:
        var = header_var_name(name)
        if var == b"CONTENT_LENGTH" or (dechunked and var == b"HTTP_TRANSFER_ENCODING"):
            if not length_done and length is not None:
                out.append((b"CONTENT_LENGTH", length_value))
                length_done = True
            continue
        slot = slots.get(var)
        if slot is not None:
            out[slot] = (var, out[slot][1] + b", " + value)
            continue
        if name_from_host and var == b"HTTP_HOST":
            out.append((b"SERVER_NAME", value))
        slots[var] = len(out)
        out.append((var, value))
    if dechunked and not length_done:
        out.append((b"CONTENT_LENGTH", length_value))
    out.extend(extra)
    return out


def routing_key(pairs: Iterable[tuple[bytes, bytes]]) -> bytes | None:
    """The fastrouter's key (WIRE §7.1): UWSGI_FASTROUTER_KEY, else the last
    HTTP_HOST, else SERVER_NAME; values over 255 bytes are ignored."""
    forced = host = server_name = None
    for key, value in pairs:
        if len(value) > MAX_KEY_SIZE:
            continue
        if key == b"UWSGI_FASTROUTER_KEY":
            forced = value
        elif key == b"HTTP_HOST":
            host = value
        elif key == b"SERVER_NAME":
            server_name = value
    if forced is not None:
        return forced
    if host is not None:
        return host
    return server_name


__all__ = ["MAX_KEY_SIZE", "header_var_name", "request_vars", "routing_key"]
