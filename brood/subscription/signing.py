"""Signed subscriptions (WIRE §2.5): the node's ``Signer`` and the router's ``SignChecker``.

uWSGI signs the vars from the first pair through ``unix`` with an RSA key, PKCS#1 v1.5
over the digest the operator names (any OpenSSL digest: SHA1, SHA256...); the router
finds ``<dir>/<key>.pem`` and verifies. brood does the same with ``cryptography`` and
adds: OpenSSH public keys (``ssh-rsa``, ``ssh-ed25519``) and Ed25519 keys (which sign
the base itself, no digest), EC keys (ECDSA over the digest), and SHA256 as the digest
when ``--subscriptions-sign-check`` names a bare directory.

Replay protection, where brood is stricter than uWSGI 2.0.21 (which compares only with
the ``unix`` of the node-creating packet and never checks the time of an unsubscribe):

* the last accepted ``unix`` is kept per (key, address), subscribes and unsubscribes
  alike, and any packet with ``unix`` <= it is refused, so no captured packet can be
  replayed while the node is subscribed, not even an older refresh or an unsubscribe;
* a packet for a (key, address) with no record (a new node, one forgotten after
  ``tolerance``, or one its unsubscribe removed) must have ``unix`` >= now - tolerance;
  every packet must have ``unix`` <= now + tolerance, so a forged far-future value
  cannot lock a node out;
* records older than ``now - tolerance`` are dropped by ``prune``: packets that old are
  refused by the rule above anyway, so memory stays bounded without reopening replays.

A real uWSGI node sends ``now + 1`` in its unsubscribe, above its last subscribe, so
it passes. When an accepted unsubscribe removes the node, the server calls ``forget``
and its mark goes, as uWSGI frees the node and its ``unix_check``: a node paused and
resumed, or restarted, within the second re-subscribes with ``unix`` = now, below the
unsubscribe's now + 1, and must count as new. The cost, as in uWSGI: once the node has
left, a captured subscribe of it younger than ``tolerance`` can add it back, once (it
then raises the mark again, and the node expires like any silent one).

With the check on, every packet must be signed, as in uWSGI 2.0.21: an unsigned one is
refused whether or not its key has a ``.pem``, and a signed one whose key has none too
(uWSGI cannot create a slot without a key to check it with). Results are ``Verdict``
values; refusals are counted by reason.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from brood.subscription.packet import Subscription, signing_base

if TYPE_CHECKING:
    from cryptography.hazmat.primitives import hashes

DEFAULT_DIGEST = "SHA256"  # brood: a bare --subscriptions-sign-check directory
DEFAULT_TOLERANCE = 86400  # --subscriptions-sign-check-tolerance (uWSGI init.c)

# Digest names as OpenSSL and hashlib spell them, compared without case, '-' and '_',
# with cryptography's class for each (and its digest size where it takes one).
# cryptography itself is imported only once a key is used: it adds about 8 MiB to
# every process, and most routers and nodes sign nothing.
_DIGESTS: dict[str, tuple[str, ...] | tuple[str, int]] = {
    "MD5": ("MD5",),
    "SHA1": ("SHA1",),
    "SHA224": ("SHA224",),
    "SHA256": ("SHA256",),
    "SHA384": ("SHA384",),
    "SHA512": ("SHA512",),
    "SHA2224": ("SHA224",),
    "SHA2256": ("SHA256",),
    "SHA2384": ("SHA384",),
    "SHA2512": ("SHA512",),
    "SHA512224": ("SHA512_224",),
    "SHA512256": ("SHA512_256",),
    "SHA3224": ("SHA3_224",),
    "SHA3256": ("SHA3_256",),
    "SHA3384": ("SHA3_384",),
    "SHA3512": ("SHA3_512",),
    "SM3": ("SM3",),
    "BLAKE2B512": ("BLAKE2b", 64),
    "BLAKE2S256": ("BLAKE2s", 32),
}


def _digest_entry(name: str) -> tuple[str, ...] | tuple[str, int] | None:
    norm = name.strip().upper()
    norm = norm.removeprefix("RSA-")
    norm = norm.replace("-", "").replace("_", "")
    return _DIGESTS.get(norm)


def digest_by_name(name: str) -> hashes.HashAlgorithm:
    """The hash called ``name`` (``SHA1``, ``sha256``, ``SHA-512``, ``sha3_256``...)."""
    entry = _digest_entry(name)
    if entry is None:
        raise ValueError(f"unknown digest {name!r}")
    from cryptography.hazmat.primitives import hashes

    cls_name, *args = entry
    return getattr(hashes, cls_name)(*args)


def is_digest_name(name: str) -> bool:
    return _digest_entry(name) is not None


_UNSAFE = re.compile(rb"[^A-Za-z0-9._-]")


def key_file_name(key: bytes) -> str:
    """``example.com:8080`` -> ``example.com_8080.pem``: other bytes become ``_``."""
    return _UNSAFE.sub(b"_", key).decode("ascii") + ".pem"


@dataclass(frozen=True)
class Verdict:
    """Whether a packet passed the check, and why (a log phrase)."""

    ok: bool
    reason: str


def _sign_with(key: Any, digest: hashes.HashAlgorithm, data: bytes) -> bytes:
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(data, padding.PKCS1v15(), digest)
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(data)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(data, ec.ECDSA(digest))
    raise ValueError(f"unsupported private key type {type(key).__name__}")


def _verify_with(key: Any, digest: hashes.HashAlgorithm, sig: bytes, data: bytes) -> bool:
    from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

    try:
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(sig, data, padding.PKCS1v15(), digest)
        elif isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(sig, data)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(sig, data, ec.ECDSA(digest))
        else:
            return False
    except (InvalidSignature, UnsupportedAlgorithm, ValueError):
        return False
    return True


def load_private_key(data: bytes) -> Any:
    """A PEM (PKCS#8 or PKCS#1) or OpenSSH private key, without passphrase."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization

    try:
        return serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return serialization.load_ssh_private_key(data, password=None)


def load_public_key(data: bytes) -> Any:
    """A PEM ``PUBLIC KEY`` (SPKI/PKCS#8) or ``RSA PUBLIC KEY``, or an OpenSSH line."""
    from cryptography.hazmat.primitives import serialization

    text = data.strip()
    if text.startswith(b"ssh-") or text.startswith(b"ecdsa-"):
        return serialization.load_ssh_public_key(text)
    return serialization.load_pem_public_key(text)


class Signer:
    """Signs announces for ``--subscribe-to ...,DIGEST:/path/key`` / ``sign=DIGEST:path``."""

    def __init__(self, digest: str, private_key_path: str | os.PathLike[str]) -> None:
        self.digest_name = digest
        self.digest = digest_by_name(digest)
        self.path = Path(private_key_path)
        self.key = load_private_key(self.path.read_bytes())
        _sign_with(self.key, self.digest, b"probe")  # unsupported key types fail here

    @classmethod
    def from_spec(cls, spec: str) -> Signer:
        """``DIGEST:/path/key.pem`` as the subscribe options write it."""
        digest, sep, path = spec.partition(":")
        if not sep or not path:
            raise ValueError(f"expected DIGEST:path, got {spec!r}")
        return cls(digest, path)

    def sign(self, base: bytes) -> bytes:
        return _sign_with(self.key, self.digest, base)


def parse_sign_check(value: str) -> tuple[str, str]:
    """``SHA1:/dir`` -> ("SHA1", "/dir"); a bare ``/dir`` -> (SHA256, "/dir")."""
    digest, sep, directory = value.partition(":")
    if sep and directory and is_digest_name(digest):
        return digest, directory
    return DEFAULT_DIGEST, value


class SignChecker:
    """The router side of ``--subscriptions-sign-check`` (one or more key directories).

    The first directory holding ``<key>.pem`` decides, with its digest. A key with
    no file in any directory cannot be subscribed to at all: the check is there so
    that nobody without a private key can route a key, and uWSGI refuses it too.
    Public keys are cached by path and (mtime, size), so a replaced file is reread.
    """

    def __init__(
        self,
        digest: str,
        directory: str | os.PathLike[str],
        tolerance: float = DEFAULT_TOLERANCE,
        *,
        more: Sequence[tuple[str, str | os.PathLike[str]]] = (),
        mountpoints: bool = False,
    ) -> None:
        self.dirs = [(digest_by_name(d), Path(p)) for d, p in ((digest, directory), *more)]
        self.tolerance = tolerance
        self.mountpoints = mountpoints  # key "host/path" is signed with host's key
        self.refused: Counter[str] = Counter()
        self.accepted = 0
        self._last: dict[tuple[bytes, bytes], int] = {}
        self._keys: dict[Path, tuple[tuple[int, int], Any]] = {}

    @classmethod
    def from_options(
        cls, values: Sequence[str], tolerance: float = DEFAULT_TOLERANCE, *,
        mountpoints: bool = False,
    ) -> SignChecker | None:
        """From the ``--subscriptions-sign-check`` values; None when none given."""
        if not values:
            return None
        first, *rest = (parse_sign_check(v) for v in values)
        return cls(first[0], first[1], tolerance, more=rest, mountpoints=mountpoints)

    # -- key files ----------------------------------------------------------------------
    def _public_key(self, key: bytes) -> tuple[hashes.HashAlgorithm, Any] | None:
        """(digest, key) for ``key``; None without a file; ValueError for a bad file."""
        if self.mountpoints:
            key = key.split(b"/", 1)[0]
        name = key_file_name(key)
        for digest, directory in self.dirs:
            path = directory / name
            try:
                st = path.stat()
            except OSError:
                continue
            stamp = (st.st_mtime_ns, st.st_size)
            cached = self._keys.get(path)
            if cached is not None and cached[0] == stamp:
                return digest, cached[1]
            from cryptography.exceptions import UnsupportedAlgorithm

            try:
                public = load_public_key(path.read_bytes())
            except (OSError, ValueError, UnsupportedAlgorithm) as exc:
                raise ValueError(f"unusable public key {path}: {exc}") from None
            self._keys[path] = (stamp, public)
            return digest, public
        return None

    # -- the check ----------------------------------------------------------------------
    def _refuse(self, counter: str, reason: str) -> Verdict:
        self.refused[counter] += 1
        return Verdict(False, reason)

    def check(self, sub: Subscription, now: float) -> Verdict:
        """Accept or refuse ``sub``; an accepted signed packet raises the replay mark."""
        try:
            found = self._public_key(sub.key)
        except ValueError as exc:
            return self._refuse("bad key file", str(exc))
        if found is None:
            if not sub.signed:
                return self._refuse("unsigned", "unsigned packet (no public key for the key)")
            return self._refuse("no key", "signed packet for a key without a public key")
        if not sub.signed:
            return self._refuse("unsigned", "unsigned packet for a signed key")
        if sub.unix is None:
            return self._refuse("no unix", "signed packet without unix")
        digest, public = found
        base = sub.signed_base if sub.signed_base is not None else signing_base(sub, sub.unix)
        if not _verify_with(public, digest, sub.sign or b"", base):
            return self._refuse("bad signature", "invalid signature")
        ident = (sub.key, sub.address)
        last = self._last.get(ident)
        if last is not None and sub.unix <= last:
            return self._refuse(
                "replay", f"invalid (sniffed ?) packet, unix_check: {sub.unix} <= {last}"
            )
        if last is None and sub.unix < now - self.tolerance:
            return self._refuse("too old", f"unix {sub.unix} older than the tolerance")
        if sub.unix > now + self.tolerance:
            return self._refuse("future", f"unix {sub.unix} beyond the tolerance")
        self._last[ident] = sub.unix
        self.accepted += 1
        return Verdict(True, "valid signature")

    def forget(self, key: bytes, address: bytes) -> None:
        """Drop the replay mark of a node an accepted unsubscribe removed (see the
        module doc): its next subscribe is a new node's, as in uWSGI."""
        self._last.pop((key, address), None)

    def prune(self, now: float) -> int:
        """Forget replay marks older than the tolerance (those packets fail anyway)."""
        horizon = now - self.tolerance
        old = [ident for ident, unix in self._last.items() if unix < horizon]
        for ident in old:
            del self._last[ident]
        return len(old)

    def statistics(self) -> dict[str, Any]:
        return {"accepted": self.accepted, "refused": dict(self.refused)}
