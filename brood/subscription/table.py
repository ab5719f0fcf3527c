"""The subscription table: key -> pool of nodes, fed by announces (WIRE §2.6-§2.10, §2.12).

Pure state, time passed in. The server shell decodes a datagram (``packet``), checks
its signature (``signing``) and calls ``apply``; routers call ``lookup`` per request.
Every method that changes something returns (or queues, for ``lookup``) events, plain
tuples the shell logs or acts on:

=================================================  =======================================
``("new_pool", key, hash)``                        a slot was created
``("new_node", key, address)``                     a node was added
``("notify", path, text)``                         send ``text`` to the unix datagram
                                                   socket ``path`` (ack of a new node)
``("marked_failed", key, address, why)``           unsubscribed, silent, connect refused
``("removed_node", key, address)``                 a node left the table
``("removed_pool", key)``                          its slot became empty and went away
``("sni_added", servername, sni_key, sni_crt,      build an SSL context for servername
sni_ca)``                                          (files on the router's disk)
``("sni_removed", servername)``                    drop that context
``("rejected", reason)``                           the announce was not applied
=================================================  =======================================

Behaviour follows uWSGI 2.0 where it is sound: a refresh updates cores, load and weight
(0 -> 1), clears the death mark and resets ``last_requests`` but never modifier1/2; an
unsubscribe marks the node failed and removes it once no request uses it; a node silent
for more than ``tolerance`` seconds is marked failed (``failcnt`` + 1) and removed when
a lookup finds it. Differences, each deliberate:

* ``expire(now)`` does the same sweep on every slot, so stats stop listing long-dead
  nodes (uWSGI only expires lazily);
* a refused connect (``mark_dead``) keeps the node listed and dead until it announces
  again (or goes silent past the tolerance), instead of dropping it at the next lookup;
* keys longer than 255 bytes are rejected at ``apply``: uWSGI stores them but no
  lookup can ever reach them.

Options: ``dotsplit`` tries ``a.b.example.com``, then ``.b.example.com``,
``.example.com``, ``.com`` (the leading dot is kept, five tries at most, as uWSGI's
dotsplit mapper does); ``mountpoints=N`` takes lookup keys ``host/path`` and tries
host + first N path segments, then fewer, then the bare host (uWSGI 2.1
``--subscription-mountpoints``). ``--X-subscription-fallback-key`` is not the table's:
the router's resolver chain applies it (``brood.routers.resolve.FallbackKeyResolver``).
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from typing import Any

from brood.routers.balance import ALGORITHMS, Balancer, make_balancer
from brood.routers.node import Node
from brood.subscription.packet import MAX_ADDRESS, MAX_KEY, Subscription

Event = tuple[Any, ...]

# uWSGI's dotsplit mapper gives up after this many tries ("reduce DOS attempts").
DOTSPLIT_TRIES = 5


def djb33x(key: bytes) -> int:
    """The bucket shown as ``hash`` in stats (WIRE §2.10): djb33x with C ``char`` bytes."""
    h = 5381
    for b in key:
        if b >= 0x80:
            b |= 0xFFFFFF00  # a signed char sign-extends before the XOR
        h = ((h * 33) ^ b) & 0xFFFFFFFF
    return h % 65535


def servername(key: bytes) -> bytes:
    """The TLS server name of a key: up to the first ``:`` (WIRE §2.12)."""
    return key.split(b":", 1)[0]


def node_name(address: bytes) -> str:
    """Node names are str; undecodable bytes survive the round trip to a connect()."""
    return address.decode("utf-8", "surrogateescape")


@dataclass(eq=False)
class Slot:
    """The nodes of one key, in subscription order, and how to balance them."""

    key: bytes
    hash: int
    algo: str
    balancer: Balancer
    nodes: list[Node] = field(default_factory=list)
    hits: int = 0
    sni_key: bytes | None = None
    sni_crt: bytes | None = None
    sni_ca: bytes | None = None
    # unsubscribed or expired, waiting for ref == 0 to leave
    leaving: set[Node] = field(default_factory=set)

    @property
    def sni_enabled(self) -> bool:
        return self.sni_key is not None and self.sni_crt is not None

    def find(self, address: str) -> Node | None:
        for node in self.nodes:
            if node.name == address:
                return node
        return None


class SubscriptionTable:
    """Every key's pool for one router process."""

    def __init__(
        self,
        tolerance: float = 17,
        dotsplit: bool = False,
        mountpoints: int = 0,
        default_algo: str = "wrr",
    ) -> None:
        make_balancer(default_algo)  # ValueError now rather than at the first announce
        self.tolerance = tolerance
        self.dotsplit = dotsplit
        self.mountpoints = mountpoints
        self.default_algo = default_algo
        self._slots: dict[bytes, Slot] = {}
        self._slot_of: dict[Node, Slot] = {}
        self._events: list[Event] = []

    # -- announces ----------------------------------------------------------------------
    def apply(
        self, sub: Subscription, now: float, creds: tuple[int, int, int] | None = None
    ) -> list[Event]:
        """Apply one decoded (and already signature-checked) announce.

        ``creds`` is (pid, uid, gid) from SCM_CREDENTIALS when the shell has them
        (``--subscriptions-use-credentials``); stats show 0 otherwise.
        """
        if not 0 < len(sub.address) <= MAX_ADDRESS:
            return [("rejected", f"address of {len(sub.address)} bytes")]
        if len(sub.key) > MAX_KEY:
            return [("rejected", f"key of {len(sub.key)} bytes is never routable")]
        if sub.unsubscribe:
            return self._unsubscribe(sub, now)
        return self._subscribe(sub, now, creds)

    def _subscribe(
        self, sub: Subscription, now: float, creds: tuple[int, int, int] | None
    ) -> list[Event]:
        events: list[Event] = []
        slot = self._slots.get(sub.key)
        if slot is None:
            algo = sub.algo if sub.algo in ALGORITHMS else self.default_algo
            slot = Slot(sub.key, djb33x(sub.key), algo, make_balancer(algo))
            self._slots[sub.key] = slot
            events.append(("new_pool", sub.key, slot.hash))
        elif sub.algo and sub.algo != slot.algo and sub.algo in ALGORITHMS:
            slot.algo = sub.algo
            slot.balancer = make_balancer(sub.algo)
        name = node_name(sub.address)
        node = slot.find(name)
        weight = max(1, sub.weight)
        if node is None:
            node = Node(
                name,
                modifier1=sub.modifier1,
                modifier2=sub.modifier2,
                weight=weight,
                cores=sub.cores,
                load=sub.load,
                backup=sub.backup,
                last_check=now,
            )
            if creds is not None:
                node.pid, node.uid, node.gid = creds
            slot.nodes.append(node)
            self._slot_of[node] = slot
            events.append(("new_node", sub.key, sub.address))
            if sub.notify:
                events.append(("notify", sub.notify, ack_text(sub.key, sub.address)))
        else:
            # refresh: modifier1/modifier2 deliberately kept (WIRE §2.6)
            node.last_check = now
            node.death_mark = False
            slot.leaving.discard(node)
            node.cores = sub.cores
            node.load = sub.load
            node.weight = weight
            node.backup = sub.backup
            node.last_requests = 0
            if creds is not None:
                node.pid, node.uid, node.gid = creds
        if not slot.sni_enabled and sub.sni_key is not None and sub.sni_crt is not None:
            slot.sni_key, slot.sni_crt, slot.sni_ca = sub.sni_key, sub.sni_crt, sub.sni_ca
            events.append(
                ("sni_added", servername(sub.key), sub.sni_key, sub.sni_crt, sub.sni_ca)
            )
        return events

    def _unsubscribe(self, sub: Subscription, now: float) -> list[Event]:
        slot = self._slots.get(sub.key)
        node = slot.find(node_name(sub.address)) if slot is not None else None
        if slot is None or node is None:
            return []
        node.death_mark = True
        events: list[Event] = [("marked_failed", sub.key, sub.address, "unsubscribed")]
        slot.leaving.add(node)
        events.extend(self._sweep(slot, now, expire=False))
        return events

    # -- requests -----------------------------------------------------------------------
    def lookup(
        self, key: bytes, now: float, client: bytes = b"", exclude: Collection[Node] = ()
    ) -> Node | None:
        """The node for a request with routing key ``key``, or None.

        Expires the silent nodes of every slot it visits (events in ``take_events``).
        Does not touch ``ref``/``requests``: the engine counts a request once its
        connect succeeds.
        """
        for candidate in self.candidates(key):
            slot = self._slots.get(candidate)
            if slot is None:
                continue
            slot.hits += 1
            self._events.extend(self._sweep(slot, now, expire=True))
            if candidate not in self._slots:
                continue
            node = slot.balancer.pick(slot.nodes, now, client, exclude, candidate)
            if node is not None:
                return node
        return None

    def candidates(self, key: bytes) -> Iterator[bytes]:
        """The keys ``lookup`` tries, in order (mountpoints, then dotsplit).

        Keys longer than 255 bytes are never tried: uWSGI refuses them at lookup
        (WIRE §2.11). With mountpoints that limit applies to each candidate.
        """
        for candidate in self._candidates(key):
            if len(candidate) <= MAX_KEY:
                yield candidate

    def _candidates(self, key: bytes) -> Iterator[bytes]:
        host = key
        if self.mountpoints > 0:
            host, _, path = key.partition(b"/")
            path = path.split(b"?", 1)[0]
            segments = [s for s in path.split(b"/") if s]
            for depth in range(min(self.mountpoints, len(segments)), 0, -1):
                yield host + b"/" + b"/".join(segments[:depth])
        if self.dotsplit:
            name = host
            for _ in range(DOTSPLIT_TRIES):
                yield name
                dot = name.find(b".", 1)
                if dot < 0:
                    break
                name = name[dot:]
        else:
            yield host

    def take_events(self) -> list[Event]:
        """Events queued by ``lookup`` (expiries) since the last call."""
        events, self._events = self._events, []
        return events

    def defer(self, events: list[Event]) -> None:
        """Queue events for ``take_events`` (callers that cannot return them)."""
        self._events.extend(events)

    def mark_dead(self, node: Node, now: float) -> list[Event]:
        """A connect to ``node`` was refused: dead until its next announce."""
        slot = self._slot_of.get(node)
        if slot is None:
            return []
        node.failcnt += 1
        node.death_mark = True
        return [("marked_failed", slot.key, _addr(node), "connect refused")]

    def release(self, node: Node, now: float) -> list[Event]:
        """A request on ``node`` ended: drop its in-flight count, remove it if leaving."""
        node.ref = max(0, node.ref - 1)
        slot = self._slot_of.get(node)
        if slot is None or node not in slot.leaving:
            return []
        return self._sweep(slot, now, expire=False)

    def expire(self, now: float) -> list[Event]:
        """The periodic sweep: silent nodes are marked failed and removed everywhere."""
        events: list[Event] = []
        for slot in list(self._slots.values()):
            events.extend(self._sweep(slot, now, expire=True))
        return events

    def _sweep(self, slot: Slot, now: float, *, expire: bool) -> list[Event]:
        """Mark the silent nodes of ``slot`` (``expire``), remove the leaving ones with
        no request in flight, and the slot itself once empty."""
        events: list[Event] = []
        if expire:
            for node in slot.nodes:
                if now - node.last_check > self.tolerance and node not in slot.leaving:
                    if not node.death_mark:
                        node.failcnt += 1
                        node.death_mark = True
                        events.append((
                            "marked_failed", slot.key, _addr(node),
                            f"no announce received in {self.tolerance:g} seconds",
                        ))
                    slot.leaving.add(node)
        for node in [n for n in slot.nodes if n in slot.leaving and n.ref <= 0]:
            slot.nodes.remove(node)
            slot.leaving.discard(node)
            self._slot_of.pop(node, None)
            events.append(("removed_node", slot.key, _addr(node)))
        if not slot.nodes:
            del self._slots[slot.key]
            events.append(("removed_pool", slot.key))
            if slot.sni_enabled:
                events.append(("sni_removed", servername(slot.key)))
        return events

    # -- views --------------------------------------------------------------------------
    def has_nodes(self) -> bool:
        """Any node at all (cheap mode leaves/enters on this)."""
        return any(slot.nodes for slot in self._slots.values())

    def slot(self, key: bytes) -> Slot | None:
        return self._slots.get(key)

    def slots(self) -> list[Slot]:
        """Slots by ascending bucket hash, creation order within a bucket (stats order)."""
        return sorted(self._slots.values(), key=lambda s: s.hash)

    def sni_entries(self) -> list[tuple[bytes, bytes, bytes, bytes | None]]:
        """(servername, sni_key, sni_crt, sni_ca) of every slot with SNI material."""
        return [
            (servername(s.key), s.sni_key, s.sni_crt, s.sni_ca)
            for s in self._slots.values()
            if s.sni_key is not None and s.sni_crt is not None
        ]

    def stats_slots(self, now: float) -> list[dict[str, Any]]:
        """The ``subscriptions`` list of the router stats JSON (WIRE §3.2)."""
        return [
            {
                "key": slot.key.decode("utf-8", "replace"),
                "hash": slot.hash,
                "hits": slot.hits,
                "sni_enabled": int(slot.sni_enabled),
                "nodes": [node_stats(node) for node in slot.nodes],
            }
            for slot in self.slots()
        ]


def _addr(node: Node) -> bytes:
    return node.name.encode("utf-8", "surrogateescape")


def ack_text(key: bytes, address: bytes) -> bytes:
    """The notify datagram for a new node (WIRE §2.9), no newline, no framing."""
    return b"[subscription ack] " + key + b" => new node: " + address


def node_stats(node: Node) -> dict[str, Any]:
    """One node of a slot, field for field as uWSGI's router stats show it."""
    return {
        "name": node.name,
        "modifier1": node.modifier1,
        "modifier2": node.modifier2,
        "last_check": int(node.last_check),
        "pid": node.pid,
        "uid": node.uid,
        "gid": node.gid,
        "requests": node.requests,
        "last_requests": node.last_requests,
        "tx": node.tx,
        "rx": node.rx,
        "cores": node.cores,
        "load": node.load,
        "weight": node.weight,
        "wrr": node.wrr,
        "ref": node.ref,
        "failcnt": node.failcnt,
        "death_mark": int(node.death_mark),
    }


class TableResolver:
    """The table as a ``Resolver`` for the router engine (and its stats)."""

    static_nodes: tuple[Node, ...] = ()

    def __init__(self, table: SubscriptionTable) -> None:
        self.table = table

    @property
    def subscriptions(self) -> SubscriptionTable:
        return self.table

    def resolve(
        self, key: bytes, now: float, client: bytes = b"", exclude: Collection[Node] = ()
    ) -> Node | None:
        return self.table.lookup(key, now, client, exclude)

    def on_connect_failed(self, node: Node, now: float) -> None:
        self.table.defer(self.table.mark_dead(node, now))
