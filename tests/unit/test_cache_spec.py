"""--cache2 / --cache / --add-cache-item values -> cache specs (brood.cache.spec, .plan)."""

from __future__ import annotations

import pytest

from brood.cache.plan import cache_specs
from brood.cache.spec import CacheSpec, parse_cache2, parse_item, split_kv
from brood.config.model import Config
from brood.config.option import OptionError


def test_minimal_spec_has_uwsgi_defaults() -> None:
    spec = parse_cache2("name=c,items=10")
    assert spec == CacheSpec("c", 10, keysize=2048, max_value=65536)
    assert spec.capacity == 9  # uWSGI: the first slot stands for "no item"


def test_every_uwsgi_key_is_accepted_and_the_useful_ones_honoured() -> None:
    spec = parse_cache2("name=big,max_items=100,blocksize=128,blocks=200,bitmap=1,keysize=64,"
                        "hash=djb33x,hashsize=1000,store=/tmp/x,store_sync=2,"
                        "node=127.0.0.1:1,sync=127.0.0.1:2,lastmod=1,math_initial=3,"
                        "ignore_full=1,purge_lru=1,lazy_expire=1,sweep_on_full=5,"
                        "clear_on_full=1,no_expire=1,udp=127.0.0.1:7;127.0.0.1:8")
    assert (spec.items, spec.keysize, spec.max_value) == (100, 64, 128 * 200)
    assert spec.purge_lru and spec.ignore_full
    assert spec.udp_servers == ("127.0.0.1:7", "127.0.0.1:8")
    assert parse_cache2("name=a,maxitems=5,blocksize=99").max_value == 99  # no bitmap
    assert parse_cache2("name=a,items=5,lru=1").purge_lru


def test_backslash_escapes_a_separator() -> None:
    assert split_kv(r"name=a\,b,items=3,junk") == [("name", "a,b"), ("items", "3")]
    assert parse_cache2(r"name=a\,b,items=3").name == "a,b"


@pytest.mark.parametrize(("text", "reason"), [
    ("items=10", "needs a name"),
    ("name=c", "maximum number of items"),
    ("name=c,items=0", "above 0"),
    ("name=c,items=ten", "not a whole number"),
    ("name=c,items=10,keysize=65535", "keysize"),
    ("name=c,items=10,keysize=0", "keysize"),
    ("name=c,items=10,blocks=5", "blocks must be at least"),
    ("name=c,items=10,blocksize=0", "blocksize"),
    ("name=c,items=10,itmes=3", "unknown key 'itmes'"),
])
def test_bad_specs_say_why(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_cache2(text)


def test_add_cache_item_forms() -> None:
    names = ["a", "b"]
    assert parse_item("a k=127.0.0.1:1", names) == [("a", b"k", b"127.0.0.1:1")]
    # no cache name: every cache (uWSGI), and a value with spaces is several nodes
    assert parse_item("k=h:1 h:2", names) == [("a", b"k", b"h:1 h:2"), ("b", b"k", b"h:1 h:2")]
    assert parse_item("b k=x=y", names) == [("b", b"k", b"x=y")]
    for text, reason in [("c k=v", "no cache named 'c'"), ("a kv", "not \\[CACHE \\]KEY=VALUE"),
                         ("a =v", "empty key"), ("a k=", "empty value")]:
        with pytest.raises(ValueError, match=reason):
            parse_item(text, names)
    with pytest.raises(ValueError, match="no cache is declared"):
        parse_item("k=v", [])


def test_cache_specs_from_config_old_style_first() -> None:
    cfg = Config([("cache2", "name=two,items=3"), ("cache", 5), ("cache-blocksize", 100)])
    assert [(s.name, s.items, s.max_value) for s in cache_specs(cfg)] == [
        ("default", 5, 100), ("two", 3, 65536)]


@pytest.mark.parametrize(("pairs", "message"), [
    ([("cache2", "name=c")], "--cache2 name=c: cache 'c' needs"),
    ([("cache2", "name=c,items=2"), ("cache2", "name=c,items=3")], "already exists"),
    ([("cache", 0)], None),  # 0: no old-style cache, as in uWSGI
])
def test_cache_specs_errors_name_the_option(pairs, message) -> None:
    cfg = Config(pairs)
    if message is None:
        assert cache_specs(cfg) == []
        return
    with pytest.raises(OptionError, match=message):
        cache_specs(cfg)
