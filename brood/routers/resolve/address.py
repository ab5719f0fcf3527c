"""Node address strings, as uWSGI writes them, to what ``socket.connect`` takes.

Shared by every router: ``--X-to`` values, subscription addresses, mapper results.
"""

from __future__ import annotations

import socket
from functools import lru_cache
from typing import Any

# Parsed addresses kept by parse_node_address; the same few addresses are parsed on
# every request, and the cache is per process and bounded.
ADDRESS_CACHE_SIZE = 4096


@lru_cache(maxsize=ADDRESS_CACHE_SIZE)
def parse_node_address(name: str) -> tuple[int, Any]:
    """``(family, sockaddr)`` of a node address; ValueError with the reason otherwise.

    * ``host:port`` (IPv4 literal or host name; an empty host is 127.0.0.1) -> AF_INET
    * ``[v6]:port`` -> AF_INET6
    * ``@name`` -> AF_UNIX in the abstract namespace (leading NUL)
    * anything with a ``/`` or without a ``:`` -> AF_UNIX path
    """
    if not name:
        raise ValueError("empty node address")
    if "\x00" in name:
        raise ValueError(f"NUL byte in node address {name!r}")
    if name.startswith("@"):
        if len(name) == 1:
            raise ValueError("empty abstract socket name '@'")
        return socket.AF_UNIX, "\x00" + name[1:]
    if name.startswith("["):
        end = name.find("]")
        if end < 0 or not name[end + 1 :].startswith(":"):
            raise ValueError(f"bad IPv6 node address {name!r} (expected [addr]:port)")
        host = name[1:end]
        if not host:
            raise ValueError(f"empty IPv6 host in {name!r}")
        return socket.AF_INET6, (host, _port(name[end + 2 :], name), 0, 0)
    if "/" in name or ":" not in name:
        return socket.AF_UNIX, name
    host, _, port = name.rpartition(":")
    if ":" in host:
        raise ValueError(f"IPv6 node address {name!r} needs brackets: [addr]:port")
    return socket.AF_INET, (host or "127.0.0.1", _port(port, name))


def _port(text: str, name: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"bad port in node address {name!r}")
    return int(text)


def split_modifier(value: str) -> tuple[str, int | None]:
    """uWSGI's ``address,modifier1`` (cache values, code-string results)."""
    address, sep, mod = value.partition(",")
    if not sep:
        return value, None
    mod = mod.strip()
    if not mod.isdigit() or int(mod) > 255:
        raise ValueError(f"bad modifier1 in {value!r}")
    return address, int(mod)


def key_text(key: bytes) -> str:
    """A routing key as text for addresses and paths (bytes kept via surrogateescape)."""
    return key.decode("utf-8", "surrogateescape")


def path_safe(key: bytes) -> bool:
    """May this key be put into a filesystem path (``--X-use-base``/``-use-pattern``)?

    uWSGI pastes the key in unchecked, so a Host of ``../../run/x`` reaches any unix
    socket on the machine; brood refuses keys with ``/`` or NUL, and ``.``/``..``.
    """
    return bool(key) and b"/" not in key and b"\x00" not in key and key not in (b".", b"..")
