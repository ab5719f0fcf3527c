"""The usual request head and the usual answer, read line by line through caches.

Why. Per-request Python decides a Python router's speed (PERF.md), and the HTTP router's
fast lane spent half of it reading heads: a whole-head regex match, a second pass to pick
out the header pairs, then the encoding of each one. But the lines of heads repeat, far
more than whole heads do: a client sends its Host, User-Agent and Accept lines with every
request, browsers of a kind send the same Accept lines, an endpoint asked twice has the
same request line, an application answers with the same status and Content-Type lines.
So each line is read once, with everything the lane needs from it (its validity, what it
means for framing and routing, the uwsgi var it becomes), and kept; the next time, the
line costs a dict lookup. Whole heads repeat as well (a keep-alive client asking for the
same thing again, pollers and probes, an application's answer to the same request), so
the reading of a whole head is kept too, in front of the lines: one lookup for all of it.
A head is kept whole only once all its lines came from their caches: one with a new
line (a new URL, a new length), or one too long to keep, is not likely to come again,
and keeping it would cost more than it saves (the garbage collector walks what is kept).

``usual_request`` serves the heads most clients send: an origin-form target; no
Transfer-Encoding, Upgrade or Expect; at most one plain Content-Length; no repeated var
(so at most one Host, one Connection and one X-Forwarded-For, which gets the client's
address appended). ``usual_answer`` serves an
answer head framed by one plain Content-Length.

Nothing is decided here that the strict parsers would decide otherwise: a line is kept
only as the strict grammar reads it, and anything these functions do not handle
themselves, including every head the parser would refuse, gives None, upon which the
caller takes the general path (``parse_request_head`` and the vars it builds,
``parse_response_framing``). When the answer is not None it equals what that path gives,
field for field and byte for byte (the property tests hold it to that).

The caches are bounded: only lines up to ``LINE_CACHED_LEN`` bytes are kept, at most
``LINE_CACHE_MAX`` of each kind, and heads up to ``HEAD_CACHED_LEN``, ``HEAD_CACHE_MAX``
of each kind (a few MB in all at worst); a full cache starts over. A client that sends
made-up lines can make the lane read every line again (what it cost before the caches,
give or take a fifth), not hold more memory. The lines of a user's secrets are never
kept (Cookie, Set-Cookie, Authorization, tokens and keys: a word in the header's name
says which), nor a head that has one, nor a request head with X-Forwarded-For (its var
holds the client's address).
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable
from typing import Any

from .http1 import (
    _BODY_METHODS,
    _HEADER_RE,
    _HOST_CHARS,
    _MAX_LENGTH_DIGITS,
    _TOKEN,
    DEFAULT_HEAD_LIMIT,
    Framing,
    RequestHead,
    _keep_alive,
    _new_head,
    _tokens,
)
from .vars import _key, _u16, header_var_name, line_vars

# Only lines this long are kept, and this many of each kind; a full cache starts over.
LINE_CACHED_LEN = 256
LINE_CACHE_MAX = 1024
# Whole heads: only heads this long are kept, and this many of each kind (requests,
# answers); a full cache starts over.
HEAD_CACHED_LEN = 1024
HEAD_CACHE_MAX = 1024

# A request line of the usual shape: an origin-form target, HTTP/1.0 or 1.1.
_ORIGIN_LINE_RE = re.compile(rb"(" + _TOKEN + rb") (/[\x21\x22\x24-\x7e\x80-\xff]*) (HTTP/1\.[01])")
# A header line's value without its leading OWS; a value with trailing OWS is left to the
# parser (it strips it).
_OWS = b" \t"
_HTTP11 = b"HTTP/1.1"
_CRLF = b"\r\n"
_END = b"\r\n\r\n"
# What a request header line asks of the head.
_PLAIN, _HOST, _CONNECTION, _FORWARDED, _LENGTH, _OTHER = range(6)
# Header names (lower case) left to the general path: they frame a body in chunks or
# change the protocol.
_LEAVE = frozenset((b"transfer-encoding", b"upgrade", b"expect"))
_FORWARDED_VAR = b"HTTP_X_FORWARDED_FOR"
# Lines of one user's secrets are read every time, never kept: they rarely repeat across
# users anyway, and a cache shared by all should not hold them (nor say, by its timing,
# whether a value was seen). A secret's header is known by a word in its name (Cookie,
# Set-Cookie, Authorization, X-Auth-Token, X-Api-Key, X-CSRF-Token, ...).
_SECRET_WORDS = (b"cookie", b"auth", b"token", b"secret", b"session", b"csrf", b"xsrf",
                 b"passw", b"api-key", b"apikey", b"api_key", b"signature")


def _secret(lname: bytes) -> bool:
    """Whether a header (its lower-case name) holds a secret of one user."""
    return any(word in lname for word in _SECRET_WORDS)


RequestLine = tuple[bytes, bytes, bytes, bytes, bytes, bytes]
HeaderLine = tuple[tuple[bytes, bytes], bytes, int, bytes, int | None]


# Misses of the line caches, all kinds (``_LineCache``).
_line_misses = 0


class _LineCache(dict):
    """Line -> what ``read`` makes of it. A hit is one C-level lookup; a miss
    (``__missing__``) reads the line and keeps the answer when ``read`` says it may be
    shared, for lines up to ``LINE_CACHED_LEN`` bytes, ``LINE_CACHE_MAX`` of them (a
    full cache starts over). ``_line_misses`` counts the misses of them all: a head
    read with no miss is one seen before (kept whole then)."""

    def __init__(self, read: Callable[[bytes], tuple[Any, bool]]) -> None:
        super().__init__()
        self.read = read

    def __missing__(self, line: bytes) -> Any:
        global _line_misses
        _line_misses += 1
        entry, shared = self.read(line)
        if shared and len(line) <= LINE_CACHED_LEN:
            if len(self) >= LINE_CACHE_MAX:
                self.clear()
            self[line] = entry
        return entry


def _request_line(line: bytes) -> tuple[RequestLine | bool, bool]:
    match = _ORIGIN_LINE_RE.fullmatch(line)
    entry: RequestLine | bool = False
    if match is not None:
        method, target, version = match.groups()
        path, _, query = target.partition(b"?")
        if b"%00" in path:
            return False, True  # refused: the parser says why
        try:
            encoded = b"".join(line_vars(method, target, path, query, version, b""))
            entry = (method, target, path, query, version, encoded)
        except struct.error:  # a target longer than 65535 bytes: the parser refuses it
            pass
    return entry, True


def _header_line(line: bytes) -> tuple[HeaderLine | bool, bool]:
    match = _HEADER_RE.fullmatch(line)
    entry: HeaderLine | bool = False
    if match is not None and line[-1:] not in (b" ", b"\t"):
        name, value = match.groups()
        value = value.lstrip(_OWS)
        lname = name.lower()
        var = header_var_name(name)
        # X-Forwarded-For by its var: X_Forwarded_For is the same var to the node.
        kind = (_HOST if lname == b"host" else _CONNECTION if lname == b"connection"
                else _FORWARDED if var == _FORWARDED_VAR
                else _LENGTH if lname == b"content-length"
                else _OTHER if lname in _LEAVE else _PLAIN)
        if kind == _HOST and value.translate(None, _HOST_CHARS):
            kind = _OTHER  # not a URI host: refused there
        number, shown = None, value
        if kind == _LENGTH:
            if value.isdigit() and len(value) <= _MAX_LENGTH_DIGITS:
                number = int(value)
                shown = b"%d" % number  # the var says the number (no leading zeros)
            else:
                kind = _OTHER  # a list, a sign, a space: the parser reads or refuses it
        try:
            encoded = _key(var) if kind == _FORWARDED else _key(var) + _u16(len(shown)) + shown
            entry = ((name, value), encoded, kind, var, number)
        except struct.error:  # a value longer than 65535 bytes: the parser refuses it
            pass
        return entry, not _secret(lname)
    return entry, True


# Request line -> (method, target, path, query, version, their encoded vars), or False:
# not usual.
_request_lines = _LineCache(_request_line)
# Header line -> ((name, value), its encoded var, kind, var name, the length of a plain
# Content-Length), or False: not usual. X-Forwarded-For's encoded var is its key alone:
# the value grows by the client's address.
_header_lines = _LineCache(_header_line)
# Whole request head (up to its blank line) -> (head, its request line's vars, its header
# lines' vars): heads repeat too (a keep-alive client asking for the same thing, a
# poller, a probe), and one lookup is cheaper than one per line. Kept once all its lines
# came from their caches (so never a head with a secret line: that line is never kept),
# and never one with X-Forwarded-For (its var holds this client's address).
_request_heads: dict[bytes, tuple[RequestHead, bytes, bytes]] = {}


def _keep_head(cache: dict[bytes, Any], whole: bytes, entry: Any) -> None:
    """Keep a whole head's reading, up to ``HEAD_CACHE_MAX`` of them (a full cache
    starts over)."""
    if len(cache) >= HEAD_CACHE_MAX:
        cache.clear()
    cache[whole] = entry


def usual_request(buf: bytes, limit: int, connection_vars: bytes, extra_block: bytes = b"",
                  client_addr: bytes | None = None) -> tuple[RequestHead, bytes] | None:
    """``(head, block)`` for the usual head at the start of ``buf``: what
    ``parse_request_head(buf, limit)`` gives, and the vars block ``encode_head_vars(head,
    connection_vars, extra_block=extra_block)`` makes of it, with ``, <client_addr>``
    appended to X-Forwarded-For (a head that has one is not served without
    ``client_addr``). None for any other input, complete or not, valid or not: the
    general path says what it is."""
    end = buf.find(_END, 0, limit)
    if end < 0:
        return None
    whole = buf[:end]
    keep = end <= HEAD_CACHED_LEN
    if keep:
        known = _request_heads.get(whole)
        if known is not None:  # seen before: (head, its line's vars, its headers' vars)
            head, first_vars, header_vars = known
            return head, b"".join((first_vars, connection_vars, header_vars, extra_block))
    lines = whole.split(_CRLF)
    misses = _line_misses
    first = _request_lines[lines[0]]
    if not first:
        return None
    method, target, path, query, version, first_vars = first  # type: ignore[misc]
    parts = []
    headers = []
    names = []
    host = connection = length = None
    for line in lines[1:]:
        entry = _header_lines[line]
        if not entry:
            return None
        pair, var_bytes, kind, var, number = entry  # type: ignore[misc]
        if kind:
            if kind == _HOST:
                host = pair[1]
            elif kind == _CONNECTION:
                connection = pair[1]
            elif kind == _LENGTH:
                length = number
            elif kind == _FORWARDED and client_addr is not None:
                # The proxy chain grows by the client we saw: "<existing>, <client ip>"
                # (no address on a unix socket: the chain stays as it came).
                value = pair[1] + b", " + client_addr if client_addr else pair[1]
                if len(value) > 65535:
                    return None  # refused there
                var_bytes += _u16(len(value)) + value
                keep = False  # the value depends on this client
            else:
                return None
        headers.append(pair)
        parts.append(var_bytes)
        names.append(var)
    if len(names) > 1 and len(set(names)) < len(names):
        return None  # the values merge, or a second Host (refused there)
    http11 = version == _HTTP11
    if host is None and http11:
        return None  # refused there: HTTP/1.1 needs a Host
    head = _new_head(RequestHead, (
        method, target, path, query, version, headers, length, False,
        http11 if connection is None else _keep_alive(http11, _tokens([connection])),
        False, None, host, end + 4))
    header_vars = b"".join(parts)
    if keep and _line_misses == misses:
        _keep_head(_request_heads, whole, (head, first_vars, header_vars))
    return head, b"".join((first_vars, connection_vars, header_vars, extra_block))


# -- the answer ---------------------------------------------------------------------------

# A status line as the strict parser reads it.
_STATUS_LINE_RE = re.compile(rb"HTTP/1\.([01]) ([0-9]{3})(?:[ \t][^\r\n]*)?")
# What an answer header line means for the usual answer.
_PLAIN_LINE, _FRAMING_LINE = -1, -2
_FRAMING = frozenset((b"transfer-encoding", b"connection"))


def _status_line(line: bytes) -> tuple[tuple[int, bool] | bool, bool]:
    match = _STATUS_LINE_RE.fullmatch(line)
    entry: tuple[int, bool] | bool = False
    if match is not None:
        status = int(match[2])
        if status >= 200 and status != 204 and status != 304:
            entry = (status, match[1] == b"1")
    return entry, True


def _answer_line(line: bytes) -> tuple[int, bool]:
    match = _HEADER_RE.fullmatch(line)
    entry = _FRAMING_LINE
    if match is not None:
        name, value = match.groups()
        lname = name.lower()
        if lname == b"content-length":
            value = value.lstrip(_OWS)
            if value.isdigit() and len(value) <= _MAX_LENGTH_DIGITS:
                entry = int(value)
        elif lname not in _FRAMING:
            return _PLAIN_LINE, not _secret(lname)
    return entry, True


# Status line -> (status, keep_alive), or False: not a usual answer's.
_status_lines = _LineCache(_status_line)
# Answer header line -> its Content-Length, _PLAIN_LINE, or _FRAMING_LINE (anything else
# that frames the answer, or a line the usual answer does not have).
_answer_lines = _LineCache(_answer_line)
# Whole answer head (up to its blank line) -> its framing: an application answers the
# same thing with the same head. Kept once all its lines came from their caches (so never
# a head with a secret line, Set-Cookie say: that line is never kept).
_answer_heads: dict[bytes, Framing] = {}


def usual_answer(buf: bytes, request_method: bytes, limit: int = DEFAULT_HEAD_LIMIT
                 ) -> Framing | None:
    """What ``parse_response_framing`` gives for the usual answer head at the start of
    ``buf``: a final status, one plain Content-Length, nothing else that frames it
    (``(status, "length", length, keep_alive, head size)``); None for anything else,
    complete or not, valid or not: the general path says what it is."""
    end = buf.find(_END, 0, limit)
    if end < 0 or request_method not in _BODY_METHODS:
        return None
    whole = buf[:end]
    keep = end <= HEAD_CACHED_LEN
    if keep:
        known = _answer_heads.get(whole)
        if known is not None:
            return known
    lines = whole.split(_CRLF)
    misses = _line_misses
    status = _status_lines[lines[0]]
    if not status:
        return None
    length = -1
    for line in lines[1:]:
        entry = _answer_lines[line]
        if entry < 0:
            if entry == _PLAIN_LINE:
                continue
            return None  # framed otherwise, or not a line the usual answer has
        if length >= 0:
            return None  # a second Content-Length
        length = entry
    if length < 0:
        return None
    framing = (status[0], "length", length, status[1], end + 4)  # type: ignore[index]
    if keep and _line_misses == misses:
        _keep_head(_answer_heads, whole, framing)
    return framing  # type: ignore[return-value]


__all__ = ["usual_answer", "usual_request"]
