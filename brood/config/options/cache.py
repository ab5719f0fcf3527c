"""Options read by the cache part (``brood.cache``): the caches ``--X-use-cache`` reads.
Names and value syntax are uWSGI 2.0's (core/uwsgi.c, core/cache.c)."""

from brood.config.option import Option


def _opt(name: str, help: str, **kw: object) -> Option:
    return Option(name, "cache", help, **kw)  # type: ignore[arg-type]


OPTIONS: list[Option] = [
    _opt("cache2", "create a cache: name=NAME,items=N[,keysize=N,blocksize=N,purge_lru=1,"
         "udp=ADDR;ADDR...] (the first cache is the default one)", multi=True,
         metavar="KEY=VALUE,..."),
    _opt("cache", "create uWSGI's old-style cache, named \"default\", with N items",
         kind="int", metavar="N"),
    _opt("cache-blocksize", "largest value of the --cache cache, in bytes (default 65536)",
         kind="int", metavar="N"),
    _opt("add-cache-item", "add an item to a cache at start: [CACHE ]KEY=VALUE (no CACHE: "
         "every cache)", multi=True, metavar="[CACHE ]KEY=VALUE"),
    _opt("cache-udp-server", "receive uWSGI cache sync packets (set/update/delete, sent by "
         "--cache-udp-node) for the default cache on ADDR", multi=True, metavar="ADDR"),
]
