"""The rawrouter front: a plain TCP pipe from a client to a node.

The node is connected BEFORE anything is read from the client, because raw protocols
often have the server speak first (SMTP, POP3, MySQL banners). The key is the router's
own socket name, as uWSGI uses it for subscriptions. Bytes go both ways with half-close
propagated, through os.splice when both ends are plain sockets. No node: the client is
closed (uWSGI 2.0.21 crashes there instead).

``--rawrouter-xclient``: for SMTP servers behind the router. The node's first line (its
greeting) is swallowed, ``XCLIENT ADDR=<client ip>\\r\\n`` is sent (``ADDR=IPV6:<ip>`` for
an IPv6 client, as Postfix's XCLIENT wants it), and the node's answer to that (a new
greeting, per the XCLIENT extension) is what the client sees first. A client with no IP
address (a unix socket) is relayed plainly, as uWSGI does: no address is made up.
"""

from __future__ import annotations

from typing import Any

import trio

from brood.config.model import Config
from brood.listener import Listener
from brood.routers.engine import Engine, Upstream, client_ip, option
from brood.routers.errors import RoutingError
from brood.routers.net.backend import FirstPick
from brood.routers.net.listen import ConnectionHandler
from brood.routers.net.relay import send_all

# A greeting line longer than this is not a protocol XCLIENT applies to.
MAX_BANNER = 4096


class RawRouter:
    """Connection handler of one rawrouter socket."""

    def __init__(self, engine: Engine, cfg: Config, listener: Listener) -> None:
        self.engine = engine
        self.key = listener.name.encode()
        self.xclient = bool(option(cfg, "rawrouter-xclient", False))
        self.lane: Any = None

    # -- the fast lane --------------------------------------------------------------------
    def lane_for(self, sessions: trio.Nursery) -> Any:
        """The fast lane (``rawrouter_lane``), started at first use, which accepts and
        relays; None with ``--rawrouter-xclient`` (a conversation with the node first)."""
        if self.xclient:
            return None
        lane = self.lane
        if lane is None:
            from brood.routers.rawrouter_lane import RawLane

            lane = self.lane = RawLane(self, sessions)
            sessions.start_soon(lane.run)
        return lane

    async def resume(self, conn: trio.socket.SocketType, peer: Any,
                     first_pick: FirstPick | None = None, held: bool = False) -> None:
        """The general path for a connection the lane could not connect at once
        (``first_pick``: its node and how the connect failed; ``held``: the lane's
        session, closed here once this one is open)."""
        await self(conn, peer, first_pick, held)

    # -- the general path -------------------------------------------------------------------
    async def __call__(self, conn: trio.socket.SocketType, peer: Any,
                       first_pick: FirstPick | None = None, held: bool = False) -> None:
        engine = self.engine
        async with engine.session(peer):
            if held:
                engine.session_handed_over()
            try:
                upstream = await engine.connect(self.key, client=client_ip(peer),
                                                first_pick=first_pick)
            except RoutingError as exc:
                engine.log_failure(peer, exc)
                return
            async with upstream:
                ip = client_ip(peer)
                if self.xclient and ip and not await self.send_xclient(conn, peer, upstream, ip):
                    return
                result = await upstream.relay(conn, end_when_node_done=False)
                if result.timed_out:
                    engine.log_failure(peer, f"idle for {engine.settings.timeout:g}s, closed")

    async def send_xclient(self, conn: trio.socket.SocketType, peer: Any,
                           upstream: Upstream, ip: bytes) -> bool:
        """Swallow the node's greeting line, announce the client; False if it failed."""
        buf = b""
        with trio.move_on_after(self.engine.settings.timeout):
            while b"\n" not in buf and len(buf) <= MAX_BANNER:
                data = await upstream.receive_some(MAX_BANNER)
                if not data:
                    break
                buf += data
        if b"\n" not in buf:
            self.engine.log_failure(peer, "xclient: no greeting line from the node")
            return False
        extra = buf.split(b"\n", 1)[1]
        await upstream.send(b"XCLIENT ADDR=" + (b"IPV6:" if b":" in ip else b"") + ip + b"\r\n")
        if extra:
            await send_all(conn, extra)
        return True


def make_handler(engine: Engine, cfg: Config, listener: Listener) -> ConnectionHandler:
    """The front entry point used by ``brood.routers.process``."""
    return RawRouter(engine, cfg, listener)
