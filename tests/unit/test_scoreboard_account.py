"""The scoreboard's public API: the word view ``Account`` writes through, and the
per-core request records --harakiri-verbose publishes."""

from __future__ import annotations

from brood.scoreboard import FIELD_INDEX, STATUS_BUSY, STATUS_IDLE, Scoreboard, WorkerSlot
from brood.workers.account import FLUSH_US, Account


def test_words_view_is_the_slot():
    board = Scoreboard(2)
    slot = board.slot(2)
    words = slot.words()
    assert words is not None and len(words) == len(FIELD_INDEX)
    words[FIELD_INDEX["tx"]] = 1234
    slot.requests = 7
    assert slot.tx == 1234 and words[FIELD_INDEX["requests"]] == 7
    assert board.slot(1).tx == 0  # the view covers its own slot only
    words.release()


def test_account_keeps_the_slot_books():
    slot = Scoreboard(1).slot(1)
    slot.pid = 99
    account = Account(slot)
    assert account.words is not None  # the fast path, through WorkerSlot.words()
    account.begin(1_000_000)
    assert (slot.status, slot.in_request, slot.request_start) == (STATUS_BUSY, 1, 1_000_000)
    account.end(1_000_500, tx=10, failed=True)
    assert (slot.status, slot.in_request, slot.request_start) == (STATUS_IDLE, 0, 0)
    assert (slot.requests, slot.exceptions, slot.tx, slot.avg_rt) == (1, 1, 10, 500)
    account.begin(1_000_600)
    account.end(1_000_700, tx=5, failed=False)  # within FLUSH_US: counters wait
    assert slot.requests == 1
    account.flush()
    assert (slot.requests, slot.tx, slot.running_time) == (2, 15, 600)
    account.begin(1_000_800 + FLUSH_US)
    account.end(1_000_900 + FLUSH_US, tx=1, failed=False)
    assert slot.requests == 3  # due: stored at once
    account.close()
    assert account.words is None


def test_account_falls_back_to_the_slot_methods(monkeypatch):
    monkeypatch.setattr(WorkerSlot, "words", lambda self: None)  # a big-endian host
    slot = Scoreboard(1).slot(1)
    account = Account(slot)
    assert account.words is None
    account.begin(2_000)
    assert (slot.status, slot.request_start) == (STATUS_BUSY, 2_000)
    account.end(2_300, tx=4, failed=False)
    assert (slot.status, slot.requests, slot.tx, slot.avg_rt) == (STATUS_IDLE, 1, 4, 300)
    account.close()


def test_the_instance_total_is_counted_by_every_worker_and_outlives_a_respawn(monkeypatch):
    board = Scoreboard(2)
    first, second = board.slot(1), board.slot(2)
    first.pid, second.pid = 10, 11
    fast = Account(first)
    assert fast.total is not None
    fast.begin(1)
    fast.end(2, tx=1, failed=False)
    monkeypatch.setattr(WorkerSlot, "words", lambda self: None)
    slow = Account(second)  # through the slot's methods
    slow.begin(1)
    slow.end(2, tx=1, failed=False)
    assert (fast.total_requests(), slow.total_requests(), board.total_requests) == (2, 2, 2)
    first.reset()  # a respawn zeroes the worker's counters, not the instance's
    fast.begin(3)
    fast.end(4, tx=1, failed=False)
    assert (board.total_requests, first.total_requests) == (3, 3)
    fast.close()
    assert fast.total is None


def test_request_records_per_core():
    board = Scoreboard(2, cores=2)
    one, two = board.slot(1), board.slot(2)
    assert one.current_requests() == []
    one.publish_request(1, 1_700_000_000_123_456, b"127.0.0.1 - GET /slow")
    two.publish_request(0, 5, b"other")
    assert one.current_requests() == [(1, 1_700_000_000_123_456, "127.0.0.1 - GET /slow")]
    one.publish_request(0, 7, b"x" * 5000)  # cut to the record's size
    (core, start, text), _ = one.current_requests()
    assert (core, start) == (0, 7) and 400 < len(text) < 512 and set(text) == {"x"}
    one.publish_request(2, 9, b"no such core")  # ignored, never into the next worker
    assert two.current_requests() == [(0, 5, "other")]
    one.clear_request(1)
    assert [r[0] for r in one.current_requests()] == [0]
    one.requests = 3
    one.respawn_count = 2
    one.reset()  # a respawn forgets the records and the counters uWSGI does not keep
    assert one.current_requests() == [] and one.requests == 0 and one.respawn_count == 2
    assert two.current_requests() == [(0, 5, "other")]
