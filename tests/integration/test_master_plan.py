"""The plan (socket order, =N, contributors) and the stats service, in-process on loopback."""

from __future__ import annotations

import socket
import time

import pytest

import brood.plan
from brood.config.model import Config
from brood.config.option import OptionError
from brood.listener import Listener
from brood.master_env import Binder
from brood.plan import (
    ChildSpec,
    PlanBuilder,
    build_plan,
    register_contributor,
    repeated_sockets,
    socket_specs,
)
from brood.sockets import bind_listener
from brood.stats import HTTP_HEAD, StatsServer


def test_socket_order_shared_first_then_option_order() -> None:
    cfg = Config([("http-socket", "127.0.0.1:0"), ("shared-socket", "127.0.0.1:0"),
                  ("socket", "=0"), ("http-socket", "/tmp/x.sock"),
                  ("shared-socket", "@s")])
    assert [(s.option, s.spec, s.proto, s.number) for s in socket_specs(cfg)] == [
        ("shared-socket", "127.0.0.1:0", "shared", 0),
        ("shared-socket", "@s", "shared", 1),
        ("http-socket", "127.0.0.1:0", "http", 0),
        ("socket", "=0", "uwsgi", 1),
        ("http-socket", "/tmp/x.sock", "http", 2),
    ]


def test_a_worker_socket_written_twice_is_bound_once_with_its_first_protocol() -> None:
    # uWSGI 2.0.21: "--socket X --socket X" and "--socket X --http-socket X" bind X once,
    # as uwsgi; two ":0" are two ephemeral ports; shared sockets are never merged.
    cfg = Config([("socket", "127.0.0.1:3031"), ("http-socket", "/tmp/h.sock"),
                  ("socket", "127.0.0.1:3031"), ("http-socket", "127.0.0.1:3031"),
                  ("socket", "127.0.0.1:0"), ("socket", "127.0.0.1:0"),
                  ("http-socket", "/tmp/h.sock"), ("shared-socket", "@s"),
                  ("shared-socket", "@s")])
    assert [(s.option, s.spec, s.proto, s.number) for s in socket_specs(cfg)] == [
        ("shared-socket", "@s", "shared", 0),
        ("shared-socket", "@s", "shared", 1),
        ("socket", "127.0.0.1:3031", "uwsgi", 0),
        ("http-socket", "/tmp/h.sock", "http", 1),
        ("socket", "127.0.0.1:0", "uwsgi", 2),
        ("socket", "127.0.0.1:0", "uwsgi", 3),
    ]
    assert repeated_sockets(cfg) == [
        "--socket 127.0.0.1:3031: given before, bound once",
        "--http-socket 127.0.0.1:3031: given before, bound once, speaking uwsgi as its "
        "first --socket says",
        "--http-socket /tmp/h.sock: given before, bound once",
    ]


def _close(plan) -> None:
    for lst in plan.listeners:
        lst.sock.close()
    for svc in plan.services:
        svc.on_shutdown()


def test_plan_resolves_shared_references_and_adds_stats() -> None:
    cfg = Config([("shared-socket", "127.0.0.1:0"), ("socket", "=0"),
                  ("http-socket", "127.0.0.1:0"), ("processes", 3), ("lazy-apps", True),
                  ("stats", "127.0.0.1:0")])
    plan = build_plan(cfg, Binder())
    try:
        shared, ref, http = plan.shared[0], *plan.worker_listeners
        assert ref.sock is shared.sock and ref.shared and ref.shared_index == 0
        assert ref.proto == "uwsgi" and http.proto == "http" and not http.shared
        workers = plan.child("worker")
        assert workers is not None and workers.count == 3 and workers.scoreboard is not None
        assert plan.prepare == []  # lazy-apps: nothing preloaded in the master
        assert len(plan.services) == 1
    finally:
        _close(plan)


def test_reference_to_a_missing_shared_socket() -> None:
    with pytest.raises(OptionError, match=r"^--socket =1: there is no shared socket 1"):
        build_plan(Config([("socket", "=1")]), Binder())


def test_contributors_extend_the_plan() -> None:
    seen: list[str] = []

    def router(cfg: Config, b: PlanBuilder) -> None:
        if not cfg.is_set("shared-socket"):
            return
        lst = b.listen("=0", "http", "http", "uWSGI http")
        seen.append(lst.name)
        b.add_child(ChildSpec("http", 1, lambda index: 0))

    register_contributor(router)
    register_contributor(router)  # idempotent
    try:
        plan = build_plan(Config([("shared-socket", "127.0.0.1:0")]), Binder())
        try:
            assert seen == [plan.shared[0].name]
            assert [c.kind for c in plan.children] == ["http"]
            assert plan.children[0].label == "uWSGI http"
        finally:
            _close(plan)
    finally:
        brood.plan._contributors.remove(router)


def _render() -> bytes:
    return b'{"workers":[]}'


def _client(lst: Listener) -> socket.socket:
    c = socket.create_connection(("127.0.0.1", lst.sock.getsockname()[1]), timeout=5)
    return c


def _pump(svc: StatsServer, until, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not until():
        assert time.monotonic() < deadline, "stats service made no progress"
        svc.on_readable(time.time())
        time.sleep(0.01)


def test_stats_service_writes_on_accept_and_closes() -> None:
    lst = bind_listener("127.0.0.1:0", "stats")
    svc = StatsServer(lst, _render)
    try:
        c = _client(lst)
        _pump(svc, lambda: _readable(c))
        assert c.recv(100) == b'{"workers":[]}' and c.recv(10) == b""
        c.close()
    finally:
        svc.on_shutdown()
        lst.sock.close()


def _readable(sock: socket.socket) -> bool:
    import select

    return bool(select.select([sock], [], [], 0)[0])


def test_stats_http_waits_for_bytes_and_silent_clients_expire() -> None:
    lst = bind_listener("127.0.0.1:0", "stats")
    svc = StatsServer(lst, _render, http=True)
    try:
        silent = _client(lst)
        talker = _client(lst)
        _pump(svc, lambda: len(svc._clients) == 2)
        assert not _readable(silent)  # nothing is sent before the request
        talker.sendall(b"GET / HTTP/1.0\r\n\r\n")
        _pump(svc, lambda: _readable(talker))
        data = b""
        for _ in range(10):
            chunk = talker.recv(4096)
            if not chunk:
                break
            data += chunk
        assert data == HTTP_HEAD + b'{"workers":[]}'
        # The silent one costs nothing until its deadline, then is dropped by tick().
        svc.tick(time.time() + 60)
        assert svc._clients == {}
        assert silent.recv(10) == b""
        silent.close()
        talker.close()
    finally:
        svc.on_shutdown()
        lst.sock.close()


def test_slow_reader_never_blocks_the_service() -> None:
    big = b"x" * (8 * 1024 * 1024)  # far more than the socket buffers hold
    lst = bind_listener("127.0.0.1:0", "stats")
    svc = StatsServer(lst, lambda: big)
    try:
        c = _client(lst)
        started = time.monotonic()
        _pump(svc, lambda: len(svc._clients) == 1)
        svc.on_readable(time.time())
        assert time.monotonic() - started < 2.0
        assert svc._clients  # still pending: it waits for EPOLLOUT instead of blocking
        svc.tick(time.time() + 60)
        assert not svc._clients
        c.close()
    finally:
        svc.on_shutdown()
        lst.sock.close()


def test_router_subscription_server_bound_before_its_listening_sockets(monkeypatch) -> None:
    """A node may announce itself as soon as the router's port accepts: by then the
    datagram port is bound (a datagram to an unbound port is lost)."""
    import brood.subscription.plan as subscription_plan

    bound: list[str] = []
    bind_datagram, listen = subscription_plan.bind_datagram, PlanBuilder.listen

    def record_datagram(spec, option):
        bound.append(option)
        return bind_datagram(spec, option)

    def record_listen(self, addr, *args, **kwargs):
        bound.append(args[0])
        return listen(self, addr, *args, **kwargs)

    monkeypatch.setattr(subscription_plan, "bind_datagram", record_datagram)
    monkeypatch.setattr(PlanBuilder, "listen", record_listen)
    cfg = Config([("fastrouter", "127.0.0.1:0"),
                  ("fastrouter-subscription-server", "127.0.0.1:0"),
                  ("fastrouter-stats", "127.0.0.1:0")])
    plan = build_plan(cfg, Binder())
    try:
        assert bound == ["fastrouter-subscription-server", "fastrouter", "fastrouter-stats"]
    finally:
        _close(plan)


def _deferred(sock: socket.socket) -> bool:
    return bool(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT))


@pytest.mark.parametrize("no_defer", [False, True])
def test_http_and_fastrouter_sockets_defer_accept_rawrouter_and_stats_not(no_defer) -> None:
    """As uWSGI: a connection reaches an --http/--fastrouter process once its client has
    sent something (a rawrouter's node may speak first; a stats client sends nothing)."""
    cfg = Config([("http", "127.0.0.1:0"), ("http-to", "127.0.0.1:9"),
                  ("fastrouter", "127.0.0.1:0"), ("fastrouter-to", "127.0.0.1:9"),
                  ("fastrouter-stats", "127.0.0.1:0"),
                  ("rawrouter", "127.0.0.1:0"), ("rawrouter-to", "127.0.0.1:9"),
                  ("no-defer-accept", no_defer)])
    plan = build_plan(cfg, Binder())
    try:
        deferred = {lst.proto: _deferred(lst.sock) for lst in plan.listeners}
    finally:
        _close(plan)
    assert deferred == {"http": not no_defer, "fastrouter": not no_defer,
                        "fastrouter-stats": False, "rawrouter": False}


def test_chmod_socket_sets_the_mode_of_unix_sockets(tmp_path) -> None:
    """--chmod-socket (uWSGI's: nginx's user must connect to the worker socket)."""
    path = tmp_path / "app.sock"
    cfg = Config([("socket", str(path)), ("socket", "127.0.0.1:0"),
                  ("chmod-socket", "660")])
    plan = build_plan(cfg, Binder(chmod=cfg["chmod-socket"]))
    try:
        assert path.stat().st_mode & 0o7777 == 0o660
    finally:
        _close(plan)
    for bad in ("999", ""):  # (an empty value too: uWSGI refuses it)
        with pytest.raises(OptionError, match=f"--chmod-socket {bad}: expected an octal"):
            Binder(chmod=bad)
