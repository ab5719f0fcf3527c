"""THE option table: every option brood knows, declared once, one module per part.

Importing this package fills the registry in ``brood.config.option``. Each part module
exposes ``OPTIONS: list[Option]``; the order here is the order of ``brood --help``.
"""

from brood.config.option import all_options, declare, lookup, lookup_short
from brood.config.options import (
    cache,
    core,
    daemons,
    hooks,
    logs,
    routers,
    stats,
    subscription,
    workers,
)

PARTS = (core, daemons, hooks, workers, stats, routers, subscription, cache, logs)

for _part in PARTS:
    declare(_part.OPTIONS)

__all__ = ["all_options", "lookup", "lookup_short", "PARTS"]
