"""Loopback helpers for the router integration tests: listeners on port 0, tiny backends
started with ``nursery.start`` (so tests know when they listen), and a dict resolver."""

from __future__ import annotations

import os
import resource
import socket
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field

import trio
import trio.testing

from brood.listener import Listener
from brood.protocol.uwsgi import read_packet
from brood.routers.node import Node

ANSWER = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 9\r\n\r\ncaptured\n"
EARLY_ANSWER = b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 9\r\n\r\ntoo much\n"


def bind_listener(proto: str) -> Listener:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as brood.sockets does
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    host, port = sock.getsockname()
    return Listener(sock, f"{host}:{port}", proto)


def refused_address() -> str:
    """A loopback port nothing listens on (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


async def connect(address: str) -> trio.socket.SocketType:
    host, port = address.rsplit(":", 1)
    sock = trio.socket.socket()
    await sock.connect((host or "127.0.0.1", int(port)))  # ":N" names every interface
    return sock


async def send_all(sock: trio.socket.SocketType, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[await sock.send(view):]


async def read_all(sock: trio.socket.SocketType, limit: float = 10) -> bytes:
    out = bytearray()
    with trio.fail_after(limit):
        while data := await sock.recv(1 << 20):
            out += data
    return bytes(out)


@dataclass
class Backend:
    """A loopback server; ``received`` holds the bytes of each connection it served."""

    address: str
    received: list[bytes] = field(default_factory=list)
    connections: int = 0


def _uwsgi_complete(buf: bytes) -> bool:
    if len(buf) < 4 or len(buf) < 4 + int.from_bytes(buf[1:3], "little"):
        return False
    packet, rest = read_packet(buf)
    length = 0
    for key, value in packet.vars:
        if key == b"CONTENT_LENGTH":
            length = int(value or b"0")
    return len(rest) >= length


async def uwsgi_backend(answer: bytes = ANSWER, *, stall: bool = False,
                        task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Reads one whole uwsgi request per connection, records it, answers ``answer`` and
    closes (``stall``: never answers)."""
    lsock = trio.socket.socket()
    await lsock.bind(("127.0.0.1", 0))
    lsock.listen(64)
    backend = Backend(f"127.0.0.1:{lsock.getsockname()[1]}")

    async def serve(conn):
        with conn:
            buf = b""
            while not _uwsgi_complete(buf):
                data = await conn.recv(65536)
                if not data:
                    break
                buf += data
            backend.received.append(buf)
            if stall:
                await trio.sleep_forever()
            await send_all(conn, answer)

    with lsock:
        task_status.started(backend)
        async with trio.open_nursery() as nursery:
            while True:
                conn, _ = await lsock.accept()
                backend.connections += 1
                nursery.start_soon(serve, conn)


class DictResolver:
    """Key -> node names, round robin, skipping excluded and graced nodes; records keys."""

    def __init__(self, table: dict[bytes, Sequence[str]], gracetime: float = 30.0) -> None:
        self.nodes = {key: [Node(name) for name in names] for key, names in table.items()}
        self.gracetime = gracetime
        self.keys: list[bytes] = []
        self._next: dict[bytes, int] = {}
        self.static_nodes = [n for nodes in self.nodes.values() for n in nodes]

    def resolve(self, key: bytes, now: float, client: bytes = b"", exclude=()) -> Node | None:
        self.keys.append(key)
        nodes = self.nodes.get(key, [])
        for _ in range(len(nodes)):
            index = self._next.get(key, 0) % len(nodes)
            self._next[key] = index + 1
            node = nodes[index]
            if node not in exclude and node.usable(now):
                return node
        return None

    def on_connect_failed(self, node: Node, now: float) -> None:
        node.mark_failed_connect(now, self.gracetime)


class Resumed(list):
    """What a front's general path was called with, one entry per connection it served
    (``record_general_path``); ``arrived`` is set at each."""

    def __init__(self) -> None:
        super().__init__()
        self.arrived = trio.Event()

    async def wait(self) -> None:
        with trio.fail_after(5):
            await self.arrived.wait()


def record_general_path(monkeypatch, router_class, entry) -> Resumed:
    """Record ``entry(*args)`` of each call of ``router_class.__call__`` (the general path,
    whether a lane handed the connection over or not), then run it."""
    seen = Resumed()
    real = router_class.__call__

    async def recording(self, conn, peer, *args):
        seen.append(entry(*args))
        seen.arrived.set()
        await real(self, conn, peer, *args)

    monkeypatch.setattr(router_class, "__call__", recording)
    return seen


def record_lanes(monkeypatch, router_class) -> list:
    """The fast lanes ``router_class`` starts (``lane_for``), in order."""
    made: list = []
    real = router_class.lane_for

    def recording(self, sessions):
        lane = real(self, sessions)
        if lane not in made:
            made.append(lane)
        return lane

    monkeypatch.setattr(router_class, "lane_for", recording)
    return made


class FdLimit:
    """While the block runs, this process (trio, the router and the test share it) can
    make ``spare`` more fds. The limit bounds fd numbers, and a new fd takes the lowest
    free one: the limit goes to the (spare + 1)-th lowest free number."""

    def __init__(self, spare: int) -> None:
        self.spare = spare
        self.limits = resource.getrlimit(resource.RLIMIT_NOFILE)

    def __enter__(self) -> None:
        probes = [os.dup(0) for _ in range(self.spare + 1)]
        for fd in probes:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (probes[-1], self.limits[1]))

    def __exit__(self, *exc) -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, self.limits)


async def wait_for(condition, limit: float = 5) -> None:
    """Until ``condition()`` holds (every task blocked in between), within ``limit``."""
    with trio.fail_after(limit):
        while not condition():
            await trio.testing.wait_all_tasks_blocked()
            await trio.lowlevel.checkpoint()


async def vars_then(how: str, body_bytes: int = 0, task_status=trio.TASK_STATUS_IGNORED):
    """A uwsgi node that reads a request's header, vars and ``body_bytes`` of its body
    (no more), then does ``how``: "close" (no answer), "garbage" (not HTTP), "reset",
    "stall" (never reads on nor answers), "early" (an answer, then a close: a reset when
    body bytes are left unread), "listen" (reads on, never answers) or "half" (part of an
    answer, then a reset). Serves connections until cancelled."""
    with trio.socket.socket() as lsock:
        await lsock.bind(("127.0.0.1", 0))
        lsock.listen(8)
        task_status.started(f"127.0.0.1:{lsock.getsockname()[1]}")
        while True:
            conn, _ = await lsock.accept()
            with conn:
                buf = b""
                while True:
                    want = (4 + int.from_bytes(buf[1:3], "little") + body_bytes
                            if len(buf) >= 4 else 4)
                    if len(buf) >= want:
                        break
                    data = await conn.recv(want - len(buf))
                    if not data:
                        break
                    buf += data
                if how == "garbage":
                    await send_all(conn, b"garbage\r\n\r\n")
                elif how == "reset":
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                elif how == "stall":
                    await trio.sleep_forever()
                elif how == "early":
                    await send_all(conn, EARLY_ANSWER)
                elif how == "listen":
                    while await conn.recv(1 << 16):
                        pass
                elif how == "half":
                    await send_all(conn, ANSWER[:-4])
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


class Watcher:
    """A node that reads a request and answers nothing: ``asked`` once a request came,
    ``left`` once the router closed that connection (it read its end of stream)."""

    def __init__(self) -> None:
        self.address = ""
        self.asked = trio.Event()
        self.left = trio.Event()

    async def serve(self, task_status=trio.TASK_STATUS_IGNORED) -> None:
        with trio.socket.socket() as lsock:
            await lsock.bind(("127.0.0.1", 0))
            lsock.listen(8)
            self.address = f"127.0.0.1:{lsock.getsockname()[1]}"
            task_status.started(self)
            conn, _ = await lsock.accept()
            with conn:
                await conn.recv(65536)
                self.asked.set()
                try:
                    while await conn.recv(65536):
                        pass
                except OSError:
                    pass
                self.left.set()
                await trio.sleep_forever()
