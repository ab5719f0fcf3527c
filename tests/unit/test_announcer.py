"""The announcer: packets byte-exact against uWSGI's captures, cadence, unsubscribes."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from brood.config.load import load_config
from brood.config.option import OptionError
from brood.subscription.announcer import (
    UNSUBSCRIBE_LINGER,
    Announcer,
    NodeFacts,
    resolve_target,
)
from brood.subscription.packet import decode_subscription
from brood.subscription.spec import parse_subscribe2, parse_subscribe_to

FIX = Path("/work/shared/fixtures")
SUBS = FIX / "subscription"
KEY = FIX / "keys" / "TEST-ONLY-test.example.com.key"
NODE = "127.0.0.1:27091"
SRV = "127.0.0.1:27090"

if not SUBS.is_dir():  # pragma: no cover - the fixtures ship with the workspace
    pytest.skip("subscription fixtures not available", allow_module_level=True)


def facts(weight: int = 0, cores: int = 2) -> NodeFacts:
    return NodeFacts(cores=cores, weight=weight, worker_sockets=[NODE])


def to(value: str, f: NodeFacts, command: int = 0, now: float = 0) -> bytes:
    (target,) = parse_subscribe_to(value)
    return resolve_target(target, f).datagram(command, now)


def s2(value: str, f: NodeFacts, command: int = 0, now: float = 0) -> bytes:
    return resolve_target(parse_subscribe2(value), f, "subscribe2").datagram(command, now)


@pytest.mark.parametrize(("fixture", "value", "weight", "command", "now"), [
    ("sub_plain.bin", f"{SRV}:example.com", 0, 0, 0),
    ("unsub_plain_shutdown.bin", f"{SRV}:example.com", 7, 1, 0),
    ("sub_modifier1_5.bin", f"{SRV}:mod5.example.com,5", 0, 0, 0),
    ("sub_explicit_address.bin", f"127.0.0.1:5555={SRV}:explicit.example.com", 0, 0, 0),
    ("sub_signed_sha1.bin", f"{SRV}:test.example.com,0,SHA1:{KEY}", 0, 0, 1795435350),
    ("unsub_signed_sha1_shutdown.bin", f"{SRV}:test.example.com,0,SHA1:{KEY}", 7, 1,
     1795435362),
])
def test_subscribe_to_packets_match_uwsgi(fixture: str, value: str, weight: int,
                                          command: int, now: float) -> None:
    assert to(value, facts(weight), command, now) == (SUBS / fixture).read_bytes()


@pytest.mark.parametrize(("fixture", "value", "now"), [
    ("sub2_full_sni.bin", f"server={SRV},key=s2.example.com,addr=127.0.0.1:9999,weight=7,"
     "modifier1=30,modifier2=4,sni_key=/k.pem,sni_crt=/c.pem,sni_ca=/ca.pem", 0),
    ("sub2_unknown_keys_ignored.bin", f"server={SRV},key=s2b.example.com,proto=uwsgi", 0),
    ("sub2_signed_sha256.bin", f"server={SRV},key=s2sign.example.com,sign=SHA256:{KEY}",
     1795435350),
])
def test_subscribe2_packets_match_uwsgi(fixture: str, value: str, now: float) -> None:
    # weight 7 leaked into the whole uWSGI instance in that capture (WIRE §2.3)
    assert s2(value, facts(weight=7), 0, now) == (SUBS / fixture).read_bytes()


def test_brood_keys_follow_uwsgi_vars() -> None:
    plain = s2(f"server={SRV},key=s2b.example.com", facts(7))
    extra = s2(f"server={SRV},key=s2b.example.com,backup=1,algo=wrr", facts(7))
    assert extra[4:].startswith(plain[4:])
    sub = decode_subscription(extra)
    assert (sub.backup, sub.algo) == (1, "wrr")


def test_notify_auto_weight_modifier1_override() -> None:
    cfg = load_config(["--processes", "3", "--auto-weight", "--subscribe-with-modifier1", "9",
                       "--subscription-notify-socket", "/tmp/uw/notify.sock",
                       "--subscribe-to", f"{SRV}:example.com"])
    f = NodeFacts.from_config(cfg, worker_sockets=[NODE])
    expected = (SUBS / "sub_notify_autoweight_m1override.bin").read_bytes()
    assert to(f"{SRV}:example.com", f) == expected
    # --subscribe-with-modifier1 wins over the value's own MOD1
    assert decode_subscription(to(f"{SRV}:example.com,5", f)).modifier1 == 9


def test_address_defaults_and_errors() -> None:
    f = NodeFacts(cores=1, weight=0, worker_sockets=["127.0.0.1:4000", "/tmp/w.sock"],
                  shared_sockets=["127.0.0.1:5000"])
    assert decode_subscription(to(f"{SRV}:k", f)).address == b"127.0.0.1:4000"
    assert decode_subscription(to(f"=0={SRV}:k", f)).address == b"127.0.0.1:5000"
    assert decode_subscription(s2(f"server={SRV},key=k,socket=1", f)).address == b"/tmp/w.sock"
    with pytest.raises(OptionError, match="there is no shared socket 3"):
        to(f"=3={SRV}:k", f)
    with pytest.raises(OptionError, match="no socket 0 to announce"):
        to(f"{SRV}:k", NodeFacts(cores=1, weight=0))
    with pytest.raises(OptionError, match="cannot use the signing key"):
        to(f"{SRV}:k,0,SHA1:/nonexistent/key.pem", f)


@pytest.fixture
def receiver() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    yield sock
    sock.close()


def received(sock: socket.socket) -> list[bytes]:
    out = []
    for _ in range(1000):
        try:
            out.append(sock.recv(4096))
        except BlockingIOError:
            return out
    raise AssertionError("too many datagrams")


def announcer_for(sock: socket.socket, **kw: object) -> Announcer:
    port = sock.getsockname()[1]
    (target,) = parse_subscribe_to(f"127.0.0.1:{port}:example.com")
    return Announcer([resolve_target(target, facts())], clock=lambda: 1000.0, **kw)  # type: ignore[arg-type]


def test_cadence_counts_master_cycles(receiver: socket.socket, capfd) -> None:
    ann = announcer_for(receiver, freq=10)
    sent_at = []
    for cycle in range(31):
        ann.tick(1000.0 + cycle)  # a fake clock: one tick per master cycle
        if received(receiver):
            sent_at.append(cycle)
    assert sent_at == [0, 1, 10, 20, 30]
    assert capfd.readouterr().err.count("subscribing to 127.0.0.1:") == 1


def test_unsubscribe_on_shutdown(receiver: socket.socket, capfd) -> None:
    ann = announcer_for(receiver)
    ann.tick(1000.0)
    ann.on_shutdown()
    subs = [decode_subscription(d) for d in received(receiver)]
    assert [s.command for s in subs] == [0, 1]
    assert "unsubscribing from 127.0.0.1:" in capfd.readouterr().err


def test_reloads(receiver: socket.socket) -> None:
    ann = announcer_for(receiver)
    ann.on_reload(graceful=True)
    assert received(receiver) == []
    ann.on_reload()  # brutal (or the master did not say)
    assert [decode_subscription(d).command for d in received(receiver)] == [1]
    ann = announcer_for(receiver, unsubscribe_on_graceful=True)
    ann.on_reload(graceful=True)
    assert [decode_subscription(d).command for d in received(receiver)] == [1]


def test_unsubscribe_before_the_workers_stop(receiver: socket.socket) -> None:
    ann = announcer_for(receiver)
    ann.tick(1000.0)
    assert ann.before_shutdown(graceful=True) == UNSUBSCRIBE_LINGER > 0  # keep serving
    ann.on_shutdown()  # already unsubscribed: not again
    assert [decode_subscription(d).command for d in received(receiver)] == [0, 1]
    ann = announcer_for(receiver)
    ann.tick(1000.0)
    assert ann.before_shutdown(graceful=False) == 0  # immediate: no linger
    ann = announcer_for(receiver)
    assert ann.before_shutdown(graceful=True) == 0  # never announced: nothing to wait for
    assert [decode_subscription(d).command for d in received(receiver)] == [0, 1, 1]
    ann = announcer_for(receiver, blocked=True)
    assert ann.before_shutdown(graceful=True) == 0
    assert received(receiver) == []


def test_graceful_reload_lingers_only_when_it_unsubscribes(receiver: socket.socket) -> None:
    ann = announcer_for(receiver)
    ann.tick(1000.0)
    assert ann.on_reload(graceful=True) == 0
    ann = announcer_for(receiver, unsubscribe_on_graceful=True)
    ann.tick(1000.0)
    assert ann.on_reload(graceful=True) == UNSUBSCRIBE_LINGER
    assert ann.on_reload(graceful=False) == 0  # brutal: unsubscribes, no linger
    assert [decode_subscription(d).command for d in received(receiver)] == [0, 0, 1, 1]


def test_start_unsubscribed_pause_resume(receiver: socket.socket) -> None:
    ann = announcer_for(receiver, blocked=True)
    for cycle in range(3):
        ann.tick(float(cycle))
    ann.on_shutdown()
    assert received(receiver) == []
    ann = announcer_for(receiver, blocked=True)
    ann.tick(0.0)
    ann.set_blocked(False)
    ann.tick(1.0)
    assert len(received(receiver)) == 1
    ann.pause(2.0)
    ann.tick(10.0)
    ann.resume(11.0)
    assert [decode_subscription(d).command for d in received(receiver)] == [1, 0]


def test_check_file_skips(receiver: socket.socket, tmp_path: Path) -> None:
    port = receiver.getsockname()[1]
    flag = tmp_path / "maintenance"
    t = parse_subscribe2(f"server=127.0.0.1:{port},key=k,check={flag}")
    ann = Announcer([resolve_target(t, facts(), "subscribe2")])
    flag.write_text("")
    ann.tick(0.0)
    assert received(receiver) == []
    flag.unlink()
    ann.tick(1.0)
    assert len(received(receiver)) == 1


def test_notify_socket_logs_acks(tmp_path: Path, capfd) -> None:
    path = tmp_path / "notify.sock"
    cfg = load_config(["--subscription-notify-socket", str(path),
                       "--subscribe-to", "127.0.0.1:9:k"])
    ann = Announcer.from_config(cfg, NodeFacts.from_config(cfg, worker_sockets=[NODE]))
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as peer:
            peer.sendto(b"[subscription ack] k => new node: " + NODE.encode(), str(path))
        ann.on_readable(0.0)
        assert f"[subscription ack] k => new node: {NODE}" in capfd.readouterr().err
    finally:
        ann.on_shutdown()
    assert not path.exists()


def test_send_failure_logged_once(capfd) -> None:
    (target,) = parse_subscribe_to("/nonexistent/sub.sock:k")
    ann = Announcer([resolve_target(target, facts())])
    for cycle in range(12):
        ann.tick(float(cycle))
    assert capfd.readouterr().err.count("subscription to /nonexistent/sub.sock failed") == 1
    ann.close()
