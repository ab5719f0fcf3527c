"""A listener keeps the name it was written with, as in uWSGI: the rawrouter routes the
key as written, stats list it and a node announces it. ``localhost:0`` here (the
``:PORT`` form names itself the same way, ``tests/unit/test_sockets.py``, but binds
every interface, and tests bind loopback only); it was ``127.0.0.1:N`` before, and
``:N`` was ``0.0.0.0:N``: a node subscribed with the key users wrote got 503."""

from __future__ import annotations

from _broodkit import http_get, wait_until


def test_rawrouter_routes_the_key_as_written(start_brood, hello_app) -> None:
    router = start_brood("--master", "--rawrouter", "localhost:0",
                         "--rawrouter-subscription-server", "127.0.0.1:0",
                         "--rawrouter-stats", "127.0.0.1:0")
    (m,) = router.wait_for_log(r"rawrouter subscription server bound on (\S+) fd")
    port = router.port_of("rawrouter socket 0")
    key = f"localhost:{port}"
    # The node announces its own first socket, named as written too.
    node = start_brood("--master", "--http-socket", "localhost:0", "--wsgi-file", hello_app,
                       "--stats", "127.0.0.1:0", "--subscribe2", f"server={m[1]},key={key}",
                       "--subscribe-freq", "1")
    node_name = f"localhost:{node.port_of('uwsgi socket 0')}"

    def subscribed() -> bool:
        doc = router.stats("rawrouter stats server")
        return any(s["key"] == key and s["nodes"] for s in doc["subscriptions"])

    wait_until(subscribed, timeout=15, what=f"the node subscribed under {key!r}")
    status, body = http_get(f"127.0.0.1:{port}", "/")
    assert (status, body) == (200, b"Hello World")
    assert "no node for key" not in router.log()
    doc = router.stats("rawrouter stats server")
    assert key in doc["rawrouter"]
    assert [n["name"] for s in doc["subscriptions"] for n in s["nodes"]] == [node_name]
    assert [s["name"] for s in node.stats()["sockets"]] == [node_name]


def test_embedded_mode_routes_to_the_workers_real_address(start_brood, hello_app) -> None:
    """Workers written "localhost:0": the embedded router goes to the address they are
    bound to, a numeric one (the written name would cost a name lookup per request)."""
    b = start_brood("--master", "--http", "127.0.0.1:0", "--socket", "localhost:0",
                    "--wsgi-file", hello_app, "--http-stats", "127.0.0.1:0")
    assert http_get(b.address_of("http socket 0"), "/") == (200, b"Hello World")
    port = b.port_of("uwsgi socket 0")
    nodes = b.stats("http stats server")["static_nodes"]
    assert [n["name"] for n in nodes] == [f"127.0.0.1:{port}"]


def test_router_stats_list_the_subscription_server_as_bound(start_brood) -> None:
    """A subscription server written "127.0.0.1:0" is listed with the port it got (the
    name a node must subscribe to), as the router's own sockets are."""
    b = start_brood("--master", "--http", "127.0.0.1:0",
                    "--http-subscription-server", "127.0.0.1:0", "--http-stats", "127.0.0.1:0")
    (m,) = b.wait_for_log(r"http subscription server bound on (\S+) fd")
    assert b.stats("http stats server")["http"] == [b.address_of("http socket 0"), m[1]]
    assert not m[1].endswith(":0")
