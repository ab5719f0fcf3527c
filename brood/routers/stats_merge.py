"""One stats document for a router kind served by several processes (pure).

With ``--X-processes N`` each process keeps its own sessions and per-node counters, and a
stats client reaches whichever process accepts its connection. So every process
publishes a *snapshot* of its counters (``snapshot``; the shell in
``brood.routers.stats_share`` writes and reads them), and the process that answers merges
its own live snapshot with its siblings' (``merge``) and writes uWSGI's document from
the result (``render``): same keys, same order, plus brood's ``processes`` list at the
end. With one process the document is today's, plus a one-entry ``processes`` list.

How it works
------------
A snapshot is a JSON-able dict (``SNAPSHOT_VERSION``)::

    {"v": 1, "index": 2, "pid": 4242, "time": 1795437100.25, "connections": 40,
     "active_sessions": 3, "sessions_total": 120,
     "requests": 118, "tx": 51000, "rx": 9000,          # this process's node totals
     "static_nodes": [{"name", "requests", "grace_until", "grace_marked_at"}, ...],
     "subscriptions": [{"key", "hash", "hits", "sni_enabled",
                        "nodes": [{NODE_FIELDS}, ...]}, ...] or null}

``merge(own, siblings, now)``: ``own`` (the answering process, taken live) gives the
shape: its slots and nodes, in its order. Why not the union of every process's table:
replicas of the subscription table agree within milliseconds, while a sibling's
snapshot may be up to a publishing period old, so a union would bring back a node the
answerer dropped (an unsubscribe) for that long, and it would hide what each replica
holds. A sibling's counters are added to the answerer's node of the same name (static
nodes) or the same key and name (subscriptions):

* summed over processes: ``requests``, ``last_requests``, ``tx``, ``rx``, ``ref``,
  ``failcnt``, and each slot's ``hits``;
* ``death_mark`` if any process marked it (a failed connect marks a node in the one
  replica that saw it fail); ``last_check`` the latest;
* everything else (modifiers, pid/uid/gid, cores, load, weight, wrr; a slot's hash and
  sni_enabled) from ``own``, the freshest figures there are;
* a static node's ``grace``: the latest mark of a process where it is still in grace
  at ``now`` (0 when none).

A sibling's counters for a node the answerer does not have (a subscription it applied
first, or one it has not dropped yet) show in that sibling's ``processes`` totals only.
``active_sessions`` is summed. ``processes`` lists each snapshot's totals by index,
with ``age_ms`` (how old the figures are; 0 for the answering process).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from brood import __version__
from brood.routers.node import Node
from brood.routers.stats import NODE_FIELDS, node_record, router_stats

SNAPSHOT_VERSION = 1
SUMMED = ("requests", "last_requests", "tx", "rx", "ref", "failcnt")
# Field order of one entry of the "processes" list.
PROCESS_FIELDS = ("index", "pid", "connections", "active_sessions", "sessions_total",
                  "requests", "tx", "rx", "age_ms")
_COUNTS = ("index", "pid", "connections", "active_sessions", "sessions_total", "requests",
           "tx", "rx")


def _slot_record(slot: Any) -> dict[str, Any]:
    def field(name: str, default: Any) -> Any:
        return slot.get(name, default) if isinstance(slot, Mapping) else getattr(
            slot, name, default)

    key = field("key", "")
    if isinstance(key, bytes | bytearray):
        key = bytes(key).decode("utf-8", "surrogateescape")
    return {
        "key": str(key),
        "hash": int(field("hash", 0)),
        "hits": int(field("hits", 0)),
        "sni_enabled": int(bool(field("sni_enabled", 0))),
        "nodes": [node_record(node) for node in field("nodes", ()) or ()],
    }


def snapshot(*, index: int, pid: int, now: float, active_sessions: int,
             sessions_total: int, static_nodes: Sequence[Node],
             subscriptions: Iterable[Any] | None, connections: int = 0) -> dict[str, Any]:
    """The counters of one process at ``now``. ``static_nodes``: the engine's static
    and fallback nodes; ``subscriptions``: the slots as ``router_stats`` takes them (a
    table with ``stats_slots(now)``, slot mappings/objects, or None for no server);
    ``connections``: the client connections it holds (``brood.routers.net.spread``)."""
    if subscriptions is not None and hasattr(subscriptions, "stats_slots"):
        subscriptions = subscriptions.stats_slots(now)
    slots = None if subscriptions is None else [_slot_record(s) for s in subscriptions]
    static = [{"name": n.name, "requests": n.requests, "grace_until": n.grace_until,
               "grace_marked_at": n.grace_marked_at} for n in static_nodes]
    totals = {"requests": 0, "tx": 0, "rx": 0}
    for node in static_nodes:
        totals["requests"] += node.requests
        totals["tx"] += node.tx
        totals["rx"] += node.rx
    for slot in slots or ():
        for record in slot["nodes"]:
            for name in totals:
                totals[name] += record[name]
    return {"v": SNAPSHOT_VERSION, "index": index, "pid": pid, "time": now,
            "connections": connections, "active_sessions": active_sessions, "sessions_total": sessions_total,
            **totals, "static_nodes": static, "subscriptions": slots}


def dumps(snap: Mapping[str, Any]) -> bytes:
    """A snapshot as the bytes a process publishes."""
    return json.dumps(snap, separators=(",", ":"), ensure_ascii=False).encode(
        "utf-8", "surrogateescape")


class BadSnapshot(ValueError):
    """Published bytes that are not a snapshot of this version (ignored by the reader)."""


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadSnapshot(f"not an integer: {value!r}")
    return value


def _num(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadSnapshot(f"not a number: {value!r}")
    return float(value)


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise BadSnapshot(f"not a string: {value!r}")
    return value


def _list(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise BadSnapshot(f"not a list: {value!r}")
    return value


def loads(raw: bytes) -> dict[str, Any]:
    """Parse and check published bytes; BadSnapshot unless every field has its type."""
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadSnapshot(str(exc)) from None
    if not isinstance(data, dict) or data.get("v") != SNAPSHOT_VERSION:
        raise BadSnapshot("not a version 1 snapshot")
    try:
        snap: dict[str, Any] = {name: _int(data[name]) for name in (*_COUNTS, "v")}
        snap["time"] = _num(data["time"])
        snap["static_nodes"] = [
            {"name": _str(n["name"]), "requests": _int(n["requests"]),
             "grace_until": _num(n["grace_until"]),
             "grace_marked_at": _num(n["grace_marked_at"])}
            for n in _list(data["static_nodes"])]
        slots = data["subscriptions"]
        snap["subscriptions"] = None if slots is None else [
            {"key": _str(s["key"]), "hash": _int(s["hash"]), "hits": _int(s["hits"]),
             "sni_enabled": _int(s["sni_enabled"]),
             "nodes": [{"name": _str(n["name"]),
                        **{f: _int(n[f]) for f in NODE_FIELDS[1:]}}
                       for n in _list(s["nodes"])]}
            for s in _list(slots)]
    except (KeyError, TypeError) as exc:
        raise BadSnapshot(f"missing or malformed field: {exc}") from None
    return snap


@dataclass
class Merged:
    """The merged figures ``render`` writes."""

    active_sessions: int
    static_nodes: list[dict[str, Any]]  # {name, hits, grace}
    subscriptions: list[dict[str, Any]] | None  # slots with node records
    processes: list[dict[str, int]]  # PROCESS_FIELDS, by index


def _add_node(into: dict[str, Any], node: Mapping[str, Any]) -> None:
    for name in SUMMED:
        into[name] += node[name]
    into["death_mark"] = int(bool(into["death_mark"] or node["death_mark"]))
    into["last_check"] = max(into["last_check"], node["last_check"])


def _merge_slots(own: Mapping[str, Any],
                 others: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]] | None:
    if own["subscriptions"] is None:
        return None
    slots: dict[str, dict[str, Any]] = {}
    nodes: dict[tuple[str, str], dict[str, Any]] = {}
    for slot in own["subscriptions"]:
        mine = slots[slot["key"]] = {**slot, "nodes": [dict(n) for n in slot["nodes"]]}
        for node in mine["nodes"]:
            nodes[(slot["key"], node["name"])] = node
    for snap in others:
        for slot in snap["subscriptions"] or ():
            mine = slots.get(slot["key"])
            if mine is None:
                continue
            mine["hits"] += slot["hits"]
            for node in slot["nodes"]:
                kept = nodes.get((slot["key"], node["name"]))
                if kept is not None:
                    _add_node(kept, node)
    return list(slots.values())


def _merge_static(own: Mapping[str, Any], others: Sequence[Mapping[str, Any]],
                  now: float) -> list[dict[str, Any]]:
    merged = {n["name"]: {"name": n["name"], "hits": 0, "grace": 0}
              for n in own["static_nodes"]}
    for snap in (own, *others):
        for node in snap["static_nodes"]:
            entry = merged.get(node["name"])
            if entry is None:
                continue
            entry["hits"] += node["requests"]
            if now < node["grace_until"]:
                entry["grace"] = max(entry["grace"], int(node["grace_marked_at"]))
    return list(merged.values())


def merge(own: Mapping[str, Any], siblings: Sequence[Mapping[str, Any]],
          now: float) -> Merged:
    """Merge the answering process's snapshot with its siblings' (see the module doc).
    A sibling with ``own``'s index or pid is left out (its own older snapshot)."""
    others = [s for s in siblings if s["index"] != own["index"] and s["pid"] != own["pid"]]
    processes = []
    for snap in sorted((own, *others), key=lambda s: s["index"]):
        entry = {name: snap[name] for name in _COUNTS}
        entry["age_ms"] = max(0, round((now - snap["time"]) * 1000))
        processes.append(entry)
    return Merged(
        active_sessions=own["active_sessions"] + sum(s["active_sessions"] for s in others),
        static_nodes=_merge_static(own, others, now),
        subscriptions=_merge_slots(own, others),
        processes=processes,
    )


def render(kind: str, merged: Merged, *, pid: int, uid: int, gid: int, cwd: str,
           socket_names: Sequence[str], cheap: bool, now: float,
           version: str = __version__, minified: bool = False) -> bytes:
    """The stats document (WIRE §3.2) of the merged figures; the identity fields
    (pid, uid, gid, cwd, sockets, cheap) are the answering process's."""
    return router_stats(
        kind, pid=pid, uid=uid, gid=gid, cwd=cwd,
        active_sessions=merged.active_sessions, socket_names=socket_names,
        static_nodes=merged.static_nodes, subscriptions=merged.subscriptions,
        cheap=cheap, now=now, version=version, minified=minified,
        processes=merged.processes,
    )


__all__ = ["PROCESS_FIELDS", "SNAPSHOT_VERSION", "BadSnapshot", "Merged", "dumps", "loads",
           "merge", "render", "snapshot"]
