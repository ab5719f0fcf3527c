"""uWSGI's caches, as far as routers use them: named key -> value maps the master owns.

Why: ``--X-use-cache [NAME]`` routes a key to the node address(es) kept under it in a
cache. The master declares the caches (``--cache2``, ``--cache``), preloads them
(``--add-cache-item``), receives uWSGI's cache sync packets on ``--cache-udp-server``
and pushes every change to each router process's replica over the subscription feed's
channel (``brood.subscription.feed``), so all the processes of a router see one map.

* ``spec``     pure: ``--cache2``/``--cache``/``--add-cache-item`` values -> specs
* ``store``    pure: one cache (limits, expiry) and a set of named caches
* ``sync``     pure: uWSGI's cache sync packet (modifier1 111) codec
* ``replica``  the router side: apply the channel's cache messages to local caches
* ``hub``      the master side: authoritative caches, UDP sockets, pushes to replicas
* ``plan``     plan wiring (called by ``brood.subscription.plan``)
"""
