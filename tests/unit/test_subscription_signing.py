"""Signed subscriptions: uWSGI's RSA scheme on the captured packets, brood's replay rules
and key formats (WIRE §2.5)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from brood.subscription.packet import Subscription, decode_subscription, encode_subscription
from brood.subscription.signing import (
    SignChecker,
    Signer,
    digest_by_name,
    key_file_name,
    parse_sign_check,
)

FIX = Path("/work/shared/fixtures")
KEY = FIX / "keys" / "TEST-ONLY-test.example.com.key"
PUB = FIX / "keys" / "TEST-ONLY-test.example.com.pub.pem"
SUBS = FIX / "subscription"

if not SUBS.is_dir():  # pragma: no cover
    pytest.skip("subscription fixtures not available", allow_module_level=True)

T0 = 1795435350  # the capture's clock


@pytest.fixture
def keydir(tmp_path: Path) -> Path:
    for key in ("test.example.com", "s2sign.example.com"):
        shutil.copy(PUB, tmp_path / key_file_name(key.encode()))
    return tmp_path


def packet(name: str) -> Subscription:
    return decode_subscription((SUBS / name).read_bytes())


def signed(key: bytes, address: bytes, unix_now: int, command: int = 0,
           signer: Signer | None = None, weight: int = 0) -> Subscription:
    sub = Subscription(key, address, cores=2, weight=weight)
    data = encode_subscription(sub, command, signer=signer or Signer("SHA1", KEY),
                               now=unix_now)
    return decode_subscription(data)


def test_key_file_name() -> None:
    assert key_file_name(b"example.com:8080") == "example.com_8080.pem"
    assert key_file_name(b"a/../b c\xff") == "a_.._b_c_.pem"
    assert key_file_name(b"Test-1_x.y") == "Test-1_x.y.pem"


def test_digest_names() -> None:
    for name in ("SHA1", "sha1", "SHA-1", "sha256", "SHA512-256", "sha3_256", "RSA-SHA256"):
        digest_by_name(name)
    assert digest_by_name("sha512-256").name == "sha512-256"
    assert digest_by_name("SHA-1").name == "sha1"
    with pytest.raises(ValueError):
        digest_by_name("SHA999")


def test_parse_sign_check() -> None:
    assert parse_sign_check("SHA1:/etc/keys") == ("SHA1", "/etc/keys")
    assert parse_sign_check("/etc/keys") == ("SHA256", "/etc/keys")
    assert parse_sign_check("weird:dir") == ("SHA256", "weird:dir")


def test_captured_signed_packets_verify(keydir: Path) -> None:
    sha1 = SignChecker("SHA1", keydir)
    assert sha1.check(packet("sub_signed_sha1.bin"), T0).ok
    assert sha1.check(packet("unsub_signed_sha1_shutdown.bin"), T0 + 12).ok
    sha256 = SignChecker("SHA256", keydir)
    assert sha256.check(packet("sub2_signed_sha256.bin"), T0).ok


def test_wrong_digest_rejected(keydir: Path) -> None:
    verdict = SignChecker("SHA1", keydir).check(packet("sub2_signed_sha256.bin"), T0)
    assert not verdict.ok and verdict.reason == "invalid signature"


def test_tampered_rejected(keydir: Path) -> None:
    data = bytearray((SUBS / "sub_signed_sha1.bin").read_bytes())
    at = data.index(b"127.0.0.1:27091") + 14
    data[at] = ord("2")
    checker = SignChecker("SHA1", keydir)
    assert not checker.check(decode_subscription(bytes(data)), T0).ok
    assert checker.refused["bad signature"] == 1


def test_exact_replay_rejected(keydir: Path) -> None:
    checker = SignChecker("SHA1", keydir)
    sub = packet("sub_signed_sha1.bin")
    assert checker.check(sub, T0).ok
    verdict = checker.check(sub, T0 + 1)
    assert not verdict.ok and "unix_check" in verdict.reason
    assert checker.refused["replay"] == 1


def test_older_refresh_replay_rejected_unlike_uwsgi(keydir: Path) -> None:
    """uWSGI accepts a replayed now+1 packet after a now+10 refresh; brood does not."""
    checker = SignChecker("SHA1", keydir)
    first, plus1, plus10 = (signed(b"test.example.com", b"127.0.0.1:1", T0 + d)
                            for d in (0, 1, 10))
    assert checker.check(first, T0).ok
    assert checker.check(plus1, T0 + 1).ok
    assert checker.check(plus10, T0 + 10).ok
    assert not checker.check(plus1, T0 + 11).ok


def test_new_node_too_old_rejected_and_future_rejected(keydir: Path) -> None:
    checker = SignChecker("SHA1", keydir, tolerance=100)
    assert not checker.check(signed(b"test.example.com", b"a:1", T0 - 101), T0).ok
    assert checker.check(signed(b"test.example.com", b"a:1", T0 - 99), T0).ok
    assert not checker.check(signed(b"test.example.com", b"b:1", T0 + 101), T0).ok
    assert checker.refused["too old"] == 1 and checker.refused["future"] == 1


def test_unsigned_for_signed_key_rejected(keydir: Path) -> None:
    checker = SignChecker("SHA1", keydir)
    verdict = checker.check(Subscription(b"test.example.com", b"a:1"), T0)
    assert not verdict.ok and checker.refused["unsigned"] == 1
    unsub = Subscription(b"test.example.com", b"a:1", command=1)
    assert not checker.check(unsub, T0).ok


def test_signed_without_key_file_rejected(keydir: Path) -> None:
    checker = SignChecker("SHA1", keydir)
    verdict = checker.check(signed(b"nokey.example.com", b"a:1", T0), T0)
    assert not verdict.ok and checker.refused["no key"] == 1


def test_unsigned_without_key_file_refused_like_uwsgi(keydir: Path) -> None:
    """With the check on, an unsigned packet is refused even for a key with no ``.pem``
    (uWSGI 2.0.21 refuses every unsigned packet): else anyone could route that key."""
    checker = SignChecker("SHA1", keydir)
    verdict = checker.check(packet("sub_plain.bin"), T0)
    assert not verdict.ok and verdict.reason == "unsigned packet (no public key for the key)"
    unsub = Subscription(b"nokey.example.com", b"a:1", command=1)
    assert not checker.check(unsub, T0).ok
    assert checker.refused["unsigned"] == 2 and checker.accepted == 0


def test_unsubscribe_checks_signature_and_order(keydir: Path) -> None:
    checker = SignChecker("SHA1", keydir)
    assert checker.check(signed(b"test.example.com", b"a:1", T0), T0).ok
    # an unsubscribe older than the last accepted packet is a replay for brood
    old = signed(b"test.example.com", b"a:1", T0 - 5, command=1)
    assert not checker.check(old, T0).ok
    unsub = signed(b"test.example.com", b"a:1", T0, command=1)  # unix = T0 + 1
    assert unsub.unix == T0 + 1
    assert checker.check(unsub, T0).ok
    assert not checker.check(unsub, T0 + 2).ok  # replayed unsubscribe


def test_forget_lets_a_node_back_within_the_second(keydir: Path) -> None:
    """uWSGI frees a node an unsubscribe removed, with its unix_check: the node back
    within the second (unix = now, below the unsubscribe's now + 1) is a new node."""
    checker = SignChecker("SHA1", keydir)
    assert checker.check(signed(b"test.example.com", b"a:1", T0), T0).ok
    assert checker.check(signed(b"test.example.com", b"a:1", T0, command=1), T0).ok
    back = signed(b"test.example.com", b"a:1", T0)
    assert not checker.check(back, T0).ok  # the mark of the unsubscribe (T0 + 1)
    checker.forget(b"test.example.com", b"a:1")
    assert checker.check(back, T0).ok
    assert not checker.check(back, T0).ok  # and the mark protects it again


def test_prune_keeps_replays_out(keydir: Path) -> None:
    checker = SignChecker("SHA1", keydir, tolerance=100)
    sub = signed(b"test.example.com", b"a:1", T0)
    assert checker.check(sub, T0).ok
    assert checker.prune(T0 + 50) == 0
    assert checker.prune(T0 + 101) == 1
    assert not checker.check(sub, T0 + 101).ok  # now too old instead


def test_multiple_dirs_first_with_file_decides(tmp_path: Path, keydir: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    checker = SignChecker.from_options([str(empty), f"SHA1:{keydir}"])
    assert checker is not None
    assert checker.check(packet("sub_signed_sha1.bin"), T0).ok
    assert SignChecker.from_options([]) is None


def test_key_cache_follows_the_file(keydir: Path) -> None:
    checker = SignChecker("SHA256", keydir)
    ed = ed25519.Ed25519PrivateKey.generate()
    priv = keydir / "ed.key"
    priv.write_bytes(ed.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
    signer = Signer("SHA256", priv)
    sub = signed(b"test.example.com", b"a:1", T0, signer=signer)
    assert not checker.check(sub, T0).ok  # the RSA key is on file
    path = keydir / "test.example.com.pem"
    path.write_bytes(ed.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                                  serialization.PublicFormat.OpenSSH))
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert checker.check(sub, T0).ok


def test_ed25519_signs_the_base_directly(keydir: Path) -> None:
    ed = ed25519.Ed25519PrivateKey.generate()
    priv = keydir / "ed.key"
    priv.write_bytes(ed.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.OpenSSH,
                                      serialization.NoEncryption()))
    (keydir / "ed.example.pem").write_bytes(ed.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    sub = signed(b"ed.example", b"a:1", T0, signer=Signer("SHA1", priv))
    ed.public_key().verify(sub.sign, sub.signed_base)
    assert SignChecker("SHA1", keydir).check(sub, T0).ok


def test_ssh_rsa_public_key_file(keydir: Path) -> None:
    rsa_pub = serialization.load_pem_public_key(PUB.read_bytes())
    (keydir / "ssh.example.pem").write_bytes(rsa_pub.public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH))
    assert SignChecker("SHA1", keydir).check(signed(b"ssh.example", b"a:1", T0), T0).ok


def test_ec_key(keydir: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    priv = keydir / "ec.key"
    priv.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    (keydir / "ec.example.pem").write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    sub = signed(b"ec.example", b"a:1", T0, signer=Signer("SHA256", priv))
    assert SignChecker("SHA256", keydir).check(sub, T0).ok


def test_bad_key_file_refused(keydir: Path) -> None:
    (keydir / "junk.example.pem").write_bytes(b"not a key")
    checker = SignChecker("SHA1", keydir)
    assert not checker.check(signed(b"junk.example", b"a:1", T0), T0).ok
    assert checker.refused["bad key file"] == 1


def test_mountpoint_keys_use_the_host_key(keydir: Path) -> None:
    checker = SignChecker("SHA1", keydir, mountpoints=True)
    assert checker.check(signed(b"test.example.com/foo", b"a:1", T0), T0).ok


def test_signer_from_spec() -> None:
    signer = Signer.from_spec(f"SHA1:{KEY}")
    assert signer.digest_name == "SHA1"
    with pytest.raises(ValueError):
        Signer.from_spec("nocolon")


def test_a_process_that_signs_nothing_never_loads_cryptography() -> None:
    """cryptography costs every router and node process about 8 MiB: loaded on first use."""
    probe = (
        "import sys, brood.master, brood.cli, brood.subscription.server, "
        "brood.subscription.announcer, brood.subscription.spec\n"
        "from brood.subscription.signing import is_digest_name, parse_sign_check\n"
        "assert is_digest_name('sha-256') and not is_digest_name('rot13')\n"
        "assert parse_sign_check('SHA1:/d') == ('SHA1', '/d')\n"
        "print(sorted(m for m in sys.modules if m.startswith('cryptography')))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
    assert digest_by_name("BLAKE2b-512").digest_size == 64
