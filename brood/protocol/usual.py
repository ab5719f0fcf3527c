"""The usual request head, parsed and turned into uwsgi vars in one pass.

Why. The HTTP router's fast lane spends a third of its Python per request on the head:
``parse_request_head`` walks the header pairs to pick out the ones that frame the
request, then ``encode_head_vars`` walks them again to encode each. Here one walk
does both, for the heads most clients send: an origin-form target, no body, no
Upgrade, Expect or X-Forwarded-For, at most one Host and one Connection header.

Nothing is decided here that the strict parser would decide otherwise: the head must
pass the same whole-head match (``_COMMON_HEAD_RE``), and anything this walk does not
handle itself, including every head the parser would refuse, gives None, upon which
the caller takes the general path (``parse_request_head`` and the vars it builds). When
the answer is not None it equals what that path gives, field for field and byte for
byte (the property tests hold it to that).
"""

from __future__ import annotations

import re
import struct

from .http1 import (
    _HEADER_PAIRS_RE,
    _HOST_CHARS,
    _TOKEN,
    RequestHead,
    _keep_alive,
    _new_head,
    _tokens,
)
from .vars import (
    _NAME_CACHE_MAX,
    _NAME_CACHED_LEN,
    MAX_KEY_SIZE,
    _key,
    _u16,
    header_var_name,
    line_vars,
)

# What the parser's whole-head match (_COMMON_HEAD_RE) takes, narrowed to an origin-form
# target and values without trailing OWS (the parser strips it; the pairs would keep it).
_USUAL_HEAD_RE = re.compile(
    rb"(" + _TOKEN + rb") (/[\x21-\x7e\x80-\xff]*) (HTTP/1\.[01])\r\n"
    rb"(?:" + _TOKEN + rb":[\t\x20-\x7e\x80-\xff]*(?<![ \t])\r\n)*+\r\n"
)
_HTTP11 = b"HTTP/1.1"
# What a header name asks of the walk.
_PLAIN, _HOST, _CONNECTION, _OTHER = range(4)
# Header names (lower case) the walk leaves to the general path: they frame a body,
# change the protocol, or change a var (X-Forwarded-For is appended to).
_LEAVE = frozenset((b"content-length", b"transfer-encoding", b"upgrade", b"expect",
                    b"x-forwarded-for"))
# Header name as sent -> (encoded key, what it asks, var name); bounded.
_entries: dict[bytes, tuple[bytes, int, bytes]] = {}
# Host values seen valid (URI host characters only): most requests skip the check.
# Bounded in count, and only routing-key-sized ones are kept.
_good_hosts: set[bytes] = set()


def _entry(name: bytes) -> tuple[bytes, int, bytes]:
    lname = name.lower()
    kind = (_HOST if lname == b"host" else _CONNECTION if lname == b"connection"
            else _OTHER if lname in _LEAVE else _PLAIN)
    var = header_var_name(name)
    entry = (_key(var), kind, var)
    if len(_entries) < _NAME_CACHE_MAX and len(name) <= _NAME_CACHED_LEN:
        _entries[name] = entry
    return entry


def _repeats(headers: list[tuple[bytes, bytes]]) -> bool:
    """Whether two header names give the same var (their values would merge)."""
    return len({(_entries.get(name) or _entry(name))[2] for name, _ in headers}) < len(headers)


def usual_request(buf: bytes, limit: int, connection_vars: bytes,
                  extra_block: bytes = b"") -> tuple[RequestHead, bytes] | None:
    """``(head, block)`` for the usual head at the start of ``buf``: what
    ``parse_request_head(buf, limit)`` gives, and the vars block ``encode_head_vars(head,
    connection_vars, extra_block=extra_block)`` makes of it. None for any other input,
    complete or not, valid or not: the general path says what it is."""
    match = _USUAL_HEAD_RE.match(buf, 0, limit)
    if match is None:
        return None
    method, target, version = match.groups()
    end = match.end()
    headers = _HEADER_PAIRS_RE.findall(buf, match.end(3) + 2, end - 2)
    path, _, query = target.partition(b"?")
    host = connection = None
    try:
        parts = line_vars(method, target, path, query, version, connection_vars)
        for name, value in headers:
            key, kind, _ = _entries.get(name) or _entry(name)
            if kind:
                if kind == _HOST:
                    host = value
                elif kind == _CONNECTION:
                    connection = value
                else:
                    return None
            parts += (key, _u16(len(value)), value)
    except struct.error:  # a value longer than 65535 bytes: the general path refuses it
        return None
    if len(headers) > 1 and _repeats(headers):
        return None  # the values merge, or a second Host (refused there)
    http11 = version == _HTTP11
    if host is None:
        if http11:
            return None  # refused there: HTTP/1.1 needs a Host
    elif host not in _good_hosts:
        if host.translate(None, _HOST_CHARS):
            return None  # refused there: not a URI host
        if len(_good_hosts) < _NAME_CACHE_MAX and len(host) <= MAX_KEY_SIZE:
            _good_hosts.add(host)
    if extra_block:
        parts.append(extra_block)
    return _new_head(RequestHead, (
        method, target, path, query, version, headers, None, False,
        http11 if connection is None else _keep_alive(http11, _tokens([connection])),
        False, None, host, end)), b"".join(parts)


__all__ = ["usual_request"]
