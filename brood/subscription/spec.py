"""Parsing ``--subscribe-to`` and ``--subscribe2`` values into announce targets (WIRE §2.3).

Pure: no sockets, no clock; reading a ``SERVER:@file`` key list goes through a
``read_file`` callable the caller passes (the announcer gives ``Path.read_text``).

``--subscribe-to`` forms, after an optional address prefix::

    SERVER:KEY                    modifier1 0
    SERVER:KEY,MOD1               modifier1 MOD1
    SERVER:KEY,MOD1,DIGEST:FILE   signed with the private key FILE (WIRE §2.5)
    ADDR=SERVER:KEY...            announce ADDR instead of the first worker socket
    =N=SERVER:KEY...              announce the name of shared socket N
    SERVER:@FILE                  one ``KEY[,MOD1[,DIGEST:FILE]]`` per line

SERVER is ``host:port``, ``[v6addr]:port``, or a unix datagram socket path (a value that
starts with ``/``, ``.`` or ``@``). Where the server ends: after ``]:port`` for IPv6,
at the first ``:`` for a path, at the second ``:`` for ``host:port``; so keys may
contain ``:`` (``example.com:8080``, the Host header with a port), but not ``,``.

``--subscribe2`` takes ``key=value`` pairs separated by commas; uWSGI 2.0's keys plus
``backup`` and ``algo`` (brood additions, sent as extra vars that uWSGI routers skip).
Unknown keys are ignored as uWSGI does, but reported so the announcer can log them.
One deliberate difference: ``weight=`` applies to that target only; in uWSGI 2.0 it
leaks into every later packet of the instance (a side effect, WIRE §2.3).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from brood.config.kvlist import split_kvlist
from brood.config.option import OptionError
from brood.subscription.packet import MAX_KEY
from brood.subscription.signing import is_digest_name

# Keys --subscribe2 understands (uWSGI 2.0.21's list, then brood's additions).
SUBSCRIBE2_KEYS = frozenset({
    "server", "key", "addr", "socket", "weight", "modifier1", "modifier2", "sign",
    "check", "sni_key", "sni_crt", "sni_ca", "backup", "algo",
})
# A key file of more lines than this is a mistake (one datagram per key per cycle).
MAX_FILE_KEYS = 10000


@dataclass
class Target:
    """One key announced to one subscription server.

    ``address`` is explicit, else ``shared_socket`` (``=N=``) or ``worker_socket``
    (``socket=N``) names a socket of this instance, else the first worker socket.
    ``weight`` None means the instance's ``--weight``/``--auto-weight``.
    """

    arg: str  # the option value as given, for the log lines
    server: str
    key: str
    modifier1: int | None = None
    modifier2: int = 0
    address: str | None = None
    shared_socket: int | None = None
    worker_socket: int | None = None
    sign: str | None = None  # DIGEST:path of the private key
    weight: int | None = None
    check: str | None = None  # skip announcing while this file exists
    sni_key: str | None = None
    sni_crt: str | None = None
    sni_ca: str | None = None
    backup: int = 0
    algo: str | None = None
    ignored: list[str] = field(default_factory=list)  # unknown --subscribe2 keys


def _fail(option: str, value: str, why: str) -> OptionError:
    return OptionError(f"--{option} {value}: {why}")


def _int(text: str, option: str, value: str, what: str, top: int | None = None) -> int:
    if not text.strip().isdigit():
        raise _fail(option, value, f"{what} must be a number, got {text!r}")
    number = int(text)
    if top is not None and number > top:
        raise _fail(option, value, f"{what} must be at most {top}")
    return number


def _check_sign(spec: str, option: str, value: str) -> str:
    digest, sep, path = spec.partition(":")
    if not sep or not path:
        raise _fail(option, value, f"expected DIGEST:KEYFILE for the signature, got {spec!r}")
    if not is_digest_name(digest):
        raise _fail(option, value, f"unknown digest {digest!r}")
    return spec


def split_server(text: str, option: str, value: str) -> tuple[str, str]:
    """``SERVER:REST`` -> (SERVER, REST) following the rules in the module docstring."""
    if text.startswith("["):
        end = text.find("]:")
        if end < 0:
            raise _fail(option, value, "expected [ipv6-address]:port:KEY")
        port, sep, rest = text[end + 2:].partition(":")
        server = text[: end + 2] + port
    elif text.startswith(("/", ".", "@")):
        server, sep, rest = text.partition(":")
        port = "0"
    else:
        host, sep1, after = text.partition(":")
        port, sep, rest = after.partition(":")
        if not sep1 or not host:
            raise _fail(option, value, "expected SERVER:KEY (SERVER is host:port or a path)")
        server = f"{host}:{port}"
    if not sep:
        raise _fail(option, value, "expected SERVER:KEY (no key after the server)")
    if not port.isdigit() or int(port) > 65535:
        raise _fail(option, value, f"bad port {port!r} in the server address")
    return server, rest


def _tail(text: str, option: str, value: str) -> tuple[str, int | None, str | None]:
    """``KEY[,MOD1[,DIGEST:FILE]]`` -> (key, modifier1, sign)."""
    key, _, rest = text.partition(",")
    modifier1 = sign = None
    if rest:
        mod, _, sign_spec = rest.partition(",")
        if mod.strip():
            modifier1 = _int(mod, option, value, "modifier1", 255)
        if sign_spec:
            sign = _check_sign(sign_spec, option, value)
    if len(key.encode("utf-8", "surrogateescape")) > MAX_KEY:
        raise _fail(option, value, f"key longer than {MAX_KEY} bytes (never routable)")
    return key, modifier1, sign


def parse_subscribe_to(
    value: str, read_file: Callable[[str], str] | None = None, option: str = "subscribe-to"
) -> list[Target]:
    """The targets of one ``--subscribe-to`` value (several for ``SERVER:@file``)."""
    text = value.strip()
    address = None
    shared = None
    if text.startswith("="):
        number, sep, text = text[1:].partition("=")
        if not sep:
            raise _fail(option, value, "expected =N=SERVER:KEY")
        shared = _int(number, option, value, "shared socket number")
    elif "=" in text.partition(",")[0]:
        address, _, text = text.partition("=")
        if not address:
            raise _fail(option, value, "empty address before '='")
    server, rest = split_server(text, option, value)
    base = Target(value, server, "", address=address, shared_socket=shared)
    if rest.startswith("@"):
        if read_file is None:
            raise _fail(option, value, "key files are not available here")
        try:
            content = read_file(rest[1:])
        except OSError as exc:
            raise _fail(option, value, f"cannot read the key file: {exc.strerror or exc}")
        lines = [ln.strip() for ln in content.splitlines()]
        lines = [ln for ln in lines if ln and not ln.startswith("#")]
        if len(lines) > MAX_FILE_KEYS:
            raise _fail(option, value, f"more than {MAX_FILE_KEYS} keys in the file")
        targets = []
        for line in lines:
            key, modifier1, sign = _tail(line, option, value)
            targets.append(_replace(base, key=key, modifier1=modifier1, sign=sign,
                                    arg=f"{server}:{line}"))
        return targets
    key, modifier1, sign = _tail(rest, option, value)
    return [_replace(base, key=key, modifier1=modifier1, sign=sign)]


def _replace(t: Target, **kw: object) -> Target:
    fields = dict(t.__dict__)
    fields.update(kw)
    return Target(**fields)  # type: ignore[arg-type]


def parse_subscribe2(value: str, option: str = "subscribe2") -> Target:
    """One ``--subscribe2 key=value,...`` value."""
    pairs: dict[str, str] = {}
    ignored: list[str] = []
    try:
        items = split_kvlist(value)
    except ValueError as exc:
        raise _fail(option, value, f"expected key=value, got {exc.args[0]!r}") from None
    for name, val in items:
        name = name.strip()
        if name == "sign" and val and ":" not in val:
            raise _fail(option, value, "sign= needs DIGEST:KEYFILE")
        if name in SUBSCRIBE2_KEYS:
            pairs[name] = val
        else:
            ignored.append(name)
    if not pairs.get("server"):
        raise _fail(option, value, "server= is required")
    if "key" not in pairs:
        raise _fail(option, value, "key= is required")
    if len(pairs["key"].encode("utf-8", "surrogateescape")) > MAX_KEY:
        raise _fail(option, value, f"key longer than {MAX_KEY} bytes (never routable)")

    def num(name: str, top: int | None = None) -> int | None:
        raw = pairs.get(name)
        return None if raw in (None, "") else _int(raw, option, value, name, top)

    return Target(
        arg=value,
        server=pairs["server"],
        key=pairs["key"],
        modifier1=num("modifier1", 255),
        modifier2=num("modifier2", 255) or 0,
        address=pairs.get("addr") or None,
        worker_socket=num("socket"),
        sign=_check_sign(pairs["sign"], option, value) if pairs.get("sign") else None,
        weight=num("weight"),
        check=pairs.get("check") or None,
        sni_key=pairs.get("sni_key") or None,
        sni_crt=pairs.get("sni_crt") or None,
        sni_ca=pairs.get("sni_ca") or None,
        backup=num("backup") or 0,
        algo=pairs.get("algo") or None,
        ignored=ignored,
    )
