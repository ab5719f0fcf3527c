"""The master's caches: the authoritative copy, its UDP sync servers, and the pushes to
every router process's replica.

Why in the master: router processes are forked and several of a kind must route with
the same map; the master already owns the subscription tables for the same reason and
feeds each process over its channel (``brood.subscription.server``). ``CacheHub`` holds
the caches, applies ``--add-cache-item`` at start and the cache sync packets its
``CacheSyncSocket``s receive (``--cache-udp-server``, ``--cache2 ...,udp=``), and hands
each change, as a record (``brood.cache.replica``), to its sinks: the subscription hubs
of the router kinds that use a cache, which queue it on their channels. A respawned
router process gets the items in its snapshot (``snapshot_messages``). The master's
tick removes expired items and pushes their deletion.

A bad packet or a refused item is one logged line with the reason (uWSGI's
``[cache-udp-server]`` prefix); nothing raises out of the master loop.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Callable, Sequence

from brood.cache.replica import encode_record
from brood.cache.spec import CacheSpec
from brood.cache.store import CacheSet
from brood.cache.sync import MAX_PACKET, SyncCommand, SyncError, decode_sync
from brood.log import log
from brood.sockets import socket_name

# Datagrams read per readable event, so one busy socket cannot hold the master loop.
MAX_PER_CALL = 256
# Receive buffer of a sync socket (the kernel caps it at net.core.rmem_max): what a
# burst may queue while the master is busy elsewhere.
RCVBUF = 4 << 20
# Lines a second about dropped packets, at most.
LOG_PER_SECOND = 5

Sink = Callable[[Sequence[bytes]], None]  # takes records, in order


class CacheHub:
    """The declared caches, in the master; a tick-only master service."""

    def __init__(self, specs: Sequence[CacheSpec],
                 clock: Callable[[], float] = time.time) -> None:
        self.caches = CacheSet(specs, clock)
        self.clock = clock
        self.sinks: list[Sink] = []
        self.received = 0
        self.dropped = 0
        self._batch: list[bytes] | None = None  # records held while a burst is read
        self._window = 0.0  # start of the second whose drops are being logged
        self._said = 0  # lines logged in it (at most LOG_PER_SECOND)
        self._unsaid = 0  # drops not logged since

    def add_sink(self, sink: Sink) -> None:
        """``sink`` gets every change from now on (not ``attach``: the master calls
        that on its services)."""
        self.sinks.append(sink)

    # -- changes --------------------------------------------------------------------------
    def put(self, cache: str, key: bytes, value: bytes, expires: int = 0) -> str | None:
        """Set or update ``key`` in ``cache`` and push it; the refusal reason, or None."""
        target = self.caches.caches.get(cache)
        if target is None:
            return f"no cache named {cache!r}"
        reason, purged = target.put(key, value, expires)
        if reason is not None:
            return reason
        records = []
        if purged is not None:
            records.append(encode_record(cache, SyncCommand(purged)))
        records.append(encode_record(cache, SyncCommand(key, value, expires)))
        self._push(records)
        return None

    def delete(self, cache: str, key: bytes) -> bool:
        target = self.caches.caches.get(cache)
        if target is None or not target.delete(key):
            return False
        self._push([encode_record(cache, SyncCommand(key))])
        return True

    def _push(self, records: Sequence[bytes]) -> None:
        if self._batch is not None:
            self._batch.extend(records)
            return
        for sink in self.sinks:
            sink(records)

    def begin_batch(self) -> None:
        """Hold the changes of the datagrams read from now (``end_batch`` pushes them
        at once): one message per router channel for a burst, not one per datagram."""
        if self._batch is None:
            self._batch = []

    def end_batch(self) -> None:
        records, self._batch = self._batch, None
        if records:
            self._push(records)

    def _drop(self, line: str) -> None:
        """Count a dropped packet and log why: at most ``LOG_PER_SECOND`` lines a
        second, the next one saying how many went unsaid (a sender on the network must
        not flood the log)."""
        self.dropped += 1
        now = time.monotonic()
        if now - self._window >= 1.0:
            self._window, self._said = now, 0
        if self._said >= LOG_PER_SECOND:
            self._unsaid += 1
            return
        if self._unsaid:
            line += f" ({self._unsaid} more dropped unsaid before this one)"
            self._unsaid = 0
        self._said += 1
        log(line)

    def snapshot(self) -> list[bytes]:
        """Every live item as a set record (a replica's snapshot)."""
        now = self.clock()
        return [encode_record(cache.name, SyncCommand(key, value, expires))
                for cache in self.caches for key, value, expires in cache.items()
                if not expires or expires > now]

    # -- the network --------------------------------------------------------------------
    def receive(self, datagram: bytes, cache: str, sender: str = "") -> None:
        """One datagram from a sync socket of ``cache``: applied, or a logged reason."""
        self.received += 1
        origin = f" from {sender}" if sender else ""
        try:
            cmd = decode_sync(bytes(datagram[:MAX_PACKET]))
        except SyncError as exc:
            self._drop(f"[cache-udp-server] invalid packet{origin} for cache \"{cache}\" "
                       f"({exc.reason}), dropped")
            return
        if cmd.value is None:
            self.delete(cache, cmd.key)  # deleting a missing key is no news
            return
        reason = self.put(cache, cmd.key, cmd.value, cmd.expires)
        if reason is not None:
            if reason != "cache is full" or not self.caches.caches[cache].spec.ignore_full:
                self._drop(f"[cache-udp-server] unable to update cache \"{cache}\" with "
                           f"{_text(cmd.key)!r}{origin}: {reason}")
            else:
                self.dropped += 1

    # -- MasterService --------------------------------------------------------------------
    def fileno(self) -> int | None:
        return None

    def on_readable(self, now: float) -> None:
        return None

    def tick(self, now: float) -> None:
        for cache in self.caches:
            gone = cache.expire(now)
            if gone:
                self._push([encode_record(cache.name, SyncCommand(key)) for key in gone])

    def on_reload(self, graceful: bool | None = None) -> None:
        return None

    def on_shutdown(self) -> None:
        return None

    def close_in_child(self) -> None:
        return None


class CacheSyncSocket:
    """One bound UDP (or unix datagram) cache sync server of one cache, read by the
    master."""

    def __init__(self, sock: socket.socket, hub: CacheHub, cache: str) -> None:
        sock.setblocking(False)
        with contextlib.suppress(OSError):  # a fleet re-registering at once: a burst
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
        self.sock = sock
        self.hub = hub
        self.cache = cache
        self.name = socket_name(sock)

    def fileno(self) -> int | None:
        fd = self.sock.fileno()
        return fd if fd >= 0 else None

    def on_readable(self, now: float) -> None:
        self.hub.begin_batch()
        try:
            for _ in range(MAX_PER_CALL):
                try:
                    data, sender = self.sock.recvfrom(MAX_PACKET)
                except (BlockingIOError, InterruptedError):
                    return
                except OSError as exc:
                    log(f"[cache-udp-server] {self.name}: {exc.strerror or exc}")
                    return
                self.hub.receive(data, self.cache, _peer(sender))
        finally:
            self.hub.end_batch()

    def tick(self, now: float) -> None:
        return None

    def on_reload(self, graceful: bool | None = None) -> None:
        self.sock.close()

    def on_shutdown(self) -> None:
        self.sock.close()

    def close_in_child(self) -> None:
        self.sock.close()


def _peer(sender: object) -> str:
    if isinstance(sender, tuple) and len(sender) >= 2:
        return f"{sender[0]}:{sender[1]}"
    return str(sender or "")


def _text(value: bytes) -> str:
    return value.decode("utf-8", "replace")[:64]
