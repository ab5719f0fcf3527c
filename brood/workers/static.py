"""uWSGI's static file serving in the workers (--static-map, --check-static...), and
--add-header / --del-header.

How it works, as uWSGI 2.0 does it (core/protocol.c, core/static.c). Before the app, a
GET or HEAD whose PATH_INFO does not end in a --static-skip-ext is looked up: first
under each --check-static directory (the whole PATH_INFO), then each --static-map whose
mount PATH_INFO starts with (a plain string prefix: /static also takes /staticx; the
rest of the path is appended to the directory, or the mapped file served as it is),
then each --static-map2 (the whole PATH_INFO appended). A candidate is resolved with
realpath(): it must still start with its directory or a --static-safe one (a symlink or
an escaped ``..`` leading elsewhere is refused, said in one line, and the request goes
on), and be a regular file, or a directory holding a --static-index file. A candidate
that does not exist goes on to the next one, and at the end to the app.

The answer: 304 when If-Modified-Since (RFC 1123) is not older than the file; with
--honour-range the first range of a Range header gives 206 (Content-Range) or 416;
else 200 with Content-Type from the mime table (/etc/mime.types, or the --mime-file
files), Expires by the --static-expires* rules, Content-Length and Last-Modified; FILE.gz
instead when the client accepts gzip and a --static-gzip* rule takes the file; with
--file-serve-mode only X-Sendfile / X-Accel-Redirect and Last-Modified. The body goes
out by the worker's os.sendfile path (a ``FileWrapper`` over the file positioned at
the range's start, its length in Content-Length).

Everything here but ``StaticFront.__call__``'s open() and the realpath()/stat() of
the lookup is pure: the time is passed in. A worker without these options never builds
a ``StaticFront`` (``front_from_config`` gives None) and pays nothing.
"""

from __future__ import annotations

import calendar
import os
import re
import stat
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from brood.config.option import OptionError
from brood.workers.loader import option
from brood.workers.response import FileWrapper

MIME_FILE = "/etc/mime.types"
# what the request log line shows (uWSGI keeps 200 for a 206 it sends)
STATIC_KEY = "brood.static"

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov",
           "Dec")
_MONTH_NUM = {m: i + 1 for i, m in enumerate(_MONTHS)}
# a Range header answered 416
INVALID = (-1, -1)
_SERVE_MODES = {"x-sendfile": "X-Sendfile", "xsendfile": "X-Sendfile",
                "x-accel-redirect": "X-Accel-Redirect", "xaccelredirect": "X-Accel-Redirect",
                "nginx": "X-Accel-Redirect"}


# --------------------------------------------------------------------------- pure parts

def http_date(t: float) -> str:
    """RFC 1123 date (English names whatever the locale)."""
    tm = time.gmtime(int(t))
    return (f"{_DAYS[tm.tm_wday]}, {tm.tm_mday:02d} {_MONTHS[tm.tm_mon - 1]} "
            f"{tm.tm_year:4d} {tm.tm_hour:02d}:{tm.tm_min:02d}:{tm.tm_sec:02d} GMT")


def parse_http_date(text: str) -> int | None:
    """Seconds of an RFC 1123 date, None for anything else (then it is ignored)."""
    parts = text.split()
    if len(parts) != 6 or not parts[0].endswith(",") or parts[5] != "GMT":
        return None
    month = _MONTH_NUM.get(parts[2])
    hms = parts[4].split(":")
    if month is None or len(hms) != 3:
        return None
    try:
        nums = [int(parts[1]), int(parts[3]), *(int(x) for x in hms)]
    except ValueError:
        return None
    day, year, hour, minute, sec = nums
    if not (1 <= day <= 31 and hour < 24 and minute < 60 and sec < 61 and year >= 1):
        return None
    try:
        return calendar.timegm((year, month, day, hour, minute, sec, 0, 0, 0))
    except (OverflowError, ValueError):
        return None


def parse_range(value: str, size: int) -> tuple[int, int] | None:
    """(first, last) byte of the first range of a Range header for a file of ``size``
    bytes; ``INVALID`` when it cannot be satisfied (416); None when the header is not a
    byte range (then it is ignored: 200)."""
    value = value.strip()
    if not value.startswith("bytes="):
        return None
    first = value[6:].split(",", 1)[0].strip()
    start_s, dash, end_s = first.partition("-")
    start_s, end_s = start_s.strip(), end_s.strip()
    if not dash or (start_s and not start_s.isdigit()) or (end_s and not end_s.isdigit()):
        return None
    if not start_s:  # a suffix: the last N bytes
        if not end_s:
            return None
        n = int(end_s)
        if n == 0 or size == 0:
            return INVALID
        return max(0, size - n), size - 1
    start = int(start_s)
    end = int(end_s) if end_s else size - 1
    if start >= size or end < start:
        return INVALID
    return start, min(end, size - 1)


def load_mime_types(paths: Iterable[str]) -> dict[str, str]:
    """extension -> type from mime.types files; the first mention of an extension wins
    (uWSGI's lookup stops at the first)."""
    table: dict[str, str] = {}
    for path in paths:
        try:
            with open(path, encoding="latin-1") as f:
                lines = f.read().splitlines()
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if not fields or fields[0].startswith("#"):
                continue
            for ext in fields[1:]:
                table.setdefault(ext, fields[0])
    return table


def mime_type(table: dict[str, str], name: bytes) -> str | None:
    """The type of a file by what follows the last dot of its path."""
    dot = name.rfind(b".")
    if dot < 0:
        return None
    return table.get(name[dot + 1:].decode("latin-1"))


@dataclass(frozen=True)
class Rule:
    """An Expires rule: a regexp (or a mime type) and seconds from now or from mtime."""

    match: Any
    delta: int
    from_mtime: bool


@dataclass
class Mapping:
    """One --static-map(2) / --check-static entry; the directory resolved at first use."""

    mount: bytes
    target: bytes
    keep_mount: bool  # static-map2 and check-static: the whole PATH_INFO is appended
    real: bytes | None = None
    is_file: bool = False

    def resolve(self) -> bytes | None:
        if self.real is None:
            try:
                real = os.path.realpath(self.target, strict=True)
            except OSError:
                return None
            self.is_file = os.path.isfile(real)
            self.real = real
        return self.real


@dataclass
class Found:
    """A file to answer with: its real path (maybe the .gz), its stat, gzip or not."""

    path: bytes
    st: os.stat_result
    name: bytes  # the path the mime type comes from
    gzip: bool = False


@dataclass
class Static:
    """The static options, read once (``from_config``)."""

    maps: list[Mapping] = field(default_factory=list)
    index: list[bytes] = field(default_factory=list)
    skip_ext: list[bytes] = field(default_factory=list)
    safe: list[bytes] = field(default_factory=list)
    mime: dict[str, str] = field(default_factory=dict)
    honour_range: bool = False
    expires_type: list[Rule] = field(default_factory=list)  # by mime type
    expires: list[Rule] = field(default_factory=list)  # by file name
    expires_path_info: list[Rule] = field(default_factory=list)
    expires_uri: list[Rule] = field(default_factory=list)
    gzip_all: bool = False
    gzip_prefix: list[bytes] = field(default_factory=list)
    gzip_suffix: list[bytes] = field(default_factory=list)
    gzip_re: list[Any] = field(default_factory=list)
    serve_header: str = ""  # X-Sendfile / X-Accel-Redirect (--file-serve-mode)
    log: Callable[[str], None] = print

    # -- lookup --------------------------------------------------------------------

    def lookup(self, path_info: bytes) -> Found | None:
        """The file ``path_info`` maps to, or None (the app answers)."""
        for sk in self.skip_ext:
            if path_info.endswith(sk):
                return None
        for m in self.maps:
            if not path_info.startswith(m.mount):
                continue
            root = m.resolve()
            if root is None:
                continue
            rest = path_info if m.keep_mount else path_info[len(m.mount):]
            found = self._file(root, rest, m.is_file)
            if found is not None:
                return found
        return None

    def _file(self, root: bytes, rest: bytes, is_file: bool) -> Found | None:
        name = root if is_file else root + b"/" + rest
        try:
            real = os.path.realpath(name, strict=True)
        except (OSError, ValueError):  # missing, a loop, a NUL byte
            return None
        if not self._allowed(real, root):
            return None
        try:
            st = os.stat(real)
        except OSError:
            return None
        if stat.S_ISDIR(st.st_mode):
            for idx in self.index:
                cand = real + idx if real.endswith(b"/") else real + b"/" + idx
                try:
                    cand = os.path.realpath(cand, strict=True)
                    st = os.stat(cand)
                except (OSError, ValueError):
                    continue
                if stat.S_ISREG(st.st_mode):
                    if not self._allowed(cand, root):  # (an index linked elsewhere)
                        return None
                    real = cand
                    break
            else:
                return None
        elif not stat.S_ISREG(st.st_mode):
            return None
        for sk in self.skip_ext:
            if real.endswith(sk):
                return None
        return Found(real, st, real)

    def _allowed(self, real: bytes, root: bytes) -> bool:
        """``real`` is ``root`` or below it, or below a --static-safe directory; else it
        is said, as uWSGI says it. Below means a whole path component: uWSGI's plain
        prefix test let /srv/static's symlink to /srv/static-private through."""
        if _under(real, root) or any(_under(real, s) for s in self.safe):
            return True
        self.log(f"[uwsgi-fileserve] security error: {os.fsdecode(real)} is not under "
                 f"{os.fsdecode(root)} or a safe path")
        return False

    def want_gzip(self, found: Found, accept_encoding: str) -> Found:
        """FILE.gz in place of FILE when the client takes gzip and a rule says so."""
        if "gzip" not in accept_encoding:
            return found
        path = found.path
        if not (self.gzip_all or any(path.startswith(p) for p in self.gzip_prefix)
                or any(path.endswith(s) for s in self.gzip_suffix)
                or any(r.search(path) for r in self.gzip_re)):
            return found
        try:
            st = os.stat(path + b".gz")
        except OSError:
            return found
        return Found(path + b".gz", st, path, gzip=True)

    # -- the answer ----------------------------------------------------------------

    def answer(self, found: Found, environ: dict[str, Any], now: float,
               ) -> tuple[str, list[tuple[str, str]], int, int]:
        """(status, headers, offset, length): length -1 means no body is sent."""
        st = found.st
        ims = environ.get("HTTP_IF_MODIFIED_SINCE")
        if ims:
            since = parse_http_date(ims)
            if since is not None and int(st.st_mtime) <= since:  # (whole seconds)
                return "304 Not Modified", [], 0, -1
        size = st.st_size
        offset, length = 0, size
        status = "200 OK"
        rng = environ.get("HTTP_RANGE") if self.honour_range else None
        parsed = parse_range(rng, size) if rng else None
        if parsed == INVALID:
            return "416 Requested Range Not Satisfiable", [("Content-Range", f"bytes */{size}")], 0, -1
        if parsed is not None:
            offset, length = parsed[0], parsed[1] - parsed[0] + 1
            status = "206 Partial Content"
        headers: list[tuple[str, str]] = []
        mtime = st.st_mtime
        for rules, subject in ((self.expires, found.path),
                               (self.expires_path_info, environ.get("PATH_INFO", "")),
                               (self.expires_uri, environ.get("REQUEST_URI", ""))):
            if rules:
                if isinstance(subject, str):
                    subject = subject.encode("latin-1", "replace")
                _expires(headers, rules, lambda r, s=subject: r.match.search(s), now, mtime)
        if found.gzip:
            headers.append(("Content-Encoding", "gzip"))
        ctype = mime_type(self.mime, found.name)
        if ctype:
            headers.append(("Content-Type", ctype))
            _expires(headers, self.expires_type, lambda r: r.match == ctype, now, mtime)
        if self.serve_header:
            headers.append((self.serve_header, os.fsdecode(found.path)))
            headers.append(("Last-Modified", http_date(mtime)))
            return status, headers, 0, -1
        headers.append(("Content-Length", str(length)))
        if parsed is not None:
            headers.append(("Content-Range", f"bytes {offset}-{offset + length - 1}/{size}"))
        headers.append(("Last-Modified", http_date(mtime)))
        return status, headers, offset, length


def _under(path: bytes, base: bytes) -> bool:
    """``path`` is ``base`` or inside it (whole components)."""
    base = base.rstrip(b"/")
    return path == base or path.startswith(base + b"/") or base == b""


def _expires(headers: list[tuple[str, str]], rules: list[Rule], hit: Callable[[Rule], Any],
             now: float, mtime: float) -> None:
    """The Expires of the first rule ``hit`` takes (rules from now before from mtime)."""
    for rule in sorted(rules, key=lambda r: r.from_mtime):
        if hit(rule):
            headers.append(("Expires", http_date((mtime if rule.from_mtime else now)
                                                 + rule.delta)))
            return


# --------------------------------------------------------------------------- options

def _delta(option: str, raw: str, text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise OptionError(f"--{option} {raw}: the seconds must be a whole number") from None


def _regexp(option: str, raw: str, pattern: bytes) -> Any:
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise OptionError(f"--{option} {raw}: bad regexp: {exc}") from None


def static_from_config(cfg: Any, log: Callable[[str], None] = print) -> Static | None:
    """The static options; None when none is on. OptionError for a bad value."""
    def many(name: str) -> list[str]:
        return [str(v) for v in (option(cfg, name) or ())]

    enc = os.fsencode
    s = Static(log=log)
    for d in many("check-static"):
        s.maps.append(Mapping(b"", enc(d), True))
    for name, keep in (("static-map", False), ("static-map2", True)):
        for raw in many(name):
            mount, eq, target = raw.partition("=")
            if not eq:
                raise OptionError(f"--{name} {raw}: give MOUNTPOINT=DIRECTORY")
            s.maps.append(Mapping(mount.encode("latin-1", "replace"), enc(target), keep))
    if not s.maps:
        return None
    s.index = [enc(v) for v in many("static-index")]
    s.skip_ext = [enc(v) for v in many("static-skip-ext")]
    s.safe = [enc(v) for v in many("static-safe")]
    s.mime = load_mime_types(many("mime-file") or [MIME_FILE])
    s.honour_range = bool(option(cfg, "honour-range"))
    for name in ("static-expires-type", "static-expires-type-mtime"):
        for raw in many(name):
            ctype, eq, delta = raw.partition("=")
            if not eq:
                raise OptionError(f"--{name} {raw}: give MIMETYPE=SECONDS")
            s.expires_type.append(Rule(ctype, _delta(name, raw, delta), name.endswith("mtime")))
    for base, target in (("static-expires", s.expires),
                         ("static-expires-path-info", s.expires_path_info),
                         ("static-expires-uri", s.expires_uri)):
        for name in (base, base + "-mtime"):
            for raw in many(name):
                pattern, sp, delta = raw.partition(" ")
                if not sp:
                    raise OptionError(f"--{name} {raw}: give REGEXP SECONDS")
                target.append(Rule(_regexp(name, raw, enc(pattern)), _delta(name, raw, delta),
                                   name.endswith("mtime")))
    s.gzip_all = bool(option(cfg, "static-gzip-all"))
    s.gzip_prefix = [enc(v) for v in many("static-gzip-dir") + many("static-gzip-prefix")]
    s.gzip_suffix = [enc(v) for v in many("static-gzip-ext") + many("static-gzip-suffix")]
    s.gzip_re = [_regexp("static-gzip", v, enc(v)) for v in many("static-gzip")]
    mode = option(cfg, "file-serve-mode")
    if mode:
        header = _SERVE_MODES.get(str(mode).lower())
        if header is None:
            raise OptionError(f"--file-serve-mode {mode}: not one of x-sendfile, "
                              "x-accel-redirect, nginx")
        s.serve_header = header
    return s


def header_rules(cfg: Any) -> tuple[list[tuple[str, str]], frozenset[str]]:
    """(--add-header headers, --del-header names in lower case); OptionError for an
    added header without a colon."""
    added = []
    for raw in option(cfg, "add-header") or ():
        name, colon, value = str(raw).partition(":")
        if not colon or not name.strip() or "\r" in raw or "\n" in raw:
            raise OptionError(f"--add-header {raw}: give 'Name: value'")
        added.append((name.strip(), value.strip()))
    dropped = frozenset(str(n).strip().lower() for n in option(cfg, "del-header") or ())
    return added, dropped


def check_options(cfg: Any) -> list[str]:
    """Start-up check: a bad value stops brood with one line naming the option (an
    OptionError); else the lines uWSGI says at start for its static options."""
    static = static_from_config(cfg, log=lambda _: None)
    header_rules(cfg)
    lines = [f"[uwsgi-static] added check for {d}" for d in option(cfg, "check-static") or ()]
    for name in ("static-map", "static-map2"):
        for raw in option(cfg, name) or ():
            mount, _, target = str(raw).partition("=")
            lines.append(f"[uwsgi-static] added mapping for {mount} => {target}")
    if static is not None:
        files = option(cfg, "mime-file") or [MIME_FILE]
        lines.append(f"building mime-types dictionary from file {', '.join(map(str, files))}"
                     f"...{len(static.mime)} entry found")
    return lines


# --------------------------------------------------------------------------- the shell

class StaticFront:
    """The WSGI callable the worker runs in place of the app when one of these options
    is on: static files first, then the app; --add-header/--del-header on both."""

    def __init__(self, app: Any, static: Static | None, added: list[tuple[str, str]],
                 dropped: frozenset[str]) -> None:
        self.app = app
        self.static = static
        self.added = added
        self.dropped = dropped

    def _headers(self, headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
        dropped = self.dropped
        if dropped:
            headers = [h for h in headers if h[0].lower() not in dropped]
        return headers + self.added if self.added else headers

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        static = self.static
        if static is not None and environ.get("REQUEST_METHOD") in ("GET", "HEAD"):
            found = static.lookup(environ.get("PATH_INFO", "").encode("latin-1"))
            if found is not None:
                return self._serve(found, environ, start_response)
        return self._app(environ, start_response)

    def _app(self, environ: dict[str, Any], start_response: Any) -> Any:
        if not self.added and not self.dropped:
            return self.app(environ, start_response)
        fix = self._headers

        def patched(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            return start_response(status, fix(headers), exc_info)

        return self.app(environ, patched)

    def _serve(self, found: Found, environ: dict[str, Any], start_response: Any) -> Any:
        static = self.static
        found = static.want_gzip(found, environ.get("HTTP_ACCEPT_ENCODING", ""))
        status, headers, offset, length = static.answer(found, environ, time.time())
        f = None
        if length >= 0 and environ.get("REQUEST_METHOD") != "HEAD":
            try:
                f = open(found.path, "rb")  # noqa: SIM115 (closed by the FileWrapper)
                if offset:
                    f.seek(offset)
            except OSError as exc:
                static.log(f"[uwsgi-fileserve] cannot open {os.fsdecode(found.path)}: "
                           f"{exc.strerror}")
                if f is not None:
                    f.close()
                return self._app(environ, start_response)
        environ[STATIC_KEY] = True
        start_response(status, self._headers(headers))
        if f is None:
            return []
        return FileWrapper(f)
