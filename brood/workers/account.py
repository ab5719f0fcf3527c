"""Per-request scoreboard accounting for a worker, at the cost of a few word stores.

``WorkerSlot`` reads and writes fields by name through ``__getattr__``/``__setattr__``
and ``struct``: about twenty such calls per request cost a worker more than parsing the
request head. ``Account`` keeps the same books as ``WorkerSlot.begin_request`` and
``end_request`` with two changes of cost, not of meaning:

* it writes through a native int64 view of the worker's own slot (``WorkerSlot.words``,
  checked at start; without it, it falls back to the slot's methods);
* ``request_start``, ``in_request`` and ``status``, which harakiri and the stats
  ``load`` read while a request runs, are stored at once; the counters (requests,
  tx, running time, average, exceptions) are summed here and stored at most
  FLUSH_US later, and whenever the loop is about to wait (``flush``). Only the
  worker writes them, so nothing is lost; a stats reader may see them that late.

The instance's total, which every worker adds to, is counted at once: the request line
shows it.
"""

from __future__ import annotations

from brood.scoreboard import FIELD_INDEX, STATUS_BUSY, STATUS_IDLE, WorkerSlot

# Counters reach the shared slot at most this long (microseconds) after a request.
FLUSH_US = 100_000
_COUNTERS = ("requests", "delta_requests", "exceptions", "tx", "running_time", "avg_rt")
_FIELDS = (*_COUNTERS, "status", "request_start", "in_request", "pid")


def _slot_words(slot: WorkerSlot) -> tuple[memoryview, dict[str, int]] | None:
    """The slot's words as a native view and each field's index, or None."""
    words = slot.words()
    if words is None:
        return None
    index = {name: FIELD_INDEX[name] for name in _FIELDS}
    if words[index["pid"]] != slot.pid:  # the view must see what the slot holds
        words.release()
        return None
    return words, index


class Account:
    """``begin``/``end`` of each request, ``flush`` before waiting, ``close`` at exit."""

    __slots__ = ("slot", "words", "total", "i_status", "i_start", "i_in", "index",
                 "requests", "delta", "exceptions", "tx", "running", "avg", "dirty",
                 "due")  # fmt: skip

    def __init__(self, slot: WorkerSlot) -> None:
        self.slot = slot
        found = _slot_words(slot)
        self.words = found[0] if found else None
        self.total = slot.total_word() if found else None
        self.index = found[1] if found else {}
        if found:
            self.i_status = self.index["status"]
            self.i_start = self.index["request_start"]
            self.i_in = self.index["in_request"]
        # the counters as the slot holds them now (a respawned slot may keep some)
        self.requests = slot.requests
        self.delta = slot.delta_requests
        self.exceptions = slot.exceptions
        self.tx = slot.tx
        self.running = slot.running_time
        self.avg = slot.avg_rt
        self.dirty = False
        self.due = 0

    def begin(self, now_us: int) -> None:
        """A request started at ``now_us`` (what harakiri measures from)."""
        w = self.words
        if w is None:
            self.slot.begin_request(now_us)
            return
        w[self.i_start] = now_us
        w[self.i_in] = 1
        w[self.i_status] = STATUS_BUSY

    def end(self, now_us: int, tx: int, failed: bool) -> None:
        """The request that began at the slot's request_start ended at ``now_us``."""
        w = self.words
        if w is None:
            self.slot.end_request(now_us, tx, failed)
            return
        elapsed = now_us - w[self.i_start]
        if elapsed < 0:
            elapsed = 0
        self.requests += 1
        total = self.total
        if total is not None:
            total[0] += 1
        self.delta += 1
        self.tx += tx
        self.running += elapsed
        avg = self.avg
        self.avg = elapsed if avg == 0 else (avg * 7 + elapsed) // 8
        if failed:
            self.exceptions += 1
        w[self.i_start] = 0
        w[self.i_in] = 0
        w[self.i_status] = STATUS_IDLE
        self.dirty = True
        if now_us >= self.due:
            self.due = now_us + FLUSH_US
            self.flush()

    def flush(self) -> None:
        """Store the counters in the slot (cheap when nothing changed)."""
        if not self.dirty:
            return
        self.dirty = False
        w = self.words
        if w is None:
            return
        index = self.index
        w[index["requests"]] = self.requests
        w[index["delta_requests"]] = self.delta
        w[index["exceptions"]] = self.exceptions
        w[index["tx"]] = self.tx
        w[index["running_time"]] = self.running
        w[index["avg_rt"]] = self.avg

    def total_requests(self) -> int:
        """Requests served by all workers of the instance, this one's last included."""
        total = self.total
        return total[0] if total is not None else self.slot.total_requests

    def close(self) -> None:
        """Store what is pending and drop the view (a viewed mmap cannot be closed)."""
        self.flush()
        for view in (self.words, self.total):
            if view is not None:
                view.release()
        self.words = self.total = None
