"""Whole lines out of a process's pipe, and where each goes (brood.logs.lines)."""

from __future__ import annotations

from brood.logs.lines import MAX_LINE, STALE_TAIL, LineBuffer, Routing, split_lines


def test_a_line_written_in_pieces_comes_out_whole() -> None:
    buf = LineBuffer()
    assert buf.feed(b"part1-", 0.0) == b""
    assert buf.feed(b"part2\nnext", 0.1) == b"part1-part2\n"
    assert buf.feed(b" line\nand a tail", 0.2) == b"next line\n"
    assert buf.flush() == b"and a tail\n" and buf.flush() == b""


def test_one_byte_at_a_time_gives_what_all_at_once_gives() -> None:
    data = b"first\nsecond line\n\nfourth\nfifth"
    whole = LineBuffer()
    at_once = whole.feed(data, 0.0) + whole.flush()
    single = LineBuffer()
    pieces = b"".join(single.feed(data[i:i + 1], 0.0) for i in range(len(data)))
    assert pieces + single.flush() == at_once == b"first\nsecond line\n\nfourth\nfifth\n"


def test_a_line_past_the_limit_is_passed_on_in_pieces() -> None:
    buf = LineBuffer()
    chunk = b"x" * (MAX_LINE // 4)
    out = b"".join(buf.feed(chunk, 0.0) for _ in range(5))
    assert out == b"x" * MAX_LINE + b"\n" and buf.tail == chunk


def test_a_tail_goes_stale() -> None:
    buf = LineBuffer()
    buf.feed(b"prompt> ", 10.0)
    buf.feed(b"more", 11.0)  # (its wait counts from when it began)
    assert not buf.stale(10.0 + STALE_TAIL - 0.1)
    assert buf.stale(10.0 + STALE_TAIL)
    assert split_lines(b"a\nb\n") == [b"a\n", b"b\n"]


def test_plain_routing_sends_everything_to_the_defaults_or_the_plain_log() -> None:
    assert Routing([0, 1]).targets(b"anything\n") == (0, 1)
    assert Routing([]).targets(b"anything\n") == (Routing.RAW,)
    assert Routing([0]).plain and not Routing([0], drains=["x"]).plain


def test_drains_filters_and_routes_as_uwsgi_applies_them() -> None:
    r = Routing([0], routes=[(1, "^APP"), (2, "APP|ERR")], drains=["^noise"],
                filters=["APP", "ERR", "keep"])
    assert r.targets(b"noise APP\n") == ()  # drained first
    assert r.targets(b"other\n") == ()  # no filter matches
    assert r.targets(b"APP started\n") == (1, 2)  # every matching route, nowhere else
    assert r.targets(b"an ERR\n") == (2,)
    assert r.targets(b"keep me\n") == (0,)  # filtered in, no route: the defaults
    assert Routing([0], routes=[(1, "end$")]).targets(b"the end\n") == (1,)  # no newline


def test_request_routing_has_no_drains() -> None:
    r = Routing.for_requests([], routes=[(3, "POST")])
    assert r.targets(b"GET /\n") == (Routing.RAW,)
    assert r.targets(b"POST /\n") == (3,)


def test_only_a_newline_ends_a_line() -> None:
    """A carriage return (a progress bar, an app's \\r\\n) stays inside its line: routes
    match the whole line and an encoder makes one message of it."""
    assert split_lines(b"a\rb\nc\r\n\n") == [b"a\rb\n", b"c\r\n", b"\n"]
    assert split_lines(b"") == []
    routing = Routing([0], [(1, "^a.b$")])
    assert [routing.targets(line) for line in split_lines(b"a\rb\nab\n")] == [(1,), (0,)]
