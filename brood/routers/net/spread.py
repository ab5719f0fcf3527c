"""Client connections spread evenly over the router processes of one kind.

Why. The processes of a router accept on one shared socket, and a new connection goes to
whichever process calls accept(2) first; each takes up to ``ACCEPT_BATCH`` per wake-up.
A burst of connects (a client opening its pool, a balancer in front reconnecting) then
lands on whichever process woke first: 64 keep-alive connections came out 48/16 over two
processes here, and the busy one carried three times the other's load for as long as
those connections lived.

How. With ``--X-processes`` above one, the master maps a small table in shared memory
before it forks them (``SpreadTable``): per process, its open client connections, the
connections it accepted so far, a heartbeat and its pid. A process accepts when no live
sibling has clearly fewer connections than it has (``Spread.my_turn``: fewer by more
than ``SLACK`` plus a ``SLACK_SHARE``-th of its own). Otherwise it leaves the connection
to that sibling, which the same readiness woke, and looks again within ``DEFER``:

* its turn by then: it goes on as before;
* not yet, but a sibling accepted meanwhile: it leaves the next one to them again;
* no sibling accepted anything over two such looks (the first may end a sibling's own
  wait): they are not taking connections (busy, hung, gone, starting), and it takes
  what is queued, a batch at a time.

So a sibling that does not accept delays new connections by two ``DEFER``; it does not
stop or ration them.

Only while connections live long compared to how often they come (``rebalance``: over
the last ``BEAT_EVERY`` a process accepted at most ``TURNOVER`` times the connections it
holds, plus ``BURST``). A keep-alive pool lives minutes, and what it is split into at
its start stays. Connections that come and go by the thousand a second (a server in
front that opens one per request) are spread by the accept race itself, and counts that
change that fast would only make processes leave connections to each other for nothing
(a deferral per few accepts, each a wake-up more: 19% more CPU per request measured
behind nginx with two processes). A sibling whose heartbeat is older than ``STALE_MS`` (hung or gone),
or that says it does not accept (starting, stopping, or in cheap mode, said within
``BEAT_EVERY``), is left out. A process alone has a table of its own, and it is always
its turn.

What counts is every client connection the process holds, from its accept to its
close: in its fast lanes and on its general path (WebSockets, TLS, bodies relayed
there). The figures are plain 64-bit stores and loads, without a lock: a reader may see
a count one change old, which the slack absorbs.
"""

from __future__ import annotations

import mmap
import os
import time
from collections.abc import Callable

import trio

# Per process: open client connections, connections accepted so far, heartbeat
# (CLOCK_MONOTONIC milliseconds, one clock for every process; 0: not accepting), pid (so
# that a process stopping does not clear its successor's entry).
_FIELDS = 4
_OPEN, _TAKEN, _BEAT, _PID = range(_FIELDS)
_WORD = 8
# How far ahead of the least loaded live sibling a process may be and still accept:
# SLACK connections plus a SLACK_SHARE-th of its own (exact balance is not worth a
# deferred accept per connection under churn).
SLACK = 2
SLACK_SHARE = 16
# How long a process leaves a connection to a sibling before it looks again, at most.
DEFER = 0.002
# A sibling whose heartbeat is older than this (milliseconds) is not counted.
STALE_MS = 2000
BEAT_EVERY = 0.5
# Counts are balanced while a process accepted at most TURNOVER times the connections it
# holds over the last BEAT_EVERY (they live a quarter of that or longer), plus BURST (a
# pool opened, or closed and opened again, at once).
TURNOVER = 4
BURST = 64


class SpreadTable:
    """The table of one router kind's ``count`` processes, mapped by the master before it
    forks them (anonymous shared memory, inherited by every child)."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.memory = mmap.mmap(-1, count * _FIELDS * _WORD, flags=mmap.MAP_SHARED)

    def member(self, index: int) -> Spread:
        """The entry of process ``index`` (1-based), claimed by the calling process."""
        return Spread(self, index)


class Spread:
    """One process's part of a ``SpreadTable``: its connection count, its heartbeat, and
    whether the next connection is its to accept. Without a table: a process alone."""

    def __init__(self, table: SpreadTable | None = None, index: int = 1) -> None:
        if table is None:
            self.slots = memoryview(bytearray(_FIELDS * _WORD)).cast("q")
            count = 1
        else:
            self.slots = memoryview(table.memory).cast("q")
            count = table.count
        self.at = (index - 1) * _FIELDS
        # Where the siblings' entries start; empty when alone (always its turn).
        self.others = [i * _FIELDS for i in range(count) if i != index - 1]
        self.shared = bool(self.others)
        self.open = 0
        self.balancing = True  # connections live long (``rebalance``): counts matter
        self.taken_then = 0  # accepts at the last ``rebalance``
        self.slots[self.at + _OPEN] = 0
        self.slots[self.at + _TAKEN] = 0
        self.slots[self.at + _PID] = os.getpid()
        self.beat(accepting=False)  # until beat_forever runs, once it listens

    def opened(self) -> None:
        """A client connection is this process's now."""
        self.open += 1
        self.slots[self.at] = self.open

    def closed(self) -> None:
        """A client connection this process held is closed."""
        self.open -= 1
        self.slots[self.at] = self.open

    def took(self) -> None:
        """This process accepted a connection (``opened`` counts it as held)."""
        self.slots[self.at + _TAKEN] += 1

    def taken_by_siblings(self) -> int:
        """How many connections the siblings accepted so far: unchanged over ``DEFER``,
        they are not taking the connections left to them."""
        slots = self.slots
        return sum(slots[at + _TAKEN] for at in self.others)

    def wait_again(self, seen: tuple[int, bool] | None) -> tuple[int, bool] | None:
        """A connection is not this process's to take (``my_turn``): what to note while
        it waits another ``DEFER`` (the siblings' accepts now, and whether they accepted
        none since ``seen``, the note of the last look), or None when they accepted none
        over two looks: they are not taking connections, and this process takes them."""
        taken = self.taken_by_siblings()
        if seen is None or taken != seen[0] or not seen[1]:
            return taken, seen is not None and taken == seen[0]
        return None

    def my_turn(self) -> bool:
        """Whether this process should take the next connection: no live sibling holds
        clearly fewer (``SLACK``)."""
        if not self.balancing:
            return True
        mine = self.open
        floor = mine - SLACK - mine // SLACK_SHARE
        if floor <= 0:
            return True
        slots = self.slots
        oldest = _now_ms() - STALE_MS
        for at in self.others:
            if slots[at + _OPEN] < floor and slots[at + _BEAT] >= oldest:
                return False
        return True

    def rebalance(self) -> None:
        """Balance by counts only while the accepts since the last call (``BEAT_EVERY``
        ago) are few next to the connections held (``TURNOVER``, ``BURST``)."""
        taken = self.slots[self.at + _TAKEN]
        self.balancing = taken - self.taken_then <= TURNOVER * self.open + BURST
        self.taken_then = taken

    def beat(self, accepting: bool = True) -> None:
        """Say this process is alive and accepting (or that it does not accept now)."""
        self.slots[self.at + _BEAT] = _now_ms() if accepting else 0

    async def beat_forever(self, accepting: Callable[[], bool] = lambda: True) -> None:
        """Beat every ``BEAT_EVERY``, saying whether the process accepts (``accepting``:
        not in cheap mode, say); on the way out (accepting stopped for good) leave the
        table, so the siblings stop counting on it at once."""
        try:
            while True:
                self.beat(accepting())
                self.rebalance()
                await trio.sleep(BEAT_EVERY)
        finally:
            self.leave()

    def leave(self) -> None:
        """No more accepting: the entry says so (unless a successor claimed it since), and
        this process's counts go on in a table of its own."""
        slots = self.slots
        if self.shared and slots[self.at + _PID] == os.getpid():
            slots[self.at + _BEAT] = 0
        self.slots = memoryview(bytearray(_FIELDS * _WORD)).cast("q")
        self.at = 0
        self.others = []
        self.shared = False


def _now_ms() -> int:
    return int(time.monotonic() * 1000)


__all__ = ["BURST", "DEFER", "SLACK", "SLACK_SHARE", "STALE_MS", "TURNOVER", "Spread", "SpreadTable"]
