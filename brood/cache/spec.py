"""Cache declarations from options, pure (uWSGI 2.0 core/cache.c's reading of them).

``--cache2 name=NAME,items=N[,key=value...]``: a ``,``-separated ``key=value`` list; a
backslash escapes the next character (``\\,``). ``name`` and ``items`` (aliases
``max_items``/``maxitems``) are required, ``items`` above 0. As in uWSGI, a cache of N
items holds N - 1 (its first slot stands for "no item"). brood honours what matters
for a key -> address map: ``keysize`` (longest key, default 2048, below 65535),
``blocksize`` (longest value, default 65536; with ``bitmap``, ``blocksize * blocks``),
``purge_lru`` (a full cache drops its least recently set item instead of refusing),
``ignore_full`` (no "cache is FULL" line) and ``udp`` (its own cache sync servers,
``;``-separated). The other uWSGI keys are accepted and have no effect: memory layout
(hash, hashsize, blocks), persistence (store...), outgoing sync (node, sync), the
expiry tuning (lazy_expire, sweep_on_full, clear_on_full, no_expire: brood always
expires items at their time), lastmod and math_initial. An unknown key is refused.

``--cache N`` (uWSGI's old-style cache): a cache named ``default`` of N items, first.
The first cache is the default one: what a bare ``--X-use-cache`` uses.

``--add-cache-item [CACHE ]KEY=VALUE``: without a cache name the item goes into every
cache, as in uWSGI. uWSGI splits at the first space; since a cache name cannot hold
``=``, brood reads ``KEY=A B`` (several nodes) as an item for every cache.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from brood.config.kvlist import split_kvlist

DEFAULT_BLOCKSIZE = 65536
DEFAULT_KEYSIZE = 2048
MAX_KEYSIZE = 65535  # uWSGI refuses keysize >= UMAX16

_ITEMS = ("items", "max_items", "maxitems")
_BLOCKSIZE = ("blocksize",)
_BLOCKS = ("blocks",)
_KEYSIZE = ("keysize", "key_size")
_UDP = ("udp", "udp_servers", "udp_server", "udpservers", "udpserver")
_LRU = ("purge_lru", "lru")
_FLAGS = ("bitmap", "ignore_full") + _LRU
# uWSGI keys that change nothing for brood (see the module docstring).
_IGNORED = ("hash", "hashsize", "hash_size", "store", "store_sync", "storesync",
            "store_delete", "storedelete", "node", "nodes", "sync", "lastmod",
            "math_initial", "lazy_expire", "lazy", "sweep_on_full", "clear_on_full",
            "no_expire")
KNOWN_KEYS = frozenset(("name",) + _ITEMS + _BLOCKSIZE + _BLOCKS + _KEYSIZE + _UDP
                       + _FLAGS + _IGNORED)


@dataclass(frozen=True)
class CacheSpec:
    """One declared cache."""

    name: str
    items: int  # uWSGI's max_items: N - 1 usable
    keysize: int = DEFAULT_KEYSIZE
    max_value: int = DEFAULT_BLOCKSIZE
    purge_lru: bool = False
    ignore_full: bool = False
    udp_servers: tuple[str, ...] = ()

    @property
    def capacity(self) -> int:
        return self.items - 1


def split_kv(text: str) -> list[tuple[str, str]]:
    """uWSGI's kvlist (``brood.config.kvlist``), keys stripped; items without ``=`` are
    dropped (uWSGI ignores them too)."""
    return [(key.strip(), value) for key, value in split_kvlist(text, strict=False)]


def _number(key: str, value: str) -> int:
    text = value.strip()
    if not text.isdigit():
        raise ValueError(f"{key}={value!r} is not a whole number")
    return int(text)


def parse_cache2(text: str) -> CacheSpec:
    """One ``--cache2`` value; ValueError with the reason when it is not valid."""
    values: dict[str, str] = {}
    for key, value in split_kv(text):
        if key not in KNOWN_KEYS:
            raise ValueError(f"unknown key {key!r}")
        values[key] = value

    def first(names: Sequence[str]) -> tuple[str, str] | None:
        found = [(n, values[n]) for n in names if n in values]
        return found[-1] if found else None

    name = values.get("name", "").strip()
    if not name:
        raise ValueError("a cache needs a name (name=...)")
    items_kv = first(_ITEMS)
    if items_kv is None:
        raise ValueError(f"cache {name!r} needs its maximum number of items (items=N)")
    items = _number(*items_kv)
    if items < 1:
        raise ValueError(f"cache {name!r}: items must be above 0")
    blocksize_kv = first(_BLOCKSIZE)
    blocksize = _number(*blocksize_kv) if blocksize_kv else DEFAULT_BLOCKSIZE
    if blocksize < 1:
        raise ValueError(f"cache {name!r}: invalid blocksize")
    blocks_kv = first(_BLOCKS)
    blocks = _number(*blocks_kv) if blocks_kv else items
    if blocks < 1 or blocks < items:
        raise ValueError(f"cache {name!r}: blocks must be at least items ({items})")
    keysize_kv = first(_KEYSIZE)
    keysize = _number(*keysize_kv) if keysize_kv else DEFAULT_KEYSIZE
    if not 0 < keysize < MAX_KEYSIZE:
        raise ValueError(f"cache {name!r}: keysize must be 1..{MAX_KEYSIZE - 1}")
    udp_kv = first(_UDP)
    udp = tuple(s.strip() for s in (udp_kv[1] if udp_kv else "").split(";") if s.strip())
    return CacheSpec(
        name=name, items=items, keysize=keysize,
        max_value=blocksize * blocks if "bitmap" in values else blocksize,
        purge_lru=first(_LRU) is not None, ignore_full="ignore_full" in values,
        udp_servers=udp)


def old_style_spec(items: int, blocksize: int | None, udp_servers: Iterable[str]) -> CacheSpec:
    """``--cache N`` (with ``--cache-blocksize``): uWSGI's cache named ``default``."""
    if items < 1:
        raise ValueError("the number of items must be above 0")
    return CacheSpec(name="default", items=items, max_value=blocksize or DEFAULT_BLOCKSIZE,
                     udp_servers=tuple(udp_servers))


def parse_item(text: str, names: Sequence[str]) -> list[tuple[str, bytes, bytes]]:
    """One ``--add-cache-item``: (cache, key, value) for each cache it goes into;
    ValueError naming what is wrong (no ``=``, empty key, unknown cache)."""
    if not names:
        raise ValueError("no cache is declared (--cache2 name=NAME,items=N)")
    head, space, rest = text.partition(" ")
    if space and "=" not in head:
        targets, item = [head], rest
        if head not in names:
            raise ValueError(f"no cache named {head!r} (declared: {', '.join(names) or 'none'})")
    else:
        targets, item = list(names), text
    key, sep, value = item.partition("=")
    if not sep:
        raise ValueError(f"{text!r} is not [CACHE ]KEY=VALUE")
    if not key:
        raise ValueError(f"{text!r} has an empty key")
    if not value:
        raise ValueError(f"{text!r} has an empty value")
    raw_key = key.encode("utf-8", "surrogateescape")
    raw_value = value.encode("utf-8", "surrogateescape")
    return [(name, raw_key, raw_value) for name in targets]
