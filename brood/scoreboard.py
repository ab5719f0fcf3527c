"""Per-worker counters in shared memory: written by each worker, read by the master.

The master maps one anonymous shared region before forking; slot i belongs to worker
i+1 (uWSGI's 1-based ids). A worker writes only its own slot, the master reads all of
them for stats, harakiri and reload-on-rss. Each field is one aligned 8-byte word, so a
reader never sees a torn value; a stats snapshot may mix before/after of one request,
which is fine for counters.

After the slots, one request record per worker core (serving thread): what the core
is serving now (``--harakiri-verbose``: the master logs it when it kills the worker).
A record is the request's start (an 8-byte word, 0 when none), the text's length, the
requests the core has served (kept with ``--threads`` only: one core is its worker),
then the text. The worker clears the start, writes the text and length, then sets the
start; the master reads the start, the text, then the start again and drops a record
that changed meanwhile. With ``--threads`` each core also sets its start (without
text) for its requests, so the stats say which threads are busy, as uWSGI's cores do.

Last, one word for the whole instance: the requests served by all workers since the
start, respawns included (uWSGI's ``workers[0].requests``, the second number of a
request line's ``req: N/TOTAL``). Each worker adds to it without a lock, as uWSGI does:
two workers ending a request at the same instant may count one.
"""

from __future__ import annotations

import mmap
import struct
import sys

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
# Each field's index among a slot's 8-byte words (see ``WorkerSlot.words``).
FIELD_INDEX = {name: i for i, name in enumerate(_FIELDS)}
# One request record: start, length and requests words, then the text (longer text
# is cut).
_RECORD_SIZE = 512
_RECORD_HEAD = 3 * _WORD.size
_RECORD_TEXT = _RECORD_SIZE - _RECORD_HEAD

STATUS_IDLE = 0
STATUS_BUSY = 1
STATUS_PAUSE = 2
STATUS_CHEAP = 3
STATUS_NAMES = {STATUS_IDLE: "idle", STATUS_BUSY: "busy", STATUS_PAUSE: "pause", STATUS_CHEAP: "cheap"}


class WorkerSlot:
    """One worker's counters, by attribute name (``slot.requests += 1`` works), and
    its cores' request records."""

    __slots__ = ("_buf", "_base", "_records", "_cores", "_total")

    def __init__(self, buf: mmap.mmap, index: int, records: int = -1, cores: int = 0,
                 total: int = -1) -> None:  # fmt: skip
        object.__setattr__(self, "_buf", buf)
        object.__setattr__(self, "_base", index * _SLOT_SIZE)
        object.__setattr__(self, "_records", records)  # offset of core 0's record
        object.__setattr__(self, "_cores", cores if records >= 0 else 0)
        object.__setattr__(self, "_total", total)  # offset of the instance's total

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
        """Zero the slot and its request records, keeping the counters uWSGI keeps
        across respawns."""
        kept = {n: getattr(self, n) for n in ("respawn_count", "harakiri_count", "generation")}
        self._buf[self._base : self._base + _SLOT_SIZE] = bytes(_SLOT_SIZE)
        for name, value in kept.items():
            setattr(self, name, value)
        self.clear_requests()

    def words(self) -> memoryview | None:
        """The slot's fields as a writable view of native 8-byte ints, indexed by
        ``FIELD_INDEX`` (a store is one word write, far cheaper than an attribute);
        None where the native byte order is not the stored little-endian one. Release
        the view before the scoreboard goes away."""
        if sys.byteorder != "little":
            return None
        return memoryview(self._buf)[self._base : self._base + _SLOT_SIZE].cast("q")

    def total_word(self) -> memoryview | None:
        """The instance's request total as a writable one-word native view (see
        ``words``), or None (no such word, or not little-endian)."""
        if self._total < 0 or sys.byteorder != "little":
            return None
        return memoryview(self._buf)[self._total : self._total + _WORD.size].cast("q")

    @property
    def total_requests(self) -> int:
        """Requests served by all workers of the instance since its start."""
        if self._total < 0:
            return self.requests
        return _WORD.unpack_from(self._buf, self._total)[0]

    def _count_total(self) -> None:
        if self._total >= 0:
            _WORD.pack_into(self._buf, self._total, self.total_requests + 1)

    # -- request records (--harakiri-verbose) ----------------------------------------

    def publish_request(self, core: int, start_us: int, text: bytes) -> None:
        """Core ``core`` serves a request since ``start_us`` described by ``text``."""
        if not 0 <= core < self._cores:
            return
        off = self._records + core * _RECORD_SIZE
        buf = self._buf
        text = text[:_RECORD_TEXT]
        _WORD.pack_into(buf, off, 0)
        buf[off + _RECORD_HEAD : off + _RECORD_HEAD + len(text)] = text
        _WORD.pack_into(buf, off + 8, len(text))
        _WORD.pack_into(buf, off, start_us)

    def clear_request(self, core: int) -> None:
        """Core ``core`` is done with its request."""
        if 0 <= core < self._cores:
            _WORD.pack_into(self._buf, self._records + core * _RECORD_SIZE, 0)

    def clear_requests(self) -> None:
        for core in range(self._cores):
            self.clear_request(core)
            _WORD.pack_into(self._buf, self._records + core * _RECORD_SIZE + 16, 0)

    def begin_core(self, core: int, start_us: int) -> None:
        """Core ``core`` (a ``--threads`` thread) began a request at ``start_us``."""
        if 0 <= core < self._cores:
            off = self._records + core * _RECORD_SIZE
            if not _WORD.unpack_from(self._buf, off)[0]:  # (else published with its text)
                _WORD.pack_into(self._buf, off + 8, 0)
                _WORD.pack_into(self._buf, off, start_us)

    def end_core(self, core: int) -> None:
        """Core ``core`` ended its request: one more served."""
        if 0 <= core < self._cores:
            off = self._records + core * _RECORD_SIZE
            _WORD.pack_into(self._buf, off, 0)
            _WORD.pack_into(self._buf, off + 16, _WORD.unpack_from(self._buf, off + 16)[0] + 1)

    def core_stats(self) -> list[tuple[int, bool]]:
        """(requests served, in a request now) of each core; a worker of one thread
        is its only core."""
        if self._cores <= 1:
            return [(self.requests, bool(self.in_request))]
        buf = self._buf
        return [(_WORD.unpack_from(buf, off + 16)[0], _WORD.unpack_from(buf, off)[0] != 0)
                for off in (self._records + c * _RECORD_SIZE for c in range(self._cores))]

    def current_requests(self) -> list[tuple[int, int, str]]:
        """(core, start in Unix microseconds, text) of each core serving a request."""
        found = []
        buf = self._buf
        for core in range(self._cores):
            off = self._records + core * _RECORD_SIZE
            start = _WORD.unpack_from(buf, off)[0]
            if not start:
                continue
            size = min(max(0, _WORD.unpack_from(buf, off + 8)[0]), _RECORD_TEXT)
            text = bytes(buf[off + _RECORD_HEAD : off + _RECORD_HEAD + size])
            if _WORD.unpack_from(buf, off)[0] == start:  # not rewritten meanwhile
                found.append((core, start, text.decode("utf-8", "replace")))
        return found

    def begin_request(self, now_us: int) -> None:
        self.request_start = now_us
        self.in_request = 1
        self.status = STATUS_BUSY

    def end_request(self, now_us: int, tx: int, failed: bool) -> None:
        """Account one finished request (``failed``: the app raised)."""
        elapsed = max(0, now_us - self.request_start)
        self.requests += 1
        self._count_total()
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
    """The shared region for ``count`` workers of ``cores`` serving threads each;
    create it before forking."""

    def __init__(self, count: int, cores: int = 1) -> None:
        self.count = count
        self.cores = max(1, cores)
        self._records = max(1, count) * _SLOT_SIZE
        self._total = self._records + max(1, count) * self.cores * _RECORD_SIZE
        self._buf = mmap.mmap(-1, self._total + _WORD.size, flags=mmap.MAP_SHARED)

    def slot(self, worker_id: int) -> WorkerSlot:
        """Slot of worker ``worker_id`` (1-based, as uWSGI numbers workers)."""
        if not 1 <= worker_id <= self.count:
            raise IndexError(f"no worker {worker_id}")
        index = worker_id - 1
        return WorkerSlot(self._buf, index, self._records + index * self.cores * _RECORD_SIZE,
                          self.cores, self._total)

    def slots(self) -> list[WorkerSlot]:
        return [self.slot(i) for i in range(1, self.count + 1)]

    @property
    def total_requests(self) -> int:
        """Requests served by all workers since the start, respawns included."""
        return _WORD.unpack_from(self._buf, self._total)[0]
