"""Recycling a worker after its request: --reload-on-as next to --reload-on-rss, and
--reload-on-exception with its filters, which uWSGI 2.0.21 compares with the exception's
message, all three (its core asks the python plugin for the message each time: run
uWSGI with ``--reload-on-exception-type ValueError`` and a ValueError('boom') keeps
the worker, ``--reload-on-exception-type boom`` recycles it)."""

from __future__ import annotations

import pytest

from brood.config.load import load_config
from brood.config.model import refuse_unavailable
from brood.config.option import OptionError
from brood.config.uwsgi_names import IGNORABLE
from brood.touch import exec_touches
from brood.workers.recycle import MB, exception_rule, memory_over

NEW = ("touch-workers-reload", "touch-chain-reload", "touch-exec", "reload-on-as",
       "reload-on-exception", "reload-on-exception-type", "reload-on-exception-value",
       "reload-on-exception-repr", "http11-socket", "http-socket-modifier1",
       "http-socket-modifier2", "socket-sndbuf", "socket-rcvbuf", "socket-send-timeout",
       "socket-write-timeout", "so-send-timeout", "so-write-timeout")


def test_memory_limits() -> None:
    assert memory_over(10 * MB, 500 * MB, 0, 0) is None
    assert memory_over(10 * MB, 500 * MB, 20 * MB, 0) is None
    assert memory_over(21 * MB, 500 * MB, 20 * MB, 0) == "rss 21 MB over reload-on-rss"
    assert memory_over(20 * MB, 499 * MB, 0, 500 * MB) is None
    # at the limit already, as uWSGI's vsz >= reload_on_as
    assert memory_over(20 * MB, 500 * MB, 0, 500 * MB) == (
        "address space 500 MB over reload-on-as")
    assert memory_over(30 * MB, 600 * MB, 20 * MB, 500 * MB).startswith("rss")


class _BadStr(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no")


def test_every_exception_or_none() -> None:
    assert exception_rule(False, []) is None
    every = exception_rule(True, ["ignored"])
    assert every is not None and every(ValueError("x")) and every(KeyError())


def test_filters_compare_the_message_as_uwsgi_2_0() -> None:
    rule = exception_rule(False, ["boom", "'k'"])
    assert rule is not None
    assert rule(ValueError("boom"))
    assert rule(KeyError("k"))  # str(KeyError('k')) is "'k'"
    assert not rule(ValueError("ValueError"))
    assert not rule(ValueError("boom!"))
    assert not rule(_BadStr())


def test_the_three_filters_load_into_one_rule() -> None:
    cfg = load_config(["--reload-on-exception-type", "a", "--reload-on-exception-value",
                       "b", "--reload-on-exception-repr", "c", "--reload-on-exception-type",
                       "d"])
    assert cfg["reload-on-exception-type"] == ["a", "d"]
    assert cfg["reload-on-exception-value"] == ["b"]
    assert cfg["reload-on-exception-repr"] == ["c"]
    assert not cfg["reload-on-exception"]


def test_touch_exec_values_split_at_the_first_space() -> None:
    assert exec_touches(["/a echo one two", "/a ls", "/b"]) == {
        "/a": ["echo one two", "ls"], "/b": ["/b"]}


def test_the_options_load_from_an_ini(tmp_path) -> None:
    ini = tmp_path / "site.ini"
    ini.write_text("[uwsgi]\n" + "".join(f"{n} = {v}\n" for n, v in (
        ("http11-socket", "127.0.0.1:0"), ("touch-workers-reload", "/tmp/w"),
        ("touch-chain-reload", "/tmp/c"), ("touch-exec", "/tmp/e echo hi"),
        ("reload-on-as", "512"), ("reload-on-exception", "true"),
        ("http-socket-modifier1", "0"), ("http-socket-modifier2", "3"),
        ("socket-sndbuf", "65536"), ("socket-rcvbuf", "32768"),
        ("socket-write-timeout", "7"))))
    cfg = load_config([str(ini)])
    refuse_unavailable(cfg)
    assert cfg["http-socket"] == ["127.0.0.1:0"]
    assert cfg["touch-exec"] == ["/tmp/e echo hi"]
    assert (cfg["reload-on-as"], cfg["socket-sndbuf"], cfg["socket-rcvbuf"],
            cfg["socket-send-timeout"]) == (512, 65536, 32768, 7)


def test_send_timeout_bare_is_one_second() -> None:
    # uWSGI declares it without an argument: bare on the command line it sets 1
    assert load_config(["--socket-send-timeout"])["socket-send-timeout"] == 1
    assert load_config(["--so-write-timeout=9"])["socket-send-timeout"] == 9


def test_buffer_sizes_are_plain_numbers() -> None:
    # uWSGI reads them with strtoul: "32k" would be 32 bytes there, so it is refused here
    with pytest.raises(OptionError, match="--socket-rcvbuf"):
        load_config(["--socket-rcvbuf", "32k"])


def test_another_modifier1_is_refused_in_one_line() -> None:
    cfg = load_config(["--http-socket", "127.0.0.1:0", "--http-socket-modifier1", "5"])
    with pytest.raises(OptionError, match=r"^--http-socket-modifier1: brood serves WSGI"):
        refuse_unavailable(cfg)


@pytest.mark.parametrize("name", NEW)
def test_no_longer_a_uwsgi_option_brood_lacks(name: str, tmp_path) -> None:
    # (an ini key that is a uWSGI option and none of brood's stops the start)
    ini = tmp_path / "site.ini"
    ini.write_text(f"[uwsgi]\nsocket = 127.0.0.1:0\n{name} = 0\n")
    cfg = load_config(["--ini", str(ini)])
    refuse_unavailable(cfg)
    assert name not in IGNORABLE and not cfg.ignored
