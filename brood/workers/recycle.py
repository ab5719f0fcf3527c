"""When a worker recycles itself after a request, beyond --max-requests (pure).

--reload-on-rss / --reload-on-as: its resident set, or its address space, is over the
limit once the request is done (uWSGI reads both after each request; RSS first).

--reload-on-exception: the app raised. Its filters --reload-on-exception-value,
-type and -repr name exceptions by their message, ``str(exc)``, all three of them:
uWSGI 2.0 compares each with the message (its python plugin has the type's name,
``module.Class``, and the repr, ``module.Class: message``, but the core asks it for
the message every time), so an ini file whose -type names a class never recycled a
worker on uWSGI 2.0.21 and does not here either.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

MB = 1024 * 1024

ExceptionRule = Callable[[BaseException], bool]


def memory_over(rss: int, vsz: int, rss_limit: int, as_limit: int) -> str | None:
    """Why a worker with this memory must go (limits in bytes, 0 = off), or None."""
    if rss_limit and rss > rss_limit:
        return f"rss {rss // MB} MB over reload-on-rss"
    if as_limit and vsz >= as_limit:  # (uWSGI: at the limit already)
        return f"address space {vsz // MB} MB over reload-on-as"
    return None


def exception_rule(every: bool, messages: Iterable[str]) -> ExceptionRule | None:
    """Whether an exception the app raised recycles the worker; None when none does
    (then nothing is asked per exception)."""
    if every:
        return _always
    wanted = frozenset(messages)
    if not wanted:
        return None

    def matches(exc: BaseException) -> bool:
        try:
            return str(exc) in wanted
        except Exception:  # a __str__ that fails names nothing
            return False

    return matches


def _always(exc: BaseException) -> bool:
    return True
