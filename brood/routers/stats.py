"""The router stats document (``--X-stats``), byte for byte in uWSGI's shape (WIRE §3.2).

uWSGI writes its stats JSON by hand (core/stats.c), and tools compare bytes, so this
module reproduces the writer rather than calling ``json.dumps`` on a dict:

* ``{`` newline, then one ``"key":value`` per line, indented with tabs, ``,`` + newline
  between items, no space after the colon;
* a list opens with ``[`` + newline; an object inside a list is indented at its depth;
  a list or object closes with newline, the outer indentation, then ``]``/``}``;
* an empty list is therefore ``[`` newline newline tabs ``]``;
* quirk: the socket-name strings of the router's own list are written with no
  indentation at all;
* no newline after the final ``}``.

With ``minified`` (``--stats-minified``) no newlines or tabs are written.
Strings are JSON-escaped (uWSGI does not escape; for ordinary names the bytes agree), and
keys and node names that are not UTF-8 are written with U+FFFD (uWSGI writes the raw
bytes, which no JSON parser takes).
New brood fields may only ever be appended at the end (``extra``, then ``processes``:
the per-process totals of a router with several processes, see ``stats_merge``).
"""

from __future__ import annotations

import json
import operator
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from brood.routers.health import grace_stat
from brood.routers.node import Node
from brood.stats import VERSION

# Field order of one subscription node, as uWSGI writes it.
NODE_FIELDS: tuple[str, ...] = (
    "name", "modifier1", "modifier2", "last_check", "pid", "uid", "gid", "requests",
    "last_requests", "tx", "rx", "cores", "load", "weight", "wrr", "ref", "failcnt",
    "death_mark",
)


class StatsWriter:
    """uWSGI's stats writer: tabs, newlines and commas exactly where it puts them."""

    def __init__(self, minified: bool = False) -> None:
        self.minified = minified
        self.parts: list[str] = ["{" if minified else "{\n"]
        self.tabs = 1

    def _nl(self) -> None:
        if not self.minified:
            self.parts.append("\n")

    def _indent(self) -> None:
        if not self.minified:
            self.parts.append("\t" * self.tabs)

    def comma(self) -> None:
        self.parts.append(",")
        self._nl()

    def key(self, name: str) -> None:
        self._indent()
        self.parts.append(f"{_str(name)}:")

    def keyval(self, name: str, value: str) -> None:
        self._indent()
        self.parts.append(f"{_str(name)}:{_str(value)}")

    def keylong(self, name: str, value: int) -> None:
        self._indent()
        self.parts.append(f"{_str(name)}:{int(value)}")

    def string(self, value: str) -> None:
        self.parts.append(_str(value))  # the quirk: no indentation

    def list_open(self) -> None:
        self.tabs += 1
        self.parts.append("[")
        self._nl()

    def list_close(self) -> None:
        self._close("]")

    def object_open(self) -> None:
        self._indent()
        if not self.minified:
            self.tabs += 1
        self.parts.append("{")
        self._nl()

    def object_close(self) -> None:
        self._close("}")

    def _close(self, symbol: str) -> None:
        if not self.minified:
            self.parts.append("\n")
            self.tabs -= 1
            self._indent()
        self.parts.append(symbol)

    def objects(self, rows: Iterable[Sequence[str]], keys: Sequence[str]) -> None:
        """Inside an open list: one object per row, ``keys`` (JSON-quoted names) paired
        with the row's values (JSON text), as ``object_open``/``keylong``/``comma``/
        ``object_close`` would write them, in one string (a table of thousands of nodes
        is a stats request's whole cost)."""
        if self.minified:
            outer = inner = nl = ""
        else:
            outer, inner, nl = "\t" * self.tabs, "\t" * (self.tabs + 1), "\n"
        heads = [inner + key.replace("%", "%%") + ":" for key in keys]
        heads[1:] = ["," + nl + head for head in heads[1:]]
        template = outer + "{" + nl + "%s".join(heads) + "%s" + nl + outer + "}"
        self.parts.append(("," + nl).join([template % tuple(row) for row in rows]))

    def finish(self) -> bytes:
        self.tabs = 1
        self._close("}")
        return "".join(self.parts).encode("utf-8", "surrogateescape")


def _str(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


def _text(value: Any) -> str:
    """A key or node name as valid Unicode: bytes that are not UTF-8 (an address from
    one unchecked packet) become U+FFFD, as the table writes keys, so the document
    stays valid JSON (a surrogate-escaped byte would go out raw)."""
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "replace")
    text = str(value)
    if text.isascii():
        return text
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a lone surrogate that stands for no byte
        raw = text.encode("utf-8", "surrogatepass")
    return raw.decode("utf-8", "replace")


def _field(item: Any, name: str, default: Any = 0) -> Any:
    if isinstance(item, Mapping):
        return item.get(name, default)
    return getattr(item, name, default)


def _node_value(node: Any, name: str) -> Any:
    value = _field(node, name)
    if name == "ref" and isinstance(node, Mapping) and "ref" not in node:
        value = node.get("reference", 0)
    return value


_NODE_KEYS = [_str(name) for name in NODE_FIELDS]
_NODE_VALUES = operator.attrgetter(*NODE_FIELDS[1:])
_NODE_ITEMS = operator.itemgetter(*NODE_FIELDS[1:])


def _node_row(node: Node | Mapping[str, Any]) -> list[str]:
    """One node's values as JSON text, in ``NODE_FIELDS`` order."""
    if type(node) is dict and len(node) == len(NODE_FIELDS) and "ref" in node:
        return [_str(_text(node["name"])), *[str(int(v or 0)) for v in _NODE_ITEMS(node)]]
    if isinstance(node, dict | Mapping):
        get = node.get
        ref = get("ref")
        if ref is None:
            ref = get("reference", 0)
        return [_str(_text(get("name", "")))] + [
            str(int((ref if name == "ref" else get(name, 0)) or 0)) for name in NODE_FIELDS[1:]]
    return [_str(_text(node.name))] + [
        str(int(getattr(node, name, 0) or 0)) for name in NODE_FIELDS[1:]]


def node_record(node: Node | Mapping[str, Any]) -> dict[str, Any]:
    """One subscription node as a plain mapping with ``NODE_FIELDS`` (name a str, the
    rest ints), whether it is a Node or a mapping (``reference`` read as ``ref``)."""
    # The common cases first (tens of thousands per snapshot): a Node, or the table's
    # own record of one (``node_stats``: every field there).
    if isinstance(node, Node):
        values = _NODE_VALUES(node)
    elif type(node) is dict and "ref" in node and len(node) == len(NODE_FIELDS):
        values = _NODE_ITEMS(node)
    else:
        values = None
    if values is not None:
        return dict(zip(NODE_FIELDS, (_text(_field(node, "name", "")),
                                      *[int(v or 0) for v in values]), strict=True))
    record: dict[str, Any] = {"name": _text(_field(node, "name", ""))}
    for name in NODE_FIELDS[1:]:
        record[name] = int(_node_value(node, name) or 0)
    return record


def _static_entry(node: Node | Mapping[str, Any], now: float) -> tuple[str, int, int]:
    """(name, hits, grace) of one static node: a Node, or a merged mapping that already
    carries ``hits`` and ``grace``."""
    if isinstance(node, Mapping):
        return _text(node.get("name", "")), int(node.get("hits", 0)), int(node.get("grace", 0))
    return _text(node.name), node.requests, grace_stat(node, now)


def _write_slot(w: StatsWriter, slot: Any) -> None:
    w.object_open()
    w.keyval("key", _text(_field(slot, "key", "")))
    w.comma()
    w.keylong("hash", int(_field(slot, "hash", 0)))
    w.comma()
    w.keylong("hits", int(_field(slot, "hits", 0)))
    w.comma()
    w.keylong("sni_enabled", int(bool(_field(slot, "sni_enabled", 0))))
    w.comma()
    w.key("nodes")
    w.list_open()
    w.objects([_node_row(node) for node in _field(slot, "nodes", ()) or ()], _NODE_KEYS)
    w.list_close()
    w.object_close()


def router_stats(
    kind: str,
    *,
    pid: int,
    uid: int,
    gid: int,
    cwd: str,
    active_sessions: int,
    socket_names: Sequence[str],
    static_nodes: Sequence[Node | Mapping[str, Any]] | None,
    subscriptions: Iterable[Any] | None,
    cheap: bool,
    now: float,
    version: str = VERSION,  # (the workers' stats say the same)
    minified: bool = False,
    extra: Mapping[str, int | str] | None = None,
    processes: Sequence[Mapping[str, int]] | None = None,
) -> bytes:
    """The stats document of one router process.

    ``kind`` is the router's short name ("http", "fastrouter", "rawrouter",
    "sslrouter"), also the key of its socket list (every gateway socket it owns, the
    subscription server included, in option order). ``static_nodes``: the ``--X-to``
    nodes (or mappings with ``name, hits, grace``), or None/empty to leave the key out
    (uWSGI prints it only when configured).
    ``subscriptions``: the slots in bucket order, each a mapping or object with
    ``key, hash, hits, sni_enabled, nodes`` (nodes: Node or mappings with NODE_FIELDS);
    None when the router has no subscription server (the key is left out); an object
    with ``stats_slots(now)`` (the subscription table) is asked for them. ``extra``:
    brood totals appended after ``cheap`` (ints or strings). ``processes``: brood's
    per-process list (mappings of ints, written in their own order) appended last; None
    leaves the key out.
    """
    w = StatsWriter(minified)
    w.keyval("version", version)
    w.comma()
    for name, value in (("pid", pid), ("uid", uid), ("gid", gid)):
        w.keylong(name, value)
        w.comma()
    w.keyval("cwd", cwd)
    w.comma()
    w.keylong("active_sessions", active_sessions)
    w.comma()

    w.key(kind)
    w.list_open()
    for i, name in enumerate(socket_names):
        if i:
            w.comma()
        w.string(name)
    w.list_close()
    w.comma()

    if static_nodes:
        w.key("static_nodes")
        w.list_open()
        for i, node in enumerate(static_nodes):
            if i:
                w.comma()
            name, hits, grace = _static_entry(node, now)
            w.object_open()
            w.keyval("name", name)
            w.comma()
            w.keylong("hits", hits)
            w.comma()
            w.keylong("grace", grace)
            w.object_close()
        w.list_close()
        w.comma()

    if subscriptions is not None:
        if hasattr(subscriptions, "stats_slots"):  # the subscription table itself
            subscriptions = subscriptions.stats_slots(now)
        w.key("subscriptions")
        w.list_open()
        for i, slot in enumerate(subscriptions):
            if i:
                w.comma()
            _write_slot(w, slot)
        w.list_close()
        w.comma()

    w.keylong("cheap", int(bool(cheap)))
    for name, value in (extra or {}).items():
        w.comma()
        if isinstance(value, str):
            w.keyval(name, value)
        else:
            w.keylong(name, value)
    if processes is not None:
        w.comma()
        w.key("processes")
        w.list_open()
        for i, proc in enumerate(processes):
            if i:
                w.comma()
            w.object_open()
            for j, (name, value) in enumerate(proc.items()):
                if j:
                    w.comma()
                w.keylong(name, value)
            w.object_close()
        w.list_close()
    return w.finish()


__all__ = ["NODE_FIELDS", "StatsWriter", "node_record", "router_stats"]
