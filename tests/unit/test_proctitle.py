"""Process titles: the names uWSGI 2.0.21 was seen to give with each --procname* option."""

from __future__ import annotations

from brood.config.load import load_config
from brood.proctitle import Titles


def _titles(*argv: str) -> Titles | None:
    return Titles.from_config(load_config(list(argv)))


def _names(t: Titles | None) -> tuple[str, str, str]:
    assert t is not None
    return t.master(), t.child("uWSGI worker", 2), t.child("uWSGI http", 1)


def test_titles_are_left_alone_unless_asked() -> None:
    assert _titles("--socket", ":0") is None
    assert _titles("--auto-procname=false") is None


def test_auto_names() -> None:
    assert _names(_titles("--auto-procname")) == ("uWSGI master", "uWSGI worker 2",
                                                  "uWSGI http 1")


def test_a_prefix_alone_turns_titles_on() -> None:
    assert _names(_titles("--procname-prefix", "PFX:")) == (
        "PFX:uWSGI master", "PFX:uWSGI worker 2", "PFX:uWSGI http 1")


def test_prefix_spaced_and_append() -> None:
    assert _names(_titles("--procname-prefix-spaced", "[dom]", "--procname-append", ":A")) == (
        "[dom] uWSGI master:A", "[dom] uWSGI worker 2:A", "[dom] uWSGI http 1:A")


def test_the_later_prefix_option_counts() -> None:
    t = _titles("--procname-prefix", "a:", "--procname-prefix-spaced", "b")
    assert t is not None and t.master() == "b uWSGI master"
    t = _titles("--procname-prefix-spaced", "b", "--procname-prefix", "a:")
    assert t is not None and t.master() == "a:uWSGI master"


def test_procname_names_every_process_and_procname_master_the_master() -> None:
    assert _names(_titles("--procname", "app")) == ("app", "app", "app")
    assert _names(_titles("--procname-master", "boss")) == (
        "boss", "uWSGI worker 2", "uWSGI http 1")
    assert _names(_titles("--procname", "app", "--procname-master", "boss",
                          "--procname-prefix", "P:")) == ("P:boss", "P:app", "P:app")
