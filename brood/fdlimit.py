"""The open-file limit (RLIMIT_NOFILE): ``--max-fd`` for the instance, and room for the
routers.

A router holds two descriptors per session and one per idle client, so the common soft
limit of 1024 refuses clients long before the machine runs short. The hard limit is the
administrator's cap: router processes raise their soft limit to it at start, as
haproxy and Go programs do. Workers keep the limit they were given (an app may still
use select(), which fails past fd 1023).
"""

from __future__ import annotations

import resource

from brood.config.option import OptionError

# What a soft limit is raised to when the hard limit is "unlimited" (the kernel's
# default fs.nr_open: no process may open more).
_UNLIMITED_CAP = 1 << 20


def apply_max_fd(count: int) -> None:
    """``--max-fd``: soft and hard limit to ``count``, as uWSGI sets them (raising the
    hard limit needs root); OptionError naming the option when the kernel refuses."""
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (count, count))
    except (OSError, ValueError) as exc:
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        cap = "unlimited" if hard == resource.RLIM_INFINITY else str(hard)
        reason = getattr(exc, "strerror", None) or str(exc)
        raise OptionError(f"--max-fd {count}: cannot set the open file limit ({reason}; "
                          f"the hard limit is {cap}: only root may raise it, and to "
                          "fs.nr_open at most)") from None


def soft_limit() -> int:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return _UNLIMITED_CAP if soft == resource.RLIM_INFINITY else soft


def raise_to_hard() -> tuple[int, int] | None:
    """Raise the soft limit to the hard one; (before, after) when it moved, else None."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = _UNLIMITED_CAP if hard == resource.RLIM_INFINITY else hard
    if soft == resource.RLIM_INFINITY or soft >= target:
        return None
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (OSError, ValueError):
        return None
    return soft, target
