"""The router-side subscription server, run by the synchronous master (WIRE §2.6-§2.11).

Why in the master: uWSGI lets whichever router process receives a datagram forward it to
its siblings over internal pipes, so every process verifies and logs it again and acks
can go out once per process. brood's master owns each ``--X-subscription-server``
socket instead (the ``SubscriptionSocket`` services) and one ``SubscriptionHub`` per
router kind does the work once:

1. decode (at most 4096 bytes per datagram, as uWSGI's router reads); a bad packet is
   logged with its reason and dropped, and the server keeps going. With
   ``--subscriptions-use-credentials`` a unix socket is read with ``recvmsg`` and the
   sender's pid/uid/gid come along (``creds``); UDP sockets are read as before;
2. verify the signature once (``--subscriptions-sign-check``), unless the sender's
   uid is one of ``--subscriptions-sign-skip-uid``;
3. apply it to the authoritative table: log ``new pool``/``new node``/``marking ...
   as failed`` like uWSGI, send the notify ack once (WIRE §2.9);
4. push the datagram, with its sender's credentials, to every router process of the
   kind (``feed``), whose replica applies it without re-verifying; a respawned process
   gets a snapshot (credentials included) first;
5. tell the ``--X-resubscribe`` servers, as uWSGI 2.0 does, that this router serves
   the key: the datagram sent on names the key, the router's first socket of its kind
   and the node's modifiers (an upper router then routes the key to this one, which
   picks the node: the nodes' own addresses may mean nothing there). Signatures, SNI
   and notify stay here. An unsubscribe goes on only once no node of the key is left
   (uWSGI sends one on for every node that leaves: the upper router dropped a key this
   one still served). A unix resubscribe target sees this master as the sender.

Each master cycle ``tick`` expires silent nodes (active expiry, uWSGI's is lazy) and
pushes the removals, so replicas and stats agree on who is alive.

Resubscribe loops: two routers that resubscribe to each other bounce a datagram
forever in uWSGI (100% CPU). A packet cannot be marked as forwarded (uWSGI routers
upstream must read it as theirs), so the hub keeps a digest of every datagram it sent
on and does not send the same bytes again within ``LOOP_WINDOW`` seconds. A loop comes
back within milliseconds; the key's next announce is at least a master cycle (1 s)
later, so it still goes through, and several nodes of one key announcing at once make
one datagram upstream, which is all it needs.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
from collections.abc import Callable, Sequence
from typing import Any

from brood.cache.hub import CacheHub
from brood.config.model import Config
from brood.log import log
from brood.sockets import socket_name
from brood.subscription import creds as scm
from brood.subscription.announcer import server_sockaddr
from brood.subscription.creds import Creds
from brood.subscription.feed import (
    CACHE,
    Channel,
    Packet,
    feed_for,
    pack,
    removal_packet,
    table_from_config,
)
from brood.subscription.packet import (
    MAX_DATAGRAM,
    Subscription,
    SubscriptionError,
    decode_subscription,
    encode_subscription,
)
from brood.subscription.signing import SignChecker
from brood.subscription.table import Event, SubscriptionTable

# Do not forward the same datagram twice within this many seconds (loop breaker).
LOOP_WINDOW = 0.5
# Digests kept at most; past it the oldest go first (bounded memory under a flood).
MAX_RECENT = 65536
# Datagrams read per readable event, so one busy socket cannot hold the master loop.
MAX_PER_CALL = 256
# The subscription socket's receive buffer: a burst of announces (a fleet restarting,
# tens of thousands of nodes) waits there while the master is busy, not dropped.
RECEIVE_BUFFER = 4 << 20


class Forwarder:
    """``--X-resubscribe``: sends datagrams on to the upper servers, never in a loop."""

    def __init__(self, servers: Sequence[str], bind: str | None = None,
                 option: str = "resubscribe") -> None:
        self.targets = [(s, *server_sockaddr(s, option)) for s in servers]
        self.bind = bind
        self.forwarded = 0
        self.suppressed = 0
        self._recent: dict[bytes, float] = {}
        self._socks: dict[int, socket.socket] = {}
        self._failing: set[str] = set()

    def _sock(self, family: int) -> socket.socket:
        sock = self._socks.get(family)
        if sock is None:
            sock = socket.socket(family, socket.SOCK_DGRAM)
            sock.setblocking(False)
            if self.bind and family != socket.AF_UNIX:
                bfamily, baddr = server_sockaddr(self.bind, "resubscribe-bind")
                if bfamily == family:
                    sock.bind(baddr)
            self._socks[family] = sock
        return sock

    def forward(self, data: bytes, now: float) -> bool:
        """Send ``data`` to every target unless the same bytes went out just now."""
        if not self.targets:
            return False
        digest = hashlib.blake2b(data, digest_size=16).digest()
        seen = self._recent.pop(digest, None)
        self._recent[digest] = now if seen is None or now - seen >= LOOP_WINDOW else seen
        if len(self._recent) > MAX_RECENT:
            del self._recent[next(iter(self._recent))]
        if seen is not None and now - seen < LOOP_WINDOW:
            self.suppressed += 1
            return False
        for name, family, sockaddr in self.targets:
            try:
                self._sock(family).sendto(data, sockaddr)
            except OSError as exc:
                if name not in self._failing:
                    self._failing.add(name)
                    log(f"resubscribe to {name} failed: {exc.strerror or exc}")
                continue
            self._failing.discard(name)
        self.forwarded += 1
        return True

    def prune(self, now: float) -> None:
        old = [d for d, t in self._recent.items() if now - t >= LOOP_WINDOW]
        for digest in old:
            del self._recent[digest]

    def close(self) -> None:
        for sock in self._socks.values():
            sock.close()
        self._socks.clear()


class SubscriptionHub:
    """One router kind's table, checker, channels and forwarder; a tick-only service."""

    def __init__(self, kind: str, table: SubscriptionTable, *,
                 checker: SignChecker | None = None, channels: Sequence[Channel] = (),
                 forwarder: Forwarder | None = None, credentials: bool = False,
                 sign_skip_uids: frozenset[int] = frozenset(),
                 router_address: Callable[[], str | None] = lambda: None) -> None:
        self.kind = kind
        self.router_address = router_address  # the first socket of the kind, once bound
        self.table = table
        self.checker = checker
        self.channels = list(channels)
        self.forwarder = forwarder
        self.credentials = credentials  # its unix sockets read SCM_CREDENTIALS
        self.sign_skip_uids = sign_skip_uids
        self.received = 0
        self.dropped = 0
        self._notify_sock: socket.socket | None = None
        self.subscriptions = True  # False: the kind has only a cache replica to feed
        self.server_names: list[str] = []  # its bound servers (the routers' stats list them)
        self.caches: CacheHub | None = None  # the master's caches the kind reads

    @classmethod
    def from_config(cls, cfg: Config, kind: str, processes: int) -> SubscriptionHub:
        checker = SignChecker.from_options(
            cfg["subscriptions-sign-check"], float(cfg["subscriptions-sign-check-tolerance"]),
            mountpoints=bool(cfg["subscription-mountpoints"]))
        resub = cfg[f"{kind}-resubscribe"]
        forwarder = (Forwarder(resub, cfg[f"{kind}-resubscribe-bind"], f"{kind}-resubscribe")
                     if resub else None)
        credentials = bool(cfg["subscriptions-use-credentials"])
        skip = scm.parse_uids(cfg["subscriptions-sign-skip-uid"])
        hub = cls(kind, table_from_config(cfg), checker=checker,
                  channels=[Channel(i) for i in range(1, processes + 1)],
                  forwarder=forwarder, credentials=credentials, sign_skip_uids=skip)
        if skip and not credentials:
            hub._log("--subscriptions-sign-skip-uid has no effect without "
                     "--subscriptions-use-credentials (no sender uid is known)")
        return hub

    def _log(self, message: str) -> None:
        log(f"[uWSGI {self.kind} pid {os.getpid()}] {message}")

    # -- datagrams --------------------------------------------------------------------
    def receive(self, datagram: bytes, now: float, creds: Creds | None = None) -> list[Event]:
        """One datagram from a subscription socket, with its sender's (pid, uid, gid)
        when the socket reads SCM_CREDENTIALS; the table's events (for tests)."""
        data = bytes(datagram[:MAX_DATAGRAM])
        self.received += 1
        try:
            sub = decode_subscription(data)
        except SubscriptionError as exc:
            return self._drop(f"invalid subscription packet ({exc.reason}), dropped")
        if self.checker is not None and not scm.skips_sign_check(creds, self.sign_skip_uids):
            verdict = self.checker.check(sub, now)
            if not verdict.ok:
                what = "unsubscribe" if sub.unsubscribe else "subscription"
                return self._drop(f"{what} for {_text(sub.key)} refused: {verdict.reason}")
        events = self.table.apply(sub, now, creds)
        if events and events[0][0] == "rejected":
            return self._drop(f"subscription for {_text(sub.key)[:64]} dropped: {events[0][1]}")
        self._handle(events)
        if sub.unsubscribe and self.checker is not None:
            _forget_removed(self.checker, events)
        if events or not sub.unsubscribe:
            self.push([(data, creds)])
        if self.forwarder is not None:
            onward = self._onward(sub)
            if onward is not None:
                self.forwarder.forward(onward, now)
        return events

    def _onward(self, sub: Subscription) -> bytes | None:
        """The ``--X-resubscribe`` datagram for an accepted ``sub``: this router as the
        node of the key; None when nothing is to go on."""
        address = self.router_address()
        if address is None:
            return None
        if sub.unsubscribe:
            slot = self.table.slot(sub.key)
            if slot is not None and any(not node.death_mark for node in slot.nodes):
                return None  # the key is still served here
        mine = Subscription(sub.key, address.encode("utf-8", "surrogateescape"),
                            sub.modifier1, sub.modifier2, command=sub.command)
        return encode_subscription(mine)

    def _drop(self, message: str) -> list[Event]:
        self.dropped += 1
        self._log(message)
        return [("rejected", message)]

    def _handle(self, events: list[Event]) -> None:
        for event in events:
            name = event[0]
            if name == "new_pool":
                self._log(f"new pool: {_text(event[1])} (hash key: {event[2]})")
            elif name == "new_node":
                self._log(f"{_text(event[1])} => new node: {_text(event[2])}")
            elif name == "marked_failed":
                why = "" if event[3] == "unsubscribed" else f" ({event[3]})"
                self._log(f"{_text(event[1])} => marking {_text(event[2])} as failed{why}")
            elif name == "notify":
                self._ack(event[1], event[2])

    def _ack(self, path: bytes, text: bytes) -> None:
        """The notify ack: one unix datagram, sent once, not once per router process."""
        if self._notify_sock is None:
            self._notify_sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._notify_sock.setblocking(False)
        target = path.decode("utf-8", "surrogateescape")
        if target.startswith("@"):
            target = "\0" + target[1:]
        try:
            self._notify_sock.sendto(text, target)
        except OSError as exc:
            self._log(f"cannot ack to {_text(path)}: {exc.strerror or exc}")

    # -- replicas -----------------------------------------------------------------------
    def push(self, packets: Sequence[Packet]) -> None:
        messages = pack(packets)
        for channel in self.channels:
            channel.send(messages)

    def push_cache(self, records: Sequence[bytes]) -> None:
        """Cache changes (``brood.cache.hub``), in order with the subscriptions."""
        messages = pack(records, CACHE)
        for channel in self.channels:
            channel.send(messages)

    def snapshot(self) -> list[Packet]:
        """Every node as a subscribe datagram (with its sender's credentials when it
        has them: pid 0 means none), slot by slot in subscription order."""
        out = []
        for slot in self.table.slots():
            for i, node in enumerate(slot.nodes):
                sub = Subscription(
                    slot.key, node.name.encode("utf-8", "surrogateescape"),
                    modifier1=node.modifier1, modifier2=node.modifier2, cores=node.cores,
                    load=node.load, weight=node.weight, backup=node.backup,
                    algo=slot.algo if slot.algo != self.table.default_algo else None)
                if i == 0 and slot.sni_enabled:
                    sub.sni_key, sub.sni_crt, sub.sni_ca = slot.sni_key, slot.sni_crt, slot.sni_ca
                creds = (node.pid, node.uid, node.gid) if node.pid > 0 else None
                out.append((encode_subscription(sub), creds))
        return out

    def resync(self, channel: Channel) -> bool:
        caches = pack(self.caches.snapshot(), CACHE) if self.caches is not None else []
        return channel.resync(self.snapshot(), caches)

    def feed_kwargs(self, cfg: Config) -> Any:
        """For brood.routers.plan.ROUTER_EXTRAS: ``index -> {"feed": RouterFeed}``."""
        specs = [c.spec for c in self.caches.caches] if self.caches is not None else []

        def per_index(index: int) -> dict[str, Any]:
            feed = feed_for(self.channels, index, cfg, subscriptions=self.subscriptions,
                            caches=specs)
            feed.server_names = list(self.server_names)
            return {"feed": feed}
        return per_index

    # -- MasterService --------------------------------------------------------------------
    def fileno(self) -> int | None:
        return None

    def on_readable(self, now: float) -> None:
        return None

    def tick(self, now: float) -> None:
        events = self.table.expire(now)
        self._handle(events)
        gone = [removal_packet(e[1], e[2]) for e in events if e[0] == "removed_node"]
        if gone:
            self.push(gone)
        for channel in self.channels:
            if channel.reads_again():  # a stuck replica costs nothing until then
                self.resync(channel)
            elif channel.backlog:
                channel.flush()  # the rest of a long snapshot, or updates behind it
        if self.checker is not None:
            self.checker.prune(now)
        if self.forwarder is not None:
            self.forwarder.prune(now)

    def on_reload(self, graceful: bool | None = None) -> None:
        return None

    def on_shutdown(self) -> None:
        self.close()

    def close(self) -> None:
        if self.forwarder is not None:
            self.forwarder.close()
        if self._notify_sock is not None:
            self._notify_sock.close()
            self._notify_sock = None

    def close_in_child(self) -> None:
        self.close()


class ChannelService:
    """The master end of one router process's channel: answers its hello."""

    def __init__(self, channel: Channel, hub: SubscriptionHub) -> None:
        self.channel = channel
        self.hub = hub

    def fileno(self) -> int | None:
        fd = self.channel.master.fileno()
        return fd if fd >= 0 else None

    def on_readable(self, now: float) -> None:
        if self.channel.read_hellos():
            self.hub.resync(self.channel)
        elif self.channel.backlog:
            self.channel.flush()

    def tick(self, now: float) -> None:
        return None

    def on_reload(self, graceful: bool | None = None) -> None:
        return None

    def on_shutdown(self) -> None:
        return None

    def close_in_child(self) -> None:
        self.channel.close_master_end()


class SubscriptionSocket:
    """One bound ``--X-subscription-server`` socket, read by the master; a unix one
    reads its senders' credentials when the hub asks for them."""

    def __init__(self, sock: socket.socket, hub: SubscriptionHub) -> None:
        sock.setblocking(False)
        with contextlib.suppress(OSError):  # the kernel caps it at net.core.rmem_max
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        self.sock = sock
        self.hub = hub
        self.name = socket_name(sock)
        self.credentials = hub.credentials and scm.enable(sock)

    def fileno(self) -> int | None:
        return self.sock.fileno()

    def on_readable(self, now: float) -> None:
        for _ in range(MAX_PER_CALL):
            creds = None
            try:
                if self.credentials:
                    data, ancdata, _, _ = self.sock.recvmsg(MAX_DATAGRAM, scm.ANCILLARY_SIZE)
                    creds = scm.from_ancillary(ancdata)
                else:
                    data = self.sock.recv(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. ECONNREFUSED reported for an earlier send
                self.hub._log(f"subscription socket {self.name}: {exc.strerror or exc}")
                return
            self.hub.receive(data, now, creds)

    def tick(self, now: float) -> None:
        return None

    def on_reload(self, graceful: bool | None = None) -> None:
        self.close()

    def on_shutdown(self) -> None:
        self.close()
        if self.sock.family == socket.AF_UNIX and self.name and not self.name.startswith("@"):
            with contextlib.suppress(OSError):
                os.unlink(self.name)

    def close(self) -> None:
        self.sock.close()

    def close_in_child(self) -> None:
        self.sock.close()


def _forget_removed(checker: SignChecker, events: list[Event]) -> None:
    """An unsubscribe that removed its node ends that node's replay mark, so the node
    re-subscribing within the second is a new node (uWSGI frees it too)."""
    for event in events:
        if event[0] == "removed_node":
            checker.forget(event[1], event[2])


def _text(value: bytes) -> str:
    return value.decode("utf-8", "replace")
