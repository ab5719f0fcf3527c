"""HTTP request head -> uwsgi vars, in the exact order of uWSGI's HTTP router.

WIRE.md §1.6 gives the order: REQUEST_METHOD; PATH_INFO/REQUEST_URI/
QUERY_STRING (PATH_INFO first only when the target has a query);
SERVER_PROTOCOL; SCRIPT_NAME; SERVER_NAME; SERVER_PORT; UWSGI_ROUTER; HTTPS;
REMOTE_ADDR; REMOTE_PORT; then one var per client header in arrival order
(repeated names merged as "v1, v2" into the first slot; Content-Length and
Content-Type bare); then ``--http-var`` extras. The fixtures under
shared/fixtures/requests/ are reproduced byte for byte by the tests.

PATH_INFO is the target's path with its dot segments removed (RFC 3986 §5.2.4:
``/static/../app.py`` is ``/app.py``), as uWSGI's HTTP router and --http-socket do,
then percent-decoded, then rid of the dot segments the escapes made (``%2e%2e``:
uWSGI leaves those, nginx removes them). REQUEST_URI stays as the client sent it.

Only the real ``Content-Length`` / ``Content-Type`` headers become bare
CONTENT_LENGTH / CONTENT_TYPE; ``Content_Length`` becomes
HTTP_CONTENT_LENGTH, so no header can forge the var that frames the body.
CONTENT_LENGTH carries the length the parser validated, not the raw text.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from urllib.parse import unquote_to_bytes

from .errors import HeadTooLarge
from .http1 import RequestHead
from .uwsgi import encode_vars

# Header names seen so far -> var names. Bounded so a client cycling through
# random names cannot grow it without limit; real traffic uses a few dozen.
_NAME_CACHE_MAX = 512
# Only names this short are kept: a client sending long made-up names cannot pin
# more than _NAME_CACHE_MAX * this many bytes.
_NAME_CACHED_LEN = 64
# Single bytes looked for as ints: ``b"?" in target`` makes CPython 3.11 raise and clear
# a TypeError inside (it tries the operand as an int first), twice the cost of memchr.
_QUESTION, _PERCENT = ord("?"), ord("%")
_name_cache: dict[bytes, bytes] = {}

# WIRE §7.1: the fastrouter ignores key values longer than this.
MAX_KEY_SIZE = 255

_BARE = {b"content-length": b"CONTENT_LENGTH", b"content-type": b"CONTENT_TYPE"}


def path_info(path: bytes) -> bytes:
    """PATH_INFO of a target's ``path``: dot segments removed, escapes decoded."""
    if b"/." in path:
        path = remove_dot_segments(path)
    if _PERCENT in path:
        path = unquote_to_bytes(path)
        if b"/." in path:
            path = remove_dot_segments(path)
    return path


def remove_dot_segments(path: bytes) -> bytes:
    """RFC 3986 §5.2.4 for a path that starts with "/": "." goes, ".." takes the segment
    before it, never past the root."""
    segments = path.split(b"/")
    kept = [segments[0]]
    for segment in segments[1:]:
        if segment == b"..":
            if len(kept) > 1:
                kept.pop()
        elif segment != b".":
            kept.append(segment)
    if segments[-1] in (b".", b".."):
        kept.append(b"")  # "/a/b/.." is the directory "/a/"
    return b"/".join(kept)


def header_var_name(name: bytes) -> bytes:
    """``x-lower_under`` -> ``HTTP_X_LOWER_UNDER``; Content-Length/-Type stay bare."""
    var = _name_cache.get(name)
    if var is None:
        var = _BARE.get(name.lower()) or b"HTTP_" + name.upper().replace(b"-", b"_")
        if len(_name_cache) < _NAME_CACHE_MAX and len(name) <= _NAME_CACHED_LEN:
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
    # A CONNECT's authority is its PATH_INFO, as uWSGI gives it.
    path = head.target if head.method == b"CONNECT" else path_info(head.path)
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


_u16 = struct.Struct("<H").pack


def _key(name: bytes) -> bytes:
    return _u16(len(name)) + name


def _pair(name: bytes, value: bytes) -> bytes:
    return _key(name) + _u16(len(value)) + value


# Pieces of the block that never change: a key with its length, or a whole pair.
_K_METHOD = _key(b"REQUEST_METHOD")
_K_PATH_INFO = _key(b"PATH_INFO")
_K_REQUEST_URI = _key(b"REQUEST_URI")
_K_QUERY_STRING = _key(b"QUERY_STRING")
_K_PROTOCOL = _key(b"SERVER_PROTOCOL")
_K_SERVER_NAME = _key(b"SERVER_NAME")
_K_SERVER_PORT = _key(b"SERVER_PORT")
_K_REMOTE_ADDR = _key(b"REMOTE_ADDR")
_K_REMOTE_PORT = _key(b"REMOTE_PORT")
_K_CONTENT_LENGTH = _key(b"CONTENT_LENGTH")
_EMPTY_QUERY = _pair(b"QUERY_STRING", b"")
_SCRIPT_NAME = _pair(b"SCRIPT_NAME", b"")
_HTTPS_ON = _pair(b"HTTPS", b"on")
_PROTOCOLS = {v: _K_PROTOCOL + _u16(len(v)) + v for v in (b"HTTP/1.0", b"HTTP/1.1")}
_METHOD_PAIRS = {m: _K_METHOD + _u16(len(m)) + m
                 for m in (b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"OPTIONS", b"PATCH")}
# Header name -> (var name, encoded key, needs a closer look); bounded like _name_cache.
_key_cache: dict[bytes, tuple[bytes, bytes, bool]] = {}
# The vars whose headers are not copied as they are (framing, --http-server-name-as-http-host).
_LOOK_CLOSER = frozenset((b"CONTENT_LENGTH", b"HTTP_TRANSFER_ENCODING", b"HTTP_HOST"))


def encode_request_vars(
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
) -> bytes:
    """``encode_vars(request_vars(...))`` with the same arguments, byte for byte, built
    straight from the head (the router's per-request path): constant keys are
    pre-encoded and no pair list is made. A head that repeats a header name (merged
    values) takes the general path."""
    name_from_host = server_name_as_http_host and head.host is not None
    try:
        middle = encode_connection_vars(
            remote_addr=remote_addr, remote_port=remote_port,
            server_name=None if name_from_host else server_name, server_port=server_port,
            https=https, router=router)
    except struct.error:
        raise HeadTooLarge("a var name or value is longer than 65535 bytes") from None
    block = encode_head_vars(head, middle, name_from_host=name_from_host,
                             content_length=content_length,
                             extra_block=encode_vars(extra) if extra else b"")
    if block is not None:
        return block
    return encode_vars(request_vars(
        head, remote_addr=remote_addr, remote_port=remote_port, server_name=server_name,
        server_port=server_port, https=https, extra=extra,
        server_name_as_http_host=server_name_as_http_host, router=router,
        content_length=content_length))


def encode_connection_vars(*, remote_addr: str, remote_port: int, server_name: bytes | None,
                           server_port: bytes, https: bool = False,
                           router: bytes | None = b"http") -> bytes:
    """The encoded pairs SCRIPT_NAME through REMOTE_PORT, the same for every request on
    one connection (a router keeps them per connection). ``server_name=None`` leaves
    SERVER_NAME out: ``--http-server-name-as-http-host`` takes it from the Host header."""
    u16 = _u16
    parts = [_SCRIPT_NAME]
    if server_name is not None:
        parts += (_K_SERVER_NAME, u16(len(server_name)), server_name)
    parts += (_K_SERVER_PORT, u16(len(server_port)), server_port)
    if router is not None:
        parts.append(_pair(b"UWSGI_ROUTER", router))
    if https:
        parts.append(_HTTPS_ON)
    addr = remote_addr.encode("ascii")
    port = b"%d" % remote_port
    parts += (_K_REMOTE_ADDR, u16(len(addr)), addr, _K_REMOTE_PORT, u16(len(port)), port)
    return b"".join(parts)


def line_vars(method: bytes, target: bytes, path: bytes, query: bytes, version: bytes,
              connection_vars: bytes) -> list[bytes]:
    """The encoded vars of the request line and the connection, REQUEST_METHOD through
    REMOTE_PORT, as parts of a block still to be joined. struct.error when a value is
    longer than 65535 bytes."""
    u16 = _u16
    method_pair = _METHOD_PAIRS.get(method) or _K_METHOD + u16(len(method)) + method
    protocol_pair = _PROTOCOLS.get(version) or _K_PROTOCOL + u16(len(version)) + version
    if _QUESTION in target:
        path = path_info(path)
        return [method_pair, _K_PATH_INFO, u16(len(path)), path, _K_REQUEST_URI,
                u16(len(target)), target, _K_QUERY_STRING, u16(len(query)), query,
                protocol_pair, connection_vars]
    # escapes, dot segments, absolute-form, CONNECT (its authority is its PATH_INFO)
    if _PERCENT in path or len(path) != len(target) or b"/." in path:
        path = target if method == b"CONNECT" else path_info(path)
        return [method_pair, _K_REQUEST_URI, u16(len(target)), target, _K_PATH_INFO,
                u16(len(path)), path, _EMPTY_QUERY, protocol_pair, connection_vars]
    # The usual: PATH_INFO is the target itself (origin-form, no escapes).
    uri = u16(len(target)) + target
    return [method_pair, _K_REQUEST_URI, uri, _K_PATH_INFO, uri, _EMPTY_QUERY, protocol_pair,
            connection_vars]


def encode_head_vars(head: RequestHead, connection_vars: bytes, *, name_from_host: bool = False,
                     content_length: int | None = None, extra_block: bytes = b"") -> bytes | None:
    """The whole vars block of ``head``, given its connection's ``encode_connection_vars``
    (made with ``server_name=None`` when ``name_from_host``) and the encoded extras; None
    when the head repeats a header name (``request_vars`` merges the values)."""
    u16 = _u16
    try:
        parts = line_vars(*head[:5], connection_vars)  # RequestHead's first five fields
        dechunked = content_length is not None
        length_done = False
        seen: set[bytes] = set()
        cache = _key_cache
        for name, value in head.headers:
            entry = cache.get(name) or _header_entry(name)
            var = entry[0]
            if var in seen:
                return None  # a repeated name: its values merge into the first slot
            seen.add(var)
            if entry[2]:  # CONTENT_LENGTH, HTTP_TRANSFER_ENCODING, HTTP_HOST: a closer look
                if var == b"CONTENT_LENGTH" or (dechunked and var == b"HTTP_TRANSFER_ENCODING"):
                    if not length_done:
                        length_done = True
                        parts.append(_length_pair(head, content_length))
                    continue
                if name_from_host and var == b"HTTP_HOST":
                    parts += (_K_SERVER_NAME, u16(len(value)), value)
            parts += (entry[1], u16(len(value)), value)
    except struct.error:
        raise HeadTooLarge("a var name or value is longer than 65535 bytes") from None
    if dechunked and not length_done:
        parts.append(_length_pair(head, content_length))
    if extra_block:
        parts.append(extra_block)
    return b"".join(parts)


def _header_entry(name: bytes) -> tuple[bytes, bytes, bool]:
    """(var, encoded key, needs a closer look) for a header name; cached (bounded)."""
    var = header_var_name(name)
    entry = (var, _key(var), var in _LOOK_CLOSER)
    if len(_key_cache) < _NAME_CACHE_MAX and len(name) <= _NAME_CACHED_LEN:
        _key_cache[name] = entry
    return entry


def _length_pair(head: RequestHead, content_length: int | None) -> bytes:
    """The CONTENT_LENGTH pair: the de-chunked length, else the validated one; empty
    when neither (a Content-Length header the parser did not keep)."""
    length = content_length if content_length is not None else head.content_length
    return b"" if length is None else _K_CONTENT_LENGTH + _pair_value(b"%d" % length)


def _pair_value(value: bytes) -> bytes:
    return _u16(len(value)) + value


def routing_key(pairs: Iterable[tuple[bytes, bytes]]) -> bytes | None:
    """The fastrouter's key (WIRE §7.1), read in order as uWSGI 2.0 reads it: a
    ``UWSGI_FASTROUTER_KEY`` sets it for good; an ``HTTP_HOST`` sets it unless one did
    (so the last wins); a ``SERVER_NAME`` only while it is still empty (the first wins,
    and an ``HTTP_HOST`` after it overrides it). Values over 255 bytes are passed over.
    None when it ends empty (no such var, or an empty value): no key, nothing to route."""
    key = b""
    forced = False
    for name, value in pairs:
        if name == b"SERVER_NAME":
            if not key and len(value) <= MAX_KEY_SIZE:
                key = value
        elif name == b"HTTP_HOST":
            if not forced and len(value) <= MAX_KEY_SIZE:
                key = value
        elif name == b"UWSGI_FASTROUTER_KEY" and len(value) <= MAX_KEY_SIZE:
            forced = True
            key = value
    return key or None


__all__ = ["MAX_KEY_SIZE", "encode_request_vars", "header_var_name", "request_vars", "routing_key"]
