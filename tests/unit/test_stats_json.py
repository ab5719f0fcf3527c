"""Worker stats JSON: uWSGI's layout, byte for byte, checked against captured fixtures."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from brood.listener import Listener
from brood.scoreboard import STATUS_BUSY, Scoreboard
from brood.stats import HTTP_HEAD, encode_stats, worker_stats, worker_stats_json

FIXTURES = Path("/work/shared/fixtures/stats")
needs_fixtures = pytest.mark.skipif(not FIXTURES.is_dir(), reason="shared fixtures not present")


def _fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def _key_paths(value, prefix=""):
    """Every key path in document order: the structure, without the values."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield f"{prefix}/{key}"
            yield from _key_paths(item, f"{prefix}/{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _key_paths(item, f"{prefix}[{i}]")


@needs_fixtures
@pytest.mark.parametrize(
    "name",
    [
        "worker_stats_master_2workers.json",
        # Router stats use the same serializer (socket lists printed unindented).
        "fastrouter_stats_static_nodes.json",
        "fastrouter_stats_two_nodes.json",
        "fastrouter_stats_after_malformed.json",
        "httprouter_stats_real_nodes.json",
    ],
)
def test_pretty_form_reproduces_captured_bytes(name: str) -> None:
    raw = _fixture(name)
    assert encode_stats(json.loads(raw)) == raw


@needs_fixtures
def test_minified_form_reproduces_captured_bytes() -> None:
    raw = _fixture("worker_stats_minified_unix.json")
    assert encode_stats(json.loads(raw), minified=True) == raw


@needs_fixtures
def test_stats_http_header_block() -> None:
    raw = _fixture("worker_stats_stats_http.raw")
    head, sep, body = raw.partition(b"\r\n\r\n")
    assert head + sep == HTTP_HEAD
    json.loads(body)


def test_req_info_quirk_and_empty_containers() -> None:
    out = encode_stats({"a": [{"vars": [], "req_info": {}}]})
    assert b'"vars":[\n\n\t\t\t]' in out
    assert b'"req_info":\t\t\t{\n\n\t\t\t}' in out
    assert not out.endswith(b"\n")


def _board() -> Scoreboard:
    board = Scoreboard(2)
    one = board.slot(1)
    one.pid, one.accepting, one.respawn_count, one.last_spawn = 4242, 1, 1, 1795435574
    one.begin_request(1_000_000)
    one.end_request(1_000_250, tx=152, failed=False)
    two = board.slot(2)
    two.pid, two.accepting, two.respawn_count = 4243, 1, 3
    two.begin_request(5)
    two.status = STATUS_BUSY
    return board


def _listener() -> Listener:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(5)
    return Listener(sock, f"127.0.0.1:{sock.getsockname()[1]}", "http")


@needs_fixtures
def test_snapshot_has_the_fixture_structure_with_our_values() -> None:
    lst = _listener()
    try:
        snap = worker_stats([lst], _board(), backlog=100, pid=99)
    finally:
        lst.sock.close()
    ours = json.loads(worker_stats_json(snap))
    theirs = json.loads(_fixture("worker_stats_master_2workers.json"))
    assert list(_key_paths(ours)) == list(_key_paths(theirs))
    assert ours["pid"] == 99
    assert ours["sockets"][0] == {"name": lst.name, "proto": "http", "queue": 0,
                                  "max_queue": 100, "shared": 0, "can_offload": 0}
    w1, w2 = ours["workers"]
    assert (w1["id"], w1["pid"], w1["requests"], w1["tx"], w1["avg_rt"]) == (1, 4242, 1, 152, 250)
    assert (w1["status"], w1["last_spawn"], w1["respawn_count"]) == ("idle", 1795435574, 1)
    assert w1["apps"][0]["requests"] == 1 and w1["cores"][0]["requests"] == 1
    assert (w2["status"], w2["respawn_count"], w2["cores"][0]["in_request"]) == ("busy", 3, 1)
    assert ours["load"] == 1
    assert [next(iter(d)) for d in ours["locks"]] == [next(iter(d)) for d in theirs["locks"]]


@needs_fixtures
def test_minified_snapshot_matches_fixture_keys() -> None:
    snap = worker_stats([], _board(), backlog=100)
    raw = worker_stats_json(snap, minified=True)
    assert b"\n" not in raw and b"\t" not in raw
    ours = json.loads(raw)
    theirs = json.loads(_fixture("worker_stats_minified_unix.json"))
    assert list(_key_paths(ours["workers"][0])) == list(_key_paths(theirs["workers"][0]))


def test_shared_socket_flag() -> None:
    lst = _listener()
    try:
        shared = Listener(lst.sock, lst.name, "uwsgi", shared=True, shared_index=0)
        snap = worker_stats([shared], None, backlog=64)
    finally:
        lst.sock.close()
    assert snap["sockets"][0]["shared"] == 1 and snap["sockets"][0]["max_queue"] == 64
    assert snap["workers"] == []
