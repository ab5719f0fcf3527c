"""The channel from the master's subscription hub to each router process's table replica.

Why: the master owns the subscription sockets and the authoritative table (see
``server``); each router process routes from its own replica, so lookups stay local
and lock-free. One ``socketpair(AF_UNIX, SOCK_DGRAM)`` per router process index, made
before the fork: unix datagrams are reliable and ordered, keep message boundaries,
and the master never blocks on them (its end is non-blocking).

Messages, one datagram each, first byte the type:

* ``P`` + packets: subscription datagrams to apply in order, each prefixed by its
  length (2 bytes, big endian); batched so a snapshot needs few datagrams (the
  master's end holds at most its 1 MiB send buffer of them at a time);
* ``C`` + packets with their sender's credentials: the same, each length followed by
  the sender's pid, uid and gid (4 bytes each, big endian) and then the packet. They
  are the SCM_CREDENTIALS the master read (``--subscriptions-use-credentials``, see
  ``creds``), so every replica, hence every router process's stats, shows them;
  ``pack`` puts consecutive packets of one kind in one message, in order;
* ``K`` + records: cache changes (``--X-use-cache``), framed as ``P``; each record is
  a cache name and a uWSGI cache sync packet (``brood.cache.replica``), applied to the
  process's cache replica. The feed of a router with caches but no subscription
  server carries only these (its replica has no table);
* ``B`` / ``E``: a snapshot begins / ends. Between them the master re-sends every node
  as a subscribe and every cache item; at ``E`` the replica unsubscribes what the
  snapshot did not mention, and drops the cache items it did not mention;
* ``H`` (router -> master): hello, "send me a snapshot".

A new or respawned router process drains what is queued on its end (stale updates
written while no process read them), sends ``H`` and applies everything that follows:
updates pushed between the drain and ``B`` are current, and the snapshot then fixes the
whole state. What the master cannot write at once waits in the channel's queue, in
order, and goes out on its next ticks (a snapshot of thousands of nodes takes several);
when that queue passes ``MAX_BACKLOG`` (a stuck or dead process), it is dropped and a
snapshot follows once the process reads again: its hello, or the master's end polling
writable (it took what was queued). Not before: a table whose snapshot is itself over
``MAX_BACKLOG`` would be rebuilt and dropped again every tick, for nothing.

In-flight counts and connect-refused dead marks stay in the replica: they describe the
router process's own traffic. Replicas do not check signatures (the master did).
"""

from __future__ import annotations

import collections
import contextlib
import select
import socket
import struct
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import trio

from brood.cache.replica import CacheReplica
from brood.cache.spec import CacheSpec
from brood.config.model import Config
from brood.log import log
from brood.subscription.creds import Creds
from brood.subscription.packet import (
    UNSUBSCRIBE,
    Subscription,
    SubscriptionError,
    decode_subscription,
    encode_subscription,
)
from brood.subscription.table import Event, SubscriptionTable, TableResolver

PACKETS, CREDS, BEGIN, END, HELLO, CACHE = b"P", b"C", b"B", b"E", b"H", b"K"
# Batch size of one P message: well under the default unix socket buffers (~208 KiB).
MAX_MESSAGE = 32768
# Receive buffer for one message (a batch, or one 4096-byte packet plus framing).
RECV_SIZE = 65536
# Bytes queued for a replica that reads nothing before the master gives up on the queue
# (a snapshot replaces it when the replica reads again): a 30k-node snapshot is ~2 MB.
MAX_BACKLOG = 16 << 20
# ... and only once it has taken nothing for this long (a snapshot larger than
# MAX_BACKLOG still goes out, over more ticks, to a replica that reads).
STUCK_AFTER = 10.0
# The master end's send buffer: room for a few snapshot batches in flight.
SNDBUF = 1 << 20
# The replica's own sweep (leaving nodes whose last request ended, lazy expiry).
SWEEP_EVERY = 1.0
# Stale messages a starting router process throws away at most before saying hello.
MAX_DRAIN = 100_000
_LEN = struct.Struct(">H")
_CREDS = struct.Struct(">iII")

# A packet to push: the datagram, or the datagram and its sender's (pid, uid, gid).
Packet = bytes | tuple[bytes, Creds | None]


def _entry(item: Packet) -> tuple[bytes, Creds | None]:
    return (item, None) if isinstance(item, bytes | bytearray) else item


def pack(packets: Sequence[Packet], plain: bytes = PACKETS) -> list[bytes]:
    """``P``/``C`` messages carrying ``packets`` in order, each <= MAX_MESSAGE bytes
    (``plain=CACHE``: ``K`` messages of cache records, which carry no credentials)."""
    messages: list[bytes] = []
    current = bytearray()
    for item in packets:
        packet, creds = _entry(item)
        kind = plain if creds is None else CREDS
        framed = _LEN.pack(len(packet))
        if creds is not None:
            framed += _CREDS.pack(*creds)
        framed += packet
        if current and (current[:1] != kind or len(current) + len(framed) > MAX_MESSAGE):
            messages.append(bytes(current))
            current = bytearray()
        if not current:
            current += kind
        current += framed
    if current:
        messages.append(bytes(current))
    return messages


def unpack(message: bytes) -> Iterator[tuple[bytes, Creds | None]]:
    """(packet, credentials or None) of a ``P``/``C`` message; a truncated tail is
    dropped."""
    extra = _CREDS.size if message[:1] == CREDS else 0
    pos = 1
    while pos + 2 + extra <= len(message):
        (size,) = _LEN.unpack_from(message, pos)
        pos += 2
        creds: Creds | None = None
        if extra:
            pid, uid, gid = _CREDS.unpack_from(message, pos)
            creds = (pid, uid, gid)
            pos += extra
        if pos + size > len(message):
            return
        yield message[pos:pos + size], creds
        pos += size


def table_from_config(cfg: Config) -> SubscriptionTable:
    """A table with the --subscription-* settings (--X-subscription-fallback-key is the
    router's resolver chain's, see ``brood.routers.resolve.FallbackKeyResolver``)."""
    return SubscriptionTable(
        tolerance=float(cfg["subscription-tolerance"]),
        dotsplit=bool(cfg["subscription-dotsplit"]),
        mountpoints=int(cfg["subscription-mountpoints"] or 0),
        default_algo=str(cfg["subscription-algo"] or "wrr"),
    )


def removal_packet(key: bytes, address: bytes) -> bytes:
    """An unsubscribe for (key, address): how the master tells replicas a node expired."""
    return encode_subscription(Subscription(key, address), UNSUBSCRIBE)


class Channel:
    """Both ends of one router process's channel; lives in the master, ends inherited."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.master, self.child = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.master.setblocking(False)
        with contextlib.suppress(OSError):
            self.master.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SNDBUF)
        self.needs_resync = False  # its queue was dropped: it is owed a snapshot
        self.dropped = 0
        self.backlog: collections.deque[bytes] = collections.deque()  # not written yet
        self.backlog_size = 0
        self.last_write = time.monotonic()  # the replica's last progress

    def send(self, messages: Sequence[bytes]) -> bool:
        """Queue ``messages`` behind those not written yet and write what the socket
        takes now, without blocking; True when nothing is left queued. A replica that
        reads nothing for ``STUCK_AFTER`` while ``MAX_BACKLOG`` bytes pile up is given up
        on: the queue is dropped and a snapshot (``resync``) replaces it once it reads
        again (``reads_again``)."""
        if self.needs_resync or self.master.fileno() < 0:
            return False
        for message in messages:
            self.backlog.append(message)
            self.backlog_size += len(message)
        return self.flush()

    def flush(self) -> bool:
        """Write queued messages, in order, until the socket is full (its 1 MiB send
        buffer); the master's ticks write the rest. True when nothing is left queued."""
        backlog = self.backlog
        while backlog:
            message = backlog[0]
            try:
                self.master.send(message)
            except OSError:
                if (self.backlog_size > MAX_BACKLOG
                        and time.monotonic() - self.last_write > STUCK_AFTER):
                    log(f"subscription feed of router process {self.index}: "
                        f"{self.backlog_size} bytes unread, dropped; a snapshot follows "
                        f"when it reads again")
                    self.dropped += 1
                    backlog.clear()
                    self.backlog_size = 0
                    self.needs_resync = True
                return False
            backlog.popleft()
            self.backlog_size -= len(message)
            self.last_write = time.monotonic()
        return True

    def reads_again(self) -> bool:
        """Whether a replica given up on took what was queued for it (the master's end
        polls writable): only then is its snapshot worth building."""
        if not self.needs_resync or self.master.fileno() < 0:
            return False
        poller = select.poll()
        poller.register(self.master, select.POLLOUT)
        return any(mask & select.POLLOUT for _, mask in poller.poll(0))

    def resync(self, snapshot: Sequence[Packet], extra: Sequence[bytes] = ()) -> bool:
        """Replace what is queued by a full snapshot (B, packets, ``extra`` messages such
        as the caches' ``K``, E): a snapshot is the whole state. It goes out as the socket takes it, over several ticks when large;
        True when it all went out at once. The replica gets a fresh ``STUCK_AFTER``
        to start taking it."""
        if self.needs_resync:
            log(f"subscription feed of router process {self.index} reads again: "
                f"sending a snapshot")
        self.needs_resync = False
        self.backlog.clear()
        self.backlog_size = 0
        self.last_write = time.monotonic()
        return self.send([BEGIN, *pack(snapshot), *extra, END])

    def read_hellos(self) -> int:
        """Consume the hellos queued on the master end; how many there were."""
        count = 0
        for _ in range(64):
            try:
                data = self.master.recv(16)
            except (BlockingIOError, InterruptedError):
                break
            if data[:1] == HELLO:
                count += 1
        return count

    def close_master_end(self) -> None:
        self.master.close()


class RouterFeed:
    """The router process's side: a table replica (None: the router has no subscription
    server) and its cache replica (``caches``, when it uses one), fed from its channel
    end. ``resolver`` is the table's, for the router's resolver chain."""

    def __init__(self, sock: socket.socket, table: SubscriptionTable | None, *,
                 clock: Callable[[], float] = time.time,
                 on_events: Callable[[list[Event]], None] | None = None,
                 caches: CacheReplica | None = None) -> None:
        self.sock = sock
        self.table = table
        self.resolver = TableResolver(table) if table is not None else None
        self.caches = caches
        self.clock = clock
        self.on_events = on_events  # e.g. the HTTPS router's SNI store (sni_added/removed)
        # The subscription servers' names as bound (port 0 resolved), for the stats.
        self.server_names: list[str] = []
        self.applied = 0
        self._snapshot: set[tuple[bytes, bytes]] | None = None

    # -- pure-ish message handling (tests drive it directly) ------------------------------
    def handle(self, message: bytes, now: float) -> None:
        kind = message[:1]
        if kind == BEGIN:
            self._snapshot = set()
            if self.caches is not None:
                self.caches.begin()
        elif kind == END:
            self._end_snapshot(now)
            if self.caches is not None:
                self.caches.end()
        elif kind in (PACKETS, CREDS):
            for packet, creds in unpack(message):
                self._apply(packet, now, creds)
        elif kind == CACHE and self.caches is not None:
            for record, _ in unpack(message):
                self.caches.apply(record)

    def _apply(self, packet: bytes, now: float, creds: Creds | None = None) -> None:
        if self.table is None:
            return
        try:
            sub = decode_subscription(packet)
        except SubscriptionError:
            return  # the master only sends what it decoded; nothing to do with garbage
        events = self.table.apply(sub, now, creds)
        self.applied += 1
        if self._snapshot is not None and not sub.unsubscribe:
            self._snapshot.add((sub.key, sub.address))
        self._emit(events)

    def _end_snapshot(self, now: float) -> None:
        seen, self._snapshot = self._snapshot, None
        if seen is None or self.table is None:
            return
        for slot in self.table.slots():
            for node in list(slot.nodes):
                address = node.name.encode("utf-8", "surrogateescape")
                if (slot.key, address) not in seen:
                    self._emit(self.table.apply(Subscription(slot.key, address,
                                                             command=UNSUBSCRIBE), now))

    def _emit(self, events: list[Event]) -> None:
        if events and self.on_events is not None:
            self.on_events(events)

    # -- the trio task ----------------------------------------------------------------------
    def drain(self) -> int:
        """Throw away what was queued before this process started (stale updates)."""
        self.sock.setblocking(False)
        count = 0
        for _ in range(MAX_DRAIN):
            try:
                self.sock.recv(RECV_SIZE)
            except (BlockingIOError, InterruptedError):
                break
            count += 1
        return count

    async def run(self, engine: Any = None, static_nodes: bool = False, *,
                  task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Say hello, then apply messages; keeps ``engine``'s cheap mode in step."""
        self.drain()
        tsock = trio.socket.from_stdlib_socket(self.sock)
        await tsock.send(HELLO)
        task_status.started()

        table = self.table

        def changed() -> None:
            if table is None:
                return
            self._emit(table.take_events())
            if engine is not None:
                engine.nodes_changed(static_nodes or table.has_nodes())

        next_sweep = trio.current_time() + SWEEP_EVERY
        while True:
            with trio.move_on_at(next_sweep):
                message = await tsock.recv(RECV_SIZE)
                self.handle(message, self.clock())
                changed()
                continue
            next_sweep = trio.current_time() + SWEEP_EVERY
            if table is not None:
                self._emit(table.expire(self.clock()))
            changed()


def feed_for(channels: Sequence[Channel], index: int, cfg: Config, *,
             subscriptions: bool = True,
             caches: Sequence[CacheSpec] = ()) -> RouterFeed:
    """In router process ``index`` (1-based), after the fork: its feed, with a table
    replica when the router has ``subscriptions`` servers and a cache replica when it
    uses ``caches``; the other processes' ends are closed here (this process never
    reads them)."""
    mine = None
    for channel in channels:
        if channel.index == index:
            mine = channel.child
        else:
            channel.child.close()
    if mine is None:
        raise LookupError(f"no subscription channel for router process {index}")
    return RouterFeed(mine, table_from_config(cfg) if subscriptions else None,
                      caches=CacheReplica(caches) if caches else None)
