"""``--X-harakiri`` (brood.routers.watchdog): a router process whose loop is stuck longer
than the limit is killed; a loop that turns is left alone."""

from __future__ import annotations

import threading
import time

import trio

from brood.routers.watchdog import Watchdog


async def test_a_stuck_loop_is_killed_after_the_limit():
    killed = threading.Event()
    dog = Watchdog("http 1", 0.4, kill=killed.set)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(dog.run)
        await trio.sleep(0.2)
        started = time.monotonic()
        assert killed.wait(5)  # the loop is stuck right here: nothing turns it
        took = time.monotonic() - started
        nursery.cancel_scope.cancel()
    assert 0.2 <= took < 2, took


async def test_a_loop_that_turns_is_not_killed():
    killed = threading.Event()
    dog = Watchdog("http 1", 0.4, kill=killed.set)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(dog.run)
        await trio.sleep(1.5)  # busy with other things, but turning
        nursery.cancel_scope.cancel()
    assert not killed.is_set()
    assert not dog._thread.is_alive() or dog._stop.is_set()
