"""Router options: declared once, uWSGI's names, the right kinds and defaults."""

from __future__ import annotations

import pytest

from brood.config.model import Config
from brood.config.option import OptionError, all_options, lookup
from brood.config.options.routers import (
    ALGO_CHOICES,
    OPTIONS,
    ROUTER_PREFIXES,
    router_options,
    shared_options,
)
from brood.routers.balance import ALGORITHMS

SHARED = [
    "", "-processes", "-workers", "-zerg", "-to", "-use-pattern", "-use-base", "-use-cache",
    "-use-code-string", "-use-socket", "-fallback", "-gracetime", "-max-retries", "-timeout",
    "-connect-timeout", "-events", "-stats", "-stats-server", "-ss", "-harakiri",
    "-buffer-size", "-cheap", "-quiet", "-subscription-server", "-subscription-fallback-key",
    "-resubscribe", "-resubscribe-bind", "-uid", "-gid", "-algo",
]

SPECIFIC = [
    "httprouter", "http-var", "http-modifier1", "http-modifier2", "http-keepalive",
    "http-auto-chunked", "http-auto-gzip", "http-to-https", "http-headers-timeout",
    "http-manage-expect", "http-raw-body", "http-websockets", "http-chunked-input",
    "http-server-name-as-http-host", "http-enable-proxy-protocol", "http-manage-source",
    "http-manage-rtsp", "http-stud-prefix", "http-log-format",
    "fastrouter-post-buffering", "fastrouter-post-buffering-dir",
    "fastrouter-fallback-on-no-key", "fastrouter-force-key", "fastrouter-subscription-slot",
    "rawrouter-xclient", "rawrouter-subscription-slot",
    "sslrouter2", "sslrouter-session-context", "sslrouter-sni",
]


def test_every_name_unique_in_this_table() -> None:
    names = [n for o in router_options() for n in (o.name, *o.aliases)]
    assert len(names) == len(set(names))


def test_table_is_registered_once() -> None:
    registered = [o for o in all_options() if o.part in ROUTER_PREFIXES]
    assert registered == OPTIONS
    for opt in OPTIONS:
        for name in (opt.name, *opt.aliases):
            assert lookup(name) is opt


@pytest.mark.parametrize("prefix", ROUTER_PREFIXES)
def test_shared_names_exist_for_every_router(prefix: str) -> None:
    for suffix in SHARED:
        opt = lookup(prefix + suffix)
        assert opt is not None, prefix + suffix
        assert opt.part == prefix
    assert lookup(f"{prefix}-workers") is lookup(f"{prefix}-processes")
    assert lookup(f"{prefix}-ss") is lookup(f"{prefix}-stats")


def test_router_specific_names_exist() -> None:
    missing = [name for name in SPECIFIC if lookup(name) is None]
    assert missing == []
    assert lookup("httprouter") is lookup("http")


def test_kinds_and_defaults() -> None:
    cfg = Config()
    assert cfg["fastrouter-gracetime"] == 30
    assert cfg["rawrouter-max-retries"] == 3
    assert cfg["http-timeout"] == 60
    assert cfg["sslrouter-processes"] == 1
    assert cfg["http-events"] == 64
    assert cfg["http-to"] == [] and cfg["fastrouter"] == []
    assert cfg["http-cheap"] is False
    assert cfg["http-algo"] is None and cfg["http-connect-timeout"] is None
    assert lookup("http-keepalive").optional and lookup("http-keepalive").implicit == "1"
    assert lookup("http-use-cache").optional and lookup("rawrouter-use-socket").implicit == "0"
    assert lookup("fastrouter-post-buffering").convert("64k") == 65536
    assert lookup("http-manage-expect").kind == "size"
    for name in ("http", "http-to", "http-fallback", "http-var", "http-to-https",
                 "fastrouter-subscription-server", "http-resubscribe", "sslrouter2"):
        assert lookup(name).multi, name


def test_algo_choices() -> None:
    assert set(ALGO_CHOICES) == set(ALGORITHMS)
    assert lookup("fastrouter-algo").convert("chash") == "chash"
    with pytest.raises(OptionError, match="fastrouter-algo"):
        lookup("fastrouter-algo").convert("random")


def test_brood_additions_are_marked() -> None:
    assert lookup("http-max-retries").help.endswith("(brood)")
    assert not lookup("rawrouter-max-retries").help.endswith("(brood)")
    assert not lookup("http-connect-timeout").help.endswith("(brood)")
    assert lookup("fastrouter-connect-timeout").help.endswith("(brood)")


def test_shared_generator_is_per_prefix() -> None:
    for prefix in ROUTER_PREFIXES:
        assert all(o.part == prefix for o in shared_options(prefix))
    assert "CRT" in lookup("sslrouter").metavar


def test_connect_timeout_reaches_the_engine() -> None:
    from brood.config.load import load_config
    from brood.routers.engine import Engine, RouterSettings
    from brood.routers.resolve import FakeResolver

    def plan(*argv: str):
        cfg = load_config(["--http", "127.0.0.1:0", *argv])
        return Engine(RouterSettings.from_config(cfg, "http"), FakeResolver({})).plan

    assert plan("--http-timeout", "7").connect_timeout == 7.0
    assert plan("--http-timeout", "7", "--http-connect-timeout", "2").connect_timeout == 2.0


@pytest.mark.parametrize("argv, limit", [
    ((), None),
    (("--http-manage-expect",), 0),  # bare: 100 Continue, no limit
    (("--http-manage-expect=1",), 0),  # uWSGI: a limit only above 1 (ini files say 1)
    (("--http-manage-expect=0",), None),
    (("--http-manage-expect=4096",), 4096),
])
def test_manage_expect_values_mean_what_they_mean_to_uwsgi(argv, limit) -> None:
    from brood.config.load import load_config
    from brood.routers.http.settings import HttpSettings

    cfg = load_config(["--http", "127.0.0.1:0", *argv])
    assert HttpSettings.from_config(cfg).manage_expect == limit
