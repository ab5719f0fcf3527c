"""Balancing: which node of a pool takes the next request. One small unit per algorithm.

How it works
------------
A resolver finds the pool for a key (the ``--X-to`` list, a subscription slot, the
nodes of a cache entry) and hands it to a Balancer with the time, the client address,
the routing key and the nodes already tried for this request. Every algorithm first
narrows the pool with :func:`live_tier`:

* dead nodes (``death_mark``) and nodes in their gracetime are skipped;
* nodes in ``exclude`` (tried and failed for this request) are skipped;
* of the rest, only the lowest ``backup`` level is kept: backups take traffic only
  when no node of a lower level is left.

An empty tier gives None (the caller answers 503), including when every node is in
grace: uWSGI's static mapper also yields no node then, and trying a node that just
refused would only add a connect timeout to the client's wait.

Algorithms (``make_balancer`` names):

=========  ==================================================  ======================
``rr``     plain rotation, uWSGI's static ``--X-to`` order      roundrobin.RoundRobin
``wrr``    uWSGI's weighted round robin (the subscription       roundrobin.Weighted...
           default): A=3,B=1 -> B A A A B A A A
``lrc``    fewest requests in flight (``ref``)                  leastref.LeastRef
``wlrc``   fewest ``ref / weight``                              leastref.WeightedLeastRef
``p2c``    lower ``ref / weight`` of two random live nodes      leastref.PowerOfTwo
``iphash`` client address hash modulo the pool                  hashing.IpHash
``chash``  consistent hash ring with virtual nodes              hashing.ConsistentHash
=========  ==================================================  ======================

Balancers never touch ``ref`` or ``requests``: the engine counts a request when its
connect succeeds. Only ``wrr`` writes node state (its ``wrr`` credit, as uWSGI does).
"""

from __future__ import annotations

import random

from brood.routers.balance.base import Balancer, ScriptedBalancer, live_tier, load_ratio
from brood.routers.balance.hashing import ConsistentHash, IpHash
from brood.routers.balance.leastref import LeastRef, PowerOfTwo, WeightedLeastRef
from brood.routers.balance.roundrobin import RoundRobin, WeightedRoundRobin

ALGORITHMS: tuple[str, ...] = ("wrr", "rr", "lrc", "wlrc", "iphash", "p2c", "chash")


def make_balancer(algo: str, *, rng: random.Random | None = None) -> Balancer:
    """A fresh balancer for ``algo`` (one of ALGORITHMS); ValueError otherwise.

    Each pool owner should keep its own instance: ``rr`` keeps cursors and ``chash``
    its ring.
    """
    name = algo.strip().lower()
    if name == "wrr":
        return WeightedRoundRobin()
    if name == "rr":
        return RoundRobin()
    if name == "lrc":
        return LeastRef()
    if name == "wlrc":
        return WeightedLeastRef()
    if name == "iphash":
        return IpHash()
    if name == "p2c":
        return PowerOfTwo(rng)
    if name == "chash":
        return ConsistentHash()
    raise ValueError(f"unknown balancing algorithm {algo!r} (one of {', '.join(ALGORITHMS)})")


__all__ = [
    "ALGORITHMS",
    "Balancer",
    "ConsistentHash",
    "IpHash",
    "LeastRef",
    "PowerOfTwo",
    "RoundRobin",
    "ScriptedBalancer",
    "WeightedLeastRef",
    "WeightedRoundRobin",
    "live_tier",
    "load_ratio",
    "make_balancer",
]
