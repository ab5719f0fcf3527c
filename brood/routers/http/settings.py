"""The HTTP router's own knobs (``--http-*``), read once per router process.

Choices where uWSGI leaves room, each documented where the option is read:

* Head limit: ``--http-buffer-size``, else ``--buffer-size`` when given, else 65535.
  uWSGI's router accepts about 56 KB of headers with no option (WIRE §1.6); the vars
  built from a head are about its size and must fit a u16 vars block, so 65535 is also
  the ceiling. A ``--buffer-size`` given for the workers caps the router too: a worker
  would refuse a larger vars block anyway.
* Keep-alive is on by default for HTTP/1.1 clients (uWSGI needs ``--http-keepalive``);
  ``--http-keepalive=0`` turns it off, ``--http-keepalive=N`` (N > 1) makes N seconds
  the idle time between requests, which is otherwise ``--http-timeout``.
* Upgrades (websockets...) are relayed whenever the node answers 101, with or without
  ``--http-websockets`` (accepted for compatibility): a 101 is the node's decision.
* ``--http-auto-chunked`` stays opt-in: re-framing a close-delimited answer costs a copy
  per read, and without it the answer is still correct (the connection just closes).
* Chunked request bodies are de-chunked whole and sent with CONTENT_LENGTH, held in
  memory up to ``CHUNKED_BUFFER`` (1 MiB), then in a temporary file (TMPDIR), up to
  ``--limit-post``, else ``CHUNKED_LIMIT`` (100 MiB; 413 past it); with ``--http-chunked-input`` they go to
  the node still chunked (HTTP_TRANSFER_ENCODING, no CONTENT_LENGTH). A WSGI app on a
  node reads a chunked body as empty (uWSGI drops such bodies: WIRE §8.2), so none
  goes there unasked.
* ``--http-manage-source``: a SOURCE request (an Icecast source) goes to the node as
  under ``--http-raw-body``: after the head everything is piped raw both ways. Without
  it SOURCE is an ordinary method, its stream taken for the next request (and refused).
* ``--http-stud-prefix ADDR``: connections from ADDR (stud, a TLS terminator, with
  ``--write-ip``) start with 1 byte of address family (this platform's AF_INET or
  AF_INET6) and the 4 or 16 address bytes, which become REMOTE_ADDR. uWSGI takes only
  IPv4 prefixes; brood takes both.
* ``--http-log-format``: parsed here, at start-up (see ``accesslog``), so a bad
  variable stops the master rather than every router process.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass, field

from brood.config.model import Config
from brood.config.option import OptionError
from brood.protocol.errors import ProtocolError
from brood.protocol.uwsgi import MAX_VARS_SIZE, encode_vars
from brood.routers.engine import option
from brood.routers.http.accesslog import LineFormat

# A de-chunked request body is held in memory up to this size before the node is
# contacted; past it, in a temporary file. 1 MiB covers form posts and JSON documents
# while bounding the memory one slow client can make us hold.
CHUNKED_BUFFER = 1 << 20
# The largest chunked body held without --limit-post: it is held whole on disk before a
# node is asked, so a few clients must not fill the disk (a 413 past it, as nginx's
# client_max_body_size; --limit-post sets it).
CHUNKED_LIMIT = 100 << 20
DEFAULT_HEAD_LIMIT = MAX_VARS_SIZE


def _keepalive(value: object, timeout: float) -> tuple[bool, float]:
    """(enabled, idle seconds) from ``--http-keepalive``'s optional value."""
    if value is None or value is True:
        return True, timeout
    try:
        seconds = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return True, timeout
    if seconds <= 0:
        return False, 0.0
    return True, (timeout if seconds == 1 else seconds)


def _vars(values: list) -> list[tuple[bytes, bytes]]:
    """``--http-var KEY=VALUE`` pairs, checked here, in the master: a pair the uwsgi
    encoder refuses would fail every request of every router process. Entries with no
    ``=`` are skipped, as uWSGI does."""
    pairs = []
    for text in values:
        raw = text.encode() if isinstance(text, str) else bytes(text)
        key, equal, value = raw.partition(b"=")
        if not equal:
            continue
        if not key:
            raise OptionError(f"--http-var {raw.decode(errors='replace')!r}: empty name")
        try:
            encode_vars([(key, value)])
        except ProtocolError as exc:
            raise OptionError(f"--http-var {key.decode(errors='replace')!r}: "
                              f"{exc.reason}") from None
        pairs.append((key, value))
    try:
        encode_vars(pairs)
    except ProtocolError as exc:
        raise OptionError(f"--http-var: {exc.reason}") from None
    return pairs


def _names(value: object) -> frozenset[str]:
    if not value:
        return frozenset()
    if isinstance(value, str):
        return frozenset((value,))
    return frozenset(str(v) for v in value)  # type: ignore[attr-defined]


def split_https_port(spec: str) -> tuple[str, int | None]:
    """``--http-to-https ADDR[,PORT]`` as uWSGI reads it: the address to bind, and the
    port its redirects name (None: none, the Host's own port dropped)."""
    addr, comma, port = spec.rpartition(",")
    if not comma:
        return spec, None
    if not port.strip().isdigit() or not 0 < int(port) < 65536:
        raise OptionError(f"--http-to-https {spec}: the port after the comma must be a "
                          "number from 1 to 65535")
    return addr, int(port)


def _stud_addresses(value: object) -> frozenset[str]:
    """``--http-stud-prefix`` addresses in the form peer addresses take (IPv6 compressed)."""
    out = set()
    for text in _names(value):
        try:
            out.add(str(ipaddress.ip_address(text.strip().strip("[]"))))
        except ValueError:
            raise OptionError(f"--http-stud-prefix: {text!r} is not an IP address") from None
    return frozenset(out)


def _log_format(value: object) -> LineFormat | None:
    return LineFormat.parse(str(value)) if value else None


def _modifier(value: object, option_name: str) -> int | None:
    if value is None or value == "":
        return None
    try:
        number = int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        number = -1
    if not 0 <= number <= 255:
        raise OptionError(f"--{option_name}: {value!r} is not a modifier (0-255)")
    return number


@dataclass
class HttpSettings:
    """Everything the HTTP front reads besides the engine's RouterSettings."""

    head_limit: int = DEFAULT_HEAD_LIMIT
    headers_timeout: float = 60.0  # --http-headers-timeout: the whole head must come by then
    timeout: float = 60.0  # --http-timeout: idle limit while talking to a node / reading a body
    keepalive: bool = True
    keepalive_idle: float = 60.0
    auto_chunked: bool = False
    auto_gzip: bool = False
    manage_expect: int | None = None  # None: off; 0: 100 Continue only; N: 413 above N
    raw_body: bool = False
    chunked_input: bool = False
    chunked_buffer: int = CHUNKED_BUFFER
    body_limit: int = CHUNKED_LIMIT  # the largest chunked body held (--limit-post)
    server_name_as_http_host: bool = False
    proxy_protocol: bool = False
    modifier1: int | None = None  # None: the node's own modifier1
    modifier2: int | None = None
    extra_vars: list[tuple[bytes, bytes]] = field(default_factory=list)
    to_https: frozenset[str] = frozenset()  # --http-to-https listener names
    server_name: bytes = b""  # SERVER_NAME and the key of Host-less requests
    manage_source: bool = False
    stud_prefix: frozenset[str] = frozenset()  # peer addresses sending a stud prefix
    log_format: LineFormat | None = None  # None: accesslog's default line

    @classmethod
    def from_config(cls, cfg: Config) -> HttpSettings:
        timeout = float(option(cfg, "http-timeout", 60)) or 60.0  # (0: not set, as uWSGI)
        explicit = option(cfg, "http-buffer-size", 0) or option(cfg, "buffer-size", 0)
        head_limit = min(int(explicit), MAX_VARS_SIZE) if explicit else DEFAULT_HEAD_LIMIT
        keepalive, idle = _keepalive(option(cfg, "http-keepalive", None), timeout)
        # uWSGI's values: 0 off, 1 (or bare) 100 Continue, N > 1 also 413 above N bytes
        expect = option(cfg, "http-manage-expect", None)
        if expect is True or expect == 1:
            expect = 0
        elif expect is False or expect == 0:
            expect = None
        return cls(
            head_limit=head_limit,
            headers_timeout=float(option(cfg, "http-headers-timeout", timeout)) or timeout,
            timeout=timeout,
            keepalive=keepalive,
            keepalive_idle=idle,
            auto_chunked=bool(option(cfg, "http-auto-chunked", False)),
            auto_gzip=bool(option(cfg, "http-auto-gzip", False)),
            manage_expect=None if expect is None else int(expect),
            raw_body=bool(option(cfg, "http-raw-body", False)),
            chunked_input=bool(option(cfg, "http-chunked-input", False)),
            body_limit=int(option(cfg, "limit-post", 0) or 0) or CHUNKED_LIMIT,
            server_name_as_http_host=bool(option(cfg, "http-server-name-as-http-host", False)),
            proxy_protocol=bool(option(cfg, "http-enable-proxy-protocol", False)),
            modifier1=_modifier(option(cfg, "http-modifier1", None), "http-modifier1"),
            modifier2=_modifier(option(cfg, "http-modifier2", None), "http-modifier2"),
            extra_vars=_vars(option(cfg, "http-var", []) or []),
            to_https=_names(split_https_port(str(spec))[0]
                            for spec in option(cfg, "http-to-https", []) or []),
            server_name=socket.gethostname().encode(),
            manage_source=bool(option(cfg, "http-manage-source", False)),
            stud_prefix=_stud_addresses(option(cfg, "http-stud-prefix", [])),
            log_format=_log_format(option(cfg, "http-log-format", None)),
        )
