"""Plan wiring of the caches (imported, and its contributor registered, by
``brood.subscription.plan``, whose feed carries them to the router processes).

``hub_for`` builds the plan's one ``CacheHub`` the first time it is asked (the routers'
extras or this module's contributor, whichever runs first): the caches from
``--cache``/``--cache2``, the ``--add-cache-item``s stored, every cache sync server
bound. ``replicated_caches`` is what a router kind with ``--X-use-cache`` gets: the hub,
after checking that the cache it names exists (uWSGI stops with "unable to find
cache" too). Every mistake is an OptionError naming the option: the start stops with
one line.
"""

from __future__ import annotations

import weakref

from brood.cache.hub import CacheHub, CacheSyncSocket
from brood.cache.spec import CacheSpec, old_style_spec, parse_cache2, parse_item
from brood.config.model import Config
from brood.config.option import OptionError
from brood.log import log
from brood.plan import PlanBuilder, register_contributor
from brood.sockets import bind_datagram, socket_name

_HUBS: weakref.WeakKeyDictionary[PlanBuilder, CacheHub | None] = weakref.WeakKeyDictionary()


def cache_specs(cfg: Config) -> list[CacheSpec]:
    """The declared caches in uWSGI's order (``--cache``'s first); OptionError."""
    specs: list[CacheSpec] = []
    if cfg.get("cache"):
        try:
            specs.append(old_style_spec(int(cfg["cache"]), cfg.get("cache-blocksize"), ()))
        except ValueError as exc:
            raise OptionError(f"--cache {cfg['cache']}: {exc}") from None
    for text in cfg.get("cache2") or []:
        try:
            spec = parse_cache2(text)
        except ValueError as exc:
            raise OptionError(f"--cache2 {text}: {exc}") from None
        if any(s.name == spec.name for s in specs):
            raise OptionError(f"--cache2 {text}: a cache named {spec.name!r} already exists")
        specs.append(spec)
    return specs


def hub_for(cfg: Config, b: PlanBuilder) -> CacheHub | None:
    """The plan's caches (None when none is declared), built and bound once."""
    if b in _HUBS:
        return _HUBS[b]
    specs = cache_specs(cfg)
    udp_default = list(cfg.get("cache-udp-server") or [])
    items = list(cfg.get("add-cache-item") or [])
    if not specs:
        for option, given in (("cache-udp-server", udp_default), ("add-cache-item", items)):
            if given:
                raise OptionError(f"--{option} {given[0]}: no cache is declared "
                                  f"(--cache2 name=NAME,items=N)")
        _HUBS[b] = None
        return None
    hub = CacheHub(specs)
    for spec in specs:
        log(f"*** Cache \"{spec.name}\" initialized: {spec.capacity} items max "
            f"(key: {spec.keysize} bytes, value: {spec.max_value} bytes) ***")
    for text in items:
        _preload(hub, text)
    servers = [(specs[0].name, addr, "cache-udp-server") for addr in udp_default]
    servers += [(s.name, addr, "cache2") for s in specs for addr in s.udp_servers]
    for name, address, option in servers:
        sock = bind_datagram(address, option)
        log(f"*** udp server for cache \"{name}\" running on {socket_name(sock)} "
            f"fd {sock.fileno()} ***")
        b.add_service(CacheSyncSocket(sock, hub, name))
    b.add_service(hub)
    _HUBS[b] = hub
    return hub


def _preload(hub: CacheHub, text: str) -> None:
    try:
        targets = parse_item(text, hub.caches.names)
    except ValueError as exc:
        raise OptionError(f"--add-cache-item {text}: {exc}") from None
    for name, key, value in targets:
        reason = hub.put(name, key, value)
        if reason is not None:
            raise OptionError(f"--add-cache-item {text}: cannot store it in \"{name}\": "
                              f"{reason}")
        log(f"[cache] stored \"{key.decode('utf-8', 'replace')}\" in \"{name}\"")


def replicated_caches(cfg: Config, b: PlanBuilder, kind: str) -> CacheHub | None:
    """The caches router ``kind`` needs replicated (None: it uses none); OptionError
    when its ``--X-use-cache`` names no declared cache."""
    option = f"{kind}-use-cache"
    if not cfg.is_set(option):
        return None
    name = cfg.get(option) or ""
    hub = hub_for(cfg, b)
    if hub is None:
        raise OptionError(f"--{option}: no cache is declared (--cache2 name=NAME,items=N)")
    if hub.caches.store(name) is None:
        raise OptionError(f"--{option} {name}: unable to find cache \"{name}\" "
                          f"(declared: {', '.join(hub.caches.names)})")
    return hub


@register_contributor
def contribute_caches(cfg: Config, b: PlanBuilder) -> None:
    """Caches without a router using them still start (their options are checked and
    their sync servers bound), as uWSGI's do."""
    hub_for(cfg, b)
