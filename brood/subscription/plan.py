"""Plan wiring of the subscription part (named in ``brood.plan.CONTRIBUTOR_MODULES``).

* Router side, through ``brood.routers.plan.ROUTER_EXTRAS``: for a router kind with
  ``--X-subscription-server``s, bind each one (UDP ``host:port``/``[v6]:port``, or a
  unix datagram path), make the ``SubscriptionHub`` with one channel per router process
  (before the fork, so each process inherits its end), add the master services, and
  hand process ``index`` its feed as ``run_router(..., feed=RouterFeed)``. A kind with
  ``--X-use-cache`` gets the same hub and feed (without subscription sockets when it
  has none): the master's caches (``brood.cache.plan``) push their changes into it.
* Node side, a contributor: the ``Announcer`` when ``--subscribe-to``/``--subscribe2``
  is given. It runs after the worker contributor, so the default address (the first
  worker socket, real port after ``:0``) is known.

Datagram sockets are bound here, not through the plan's binder (which only keeps
listening stream sockets across re-exec): they close on exec and the next incarnation
binds them again, so at most the datagrams of that instant are lost.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from brood.cache.plan import replicated_caches
from brood.config.model import Config
from brood.log import log
from brood.plan import PlanBuilder, register_contributor
from brood.routers.plan import ROUTER_EXTRAS
from brood.sockets import bind_datagram, socket_name
from brood.subscription.announcer import Announcer, NodeFacts
from brood.subscription.server import ChannelService, SubscriptionHub, SubscriptionSocket


def _no_extras(index: int) -> dict[str, Any]:
    return {}


def subscription_extras(cfg: Config, b: PlanBuilder, kind: str,
                        count: int) -> Callable[[int], dict[str, Any]]:
    """A ``ROUTER_EXTRAS`` factory: the subscription server of router ``kind``, and
    the channel of its cache replica."""
    option = f"{kind}-subscription-server"
    servers = cfg[option]
    caches = replicated_caches(cfg, b, kind)
    if not servers and caches is None:
        return _no_extras
    hub = SubscriptionHub.from_config(cfg, kind, count)
    hub.subscriptions = bool(servers)
    # Bound after the extras (see contribute_routers); asked once datagrams come.
    hub.router_address = lambda: next(
        (lst.name for lst in b.plan.listeners if lst.proto == kind), None)
    if caches is not None:
        hub.caches = caches
        caches.add_sink(hub.push_cache)
    for spec in servers:
        sock = bind_datagram(spec, option)
        name = socket_name(sock)
        log(f"uWSGI {kind} subscription server bound on {name} fd {sock.fileno()}")
        hub.server_names.append(name)
        b.add_service(SubscriptionSocket(sock, hub))
    b.add_service(hub)
    for channel in hub.channels:
        b.add_service(ChannelService(channel, hub))
    return hub.feed_kwargs(cfg)


def contribute_announcer(cfg: Config, b: PlanBuilder) -> None:
    """``--subscribe-to``/``--subscribe2``: announce this instance from the master."""
    if not cfg["subscribe-to"] and not cfg["subscribe2"]:
        return
    facts = NodeFacts.from_config(
        cfg,
        worker_sockets=[lst.name for lst in b.plan.worker_listeners],
        shared_sockets=[lst.name for lst in b.plan.shared],
    )
    b.add_service(Announcer.from_config(cfg, facts))


if subscription_extras not in ROUTER_EXTRAS:
    ROUTER_EXTRAS.append(subscription_extras)
register_contributor(contribute_announcer)
