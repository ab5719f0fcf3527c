"""The HTTP router's access line: ``--http-log-format`` parsing and rendering, and the
stud prefix parser of ``--http-stud-prefix``."""

from __future__ import annotations

import socket
import time

import pytest

from brood.config.model import Config
from brood.config.option import OptionError
from brood.protocol.http1 import parse_request_head
from brood.routers.http.accesslog import VARIABLES, Entry, LineFormat, Var, parse_format
from brood.routers.http.router import parse_stud
from brood.routers.http.settings import HttpSettings

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
