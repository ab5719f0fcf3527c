"""A backend node as every router and the subscription table see it.

One mutable record per node, shared by resolution, balancing, health marks and stats.
Field names follow uWSGI's router stats JSON so stats are a plain projection of this.
Time values are Unix seconds passed in by the caller (pure code never reads the clock).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(eq=False)
class Node:
    """One address a router may forward to."""

    name: str  # the address: "127.0.0.1:3031", "[::1]:3031", "/path/unix.sock", "@abstract"
    modifier1: int = 0
    modifier2: int = 0
    weight: int = 1  # never 0: a 0 on the wire is stored as 1
    cores: int = 0
    load: int = 0
    backup: int = 0  # backup level: only the lowest level with a live node gets traffic
    last_check: float = 0.0  # last announce (subscriptions) or creation time
    # counters, as uWSGI's stats show them
    requests: int = 0
    last_requests: int = 0
    tx: int = 0  # bytes the node sent (its answers): counted from its side, as uWSGI does
    rx: int = 0  # bytes the node received (requests and their bodies)
    ref: int = 0  # requests in flight
    failcnt: int = 0
    death_mark: bool = False  # marked failed: removed once ref drops to 0
    wrr: int = 0  # weighted round robin credit
    grace_until: float = 0.0  # refused a connection: skipped until this time
    grace_marked_at: float = 0.0  # when the grace mark was set (stats "grace")
    pid: int = 0
    uid: int = 0
    gid: int = 0

    def usable(self, now: float) -> bool:
        """Alive and not cooling down after a refused connection."""
        return not self.death_mark and now >= self.grace_until

    def mark_failed_connect(self, now: float, gracetime: float) -> None:
        """A connect to this node failed: skip it for ``gracetime`` seconds."""
        self.failcnt += 1
        self.grace_until = now + gracetime
        self.grace_marked_at = now

    def clear_grace(self) -> None:
        self.grace_until = 0.0
        self.grace_marked_at = 0.0
