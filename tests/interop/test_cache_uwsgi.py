"""A real uWSGI instance keeps brood's fastrouter cache: its app calls
``uwsgi.cache_update(key, its own address)`` / ``uwsgi.cache_del(key)``, uWSGI sends the
cache sync packets to brood's ``--cache-udp-server``, and brood routes the key to that
uWSGI node, then answers 503 once it is deleted. Skipped without uWSGI.

uWSGI 2.0 sends them from a ``--cache2`` cache with its ``nodes=`` key; its
``--cache-udp-node`` only serves the old-style ``--cache N`` cache: both are tried."""

from __future__ import annotations

from pathlib import Path

import pytest
from _broodkit import wait_until
from _interop import need_uwsgi, uwsgi_call

pytestmark = pytest.mark.interop

APP = """\
import os
import uwsgi

CACHE = os.environ.get("CACHE_NAME") or None
ME = os.environ["NODE_ADDRESS"]


def application(environ, start_response):
    path, key = environ["PATH_INFO"], environ["QUERY_STRING"]
    if path == "/register":
        if CACHE:
            uwsgi.cache_update(key, ME, 0, CACHE)
        else:
            uwsgi.cache_update(key, ME)
    elif path == "/unregister":
        if CACHE:
            uwsgi.cache_del(key, CACHE)
        else:
            uwsgi.cache_del(key)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"uwsgi node " + ME.encode()]
"""


@pytest.fixture(scope="module")
def router(start_brood):
    proc = start_brood("--master", "--fastrouter", "127.0.0.1:0",
                       "--fastrouter-processes", "2", "--cache2", "name=routes,items=20",
                       "--fastrouter-use-cache=routes", "--cache-udp-server", "127.0.0.1:0")
    (m,) = proc.wait_for_log(r'udp server for cache "routes" running on (\S+) fd')
    return proc, m[1]


@pytest.mark.parametrize("sender", ["cache2-nodes", "cache-udp-node"])
def test_uwsgi_cache_updates_route_brood(router, start_uwsgi, run_dir: Path,
                                         sender: str) -> None:
    need_uwsgi("python3")
    brood, udp = router
    front = brood.address_of("fastrouter socket 0")
    app = run_dir / "cache_app.py"
    app.write_text(APP)
    if sender == "cache2-nodes":
        cache_args, name = ["--cache2", f"name=mine,items=10,nodes={udp}"], "mine"
    else:
        cache_args, name = ["--cache", "10", "--cache-udp-node", udp], ""
    node = start_uwsgi(
        lambda port: ["--plugins", "python3", "--master", "--socket", f"127.0.0.1:{port}",
                      "--wsgi-file", str(app), *cache_args,
                      "--env", f"NODE_ADDRESS=127.0.0.1:{port}", "--env", f"CACHE_NAME={name}"],
        probe=lambda port: uwsgi_call(f"127.0.0.1:{port}", timeout=2)[0] == 200)
    address = f"127.0.0.1:{node.port}"
    key = f"app-{sender}.test"
    assert uwsgi_call(front, host=key)[0] == 503  # nothing under the key yet

    assert uwsgi_call(address, f"/register?{key}")[0] == 200
    answer = wait_until(lambda: _all_alike(front, key, 200), timeout=10, interval=0.02,
                        what="the key routed to the uWSGI node by both processes")
    assert answer[2] == f"uwsgi node {address}".encode()
    for _ in range(8):  # and keeps routing it
        assert uwsgi_call(front, host=key)[2] == answer[2]

    assert uwsgi_call(address, f"/unregister?{key}")[0] == 200
    wait_until(lambda: _all_alike(front, key, 503), timeout=10, interval=0.02,
               what="the key gone after cache_del, in both processes")
    for _ in range(8):
        assert uwsgi_call(front, host=key)[0] == 503
    assert "invalid packet" not in brood.log()


def _all_alike(front: str, key: str, status: int, runs: int = 6):
    """The answer when ``runs`` calls in a row give ``status``, else None: each of the
    router's two processes applies the master's push on its own, a moment apart."""
    answer = None
    for _ in range(runs):
        answer = uwsgi_call(front, host=key)
        if answer[0] != status:
            return None
    return answer
