"""The router process's copy of the caches, fed by the master over the subscription
feed's channel (``brood.subscription.feed``: ``K`` messages inside its framing).

Why the same channel: it already gives every router process, respawned ones too, the
master's table in order, with a snapshot on hello. A cache change is one *record*: the
cache name (u16 length, big endian, then the name) followed by the change as a uWSGI
cache sync packet (``sync``), so one decoder reads the network and the channel. Within
a snapshot (``begin``/``end``), the keys the master did not mention are removed at its
end; the rest stays readable throughout (no request sees an empty cache meanwhile).
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable, Sequence

from brood.cache.spec import CacheSpec
from brood.cache.store import CacheSet
from brood.cache.sync import SyncCommand, SyncError, decode_sync, encode_sync
from brood.log import log

_NAME = struct.Struct(">H")


def encode_record(cache: str, cmd: SyncCommand) -> bytes:
    name = cache.encode("utf-8", "surrogateescape")
    return _NAME.pack(len(name)) + name + encode_sync(cmd)


def decode_record(record: bytes) -> tuple[str, SyncCommand]:
    """(cache name, command); SyncError when the record is malformed."""
    if len(record) < 2:
        raise SyncError("record too short")
    (size,) = _NAME.unpack_from(record)
    if 2 + size > len(record):
        raise SyncError("cache name overruns the record")
    name = record[2:2 + size].decode("utf-8", "surrogateescape")
    return name, decode_sync(record[2 + size:])


class CacheReplica(CacheSet):
    """The caches of one router process; ``apply`` takes the master's records."""

    def __init__(self, specs: Sequence[CacheSpec],
                 clock: Callable[[], float] = time.time) -> None:
        super().__init__(specs, clock)
        self._seen: set[tuple[str, bytes]] | None = None
        self.applied = 0

    def begin(self) -> None:
        self._seen = set()

    def apply(self, record: bytes) -> None:
        try:
            name, cmd = decode_record(record)
        except SyncError as exc:  # the master only sends what it encoded: a bug if seen
            log(f"[cache] bad record from the master ({exc.reason}), dropped")
            return
        cache = self.caches.get(name)
        if cache is None:
            return
        if cmd.value is None:
            cache.delete(cmd.key)
        else:
            cache.put(cmd.key, cmd.value, cmd.expires)
            if self._seen is not None:
                self._seen.add((name, cmd.key))
        self.applied += 1

    def end(self) -> None:
        seen, self._seen = self._seen, None
        if seen is None:
            return
        for cache in self:
            for key in cache.all_keys():
                if (cache.name, key) not in seen:
                    cache.delete(key)

