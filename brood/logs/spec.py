"""What the logging options ask for, checked and frozen (pure: no files, no sockets).

``LogPlan.from_config`` reads every option of ``brood.config.options.logs`` plus
--logto/--daemonize, parses each logger as uWSGI 2.0 does (``parse_logger``) and each
log encoder (``brood.logs.encoders.parse_encoder``), and compiles the route and filter
expressions, so a mistake stops the start (and a reload) with one line naming the
option. ``needs_master`` says whether the log master process
runs at all: only for the options that need it, as uWSGI's (so the default path, fd 2
straight to the terminal or the --logto file, costs nothing more than it did).
"""

from __future__ import annotations

import json
import re
import socket
from dataclasses import asdict, dataclass, field
from typing import Any

from brood.config.model import Config
from brood.config.option import OptionError, to_mode
from brood.logs.encoders import EncoderSpec, parse_encoder
from brood.logs.encoders import notes as encoder_notes

# Syslog facility numbers (RFC 5424, as glibc names them); uWSGI's default is daemon.
FACILITIES = {
    "kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "lpr": 6,
    "news": 7, "uucp": 8, "cron": 9, "authpriv": 10, "ftp": 11, "security": 4,
    **{f"local{n}": 16 + n for n in range(8)},
}
KINDS = ("file", "fd", "stdio", "syslog", "rsyslog", "socket")
RSYSLOG_PORT = 514
_ID = re.compile(r"[A-Za-z0-9]+\Z")



@dataclass(frozen=True)
class LoggerSpec:
    """One --logger/--req-logger value. ``name``: its id for --log-route (None: it takes
    every line not routed elsewhere). The rest depends on ``kind``: ``path``, ``maxsize``,
    ``backupname`` (file); ``fd``; ``ident``, ``facility`` (syslog, rsyslog); ``address``
    (socket: (host, port) or a unix path; rsyslog: (host, port)) and ``prefix``."""

    kind: str
    text: str  # as written, for messages
    name: str | None = None
    path: str = ""
    maxsize: int = 0
    backupname: str | None = None
    fd: int = -1
    ident: str = "uwsgi"
    facility: int = FACILITIES["daemon"]
    address: tuple[str, int] | str | None = None
    prefix: str = ""


def parse_logger(value: str, option: str = "logger") -> LoggerSpec:
    """``[NAME ]TYPE[:ARG]`` as uWSGI reads it; OptionError for a type brood does not
    have or an argument it cannot use (uWSGI drops such a logger's lines silently)."""
    text = str(value).strip()
    name = None
    head, space, rest = text.partition(" ")
    if space and _ID.match(head):
        name, text = head, rest.strip()
    kind, colon, arg = text.partition(":")
    where = f"--{option} {value}"
    if kind not in KINDS:
        raise OptionError(f"{where}: no logger '{kind}' in brood (it has "
                          f"{', '.join(KINDS)})")
    arg = arg if colon else ""
    parse = _PARSERS[kind]
    return parse(LoggerSpec(kind, str(value).strip(), name), arg, where)


def _file(spec: LoggerSpec, arg: str, where: str) -> LoggerSpec:
    if "=" in arg:
        items = _keyval(arg, where, ("logfile", "maxsize", "backupname"))
        path = items.get("logfile", "")
        if not path:
            raise OptionError(f"{where}: the keyval form needs logfile=PATH")
        maxsize = 0
        if "maxsize" in items:
            if not items["maxsize"].isdigit():
                raise OptionError(f"{where}: maxsize must be a number of bytes")
            maxsize = int(items["maxsize"])
        return _with(spec, path=path, maxsize=maxsize, backupname=items.get("backupname"))
    if not arg:
        raise OptionError(f"{where}: needs a path (file:PATH)")
    return _with(spec, path=arg)


def _fd(spec: LoggerSpec, arg: str, where: str) -> LoggerSpec:
    if not arg.isdigit():
        raise OptionError(f"{where}: needs a file descriptor number (fd:N)")
    return _with(spec, fd=int(arg))


def _stdio(spec: LoggerSpec, arg: str, where: str) -> LoggerSpec:
    return spec


def _syslog(spec: LoggerSpec, arg: str, where: str) -> LoggerSpec:
    ident, comma, facility = arg.partition(",")
    if comma and facility not in FACILITIES:
        raise OptionError(f"{where}: unknown syslog facility '{facility}' (one of "
                          f"{', '.join(sorted(FACILITIES))})")
    return _with(spec, ident=ident or "uwsgi",
                 facility=FACILITIES[facility] if comma else FACILITIES["daemon"])


def _rsyslog(spec: LoggerSpec, arg: str, where: str) -> LoggerSpec:
    addr, comma, ident = arg.partition(",")
    host, colon, port = addr.rpartition(":") if ":" in addr else (addr, "", "")
    if not host or (colon and not port.isdigit()) or int(port or RSYSLOG_PORT) > 65535:
        raise OptionError(f"{where}: needs HOST[:PORT] of a syslog server")
    return _with(spec, address=(host, int(port or RSYSLOG_PORT)),
                 ident=ident if comma else f"{socket.gethostname()} uwsgi")


def _socket(spec: LoggerSpec, arg: str, where: str) -> LoggerSpec:
    addr, comma, prefix = arg.partition(",")
    if not addr:
        raise OptionError(f"{where}: needs an address (host:port or a unix socket path)")
    address: tuple[str, int] | str = addr
    if ":" in addr:
        host, _, port = addr.rpartition(":")
        if not port.isdigit() or int(port) > 65535:
            raise OptionError(f"{where}: bad port in {addr}")
        address = (host.strip("[]") or "127.0.0.1", int(port))
    return _with(spec, address=address, prefix=prefix)


def _with(spec: LoggerSpec, **values: Any) -> LoggerSpec:
    return LoggerSpec(**{**asdict(spec), **values})


def _keyval(arg: str, where: str, keys: tuple[str, ...]) -> dict[str, str]:
    items: dict[str, str] = {}
    for item in arg.split(","):
        key, eq, val = item.partition("=")
        if not eq or key not in keys:
            raise OptionError(f"{where}: invalid keyval syntax at {item!r} (keys: "
                              f"{', '.join(keys)})")
        items[key] = val
    return items


_PARSERS = {"file": _file, "fd": _fd, "stdio": _stdio, "syslog": _syslog,
            "rsyslog": _rsyslog, "socket": _socket}


def _route(value: str, option: str, names: set[str]) -> tuple[str, str]:
    name, _, regexp = str(value).strip().partition(" ")
    regexp = regexp.strip()
    if not regexp:
        raise OptionError(f"--{option} {value}: expected NAME REGEXP")
    if name not in names:
        raise OptionError(f"--{option} {value}: no --logger is named '{name}'")
    return name, _regexp(regexp, option)


def _regexp(text: str, option: str) -> str:
    try:
        re.compile(text)
    except re.error as exc:
        raise OptionError(f"--{option} {text}: bad regular expression: {exc}") from None
    return text


def udp_address(value: str | None) -> tuple[str, int] | None:
    """--logto/--daemonize HOST:PORT (uWSGI sends the log there over UDP); None for a
    file name."""
    if not value or ":" not in value or "/" in value:
        return None
    host, _, port = str(value).rpartition(":")
    if not host or not port.isdigit() or int(port) > 65535:
        return None
    return host.strip("[]"), int(port)


def file_mode(value: str | None) -> int | None:
    """--logfile-chmod's octal mode; OptionError naming it."""
    if value in (None, ""):
        return None
    return to_mode(value, "logfile-chmod", "640")


@dataclass(frozen=True)
class LogPlan:
    """Everything the log master needs, as plain data (it crosses the re-exec as JSON:
    ``signature`` tells the next master whether the running log master still fits)."""

    loggers: tuple[LoggerSpec, ...] = ()
    req_loggers: tuple[LoggerSpec, ...] = ()
    routes: tuple[tuple[str, str], ...] = ()  # (logger name, regexp)
    req_routes: tuple[tuple[str, str], ...] = ()
    drains: tuple[str, ...] = ()
    filters: tuple[str, ...] = ()
    encoders: tuple[EncoderSpec, ...] = ()  # --log-encoder, in order
    req_encoders: tuple[EncoderSpec, ...] = ()  # --log-req-encoder
    logfile: str | None = None  # --logto/--daemonize: what rotate and reopen act on
    maxsize: int = 0
    backupname: str | None = None
    chmod: int | None = None
    forced: bool = False  # an option that only asks for the log master itself
    touch_rotate: tuple[str, ...] = field(default=(), compare=False)
    touch_reopen: tuple[str, ...] = field(default=(), compare=False)

    @classmethod
    def from_config(cls, cfg: Config) -> LogPlan:
        loggers = [parse_logger(v) for v in cfg["logger"]]
        loggers += [parse_logger(f"syslog:{v}" if v else "syslog", "log-syslog")
                    for v in cfg["log-syslog"]]
        loggers += [parse_logger(f"socket:{v}", "log-socket") for v in cfg["log-socket"]]
        names = {lg.name for lg in loggers if lg.name}
        return cls(
            loggers=tuple(loggers),
            req_loggers=tuple(parse_logger(v, "req-logger") for v in cfg["req-logger"]),
            routes=tuple(_route(v, "log-route", names) for v in cfg["log-route"]),
            req_routes=tuple(_route(v, "log-req-route", names) for v in cfg["log-req-route"]),
            drains=tuple(_regexp(v, "log-drain") for v in cfg["log-drain"]),
            filters=tuple(_regexp(v, "log-filter") for v in cfg["log-filter"]),
            encoders=tuple(parse_encoder(v) for v in cfg["log-encoder"]),
            req_encoders=tuple(parse_encoder(v, "log-req-encoder")
                               for v in cfg["log-req-encoder"]),
            logfile=_logfile(cfg["daemonize"] or cfg["logto"]),
            maxsize=int(cfg["log-maxsize"] or 0),
            backupname=cfg["log-backupname"] or None,
            chmod=file_mode(cfg["logfile-chmod"]),
            forced=bool(cfg["log-master"] or cfg["threaded-logger"] or cfg["touch-logrotate"]
                        or cfg["touch-logreopen"]),
            touch_rotate=tuple(cfg["touch-logrotate"]),
            touch_reopen=tuple(cfg["touch-logreopen"]),
        )

    @property
    def needs_master(self) -> bool:
        return bool(self.loggers or self.req_loggers or self.maxsize or self.forced
                    or self.routes or self.req_routes or self.drains or self.filters
                    or self.encoders or self.req_encoders)

    def notes(self) -> list[str]:
        """Lines for the master's log about encoders that will change nothing or not
        what they seem to (the start goes on, as uWSGI's)."""
        names = {lg.name for lg in self.loggers if lg.name}
        return (encoder_notes(self.encoders, names, "log-encoder")
                + encoder_notes(self.req_encoders, names, "log-req-encoder"))

    @property
    def split_requests(self) -> bool:
        """Request lines go on a channel of their own (uWSGI: with a --req-logger)."""
        return bool(self.req_loggers)

    def signature(self) -> str:
        """The plan as JSON text: equal plans, equal text (touch files left out: the
        master watches them, not the log master)."""
        data = asdict(self)
        data.pop("touch_rotate")
        data.pop("touch_reopen")
        return json.dumps(data, sort_keys=True)


def _logfile(value: str | None) -> str | None:
    """The file --logto/--daemonize name (None for none, or a HOST:PORT)."""
    return None if not value or udp_address(value) else value
