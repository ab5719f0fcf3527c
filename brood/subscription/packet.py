"""The subscription datagram codec (WIRE.md §2.2, §2.5, §2.6, §2.11): pure, no I/O.

How it works. A subscription is one uwsgi packet in one datagram: header
``modifier1=224 | datasize | modifier2=command`` (0 subscribe, anything else
unsubscribe), then vars in a fixed order::

    key address modifier1 modifier2 cores load weight
    [sni_key] [sni_crt] [sni_ca] [notify]      uWSGI 2.0, each only when set
    [backup] [algo]                            brood additions, only when set
    [unix sign]                                only when signed; sign is the last pair

A uWSGI 2.0 router walks the pairs and only looks at the names it knows, so the
brood additions are invisible to it (the node side drops unknown ``--subscribe2``
keys, WIRE §2.3; the router's parser likewise matches known names and moves on).
They sit before ``unix`` because the router takes the signed base as "everything up
to the ``sign`` pair" by length (WIRE §2.5): the additions are signed too.

Decoding is as lenient as uWSGI's router and no more: the header's modifier1 and
datasize are ignored (the datagram length counts), a damaged vars block keeps the
pairs before the damage, a missing key is the empty key, numbers are read like C's
``atoi`` on the leading digits. What uWSGI drops raises ``SubscriptionError``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from brood.protocol.errors import ProtocolError
from brood.protocol.uwsgi import decode_vars_partial, encode_header, encode_vars

# The header modifier1 of every subscription packet (uWSGI's "subscription" modifier).
SUBSCRIPTION_MODIFIER1 = 224
# The router's subscription server reads at most this many bytes per datagram
# (cr_common.c, WIRE §2.1): anything past it never reaches the parser.
MAX_DATAGRAM = 4096
# Node addresses and routable keys are limited to 255 bytes (WIRE §2.6, §7.1).
MAX_ADDRESS = 255
MAX_KEY = 255

SUBSCRIBE = 0
UNSUBSCRIBE = 1


class SubscriptionError(ValueError):
    """A datagram a router must drop; ``reason`` is a short phrase for the log."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class Subscription:
    """One announce, as sent by a node or decoded by a router.

    Strings stay bytes: keys and paths are whatever the node sent. ``weight`` 0 is
    the wire default; routers store it as 1. ``command`` is the header's modifier2.
    """

    key: bytes = b""
    address: bytes = b""
    modifier1: int = 0
    modifier2: int = 0
    cores: int = 0
    load: int = 0
    weight: int = 0
    sni_key: bytes | None = None
    sni_crt: bytes | None = None
    sni_ca: bytes | None = None
    notify: bytes | None = None
    backup: int = 0  # brood addition: backup level (0 = primary)
    algo: str | None = None  # brood addition: balancing algorithm for the key
    unix: int | None = None  # signed packets only: announce time + command
    sign: bytes | None = None  # signed packets only: raw signature
    command: int = SUBSCRIBE
    # The bytes the signature covers, as the router computes them (decode only).
    signed_base: bytes | None = field(default=None, compare=False, repr=False)

    @property
    def unsubscribe(self) -> bool:
        return self.command != SUBSCRIBE

    @property
    def signed(self) -> bool:
        return self.sign is not None


class Signs(Protocol):
    """What ``encode_subscription`` needs of a signer (``signing.Signer`` fits)."""

    def sign(self, base: bytes) -> bytes: ...


def _num(value: bytes) -> int:
    """Leading ASCII digits as a number, 0 when there are none (C ``atoi`` style)."""
    end = 0
    while end < len(value) and 48 <= value[end] <= 57:
        end += 1
    return int(value[:end]) if end else 0


def _int(value: int) -> bytes:
    return str(value).encode("ascii")


def _pairs(sub: Subscription) -> list[tuple[bytes, bytes]]:
    """The unsigned vars, in uWSGI's order, brood additions after uWSGI's own."""
    pairs = [
        (b"key", sub.key),
        (b"address", sub.address),
        (b"modifier1", _int(sub.modifier1)),
        (b"modifier2", _int(sub.modifier2)),
        (b"cores", _int(sub.cores)),
        (b"load", _int(sub.load)),
        (b"weight", _int(sub.weight)),
    ]
    for name in ("sni_key", "sni_crt", "sni_ca", "notify"):
        value = getattr(sub, name)
        if value is not None:
            pairs.append((name.encode(), value))
    if sub.backup:
        pairs.append((b"backup", _int(sub.backup)))
    if sub.algo:
        pairs.append((b"algo", sub.algo.encode("ascii")))
    return pairs


def _block(pairs: list[tuple[bytes, bytes]]) -> bytes:
    try:
        return encode_vars(pairs)
    except ProtocolError as exc:  # a value past 65535 bytes: the caller's mistake
        raise ValueError(exc.reason) from None


def signing_base(sub: Subscription, unix: int) -> bytes:
    """The bytes a node signs: every var of ``sub`` through ``unix`` (WIRE §2.5)."""
    return _block([*_pairs(sub), (b"unix", _int(unix))])


def encode_subscription(
    sub: Subscription,
    command: int | None = None,
    *,
    signer: Signs | None = None,
    now: float | None = None,
) -> bytes:
    """The datagram for ``sub`` (``command`` defaults to ``sub.command``).

    With ``signer``, ``unix`` is ``int(now) + command`` and the signature covers the
    vars through ``unix`` (WIRE §2.5); ``now`` is then required. Without one, a
    ``sub`` that already carries ``unix``/``sign`` (a decoded packet) is re-encoded
    as it came. ``ValueError`` when a field does not fit the wire.
    """
    cmd = sub.command if command is None else command
    if not 0 <= cmd <= 255:
        raise ValueError(f"command out of range: {cmd}")
    if signer is not None:
        if now is None:
            raise ValueError("signing needs the current time")
        base = signing_base(sub, int(now) + cmd)
        block = base + _block([(b"sign", signer.sign(base))])
    else:
        pairs = _pairs(sub)
        if sub.unix is not None:
            pairs.append((b"unix", _int(sub.unix)))
        if sub.sign is not None:
            pairs.append((b"sign", sub.sign))
        block = _block(pairs)
    if len(block) + 4 > MAX_DATAGRAM:
        raise ValueError(f"subscription of {len(block) + 4} bytes exceeds {MAX_DATAGRAM}")
    return encode_header(SUBSCRIPTION_MODIFIER1, len(block), cmd) + block


_BYTES_FIELDS = {
    b"key": "key",
    b"address": "address",
    b"sni_key": "sni_key",
    b"sni_crt": "sni_crt",
    b"sni_ca": "sni_ca",
    b"notify": "notify",
    b"sign": "sign",
}
_NUM_FIELDS = {
    b"cores": "cores",
    b"load": "load",
    b"weight": "weight",
    b"backup": "backup",
    b"unix": "unix",
}


def decode_subscription(datagram: bytes | bytearray | memoryview) -> Subscription:
    """Parse one received datagram as a uWSGI router would (WIRE §2.6, §2.11).

    Raises ``SubscriptionError`` for what the router drops: fewer than 4 bytes, no
    ``address``, or an address of more than 255 bytes. Everything else is accepted,
    including a damaged vars block (the pairs before the damage count) and keys of
    any length (``table`` decides what is routable). Unknown names are ignored; a
    repeated name: the last one wins.
    """
    data = bytes(datagram[:MAX_DATAGRAM])
    if len(data) < 4:
        raise SubscriptionError(f"too short ({len(data)} bytes)")
    pairs, _damage = decode_vars_partial(data[4:])
    sub = Subscription(command=data[3])
    for name, value in pairs:
        attr = _BYTES_FIELDS.get(name)
        if attr is not None:
            setattr(sub, attr, value)
            continue
        attr = _NUM_FIELDS.get(name)
        if attr is not None:
            setattr(sub, attr, _num(value))
        elif name == b"modifier1":
            sub.modifier1 = _num(value) & 0xFF  # a u8 in uWSGI: wraps like C
        elif name == b"modifier2":
            sub.modifier2 = _num(value) & 0xFF
        elif name == b"algo":
            sub.algo = value.decode("ascii", "replace") or None
    if not sub.address:
        raise SubscriptionError("no address")
    if len(sub.address) > MAX_ADDRESS:
        raise SubscriptionError(f"address of {len(sub.address)} bytes (max {MAX_ADDRESS})")
    if sub.sign is not None:
        # The router assumes ``sign`` is the last pair and cuts by length (WIRE §2.5).
        end = len(data) - (2 + 4 + 2 + len(sub.sign))
        sub.signed_base = data[4:end] if end >= 4 else b""
    return sub
