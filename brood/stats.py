"""The worker stats server (``--stats``): uWSGI's JSON, byte for byte in layout.

Three layers:

* ``encode_stats(obj, minified)``: the serializer. uWSGI's pretty form is TAB-indented
  with ``"key":value`` and no spaces; an empty list or object is printed with a blank line
  inside; an object that is the value of a key gets the key's indentation again before
  its ``{`` (the ``"req_info":\\t\\t\\t\\t\\t{`` quirk); scalars inside lists are printed
  without indentation (router stats' socket name lists). No newline after the last ``}``.
  Router stats (another part) reuse it.
* ``worker_stats(...)`` builds the snapshot dict from the scoreboard in uWSGI's key order;
  ``worker_stats_json(snapshot)`` is the pure snapshot -> bytes step.
* ``StatsServer``: a master service. It owns a private epoll set (listener plus pending
  clients); the master watches the epoll fd, so a slow or silent client never blocks
  the master: partial writes wait for EPOLLOUT, and every client has a deadline.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import socket
import struct
from collections.abc import Callable
from typing import Any

from brood import __version__
from brood.listener import Listener
from brood.scoreboard import STATUS_NAMES, Scoreboard

VERSION = f"brood-{__version__}"
HTTP_HEAD = (b"HTTP/1.0 200 OK\r\nConnection: close\r\nAccess-Control-Allow-Origin: *\r\n"
             b"Content-Type: application/json\r\n\r\n")
LOCKS = ("user 0", "signal", "filemon", "timer", "rbtimer", "cron", "rpc", "snmp")
CLIENT_DEADLINE = 5.0  # seconds a stats client may take to send its request / read the JSON
ACCEPT_BATCH = 32  # connections accepted per wakeup, so a flood cannot pin the master


def encode_stats(obj: Any, minified: bool = False) -> bytes:
    """Serialize like uWSGI's stats pusher (see the module docstring)."""
    if minified:
        return json.dumps(obj, separators=(",", ":")).encode()
    out: list[str] = []
    _pretty(obj, 0, out)
    return "".join(out).encode()


def _pretty(value: Any, depth: int, out: list[str]) -> None:
    tabs = "\t" * depth
    inner = "\t" * (depth + 1)
    if isinstance(value, dict):
        if not value:
            out.append("{\n\n" + tabs + "}")
            return
        out.append("{\n")
        for i, (key, item) in enumerate(value.items()):
            out.append(("," + "\n" if i else "") + inner + json.dumps(str(key)) + ":")
            if isinstance(item, dict):
                out.append(inner)
            _pretty(item, depth + 1, out)
        out.append("\n" + tabs + "}")
    elif isinstance(value, list | tuple):
        if not value:
            out.append("[\n\n" + tabs + "]")
            return
        out.append("[\n")
        for i, item in enumerate(value):
            if i:
                out.append(",\n")
            if isinstance(item, dict | list | tuple):
                out.append(inner)
            _pretty(item, depth + 1, out)
        out.append("\n" + tabs + "]")
    else:
        out.append(json.dumps(value))


def worker_stats_json(snapshot: dict[str, Any], minified: bool = False) -> bytes:
    """The bytes the stats server sends for ``snapshot`` (a ``worker_stats`` dict)."""
    return encode_stats(snapshot, minified)


_TCP_INFO = struct.Struct("8B6I")  # u8 state..flags, then rto ato snd_mss rcv_mss unacked sacked


def listen_queue(sock: socket.socket) -> int:
    """Connections waiting in a TCP listener's accept queue (Linux tcp_info), else 0."""
    if sock.family not in (socket.AF_INET, socket.AF_INET6) or not hasattr(socket, "TCP_INFO"):
        return 0
    try:
        raw = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO.size)
        return _TCP_INFO.unpack_from(raw)[12]
    except (OSError, struct.error):
        return 0


def _worker(slot_id: int, s: dict[str, int],
            cores: list[tuple[int, bool]] | None = None) -> dict[str, Any]:
    """One worker's stats; ``cores``: (requests, busy) of each of its threads."""
    if cores is None:
        cores = [(s["requests"], bool(s["in_request"]))]
    return {
        "id": slot_id, "pid": s["pid"], "accepting": s["accepting"], "requests": s["requests"],
        "delta_requests": s["delta_requests"], "exceptions": s["exceptions"],
        "harakiri_count": s["harakiri_count"], "signals": s["signals"], "signal_queue": 0,
        "status": STATUS_NAMES.get(s["status"], "idle"), "rss": s["rss"], "vsz": s["vsz"],
        "running_time": s["running_time"], "last_spawn": s["last_spawn"],
        "respawn_count": s["respawn_count"], "tx": s["tx"], "avg_rt": s["avg_rt"],
        "apps": [{"id": 0, "modifier1": 0, "mountpoint": "", "startup_time": 0,
                  "requests": s["requests"], "exceptions": s["exceptions"], "chdir": ""}],
        "cores": [{"id": i, "requests": requests, "static_requests": 0,
                   "routed_requests": 0, "offloaded_requests": 0, "write_errors": 0,
                   "read_errors": 0, "in_request": int(busy), "vars": [],
                   "req_info": {}} for i, (requests, busy) in enumerate(cores)],
    }


def worker_stats(listeners: list[Listener], board: Scoreboard | None, backlog: int,
                 pid: int | None = None) -> dict[str, Any]:
    """A stats snapshot in uWSGI's key order; reads the scoreboard and the process."""
    slot_objects = board.slots() if board else []
    slots = [s.as_dict() for s in slot_objects]
    queues = [listen_queue(lst.sock) for lst in listeners]
    return {
        "version": VERSION,
        "listen_queue": sum(queues),
        "listen_queue_errors": 0,
        "signal_queue": 0,
        "load": sum(s["in_request"] for s in slots),
        "pid": os.getpid() if pid is None else pid,
        "uid": os.getuid(),
        "gid": os.getgid(),
        "cwd": os.getcwd(),
        "locks": [{name: 0} for name in LOCKS],
        "sockets": [
            {"name": lst.name, "proto": lst.proto, "queue": q, "max_queue": backlog,
             "shared": int(lst.shared), "can_offload": 0}
            for lst, q in zip(listeners, queues, strict=True)
        ],
        "workers": [_worker(i, s, o.core_stats())
                    for i, (s, o) in enumerate(zip(slots, slot_objects, strict=True), start=1)],
    }


class _Client:
    __slots__ = ("sock", "out", "deadline", "waiting_request")

    def __init__(self, sock: socket.socket, deadline: float, waiting_request: bool) -> None:
        self.sock = sock
        self.out = b""
        self.deadline = deadline
        self.waiting_request = waiting_request


class StatsServer:
    """JSON on accept (or after the request bytes with ``--stats-http``), then close."""

    def __init__(self, listener: Listener, render: Callable[[], bytes], http: bool = False) -> None:
        self.listener = listener
        self.render = render
        self.http = http
        self._clients: dict[int, _Client] = {}
        self.listener.sock.setblocking(False)
        self._ep = select.epoll()
        self._ep.register(listener.fileno(), select.EPOLLIN)

    @classmethod
    def for_plan(cls, listener: Listener, plan: Any) -> StatsServer:
        """Serve the worker stats of ``plan`` (a brood.plan.Plan) on ``listener``."""
        cfg = plan.cfg
        backlog = int(cfg["listen"] or 100)
        minified = bool(cfg["stats-minified"])

        def render() -> bytes:
            workers = plan.child("worker")
            snap = worker_stats(plan.worker_listeners, workers.scoreboard if workers else None,
                                backlog)
            return worker_stats_json(snap, minified)

        return cls(listener, render, http=bool(cfg["stats-http"]))

    def fileno(self) -> int | None:
        return self._ep.fileno()

    def on_readable(self, now: float) -> None:
        for fd, _events in self._ep.poll(0):
            if fd == self.listener.fileno():
                self._accept(now)
                continue
            client = self._clients.get(fd)
            if client is None:
                continue
            if client.waiting_request:
                self._read_request(client)
            else:
                self._flush(client)

    def tick(self, now: float) -> None:
        for client in list(self._clients.values()):
            if now > client.deadline:
                self._drop(client)

    def on_reload(self, graceful: bool | None = None) -> None:
        self._close_all()

    def on_shutdown(self) -> None:
        self._close_all()

    def close_in_child(self) -> None:
        self._close_all()
        self.listener.sock.close()

    def _accept(self, now: float) -> None:
        for _ in range(ACCEPT_BATCH):
            try:
                conn, _ = self.listener.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            conn.setblocking(False)
            client = _Client(conn, now + CLIENT_DEADLINE, self.http)
            self._clients[conn.fileno()] = client
            if self.http:
                self._ep.register(conn.fileno(), select.EPOLLIN)
            else:
                client.out = self.render()
                self._ep.register(conn.fileno(), 0)
                self._flush(client)

    def _read_request(self, client: _Client) -> None:
        try:
            data = client.sock.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._drop(client)
            return
        client.waiting_request = False
        client.out = HTTP_HEAD + self.render()
        self._flush(client)

    def _flush(self, client: _Client) -> None:
        while client.out:
            try:
                sent = client.sock.send(client.out)
            except (BlockingIOError, InterruptedError):
                self._ep.modify(client.sock.fileno(), select.EPOLLOUT)
                return
            except OSError:
                break
            client.out = client.out[sent:]
        self._drop(client)

    def _drop(self, client: _Client) -> None:
        fd = client.sock.fileno()
        self._clients.pop(fd, None)
        with contextlib.suppress(OSError, ValueError):
            self._ep.unregister(fd)
        with contextlib.suppress(OSError):
            client.sock.shutdown(socket.SHUT_WR)
        client.sock.close()

    def _close_all(self) -> None:
        for client in list(self._clients.values()):
            self._drop(client)
        self._ep.close()
