"""The node side: announcing this instance to subscription servers (WIRE §2.3, §2.4).

A ``MasterService`` in any instance with ``--subscribe-to``/``--subscribe2``. It lives
in the synchronous master, as in uWSGI, because the master outlives workers (an announce
must not stop while workers respawn) and it sees reloads and shutdowns first.

Cadence, counted in master cycles (about 1 s each) like uWSGI: an announce on the first
cycle, another on the second (so a router that missed the first datagram learns about
us within a second), then every ``--subscribe-freq`` cycles. An unsubscribe (command 1,
same vars) goes out on shutdown and on a brutal reload; on a graceful reload only with
``--unsubscribe-on-graceful-reload`` (the sockets stay open across a graceful reload,
so routers lose nothing by keeping the node). It goes out before the master stops the
workers, so routers move traffic away while the workers still serve.
``--start-unsubscribed`` starts blocked; ``set_blocked``/``pause``/``resume`` are the
handles for the master FIFO (``S``, ``p``).

A router reading credentials (``--subscriptions-use-credentials``) on a unix
subscription socket gets this master's pid/uid/gid from the kernel with every datagram;
the announcer sends no ancillary data and sets no option for that (see ``creds``).

Differences from uWSGI, each deliberate: one long-lived datagram socket per address
family instead of a fresh socket per packet (routers never key on the source port, WIRE
§2.1); ``subscribing to ARG`` is logged when announcing starts (and after a resume), not
every cycle; ``load`` is always 0 (it was 0 in every uWSGI run observed, WIRE §2.2);
send errors are logged once per server until a send succeeds again; after the
unsubscribe of a graceful stop (``--die-on-term`` SIGTERM, or a graceful reload with
``--unsubscribe-on-graceful-reload``) the workers keep serving ``UNSUBSCRIBE_LINGER``
seconds, so the requests routers sent before applying it are still answered.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from brood.config.model import Config
from brood.config.option import OptionError
from brood.log import log
from brood.sockets import bind_datagram, parse_address
from brood.subscription.packet import SUBSCRIBE, UNSUBSCRIBE, Subscription, encode_subscription
from brood.subscription.signing import Signer
from brood.subscription.spec import Target, parse_subscribe2, parse_subscribe_to

# Notify acks read per readable event, so a flood cannot hold the master loop.
MAX_ACKS_PER_CALL = 64
# After the unsubscribe of a graceful stop the workers keep serving this long: a router
# applies it within milliseconds, and a request it sent meanwhile must not land in a
# listen queue about to close, nor be accepted by a worker just as it stops.
UNSUBSCRIBE_LINGER = 0.5


def server_sockaddr(server: str, option: str = "subscribe-to") -> tuple[int, Any]:
    """(family, sockaddr) of a subscription server: UDP ``host:port``/``[v6]:port``, or a
    unix datagram path/``@abstract``. Names are resolved once, here."""
    addr = parse_address(server, option)
    if addr.kind == "unix":
        return socket.AF_UNIX, addr.path
    if addr.kind == "abstract":
        return socket.AF_UNIX, "\0" + addr.path
    if addr.kind != "tcp":
        raise OptionError(f"--{option}: {server} is not a subscription server address")
    if addr.ipv6:
        return socket.AF_INET6, (addr.host, addr.port, 0, 0)
    try:
        infos = socket.getaddrinfo(addr.host, addr.port, socket.AF_UNSPEC, socket.SOCK_DGRAM)
    except socket.gaierror as exc:
        raise OptionError(f"--{option}: cannot resolve {addr.host!r}: {exc.strerror}") from None
    family, _, _, _, sockaddr = infos[0]
    return family, sockaddr


@dataclass
class Announce:
    """A resolved target: what to send where, signed or not."""

    target: Target
    family: int
    sockaddr: Any
    sub: Subscription
    signer: Signer | None = None

    def datagram(self, command: int, now: float) -> bytes:
        return encode_subscription(self.sub, command, signer=self.signer, now=now)


@dataclass(frozen=True)
class NodeFacts:
    """What every announce of this instance shares (from the options and the plan)."""

    cores: int
    weight: int
    modifier1: int | None = None  # --subscribe-with-modifier1
    notify: str | None = None
    worker_sockets: Sequence[str] = ()
    shared_sockets: Sequence[str] = ()

    @classmethod
    def from_config(cls, cfg: Config, worker_sockets: Sequence[str] = (),
                    shared_sockets: Sequence[str] = ()) -> NodeFacts:
        cores = max(1, int(cfg["processes"] or 1)) * max(1, int(cfg["threads"] or 1))
        weight = cores if cfg["auto-weight"] else int(cfg["weight"] or 0)
        return cls(cores, weight, cfg["subscribe-with-modifier1"],
                   cfg["subscription-notify-socket"], tuple(worker_sockets),
                   tuple(shared_sockets))


def _address(t: Target, facts: NodeFacts, option: str) -> str:
    if t.address:
        return t.address
    if t.shared_socket is not None:
        if t.shared_socket >= len(facts.shared_sockets):
            raise OptionError(f"--{option} {t.arg}: there is no shared socket {t.shared_socket}")
        return facts.shared_sockets[t.shared_socket]
    index = t.worker_socket or 0
    if index >= len(facts.worker_sockets):
        raise OptionError(f"--{option} {t.arg}: no socket {index} to announce "
                          f"(give an address: ADDR=SERVER:KEY or addr=)")
    return facts.worker_sockets[index]


def _b(text: str | None) -> bytes | None:
    return None if text is None else text.encode("utf-8", "surrogateescape")


def resolve_target(t: Target, facts: NodeFacts, option: str = "subscribe-to") -> Announce:
    """A target plus this instance's facts -> the announce (OptionError when impossible)."""
    modifier1 = facts.modifier1 if facts.modifier1 is not None else (t.modifier1 or 0)
    sub = Subscription(
        key=_b(t.key) or b"",
        address=_b(_address(t, facts, option)) or b"",
        modifier1=modifier1,
        modifier2=t.modifier2,
        cores=facts.cores,
        load=0,
        weight=facts.weight if t.weight is None else t.weight,
        sni_key=_b(t.sni_key),
        sni_crt=_b(t.sni_crt),
        sni_ca=_b(t.sni_ca),
        notify=_b(facts.notify),
        backup=t.backup,
        algo=t.algo,
    )
    signer = None
    if t.sign:
        try:
            signer = Signer.from_spec(t.sign)
        except (OSError, ValueError) as exc:
            raise OptionError(f"--{option} {t.arg}: cannot use the signing key: {exc}") from None
    family, sockaddr = server_sockaddr(t.server, option)
    return Announce(t, family, sockaddr, sub, signer)


def targets_from_config(cfg: Config) -> list[tuple[str, Target]]:
    """(option, target) for every --subscribe-to/--subscribe2 value, in option order."""
    out: list[tuple[str, Target]] = []
    for value in cfg["subscribe-to"]:
        out.extend(("subscribe-to", t) for t in parse_subscribe_to(
            value, lambda p: Path(p).read_text()))
    for value in cfg["subscribe2"]:
        out.append(("subscribe2", parse_subscribe2(value)))
    return out


class Announcer:
    """Sends the announces; a ``MasterService`` (tick-driven, notify socket readable)."""

    def __init__(self, announces: Sequence[Announce], *, freq: int = 10,
                 blocked: bool = False, unsubscribe_on_graceful: bool = False,
                 notify_sock: socket.socket | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.announces = list(announces)
        self.freq = max(1, freq)
        self.blocked = blocked
        self.unsubscribe_on_graceful = unsubscribe_on_graceful
        self.notify_sock = notify_sock
        self.clock = clock
        self.cycles = 0
        self.announcing = False  # a subscribe went out since the start/last unsubscribe
        self.sent = 0
        self.left = False  # the shutdown unsubscribe went out (before_shutdown)
        self._socks: dict[int, socket.socket] = {}
        self._failing: set[str] = set()

    @classmethod
    def from_config(cls, cfg: Config, facts: NodeFacts) -> Announcer:
        announces = []
        for option, target in targets_from_config(cfg):
            if target.ignored:
                log(f"--{option} {target.arg}: ignoring unknown keys: {', '.join(target.ignored)}")
            announces.append(resolve_target(target, facts, option))
        notify = None
        if facts.notify:
            notify = bind_datagram(facts.notify, "subscription-notify-socket")
            notify.setblocking(False)
        return cls(announces, freq=int(cfg["subscribe-freq"] or 10),
                   blocked=bool(cfg["start-unsubscribed"]),
                   unsubscribe_on_graceful=bool(cfg["unsubscribe-on-graceful-reload"]),
                   notify_sock=notify)

    # -- sending ------------------------------------------------------------------------
    def _sock(self, family: int) -> socket.socket:
        sock = self._socks.get(family)
        if sock is None:
            sock = socket.socket(family, socket.SOCK_DGRAM)
            sock.setblocking(False)
            self._socks[family] = sock
        return sock

    def _send(self, ann: Announce, command: int, now: float) -> bool:
        try:
            data = ann.datagram(command, now)
        except ValueError as exc:
            log(f"subscription {ann.target.arg}: cannot build the packet: {exc}")
            return False
        server = ann.target.server
        try:
            self._sock(ann.family).sendto(data, ann.sockaddr)
        except OSError as exc:
            if server not in self._failing:
                self._failing.add(server)
                log(f"subscription to {server} failed: {exc.strerror or exc}")
            return False
        self._failing.discard(server)
        self.sent += 1
        return True

    def announce(self, now: float) -> None:
        """One subscribe for every target (skipping those whose check file exists)."""
        first = not self.announcing
        self.announcing = True
        for ann in self.announces:
            if ann.target.check and os.path.exists(ann.target.check):
                continue
            if first:
                log(f"subscribing to {ann.target.arg}")
            self._send(ann, SUBSCRIBE, now)

    def unsubscribe(self, now: float) -> None:
        """One unsubscribe for every target; announcing restarts with the next subscribe."""
        self.announcing = False
        for ann in self.announces:
            log(f"unsubscribing from {ann.target.arg}")
            self._send(ann, UNSUBSCRIBE, now)

    # -- FIFO handles -------------------------------------------------------------------
    def set_blocked(self, blocked: bool) -> None:
        """FIFO ``S``: no announces at all while blocked (nothing is unsubscribed)."""
        self.blocked = blocked

    def pause(self, now: float) -> None:
        """SIGTSTP / FIFO ``p``: unsubscribe and stay quiet until ``resume``."""
        if not self.blocked:
            self.unsubscribe(now)
        self.blocked = True

    def resume(self, now: float) -> None:
        self.blocked = False
        self.announce(now)

    # -- MasterService --------------------------------------------------------------------
    def fileno(self) -> int | None:
        return self.notify_sock.fileno() if self.notify_sock is not None else None

    def on_readable(self, now: float) -> None:
        """Acks from routers on --subscription-notify-socket: logged as they came."""
        if self.notify_sock is None:
            return
        for _ in range(MAX_ACKS_PER_CALL):
            try:
                data = self.notify_sock.recv(4096)
            except (BlockingIOError, InterruptedError):
                return
            log(data.decode("utf-8", "replace"))

    def tick(self, now: float) -> None:
        cycle = self.cycles
        self.cycles += 1
        if self.blocked:
            return
        if cycle <= 1 or cycle % self.freq == 0:
            self.announce(now)

    def on_reload(self, graceful: bool | None = None) -> float:
        """Before a re-exec. ``graceful`` None (the master did not say): brutal.
        The seconds the master should keep the workers serving (see ``before_shutdown``)."""
        if self.blocked or (graceful and not self.unsubscribe_on_graceful):
            return 0.0
        return self._leave(bool(graceful))

    def before_shutdown(self, graceful: bool = False) -> float:
        """Before the master stops the children for good: unsubscribe now, while the
        workers still serve, so routers move traffic away first. On a graceful stop,
        the seconds the master should keep the workers serving meanwhile."""
        if self.blocked or self.left:
            return 0.0
        self.left = True
        return self._leave(graceful)

    def _leave(self, graceful: bool) -> float:
        was_announcing = self.announcing
        self.unsubscribe(self.clock())
        return UNSUBSCRIBE_LINGER if graceful and was_announcing else 0.0

    def on_shutdown(self) -> None:
        if not self.blocked and not self.left:
            self.unsubscribe(self.clock())
        self.close()
        path = self.notify_path()
        if path:
            with contextlib.suppress(OSError):
                os.unlink(path)

    def notify_path(self) -> str | None:
        sub = self.announces[0].sub if self.announces else None
        path = sub.notify.decode("utf-8", "surrogateescape") if sub and sub.notify else None
        return path if path and not path.startswith("@") else None

    def close(self) -> None:
        for sock in self._socks.values():
            sock.close()
        self._socks.clear()
        if self.notify_sock is not None:
            self.notify_sock.close()
            self.notify_sock = None

    def close_in_child(self) -> None:
        self.close()
