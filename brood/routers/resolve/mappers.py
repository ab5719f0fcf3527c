"""The key -> node mappers of uWSGI's corerouter, one class each (cr_map.c's set).

Pool mappers (``--X-to``, ``--X-use-cache``) choose among several
nodes and put a refusing node in grace for ``--X-gracetime`` seconds. Address mappers
(pattern, base, code string, use-socket) compute the one address for a key; as in
uWSGI they put no grace mark on it (there is no other node to steer to, and the node
may be back at the next request), they only count the failure.
"""

from __future__ import annotations

import ast
import runpy
from collections.abc import Callable, Collection, Sequence
from typing import Any, Protocol

from brood.routers.balance import Balancer, make_balancer
from brood.routers.balance.roundrobin import RoundRobin
from brood.routers.health import mark_failed
from brood.routers.node import Node
from brood.routers.resolve.address import key_text, path_safe, split_modifier
from brood.routers.resolve.base import NodePool


class StaticResolver:
    """``--X-to A --X-to B``: the key is ignored; the pool is balanced (uWSGI's
    static mapper is plain round robin, ``rr``, the default here)."""

    def __init__(
        self,
        addresses: Sequence[str],
        *,
        balancer: Balancer | None = None,
        gracetime: float = 30.0,
    ) -> None:
        self.nodes = [Node(address) for address in addresses]
        self.balancer = balancer if balancer is not None else make_balancer("rr")
        self.gracetime = gracetime

    @property
    def static_nodes(self) -> list[Node]:
        return list(self.nodes)

    def only_node(self) -> Node | None:
        """The node every request goes to, when that needs no balancer: one node under
        plain round robin (the single ``--X-to`` of most setups, and embedded mode's
        internal socket). The resolver then asks nothing else (``ChainResolver``)."""
        if len(self.nodes) == 1 and type(self.balancer) is RoundRobin:
            return self.nodes[0]
        return None

    def resolve(
        self, key: bytes, now: float, client: bytes = b"", exclude: Collection[Node] = ()
    ) -> Node | None:
        return self.balancer.pick(self.nodes, now, client, exclude, key)

    def on_connect_failed(self, node: Node, now: float) -> None:
        if any(node is n for n in self.nodes):
            mark_failed(node, now, self.gracetime)


class _AddressMapper:
    """Shared part of the mappers that turn a key into one address."""

    def __init__(self, pool: NodePool | None = None) -> None:
        self.pool = pool if pool is not None else NodePool()

    def address_for(self, key: bytes) -> tuple[str, int | None] | None:
        raise NotImplementedError

    def resolve(
        self, key: bytes, now: float, client: bytes = b"", exclude: Collection[Node] = ()
    ) -> Node | None:
        found = self.address_for(key)
        if found is None or not found[0]:
            return None
        node = self.pool.get(found[0], now, found[1])
        if node in exclude or not node.usable(now):
            return None
        return node

    def on_connect_failed(self, node: Node, now: float) -> None:
        if node in self.pool:
            node.failcnt += 1


class PatternResolver(_AddressMapper):
    """``--X-use-pattern /run/%s.sock``: ``%s`` becomes the key, ``%%`` a ``%``."""

    def __init__(self, pattern: str, pool: NodePool | None = None) -> None:
        super().__init__(pool)
        self.pattern = pattern

    def address_for(self, key: bytes) -> tuple[str, int | None] | None:
        if not path_safe(key):
            return None
        text = key_text(key)
        parts = self.pattern.split("%%")
        return "%".join(part.replace("%s", text) for part in parts), None


class BaseResolver(_AddressMapper):
    """``--X-use-base /run/``: the address is the base with the key appended."""

    def __init__(self, base: str, pool: NodePool | None = None) -> None:
        super().__init__(pool)
        self.base = base

    def address_for(self, key: bytes) -> tuple[str, int | None] | None:
        if not path_safe(key):
            return None
        return self.base + key_text(key), None


class SocketResolver(_AddressMapper):
    """``--X-use-socket [N]``: every request goes to this instance's own Nth uwsgi
    socket (``--socket`` order, default 0), whatever the key."""

    def __init__(self, address: str, pool: NodePool | None = None) -> None:
        super().__init__(pool)
        self.address = address

    def address_for(self, key: bytes) -> tuple[str, int | None] | None:
        return self.address, None


class CodeResolver(_AddressMapper):
    """``--X-use-code-string modifier1:file.py:function``: ``function(key)`` returns
    ``"address"``, ``"address,modifier1"`` or None.

    The key is passed as bytes, as uWSGI's Python plugin does. An exception or a bad
    result means no node; it is kept in ``last_error`` and handed to ``report`` (the
    shell logs it), never raised into the request path.
    """

    def __init__(
        self,
        function: Callable[[bytes], Any],
        *,
        modifier1: int = 0,
        pool: NodePool | None = None,
        report: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__(pool)
        self.function = function
        self.modifier1 = modifier1  # the plugin that runs the code (0: Python)
        self.report = report
        self.errors = 0
        self.last_error: str | None = None

    @classmethod
    def from_spec(
        cls, spec: str, pool: NodePool | None = None, report: Callable[[str], None] | None = None
    ) -> CodeResolver:
        """Parse ``modifier1:file:function`` and load the function (ValueError when the
        spec, the file or the function is bad: a configuration error at startup)."""
        modifier1, filename, funcname = _code_string_parts(spec)
        try:
            namespace = runpy.run_path(filename, run_name="uwsgi_code_string")
        except Exception as exc:
            raise ValueError(f"cannot load code string file {filename!r}: {exc}") from exc
        function = namespace.get(funcname)
        if not callable(function):
            raise ValueError(f"{filename!r} has no function {funcname!r}")
        return cls(function, modifier1=modifier1, pool=pool, report=report)

    @staticmethod
    def check_spec(spec: str) -> None:
        """What ``from_spec`` would refuse, found without running the file (the master
        checks at start, before it drops privileges: the file runs in the routers only):
        the spec, a file that cannot be read or parsed, no top-level ``function``."""
        _, filename, funcname = _code_string_parts(spec)
        try:
            with open(filename, "rb") as file:
                tree = ast.parse(file.read(), filename)
        except (OSError, SyntaxError, ValueError) as exc:
            raise ValueError(f"cannot load code string file {filename!r}: {exc}") from exc
        if funcname not in _top_level_names(tree):
            raise ValueError(f"{filename!r} has no function {funcname!r}")

    def address_for(self, key: bytes) -> tuple[str, int | None] | None:
        try:
            result = self.function(key)
            if result is None:
                return None
            if isinstance(result, bytes | bytearray):
                result = bytes(result).decode("utf-8", "surrogateescape")
            if not isinstance(result, str):
                raise TypeError(f"returned {type(result).__name__}, not str/bytes/None")
            return split_modifier(result.strip()) if result.strip() else None
        except Exception as exc:  # user code: any failure means "no node"
            self.errors += 1
            self.last_error = f"code string mapper failed for key {key_text(key)!r}: {exc!r}"
            if self.report is not None:
                self.report(self.last_error)
            return None


def _code_string_parts(spec: str) -> tuple[int, str, str]:
    parts = spec.split(":")
    if len(parts) < 3 or not parts[0].strip().isdigit() or not parts[-1]:
        raise ValueError(f"invalid code string {spec!r}: expected modifier1:file:function")
    return int(parts[0]), ":".join(parts[1:-1]), parts[-1]


def _top_level_names(tree: ast.Module) -> set[str]:
    """Names a module binds at its top level (defs, classes, assignments, imports)."""
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        else:
            names.update(n.id for n in ast.walk(node)
                         if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store))
    return names


class CacheStore(Protocol):
    """Where ``--X-use-cache`` looks keys up (uWSGI: a named uWSGI cache)."""

    def get(self, key: bytes) -> bytes | None: ...


class MemoryCache:
    """The in-process cache store: key -> value, set and deleted at run time."""

    def __init__(self) -> None:
        self._items: dict[bytes, bytes] = {}

    def get(self, key: bytes) -> bytes | None:
        return self._items.get(key)

    def set(self, key: bytes, value: bytes) -> None:
        self._items[key] = value

    def delete(self, key: bytes) -> None:
        self._items.pop(key, None)


class CacheResolver:
    """``--X-use-cache [name]``: the cache value of the key names the node(s).

    A value is uWSGI's ``address[,modifier1]``, or several of them separated by ``|``
    (uWSGI 2.0.x: it takes them in turn) or, in brood, by whitespace: a pool balanced
    with ``balancer`` (default ``wrr``).
    """

    def __init__(
        self,
        store: CacheStore | None = None,
        *,
        balancer: Balancer | None = None,
        gracetime: float = 30.0,
        pool: NodePool | None = None,
    ) -> None:
        self.store: CacheStore = store if store is not None else MemoryCache()
        self.balancer = balancer if balancer is not None else make_balancer("wrr")
        self.gracetime = gracetime
        self.pool = pool if pool is not None else NodePool()
        self._parsed: dict[bytes, tuple[bytes, list[tuple[str, int | None]]]] = {}

    def set(self, key: bytes, addresses: Sequence[str]) -> None:
        """Map ``key`` to ``addresses`` (each ``address[,modifier1]``); needs a store
        with ``set`` (the default MemoryCache)."""
        for item in addresses:
            split_modifier(item)  # ValueError now rather than "no node" later
            if not item or any(c.isspace() for c in item):
                raise ValueError(f"bad node address {item!r}")
        self.store.set(key, " ".join(addresses).encode("utf-8", "surrogateescape"))  # type: ignore[attr-defined]

    def delete(self, key: bytes) -> None:
        self.store.delete(key)  # type: ignore[attr-defined]
        self._parsed.pop(key, None)

    def entries(self, key: bytes) -> list[tuple[str, int | None]]:
        """The parsed value of ``key`` (empty when missing or unparsable)."""
        raw = self.store.get(key)
        if raw is None:
            self._parsed.pop(key, None)
            return []
        cached = self._parsed.get(key)
        if cached is not None and cached[0] == raw:
            return cached[1]
        items: list[tuple[str, int | None]] = []
        for word in raw.decode("utf-8", "surrogateescape").replace("|", " ").split():
            try:
                items.append(split_modifier(word))
            except ValueError:
                continue
        if len(self._parsed) >= self.pool.limit:
            self._parsed.clear()
        self._parsed[key] = (raw, items)
        return items

    def resolve(
        self, key: bytes, now: float, client: bytes = b"", exclude: Collection[Node] = ()
    ) -> Node | None:
        nodes = [self.pool.get(address, now, mod) for address, mod in self.entries(key)]
        if not nodes:
            return None
        return self.balancer.pick(nodes, now, client, exclude, key)

    def on_connect_failed(self, node: Node, now: float) -> None:
        if node in self.pool:
            mark_failed(node, now, self.gracetime)
