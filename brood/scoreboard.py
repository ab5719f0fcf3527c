"""Per-worker counters in shared memory: written by each worker, read by the master.

The master maps one anonymous shared region before forking; slot i belongs to worker
i+1 (uWSGI's 1-based ids). A worker writes only its own slot, the master reads all of
them for stats, harakiri and reload-on-rss. Each field is one aligned 8-byte word, so a
reader never sees a torn value; a stats snapshot may mix before/after of one request,
which is fine for counters.
"""

from __future__ import annotations

import mmap
import struct

# Field order is the layout; append only.
_FIELDS = (
    "pid",
    "status",  # one of STATUS_*
    "accepting",
    "requests",
    "delta_requests",
    "exceptions",
    "harakiri_count",
    "tx",
    "rss",
    "vsz",
    "running_time",  # microseconds spent in requests, summed
    "avg_rt",  # microseconds, moving average
    "last_spawn",  # Unix seconds
    "respawn_count",
    "request_start",  # Unix time in microseconds when the current request began; 0 idle
    "in_request",
    "signals",
    "generation",  # bumped by the master at each respawn of this slot
)
_WORD = struct.Struct("<q")
_SLOT_SIZE = _WORD.size * len(_FIELDS)
_OFFSET = {name: i * _WORD.size for i, name in enumerate(_FIELDS)}

STATUS_IDLE = 0
STATUS_BUSY = 1
STATUS_PAUSE = 2
STATUS_CHEAP = 3
STATUS_NAMES = {STATUS_IDLE: "idle", STATUS_BUSY: "busy", STATUS_PAUSE: "pause", STATUS_CHEAP: "cheap"}


class WorkerSlot:
    """One worker's counters, by attribute name (``slot.requests += 1`` works)."""

    __slots__ = ("_buf", "_base")

    def __init__(self, buf: mmap.mmap, index: int) -> None:
        object.__setattr__(self, "_buf", buf)
        object.__setattr__(self, "_base", index * _SLOT_SIZE)

    def __getattr__(self, name: str) -> int:
        try:
            off = _OFFSET[name]
        except KeyError:
            raise AttributeError(name) from None
        return _WORD.unpack_from(self._buf, self._base + off)[0]

    def __setattr__(self, name: str, value: int) -> None:
        try:
            off = _OFFSET[name]
        except KeyError:
            raise AttributeError(name) from None
        _WORD.pack_into(self._buf, self._base + off, int(value))

    def reset(self) -> None:
        """Zero the slot, keeping the counters uWSGI keeps across respawns."""
        kept = {n: getattr(self, n) for n in ("respawn_count", "harakiri_count", "generation")}
        self._buf[self._base : self._base + _SLOT_SIZE] = bytes(_SLOT_SIZE)
        for name, value in kept.items():
            setattr(self, name, value)

    def begin_request(self, now_us: int) -> None:
        self.request_start = now_us
        self.in_request = 1
        self.status = STATUS_BUSY

    def end_request(self, now_us: int, tx: int, failed: bool) -> None:
        """Account one finished request (``failed``: the app raised)."""
        elapsed = max(0, now_us - self.request_start)
        self.requests += 1
        self.delta_requests += 1
        self.tx += tx
        self.running_time += elapsed
        prev = self.avg_rt
        self.avg_rt = elapsed if prev == 0 else (prev * 7 + elapsed) // 8
        if failed:
            self.exceptions += 1
        self.request_start = 0
        self.in_request = 0
        self.status = STATUS_IDLE

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in _FIELDS}


class Scoreboard:
    """The shared region for ``count`` workers; create it before forking."""

    def __init__(self, count: int) -> None:
        self.count = count
        self._buf = mmap.mmap(-1, max(1, count) * _SLOT_SIZE, flags=mmap.MAP_SHARED)

    def slot(self, worker_id: int) -> WorkerSlot:
        """Slot of worker ``worker_id`` (1-based, as uWSGI numbers workers)."""
        if not 1 <= worker_id <= self.count:
            raise IndexError(f"no worker {worker_id}")
        return WorkerSlot(self._buf, worker_id - 1)

    def slots(self) -> list[WorkerSlot]:
        return [self.slot(i) for i in range(1, self.count + 1)]
