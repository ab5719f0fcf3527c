"""--subscribe-to / --subscribe2 value forms (WIRE §2.3) and their error lines."""

from __future__ import annotations

import pytest

from brood.config.option import OptionError
from brood.subscription.spec import Target, parse_subscribe2, parse_subscribe_to


def one(value: str) -> Target:
    (target,) = parse_subscribe_to(value)
    return target


def test_server_and_key() -> None:
    t = one("127.0.0.1:27090:example.com")
    assert (t.server, t.key, t.modifier1, t.address, t.sign) == (
        "127.0.0.1:27090", "example.com", None, None, None)
    assert t.arg == "127.0.0.1:27090:example.com"


def test_key_may_contain_a_colon() -> None:
    t = one("127.0.0.1:27090:example.com:8080")
    assert (t.server, t.key) == ("127.0.0.1:27090", "example.com:8080")


def test_modifier1_and_signature() -> None:
    t = one("127.0.0.1:27090:mod5.example.com,5")
    assert (t.key, t.modifier1) == ("mod5.example.com", 5)
    t = one("127.0.0.1:1:test.example.com,0,SHA1:/k/test.key")
    assert (t.key, t.modifier1, t.sign) == ("test.example.com", 0, "SHA1:/k/test.key")


def test_explicit_address_and_shared_socket() -> None:
    t = one("127.0.0.1:5555=127.0.0.1:27090:explicit.example.com")
    assert (t.address, t.server, t.key) == ("127.0.0.1:5555", "127.0.0.1:27090",
                                            "explicit.example.com")
    t = one("=1=127.0.0.1:27090:shared.example.com")
    assert (t.shared_socket, t.address, t.key) == (1, None, "shared.example.com")


def test_ipv6_and_unix_servers() -> None:
    t = one("[::1]:27090:v6.example.com,3")
    assert (t.server, t.key, t.modifier1) == ("[::1]:27090", "v6.example.com", 3)
    t = one("/tmp/sub.sock:unix.example.com")
    assert (t.server, t.key) == ("/tmp/sub.sock", "unix.example.com")
    t = one("@abstract:a.example.com")
    assert (t.server, t.key) == ("@abstract", "a.example.com")


def test_key_file() -> None:
    files = {"/keys.txt": "one.example\n# comment\n\ntwo.example,5\n"}
    targets = parse_subscribe_to("127.0.0.1:9:@/keys.txt", files.__getitem__)
    assert [(t.key, t.modifier1) for t in targets] == [("one.example", None),
                                                      ("two.example", 5)]
    assert {t.server for t in targets} == {"127.0.0.1:9"}
    assert targets[1].arg == "127.0.0.1:9:two.example,5"


def test_key_file_unreadable() -> None:
    def missing(path: str) -> str:
        raise FileNotFoundError(2, "No such file or directory")

    with pytest.raises(OptionError, match=r"--subscribe-to 127.0.0.1:9:@/nope: cannot read "
                                          r"the key file: No such file or directory"):
        parse_subscribe_to("127.0.0.1:9:@/nope", missing)


@pytest.mark.parametrize(("value", "message"), [
    ("example.com", "expected SERVER:KEY"),
    ("127.0.0.1:27090", "no key after the server"),
    ("127.0.0.1:port:key", "bad port 'port'"),
    ("127.0.0.1:1:key,x", "modifier1 must be a number"),
    ("127.0.0.1:1:key,300", "modifier1 must be at most 255"),
    ("127.0.0.1:1:key,0,nodigest", "expected DIGEST:KEYFILE"),
    ("127.0.0.1:1:key,0,WHIRL:/k", "unknown digest 'WHIRL'"),
    ("=x=127.0.0.1:1:key", "shared socket number must be a number"),
    ("[::1:1:key", r"expected \[ipv6-address\]:port:KEY"),
    ("127.0.0.1:1:" + "k" * 256, "key longer than 255 bytes"),
])
def test_subscribe_to_errors(value: str, message: str) -> None:
    with pytest.raises(OptionError, match=message) as info:
        parse_subscribe_to(value)
    assert str(info.value).startswith(f"--subscribe-to {value}: ")
    assert "\n" not in str(info.value)


def test_subscribe2_full() -> None:
    t = parse_subscribe2("server=127.0.0.1:27090,key=s2.example.com,addr=127.0.0.1:9999,"
                         "weight=7,modifier1=30,modifier2=4,sni_key=/k.pem,sni_crt=/c.pem,"
                         "sni_ca=/ca.pem")
    assert (t.server, t.key, t.address, t.weight, t.modifier1, t.modifier2) == (
        "127.0.0.1:27090", "s2.example.com", "127.0.0.1:9999", 7, 30, 4)
    assert (t.sni_key, t.sni_crt, t.sni_ca) == ("/k.pem", "/c.pem", "/ca.pem")


def test_subscribe2_brood_keys_unknown_keys_sign_socket_check() -> None:
    t = parse_subscribe2("server=/tmp/s.sock,key=k,backup=1,algo=lrc,proto=uwsgi,"
                         "sign=SHA256:/k.pem,socket=1,check=/tmp/maint")
    assert (t.backup, t.algo, t.ignored) == (1, "lrc", ["proto"])
    assert (t.sign, t.worker_socket, t.check) == ("SHA256:/k.pem", 1, "/tmp/maint")
    assert t.weight is None and t.modifier1 is None


@pytest.mark.parametrize(("value", "message"), [
    ("key=k", "server= is required"),
    ("server=127.0.0.1:1", "key= is required"),
    ("server=127.0.0.1:1,key=k,weight=heavy", "weight must be a number"),
    ("server=127.0.0.1:1,key=k,junk", "expected key=value, got 'junk'"),
    ("server=127.0.0.1:1,key=k,sign=SHA1", "sign= needs DIGEST:KEYFILE"),
])
def test_subscribe2_errors(value: str, message: str) -> None:
    with pytest.raises(OptionError, match=message) as info:
        parse_subscribe2(value)
    assert str(info.value).startswith(f"--subscribe2 {value}: ")
