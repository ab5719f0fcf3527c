"""The HTTP router's access line: the default line, which statuses get one, how lines
are batched to the fd, ``--http-log-format`` parsing and rendering, and the stud prefix
parser of ``--http-stud-prefix``."""

from __future__ import annotations

import os
import socket
import time
import types

import pytest

from brood.config.model import Config
from brood.config.option import OptionError
from brood.protocol.http1 import parse_request_head
from brood.routers.http import accesslog
from brood.routers.http.accesslog import (
    FLUSH_AT,
    VARIABLES,
    AccessLog,
    Entry,
    LineFormat,
    Var,
    parse_format,
)
from brood.routers.http.router import parse_stud
from brood.routers.http.settings import HttpSettings
from brood.workers.reqlog import LogRules

RAW = (b"POST /a/b?c=1 HTTP/1.1\r\nHost: example.com\r\nReferer: http://r.test/\r\n"
       b"User-Agent: curl/8.0\r\nContent-Length: 5\r\n\r\n")


def entry(**kw) -> Entry:
    head = parse_request_head(RAW)
    assert head is not None
    values = dict(remote_addr="192.0.2.1", remote_port=4242, head=head, status=200,
                  sent=1234, host=b"example.com", node="127.0.0.1:3031",
                  started=1700000000.25, elapsed=0.0123456)
    values.update(kw)
    return Entry(**values)


@pytest.fixture
def pipe():
    r, w = os.pipe()
    os.set_blocking(r, False)
    yield r, w
    os.close(r)
    os.close(w)


def reads(fd: int) -> list[bytes]:
    """Each read's bytes until the pipe is empty (one read per write, for small writes)."""
    out = []
    while True:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return out
        out.append(data)


def queue(log: AccessLog, status: int = 200, elapsed: float = 0.0123) -> None:
    head = parse_request_head(RAW)
    log.request("192.0.2.1", 4242, head, status, 1234, b"example.com", "127.0.0.1:3031",
                elapsed)


def test_default_line_is_the_workers_shape_with_the_routers_facts(pipe, monkeypatch):
    monkeypatch.setattr(accesslog.time, "time", lambda: 1700000000.5)
    log = AccessLog(fd=pipe[1])
    queue(log)
    log.flush()
    stamp = time.ctime(1700000000)  # the request's start: now less the 12 ms it took
    assert reads(pipe[0]) == [
        f"[pid: {os.getpid()}|router: http] 192.0.2.1 () {{node 127.0.0.1:3031}} [{stamp}] "
        f"POST /a/b?c=1 => generated 1234 bytes in 12 msecs (HTTP/1.1 200)\n".encode()]


def test_a_request_with_no_node_says_dash(pipe):
    log = AccessLog(fd=pipe[1])
    log.write("192.0.2.1", 4242, parse_request_head(RAW), 503, 0, b"x", "", 0.0)
    [line] = reads(pipe[0])
    assert b" {node -} " in line and line.endswith(b"(HTTP/1.1 503)\n")


def test_lines_wait_for_flush_and_go_out_in_one_write(pipe):
    log = AccessLog(fd=pipe[1])
    for _ in range(3):
        queue(log)
    assert reads(pipe[0]) == []
    log.flush()
    [data] = reads(pipe[0])
    assert data.count(b"\n") == 3 and data.endswith(b"(HTTP/1.1 200)\n")
    log.flush()  # nothing queued: nothing written
    assert reads(pipe[0]) == []


def test_a_write_never_passes_flush_at(monkeypatch):
    writes: list[bytes] = []

    def write(fd: int, data: bytes) -> int:
        writes.append(bytes(data))
        return len(data)

    monkeypatch.setattr(accesslog, "os", types.SimpleNamespace(write=write, getpid=os.getpid))
    log = AccessLog(fd=99)
    for _ in range(100):
        queue(log)
    assert 0 < len(writes) < 100  # the queue went out as it filled, many lines a write
    log.flush()
    assert all(len(w) <= FLUSH_AT and w.endswith(b"\n") for w in writes)  # whole lines
    assert b"".join(writes).count(b"\n") == 100


def test_disable_logging_keeps_only_the_statuses_asked_for(pipe):
    log = AccessLog(fd=pipe[1], rules=LogRules(everything=False, log_5xx=True))
    assert log.on
    for status in (200, 301, 404, 500, 502):
        queue(log, status)
    log.flush()
    data = b"".join(reads(pipe[0]))
    assert [line.rsplit(b" ", 1)[1] for line in data.splitlines()] == [b"500)", b"502)"]
    assert not AccessLog(rules=LogRules(everything=False)).on


def test_slow_and_big_exceptions_micros_and_forwarded_for(pipe):
    """--log-slow/--log-big under --disable-logging pick lines as in the workers (the
    size is what the client got); --log-micros and --log-x-forwarded-for shape them."""
    log = AccessLog(fd=pipe[1], rules=LogRules(everything=False, slow=100, big=2000),
                    micros=True, forwarded_for=True)
    queue(log, elapsed=0.05)  # 50 ms, 1234 bytes: no line
    queue(log, elapsed=0.25)  # slow
    head = parse_request_head(RAW.replace(b"Host:", b"X-Forwarded-For: 203.0.113.9\r\nHost:"))
    log.request("192.0.2.1", 4242, head, 200, 5000, b"example.com", "n", 0.001)  # big
    log.flush()
    lines = b"".join(reads(pipe[0])).splitlines()
    assert len(lines) == 2
    assert b" 192.0.2.1 () " in lines[0] and b" in 250000 micros (" in lines[0]
    assert b" 203.0.113.9 () " in lines[1] and b" in 1000 micros (" in lines[1]


def test_from_config_reads_the_workers_options():
    log = AccessLog.from_config(Config.from_dict({"disable-logging": True, "log-4xx": True}),
                                None)
    assert log.rules == LogRules(everything=False, log_4xx=True) and log.on
    assert AccessLog.from_config(Config(), None).rules.everything
    log = AccessLog.from_config(Config.from_dict({"log-micros": True,
                                                  "log-x-forwarded-for": True}), None)
    assert log.forwarded_for and b" micros (" in log.line


def test_a_format_line_is_rendered_and_ends_the_line(pipe):
    log = AccessLog(LineFormat.parse("%(method) %(uri) %(status) %(size) é"), fd=pipe[1])
    queue(log, 404)
    log.flush()
    assert reads(pipe[0]) == ["POST /a/b?c=1 404 1234 é\n".encode()]


def test_a_closed_log_loses_lines_not_the_request():
    r, w = os.pipe()
    os.close(r)
    os.close(w)
    log = AccessLog(fd=w)
    queue(log)
    log.flush()  # EBADF: swallowed
    assert log.pending == [] and log.size == 0


def test_pieces_are_literals_and_vars_in_order():
    assert parse_format("%(addr) - [%(status)]%(size)") == [
        Var("addr"), " - [", Var("status"), "]", Var("size")]
    assert parse_format("") == []
    assert parse_format("no vars, 100% literal") == ["no vars, 100% literal"]
    assert parse_format("%(uri)%(uri)") == [Var("uri"), Var("uri")]


def test_unknown_and_unclosed_variables_are_refused_naming_option_and_name():
    with pytest.raises(OptionError, match=r"^--http-log-format: unknown variable %\(bogus\)$"):
        parse_format("%(addr) %(bogus)")
    with pytest.raises(OptionError, match=r"^--http-log-format: unclosed %\( at offset 3$"):
        parse_format("ok %(addr")


def test_every_variable_renders():
    line = LineFormat.parse(" ".join(f"{n}=%({n})" for n in VARIABLES)).render(entry())
    fields = dict(part.split("=", 1) for part in line.split(" ") if "=" in part)
    assert fields["addr"] == "192.0.2.1" and fields["port"] == "4242"
    assert (fields["method"], fields["uri"], fields["proto"]) == ("POST", "/a/b?c=1",
                                                                  "HTTP/1.1")
    assert (fields["host"], fields["referer"], fields["uagent"]) == (
        "example.com", "http://r.test/", "curl/8.0")
    assert (fields["cl"], fields["status"], fields["size"]) == ("5", "200", "1234")
    assert fields["node"] == "127.0.0.1:3031"
    assert (fields["msecs"], fields["micros"]) == ("12", "12345")
    assert (fields["time"], fields["epoch"]) == ("1700000000", "1700000000")
    assert time.ctime(1700000000.25) in line
    assert time.strftime("%d/%b/%Y:%H:%M:%S", time.localtime(1700000000)) in line


def test_literal_percent_signs_survive_and_missing_headers_are_empty():
    head = parse_request_head(b"GET / HTTP/1.0\r\n\r\n")
    fmt = LineFormat.parse('100%% "%(referer)" "%(uagent)" %(node) %s')
    assert fmt.render(entry(head=head, node="")) == '100%% "" "" - %s'


def test_settings_parse_the_format_once_and_refuse_a_bad_one():
    settings = HttpSettings.from_config(Config.from_dict({"http-log-format": "%(status)"}))
    assert settings.log_format is not None and settings.log_format.pieces == [Var("status")]
    assert HttpSettings.from_config(Config()).log_format is None
    with pytest.raises(OptionError, match=r"unknown variable %\(nope\)"):
        HttpSettings.from_config(Config.from_dict({"http-log-format": "%(nope)"}))


def test_stud_prefix_ipv4_and_ipv6():
    v4 = bytes([socket.AF_INET]) + socket.inet_aton("203.0.113.5")
    assert parse_stud(v4 + b"GET") == ("203.0.113.5", 5)
    v6 = bytes([socket.AF_INET6]) + socket.inet_pton(socket.AF_INET6, "2001:db8::7")
    assert parse_stud(v6) == ("2001:db8::7", 17)
    for whole in (v4, v6):  # one byte at a time: incomplete until the last one
        assert all(parse_stud(whole[:i]) is None for i in range(len(whole)))
    with pytest.raises(ValueError, match="unknown address family 255"):
        parse_stud(b"\xff1234")


def test_stud_prefix_addresses_are_checked():
    settings = HttpSettings.from_config(
        Config.from_dict({"http-stud-prefix": ["127.0.0.1", "[::1]"]}))
    assert settings.stud_prefix == frozenset({"127.0.0.1", "::1"})
    with pytest.raises(OptionError, match="^--http-stud-prefix: 'stud.local' is not an IP"):
        HttpSettings.from_config(Config.from_dict({"http-stud-prefix": ["stud.local"]}))


def test_modifiers_are_checked_at_start_up():
    settings = HttpSettings.from_config(
        Config.from_dict({"http-modifier1": 30, "http-modifier2": 255}))
    assert (settings.modifier1, settings.modifier2) == (30, 255)
    with pytest.raises(OptionError, match=r"^--http-modifier1: 256 is not a modifier \(0-255\)"):
        HttpSettings.from_config(Config.from_dict({"http-modifier1": 256}))
    with pytest.raises(OptionError, match=r"^--http-modifier2: -1 is not a modifier"):
        HttpSettings.from_config(Config.from_dict({"http-modifier2": -1}))
