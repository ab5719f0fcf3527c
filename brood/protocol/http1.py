"""HTTP/1.0 and 1.1 heads: a strict request parser, a tolerant response parser.

Shared by the HTTP router (client side) and ``--http-socket`` workers.

How it works. The caller keeps a buffer and calls ``parse_request_head`` after
each read: ``None`` means "need more", a ``RequestHead`` says how many bytes
the head took (``size``) and how the body is framed. The head is found with one
``bytes.find`` for CRLFCRLF bounded by ``limit``; one regex matches the
request line, one validates the whole header block, one ``findall`` yields the
(name, value) pairs and another picks out the few headers that decide framing,
persistence and routing. The work per request is a handful of C-level scans,
with no per-line Python loop; only a head that fails a scan is looked at line by
line, to say why it is refused. A response head of the usual CRLF shape is
matched whole the same way; any other shape takes the tolerant line-by-line path.

Request smuggling is the threat model (RFC 9112 §6.3, §11.2): the router and the
worker behind it must agree on where each request ends, so every head whose
framing could be read two ways is refused rather than guessed at:

* Line endings must be CRLF. A bare LF or a bare CR anywhere in the head is a
  400 (decision: no "lenient LF" mode, because a peer behind us might split
  lines differently). Empty lines before the request line are skipped
  (RFC 9112 §2.2: clients send a stray CRLF after a POST body).
* obs-fold (a line starting with SP/HTAB), whitespace before the colon, a name
  that is not a token, control characters in a value: 400.
* Content-Length: digits only; repeated (or a list) only with one equal value.
* Transfer-Encoding: the codings must end in a single ``chunked``; a final
  coding other than chunked is 400 (length undeterminable), other codings
  before chunked are 501 (we do not decode them). Together with
  Content-Length, or in an HTTP/1.0 request: 400.
* Host: at most one; required in HTTP/1.1; restricted to URI host characters
  (no ``/``, no spaces) because it becomes a routing key and a path part for
  ``--http-use-pattern``.
* Versions other than 1.0 and 1.1 (including HTTP/0.9 lines and the HTTP/2
  preface): 505.

The response parser frames a backend's answer so the router can keep the
client connection alive; the backend is our own side, so it accepts bare LF
line endings and a missing reason phrase, but still refuses ambiguous framing
(both Content-Length and Transfer-Encoding, differing lengths) with a 502.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

from .errors import (
    BadRequest,
    BadResponse,
    HeadTooLarge,
    NotImplementedCoding,
    UnsupportedVersion,
)

# Default head limit: uWSGI's HTTP router caps a request head at 64 KiB
# (WIRE §1.6); it must also fit a 65535-byte vars block after conversion.
DEFAULT_HEAD_LIMIT = 65535
# 18 decimal digits stay below 2**63: longer lengths are absurd and would only
# feed big-int arithmetic to an attacker.
_MAX_LENGTH_DIGITS = 18

_TOKEN = rb"[-!#$%&'*+.^_`|~0-9A-Za-z]+"
_TOKEN_RE = re.compile(_TOKEN)
# A header line: token, colon, then any visible bytes, SP and HTAB (obs-text allowed).
_HEADER_RE = re.compile(rb"(" + _TOKEN + rb"):([\t\x20-\x7e\x80-\xff]*)")
# Request target: no controls, no spaces; obs-text tolerated as browsers send it.
# The whole header block at once: lines of that shape, each ending in CRLF.
_HEADERS_RE = re.compile(rb"(?:" + _TOKEN + rb":[\t\x20-\x7e\x80-\xff]*\r\n)*+")
# The header lines' repeats are possessive (*+): a line starts with a token character and
# the head's end with CR, so giving back a line can never make a match; sre then keeps no
# backtracking state per line (a quarter of a response head's match).
# Header names whose values decide framing, persistence or routing, picked out of a
# validated header block by one case-insensitive scan (each line starts after a CRLF).
_SPECIAL_RE = re.compile(
    rb"\r\n(host|content-length|transfer-encoding|connection|upgrade|expect):[ \t]*([^\r\n]*)",
    re.IGNORECASE,
)
_NO_SPECIAL: dict[bytes, list[bytes]] = {}
# The same for the framing headers of a response.
_RESPONSE_SPECIAL_RE = re.compile(
    rb"\r\n(content-length|transfer-encoding|connection):[ \t]*([^\r\n]*)", re.IGNORECASE)
# Request methods whose answers have a body framed by the answer's own headers.
_BODY_METHODS = frozenset((b"GET", b"POST", b"PUT", b"DELETE", b"OPTIONS", b"PATCH"))
# No "#": a fragment is never sent (RFC 9112 §3.2), and a proxy that passes one lets a
# node see a path its access rules were not written for.
_TARGET_RE = re.compile(rb"[\x21\x22\x24-\x7e\x80-\xff]+")
_VERSION_RE = re.compile(rb"HTTP/([0-9])\.([0-9])")
# What the first bytes of a request may look like before its line is complete:
# lets the router refuse TLS or binary garbage at once instead of waiting.
_REQUEST_PREFIX_RE = re.compile(rb"(?:\r\n)*" + rb"[-!#$%&'*+.^_`|~0-9A-Za-z]*(?: |\r?\Z)")
# URI host characters (RFC 3986 reg-name, IP literals, port): what a Host may hold.
_HOST_RE = re.compile(rb"[-A-Za-z0-9._~!$&'()*+,;=:\[\]%]*")
_HOST_CHARS = b"-ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._~!$&'()*+,;=:[]%"
_ABSOLUTE_RE = re.compile(rb"[A-Za-z][-A-Za-z0-9+.]*://([^/?#]*)([^?#]*)(?:\?([^#]*))?")
_LENGTH_RE = re.compile(rb"[0-9]{1,%d}" % _MAX_LENGTH_DIGITS)
# A status code is 100-599 (RFC 9110 §15); 6xx-9xx pass as unknown classes, less is garbage.
_STATUS_RE = re.compile(rb"HTTP/1\.([01]) ([1-9][0-9]{2})(?:[ \t](.*))?")
# The common response head in one C-level match: a status line and header lines, all
# CRLF-terminated, then the blank line. Anything else takes the tolerant slow path.
_RESPONSE_HEAD_RE = re.compile(
    rb"HTTP/1\.([01]) ([1-9][0-9]{2})(?:[ \t]([^\r\n]*))?\r\n"
    rb"(?:" + _TOKEN + rb":[\t\x20-\x7e\x80-\xff]*\r\n)*+\r\n"
)
# Every header line of a validated block as (name, value), in one findall. Values
# keep trailing OWS (a lazy match would backtrack quadratically on long runs of
# spaces); the caller strips it in the rare head that has some.
_HEADER_PAIRS_RE = re.compile(rb"(" + _TOKEN + rb"):[ \t]*([^\r\n]*)\r\n")
# Request line of the common shape (validated names, a target, HTTP/1.0 or 1.1).
_REQUEST_LINE_RE = re.compile(
    rb"(" + _TOKEN + rb") ([\x21\x22\x24-\x7e\x80-\xff]+) (HTTP/1\.[01])\r\n"
)

# The common request head whole, in one C-level match from its first byte through the
# blank line: a request line of validated shape (HTTP/1.0 or 1.1) and header lines that
# pass _HEADERS_RE. It ends at the first CRLFCRLF, so it also finds the head's end.
_COMMON_HEAD_RE = re.compile(
    rb"(" + _TOKEN + rb") ([\x21\x22\x24-\x7e\x80-\xff]+) HTTP/1\.([01])\r\n"
    rb"(?:" + _TOKEN + rb":[\t\x20-\x7e\x80-\xff]*\r\n)*+\r\n"
)
# Heads with up to this many header lines pick out the special ones in a Python loop
# over the pairs; longer heads use one _SPECIAL_RE scan instead.
_LOOP_SPECIAL_MAX = 6
_SPECIAL_NAMES = frozenset((b"host", b"content-length", b"transfer-encoding", b"connection",
                            b"upgrade", b"expect"))

_OWS = b" \t"
# tuple.__new__ straight from C: a RequestHead without the Python-level __new__ frame.
_new_head = tuple.__new__


class RequestHead(NamedTuple):
    """A parsed request head; ``size`` is the bytes it took, body framing included.

    A named tuple: made at C speed on the per-request path (``_new_head``), read-only."""

    method: bytes
    target: bytes
    path: bytes  # raw (still percent-encoded), before '?'
    query: bytes  # raw, after the first '?'
    version: bytes  # b"HTTP/1.0" or b"HTTP/1.1"
    headers: list[tuple[bytes, bytes]]  # names as sent, values OWS-stripped
    content_length: int | None
    chunked: bool
    keep_alive: bool
    expect_continue: bool
    upgrade: bytes | None
    host: bytes | None
    size: int


@dataclass(slots=True)
class ResponseHead:
    """A parsed backend response head and how its body is framed.

    ``body_kind``: "length" (``content_length`` bytes), "chunked", "close"
    (until EOF) or "none". A 1xx head is followed by another head; 101 turns
    the connection into a tunnel.
    """

    version: bytes
    status: int
    reason: bytes
    headers: list[tuple[bytes, bytes]]
    content_length: int | None
    chunked: bool
    keep_alive: bool
    size: int
    body_kind: str = field(default="close")


def _tokens(values: list[bytes]) -> list[bytes]:
    """Lower-cased elements of comma-separated header values."""
    out = []
    for value in values:
        for part in value.split(b","):
            part = part.strip(_OWS)
            if part:
                out.append(part.lower())
    return out


def _keep_alive(http11: bool, connection: list[bytes]) -> bool:
    """HTTP/1.1 persists unless "close"; HTTP/1.0 only with "keep-alive"."""
    if b"close" in connection:
        return False
    return http11 or b"keep-alive" in connection


def _content_length(values: list[bytes], error: type[BadRequest] | type[BadResponse]) -> int:
    """One length from every Content-Length value; they must all agree."""
    if len(values) == 1:
        value = values[0]
        if value.isdigit() and len(value) <= _MAX_LENGTH_DIGITS:  # the usual: one plain value
            return int(value)
    lengths = set()
    for value in values:
        for part in value.split(b","):
            part = part.strip(_OWS)
            if not _LENGTH_RE.fullmatch(part):
                raise error(f"invalid Content-Length {value[:40]!r}")
            lengths.add(int(part))
    if len(lengths) != 1:
        raise error("conflicting Content-Length values")
    return lengths.pop()


def _header_error(line: bytes) -> BadRequest:
    """Say precisely why a header line failed the regex."""
    if line[:1] in (b" ", b"\t"):
        return BadRequest("obs-fold (folded header line)")
    if b"\r" in line or b"\n" in line:
        return BadRequest("bare CR or LF in the head")
    colon = line.find(b":")
    if colon < 0:
        return BadRequest("header line without a colon")
    name = line[:colon]
    if name[-1:] in (b" ", b"\t"):
        return BadRequest("whitespace between header name and colon")
    if not _TOKEN_RE.fullmatch(name):
        return BadRequest("invalid character in header name")
    return BadRequest("control character in header value")


# A LF not after a CR, or a CR before anything but a LF (a CR ending the bytes so far
# may have its LF in the next read).
_BARE_CR_OR_LF_RE = re.compile(rb"(?<!\r)\n|\r[^\n]")


def _find_head_end(buf: bytes | bytearray, start: int, limit: int) -> int:
    """Index of the CRLFCRLF ending the head, -1 if not yet there."""
    end = buf.find(b"\r\n\r\n", start, limit)
    if end >= 0:
        return end
    if len(buf) >= limit:
        if buf.find(b"\r\n", start, limit) < 0:  # the request line alone: its target
            raise HeadTooLarge(f"request line longer than {limit} bytes", status=414)
        raise HeadTooLarge(f"request head larger than {limit} bytes")
    if _BARE_CR_OR_LF_RE.search(buf, start):  # refused now, not once the head times out
        raise BadRequest("bare CR or LF in the head")
    if not _REQUEST_PREFIX_RE.match(buf, start):
        raise BadRequest("not an HTTP/1 request")
    first = buf.find(b"\r\n", start)
    if first >= 0:
        _request_line(bytes(buf[start:first]))  # refuse a bad request line early
    return -1


def _request_line(line: bytes) -> tuple[bytes, bytes, bytes]:
    if b"\n" in line or b"\r" in line:
        raise BadRequest("bare CR or LF in the request line")
    parts = line.split(b" ")
    if len(parts) != 3:
        if len(parts) == 2 and _TOKEN_RE.fullmatch(parts[0]) and _TARGET_RE.fullmatch(parts[1]):
            raise UnsupportedVersion("HTTP/0.9 request line")
        raise BadRequest("malformed request line")
    method, target, version = parts
    if not _TOKEN_RE.fullmatch(method):
        raise BadRequest("invalid method")
    if not _TARGET_RE.fullmatch(target):
        raise BadRequest("invalid request target")
    match = _VERSION_RE.fullmatch(version)
    if match is None:
        if version.startswith(b"HTTP/"):
            raise UnsupportedVersion("unrecognised HTTP version")
        raise BadRequest("malformed HTTP version")  # the name is case-sensitive (§2.3)
    if version not in (b"HTTP/1.1", b"HTTP/1.0"):
        raise UnsupportedVersion(f"HTTP/{match[1].decode()}.{match[2].decode()} not supported")
    return method, target, version


def _split_target(method: bytes, target: bytes) -> tuple[bytes, bytes, bytes | None]:
    """(path, query, authority) from the four request-target forms (RFC 9112 §3.2)."""
    if target[:1] == b"/":
        path, _, query = target.partition(b"?")
        if b"%00" in path:  # (nginx refuses it too: a C string ends there, a file name fails)
            raise BadRequest("a NUL byte (%00) in the request path")
        return path, query, None
    if target == b"*":
        if method != b"OPTIONS":
            raise BadRequest("asterisk-form only with OPTIONS")
        return b"*", b"", None
    if method == b"CONNECT":
        if not _HOST_RE.fullmatch(target) or b":" not in target:
            raise BadRequest("CONNECT needs an authority-form target")
        return b"", b"", target
    match = _ABSOLUTE_RE.fullmatch(target)
    if match is None:
        raise BadRequest("invalid request target")
    authority = match[1]
    if b"@" in authority or not _HOST_RE.fullmatch(authority):
        raise BadRequest("invalid authority in request target")
    if match[2] and b"%00" in match[2]:
        raise BadRequest("a NUL byte (%00) in the request path")
    return match[2] or b"/", match[3] or b"", authority


def _split_special(pairs: list[tuple[bytes, bytes]]) -> dict[bytes, list[bytes]]:
    """The values of the framing/routing headers among ``pairs``, by lower-case name."""
    special: dict[bytes, list[bytes]] = {}
    for name, value in pairs:
        lname = name.lower()
        bucket = special.get(lname)
        if bucket is None:
            special[lname] = [value]
        else:
            bucket.append(value)
    return special


def parse_request_head(buf: bytes | bytearray, limit: int = DEFAULT_HEAD_LIMIT) -> RequestHead | None:
    """Parse a request head at the start of ``buf``; None when incomplete.

    Raises HeadTooLarge when the head (with its final CRLFCRLF) does not fit in
    ``limit`` bytes, BadRequest/UnsupportedVersion/NotImplementedCoding when it
    is malformed or ambiguous (see the module docstring).

    The usual head (complete, well-formed, no leading empty lines, no trailing
    whitespace in values) takes ``_parse_common``: the same result with fewer scans.
    Anything else, including every head that is refused, takes the general path.
    """
    match = _COMMON_HEAD_RE.match(buf, 0, limit)
    if match is not None:
        end = match.end()
        # Trailing OWS in a value (rare): the general path strips it. Two C-level
        # substring scans cost less than one regex search for either byte.
        if buf.find(b" \r\n", 0, end) < 0 and buf.find(b"\t\r\n", 0, end) < 0:
            return _parse_common(buf, match)
    return _parse_general(buf, limit)


def _parse_common(buf: bytes | bytearray, match: re.Match[bytes]) -> RequestHead:
    """The fast path of ``parse_request_head`` for a head ``_COMMON_HEAD_RE`` matched
    (validated already, ending at ``match.end()``, no trailing OWS in any value)."""
    method, target, minor = match.groups()
    end = match.end()
    hstart = buf.find(b"\n") + 1
    headers = _HEADER_PAIRS_RE.findall(buf, hstart, end - 2)  # bytes, even from a bytearray
    http11 = minor == b"1"
    special: dict[bytes, list[bytes]] | None = None
    if len(headers) <= _LOOP_SPECIAL_MAX:
        for name, value in headers:
            lname = name.lower()
            if lname in _SPECIAL_NAMES:
                if special is None:
                    special = {lname: [value]}
                elif lname in special:
                    special[lname].append(value)
                else:
                    special[lname] = [value]
    else:
        found = _SPECIAL_RE.findall(buf, hstart - 2, end - 2)
        if found:
            special = _split_special(found)
    version = b"HTTP/1.1" if http11 else b"HTTP/1.0"
    if special is None:
        special = _NO_SPECIAL
    elif len(special) == 1 and target[:1] == b"/" and b"%00" not in target:
        hosts = special.get(b"host")
        if hosts is not None and len(hosts) == 1 and not hosts[0].translate(None, _HOST_CHARS):
            # The usual head: an origin-form target and one valid Host, nothing else to
            # weigh (what _request_head decides for it, without its general checks).
            path, _, query = target.partition(b"?")
            return _new_head(RequestHead, (method, target, path, query, version, headers, None,
                                           False, http11, False, None, hosts[0], end))
    get = special.get
    return _request_head(method, target, version, http11, headers, get(b"host", ()),
                         get(b"content-length"), get(b"transfer-encoding"),
                         get(b"connection"), get(b"upgrade"), get(b"expect"), end)


def _parse_general(buf: bytes | bytearray, limit: int) -> RequestHead | None:
    """``parse_request_head`` for any input: finds the end, says why a head is refused."""
    start = 0
    while buf.startswith(b"\r\n", start):
        start += 2
    end = _find_head_end(buf, start, limit)
    if end < 0:
        return None
    head_bytes = bytes(buf[start : end + 2])  # through the last header's CRLF
    # The request line: one regex for the usual shape; the checks say why otherwise.
    match = _REQUEST_LINE_RE.match(head_bytes)
    if match is not None:
        method, target, version = match.groups()
        hstart = match.end()
    else:
        hstart = head_bytes.find(b"\r\n") + 2
        method, target, version = _request_line(head_bytes[: hstart - 2])
    http11 = version == b"HTTP/1.1"

    special: dict[bytes, list[bytes]] = _NO_SPECIAL
    if hstart < len(head_bytes):
        # One C-level scan validates every header line; only a failure looks closer.
        if not _HEADERS_RE.fullmatch(head_bytes, hstart):
            for line in head_bytes[hstart:].split(b"\r\n")[:-1]:
                if not _HEADER_RE.fullmatch(line):
                    raise _header_error(line)
        headers = _HEADER_PAIRS_RE.findall(head_bytes, hstart)
        found = _SPECIAL_RE.findall(head_bytes, hstart - 2)
        # Trailing OWS (rare); find, not ``in``: see vars._QUESTION.
        if head_bytes.find(b" \r\n") >= 0 or head_bytes.find(b"\t\r\n") >= 0:
            headers = [(name, value.rstrip(_OWS)) for name, value in headers]
            found = [(name, value.rstrip(_OWS)) for name, value in found]
        if found:
            special = _split_special(found)
    else:
        headers = []
    get = special.get
    return _request_head(method, target, version, http11, headers, get(b"host", ()),
                         get(b"content-length"), get(b"transfer-encoding"),
                         get(b"connection"), get(b"upgrade"), get(b"expect"), end + 4)


def _request_head(method: bytes, target: bytes, version: bytes, http11: bool,
                  headers: list[tuple[bytes, bytes]], hosts: list[bytes] | tuple[()],
                  lengths: list[bytes] | None, codings: list[bytes] | None,
                  connection: list[bytes] | None, upgrade: list[bytes] | None,
                  expect: list[bytes] | None, size: int) -> RequestHead:
    """The checks and framing decisions shared by both paths, on the special headers'
    values (each a list in the order sent, None when absent)."""
    path, query, authority = _split_target(method, target)

    if len(hosts) > 1:
        raise BadRequest("several Host headers")
    host = hosts[0] if hosts else None
    if host is None and http11:
        raise BadRequest("HTTP/1.1 request without Host")
    if host is not None and host.translate(None, _HOST_CHARS):
        raise BadRequest("invalid Host header")
    if authority is not None and method != b"CONNECT":
        # RFC 9112 §3.2.2: the absolute-form's authority replaces Host, for routing and
        # for the node alike (HTTP_HOST); RFC 9110 §4.2.1: never an empty one
        if not authority:
            raise BadRequest("empty authority in request target")
        if host != authority:
            headers = _with_host(headers, authority)
        host = authority

    content_length = _content_length(lengths, BadRequest) if lengths else None
    chunked = False
    if codings:
        if not http11:
            raise BadRequest("Transfer-Encoding in an HTTP/1.0 request")
        if content_length is not None:
            raise BadRequest("both Content-Length and Transfer-Encoding")
        names = _tokens(codings)
        if not names or names[-1] != b"chunked" or b"chunked" in names[:-1]:
            raise BadRequest("Transfer-Encoding must end with one chunked")
        if len(names) > 1:
            raise NotImplementedCoding(f"unsupported transfer coding {names[0][:40]!r}")
        chunked = True

    if connection:
        conn = _tokens(connection)
        keep_alive = _keep_alive(http11, conn)
        up = b", ".join(upgrade) if upgrade and http11 and b"upgrade" in conn else None
    else:
        keep_alive = http11
        up = None
    expect_continue = http11 and expect is not None and any(
        v.lower() == b"100-continue" for v in expect)

    return _new_head(RequestHead, (method, target, path, query, version, headers, content_length,
                                   chunked, keep_alive, expect_continue, up, host, size))


def _with_host(headers: list[tuple[bytes, bytes]], host: bytes) -> list[tuple[bytes, bytes]]:
    """``headers`` with ``host`` as the Host line's value (added first when none)."""
    out = [(name, host) if name.lower() == b"host" else (name, value) for name, value in headers]
    if not any(name.lower() == b"host" for name, _ in headers):
        out.insert(0, (b"Host", host))
    return out


def _find_response_end(buf: bytes | bytearray, limit: int) -> int:
    """End (exclusive) of a response head, tolerating bare-LF lines; -1 if incomplete."""
    ends = []
    lf = buf.find(b"\n\n", 0, limit)
    if lf >= 0:
        ends.append(lf + 2)
    crlf = buf.find(b"\n\r\n", 0, limit)
    if crlf >= 0:
        ends.append(crlf + 3)
    if ends:
        return min(ends)
    if len(buf) >= limit:
        raise BadResponse(f"response head larger than {limit} bytes")
    if len(buf) >= 5 and not buf.startswith(b"HTTP/"):
        raise BadResponse("backend answer is not HTTP/1")
    return -1


def parse_response_head(
    buf: bytes | bytearray, limit: int = DEFAULT_HEAD_LIMIT, request_method: bytes = b"GET"
) -> ResponseHead | None:
    """Parse a backend's response head; None when incomplete, BadResponse when unusable."""
    match = _RESPONSE_HEAD_RE.match(buf)
    if match is None or match.end() > limit:
        return _parse_response_slow(buf, limit, request_method)
    # The usual CRLF head: validated by the match; pairs and framing in two more scans.
    http11_flag, status_text, reason = match.groups()
    end = match.end()
    hstart = buf.find(b"\n") + 1
    headers = _HEADER_PAIRS_RE.findall(buf, hstart, end)
    found = _RESPONSE_SPECIAL_RE.findall(buf, hstart - 2, end)
    if buf.find(b" \r\n", 0, end) >= 0 or buf.find(b"\t\r\n", 0, end) >= 0:
        headers = [(name, value.rstrip(_OWS)) for name, value in headers]
        found = [(name, value.rstrip(_OWS)) for name, value in found]
        reason = reason.rstrip(_OWS) if reason else reason
    special = _split_special(found) if found else _NO_SPECIAL
    return _response_head(http11_flag == b"1", int(status_text),
                          reason.lstrip(_OWS) if reason else b"", headers, special.get(b"content-length"),
                          special.get(b"transfer-encoding"), special.get(b"connection"), end,
                          request_method)


def _parse_response_slow(buf: bytes | bytearray, limit: int, request_method: bytes
                         ) -> ResponseHead | None:
    """Any head the one-regex path refused: bare LF lines, odd status lines, errors."""
    end = _find_response_end(buf, limit)
    if end < 0:
        return None
    lines = bytes(buf[:end]).split(b"\n")
    status_line = lines[0].rstrip(b"\r")
    match = _STATUS_RE.fullmatch(status_line)
    if match is None:
        raise BadResponse(f"bad status line {status_line[:60]!r}")
    http11 = match[1] == b"1"
    status = int(match[2])
    reason = (match[3] or b"").strip(_OWS)

    headers: list[tuple[bytes, bytes]] = []
    lengths: list[bytes] = []
    codings: list[bytes] = []
    connection: list[bytes] = []
    for raw in lines[1:]:
        line = raw[:-1] if raw[-1:] == b"\r" else raw
        if not line:
            continue  # the blank line(s) ending the head
        hmatch = _HEADER_RE.fullmatch(line)
        if hmatch is None:
            raise BadResponse(f"bad response header line {line[:60]!r}")
        name = hmatch[1]
        value = hmatch[2].strip(_OWS)
        headers.append((name, value))
        lname = name.lower()
        if lname == b"content-length":
            lengths.append(value)
        elif lname == b"transfer-encoding":
            codings.append(value)
        elif lname == b"connection":
            connection.append(value)
    return _response_head(http11, status, reason, headers, lengths, codings, connection, end,
                          request_method)


def _response_head(http11: bool, status: int, reason: bytes, headers: list[tuple[bytes, bytes]],
                   lengths: list[bytes] | None, codings: list[bytes] | None,
                   connection: list[bytes] | None, end: int, request_method: bytes
                   ) -> ResponseHead:
    """A ``ResponseHead`` from the status line and the framing headers' values."""
    content_length, chunked, body_kind, keep_alive = _framing(
        http11, status, lengths, codings, connection, request_method)
    return ResponseHead(b"HTTP/1.1" if http11 else b"HTTP/1.0", status, reason, headers,
                        content_length, chunked, keep_alive, end, body_kind)


def _framing(http11: bool, status: int, lengths: list[bytes] | None,
             codings: list[bytes] | None, connection: list[bytes] | None,
             request_method: bytes) -> tuple[int | None, bool, str, bool]:
    """(content_length, chunked, body_kind, keep_alive) of a response: RFC 9112 §6.3."""
    if lengths and codings:
        raise BadResponse("both Content-Length and Transfer-Encoding in response")
    content_length = _content_length(lengths, BadResponse) if lengths else None
    chunked = False
    if codings:
        names = _tokens(codings)
        chunked = bool(names) and names[-1] == b"chunked" and http11

    # Methods are case-sensitive (RFC 9110 §9.1): "head" is no HEAD, its answer has a body.
    if request_method == b"HEAD" or status < 200 or status in (204, 304):
        body_kind = "none"
    elif request_method == b"CONNECT" and status < 300:
        body_kind = "close"
    elif codings:
        body_kind = "chunked" if chunked else "close"
    elif content_length is not None:
        body_kind = "length"
    else:
        body_kind = "close"

    keep_alive = _keep_alive(http11, _tokens(connection)) if connection else http11
    if body_kind == "close" or status == 101:
        keep_alive = False
    return content_length, chunked, body_kind, keep_alive


# What a relay that forwards the head unchanged needs of it:
# (status, body_kind, content_length, keep_alive, head size).
Framing = tuple[int, str, "int | None", bool, int]


def parse_response_framing(buf: bytes | bytearray, limit: int = DEFAULT_HEAD_LIMIT,
                           request_method: bytes = b"GET") -> Framing | None:
    """``parse_response_head`` without the header list and the reason: the same status,
    framing and refusals at about a third of the cost (the fast lane's per-answer step).
    None when incomplete, BadResponse when unusable."""
    match = _RESPONSE_HEAD_RE.match(buf)
    if match is None or match.end() > limit:
        head = _parse_response_slow(buf, limit, request_method)
        if head is None:
            return None
        return head.status, head.body_kind, head.content_length, head.keep_alive, head.size
    end = match.end()
    found = _RESPONSE_SPECIAL_RE.findall(buf, buf.find(b"\n") - 1, end)
    status = int(match[2])
    if len(found) == 1 and request_method in _BODY_METHODS and status >= 200 and (
            status != 204 and status != 304):
        name, value = found[0]
        if (value.isdigit() and len(value) <= _MAX_LENGTH_DIGITS
                and name.lower() == b"content-length"):
            # The usual answer: one plain Content-Length and nothing else to weigh.
            return status, "length", int(value), match[1] == b"1", end
    lengths = codings = connection = None
    for name, value in found:
        value = value.rstrip(_OWS)
        lname = name.lower()
        if lname == b"content-length":
            lengths = [value] if lengths is None else lengths + [value]
        elif lname == b"transfer-encoding":
            codings = [value] if codings is None else codings + [value]
        else:
            connection = [value] if connection is None else connection + [value]
    content_length, _, body_kind, keep_alive = _framing(
        match[1] == b"1", status, lengths, codings, connection, request_method)
    return status, body_kind, content_length, keep_alive, end


STATUS_REASONS: dict[int, str] = {
    100: "Continue",
    101: "Switching Protocols",
    200: "OK",
    201: "Created",
    202: "Accepted",
    204: "No Content",
    206: "Partial Content",
    301: "Moved Permanently",
    302: "Found",
    303: "See Other",
    304: "Not Modified",
    307: "Temporary Redirect",
    308: "Permanent Redirect",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    411: "Length Required",
    413: "Content Too Large",
    414: "URI Too Long",
    415: "Unsupported Media Type",
    417: "Expectation Failed",
    421: "Misdirected Request",
    426: "Upgrade Required",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
    505: "HTTP Version Not Supported",
}


def simple_response(
    status: int,
    body: bytes | None = None,
    headers: Iterable[tuple[bytes, bytes]] = (),
    keep_alive: bool = False,
    version: bytes = b"HTTP/1.1",
) -> bytes:
    """A complete small response (router error pages).

    ``body=None`` gives a one-line text body such as ``502 Bad Gateway``;
    statuses that cannot carry a body (1xx, 204, 304) never get one.
    """
    reason = STATUS_REASONS.get(status, "Unknown").encode("ascii")
    no_body = status < 200 or status in (204, 304)
    if no_body:
        body = b""
    elif body is None:
        body = b"%d %s\n" % (status, reason)
    extra = list(headers)
    names = {name.lower() for name, _ in extra}
    lines = [b"%s %d %s" % (version, status, reason)]
    if not no_body:
        if b"content-type" not in names:
            lines.append(b"Content-Type: text/plain; charset=utf-8")
        lines.append(b"Content-Length: %d" % len(body))
    lines.extend(b"%s: %s" % (name, value) for name, value in extra)
    if b"connection" not in names:
        lines.append(b"Connection: keep-alive" if keep_alive else b"Connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


__all__ = [
    "DEFAULT_HEAD_LIMIT",
    "STATUS_REASONS",
    "RequestHead",
    "ResponseHead",
    "parse_request_head",
    "parse_response_framing",
    "parse_response_head",
    "simple_response",
]
