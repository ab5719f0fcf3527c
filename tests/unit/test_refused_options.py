"""Options brood parses but refuses to run with: parts not in this release (zerg, the
sslrouter) and uWSGI features it does not have. One line naming the option, status 1."""

from __future__ import annotations

import pytest

from brood.cli import main
from brood.config.help import option_help, render_markdown
from brood.config.load import load_config
from brood.config.model import refuse_unavailable
from brood.config.option import OptionError, all_options, lookup

REFUSED = {
    "http-zerg": "/tmp/zerg.sock", "fastrouter-zerg": "/tmp/zerg.sock",
    "rawrouter-zerg": "/tmp/zerg.sock", "sslrouter-zerg": "/tmp/zerg.sock",
    "sslrouter": "127.0.0.1:0,a.crt,a.key", "sslrouter2": "addr=127.0.0.1:0",
    "sslrouter-sni": None, "sslrouter-session-context": "ctx", "http-manage-rtsp": None,
    "yaml": "site.yaml", "json": "site.json", "xml": "site.xml",
    "zerg": "/tmp/zerg.sock", "zerg-server": "/tmp/zerg.sock", "zerg-fallback": None,
    "zergpool": "/tmp/zergpool:127.0.0.1:3031",
    "http-socket-modifier1": "5",  # (0 passes: a WSGI app's own modifier1)
}


def _argv(name: str) -> list[str]:
    value = REFUSED[name]
    return [f"--{name}"] if value is None else [f"--{name}", value]


def test_the_refused_table() -> None:
    assert {o.name for o in all_options() if o.refused} == set(REFUSED)


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_setting_one_is_refused_naming_it(name: str) -> None:
    cfg = load_config(["--socket", "127.0.0.1:0", *_argv(name)])
    with pytest.raises(OptionError, match=rf"^--{name}: "):
        refuse_unavailable(cfg)


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_the_cli_says_one_line_and_exits_1(name: str, capsys: pytest.CaptureFixture,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    def must_not_start(self) -> None:
        raise AssertionError("the master started: the option was not refused")

    monkeypatch.setattr("brood.master.Master.start", must_not_start)
    assert main(["--http-socket", "127.0.0.1:0", *_argv(name)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"brood: --{name}: ")


def test_false_or_empty_asks_for_nothing() -> None:
    refuse_unavailable(load_config(["--http-manage-rtsp=0", "--sslrouter-sni=false",
                                    "--sslrouter-session-context="]))


def test_tuning_options_of_refused_parts_still_load() -> None:
    refuse_unavailable(load_config(["--sslrouter-processes", "4", "--sslrouter-to", "a:1",
                                    "--http-events", "128"]))


def test_help_and_reference_say_why() -> None:
    assert "(refused: zerg servers and pools are not in this release)" in option_help(
        lookup("http-zerg"))
    assert "RTSP is not supported" in render_markdown()


@pytest.mark.parametrize("name", ["master", "enable-threads", "http-events",
                                  "fastrouter-events", "rawrouter-events",
                                  "sslrouter-events", "plugins", "http-websockets"])
def test_compatibility_no_ops_say_so(name: str) -> None:
    text = lookup(name).help
    assert "uWSGI" in text and ("no effect" in text or "built in" in text)
